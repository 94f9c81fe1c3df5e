"""``check_sources``: data errors as one line before anything is built, from the files alone (no image decoded)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from harness.config.schema import ConfigError
from harness.data import preflight
from harness.data.formats.llava_json import entry
from harness.data.formats.llava_json import write as write_llava
from harness.data.formats.webdataset import ShardWriter
from harness.data.preflight import check_sources
from tests.test_corpus import compose_micro


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    with ShardWriter(d / "shards", per_shard=2) as w:
        for k in range(3):  # two shards
            w.add(f"{k:03d}", {"png": png(k), "txt": b"a photo."})
    (d / "llava/images").mkdir(parents=True)
    (d / "llava/images/a.png").write_bytes(png(9))
    write_llava(d / "llava/data.json", [entry("a", "a.png", [("what is it?", "a photo.")])])
    write_llava(d / "llava/empty.json", [])
    return d


def cfg_for(data_dir, *overrides):
    return compose_micro([f"paths.data_dir={data_dir}", "data=caption_only", *overrides])


WDS = "data.sources.caption={format:webdataset,path:'shards/{00000..00001}.tar'}"
LLAVA = "data.sources.caption={format:llava_json,path:llava/data.json,images:llava/images}"


def test_sources_that_resolve_pass_without_decoding_an_image(data_dir, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("check_sources decoded an image")

    monkeypatch.setattr("harness.data.formats.images.decode_sized", no_decoding)
    monkeypatch.setattr("harness.data.corpus.decode_sized", no_decoding)
    for overrides in ([WDS], [LLAVA], [], ["train=minigpt4"], ["data=minigpt4_detail"]):
        check_sources(cfg_for(data_dir, *overrides))


ERRORS = {  # overrides -> parts of the one-line message
    "no_file": ([WDS.replace("shards/", "shard/")],
                ["data 'caption_only'.sources.caption", "webdataset path 'shard/{00000..00001}.tar'",
                 "looked for", "shard/00000.tar", ".tar files", "accepted formats: ", "webdataset (.tar)",
                 "llava_json (.json .jsonl)", "roots: data, world"]),
    "empty_file": (["data.sources.caption={format:llava_json,path:llava/empty.json}"],
                   ["sources.caption", "'llava/empty.json' matches 1 file(s)", "no valid conversation record"]),
    "no_images_folder": ([LLAVA.replace("llava/images", "llava/imgs")],
                         ["sources.caption", "images folder 'llava/imgs' does not exist"]),
    "wrong_images_folder": ([LLAVA.replace("llava/images", "shards")],
                            ["sources.caption", "none of the first 1 images", "shards/a.png", "images 'shards'"]),
    "minigpt4_stages": (["train=minigpt4", WDS.replace("shards/", "nowhere/")],
                    ["data 'caption_only'.sources.caption", "'nowhere/{00000..00001}.tar'"]),
    "world_export_path": (["data=minigpt4_detail", "data.sources.conversation.path=curated/details.json"],
                          ["data 'minigpt4_detail'.sources.conversation", "'curated/details.json' names no file",
                           "curated/detail.json", "caption/00000.tar"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_a_data_error_is_one_line_naming_source_path_and_what_is_accepted(data_dir, case):
    overrides, parts = ERRORS[case]
    with pytest.raises(ConfigError) as err:
        check_sources(cfg_for(data_dir, *overrides))
    msg = str(err.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg


def test_a_missing_data_dir_says_which_setting_to_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"paths.data_dir '.*nowhere' is not a folder.*MM_ABLATE_DATA"):
        check_sources(cfg_for(tmp_path / "nowhere", WDS))


def test_the_accepted_list_names_every_format():
    from harness.data.formats import FORMATS

    assert all(name in preflight.accepted() for name in FORMATS.names())
