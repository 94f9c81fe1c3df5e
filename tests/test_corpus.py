"""The corpus: the world's export reads back as the world's own training stream; user data is indexed once, with bad
data skipped and counted; data configs say where sources read from and fail with one clear line when they cannot."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from harness.config.hashing import hashed_config
from harness.config.schema import ConfigError, DataCfg, SourceCfg, SourcesCfg
from harness.config.store import register_configs
from harness.config.validate import resolve, validate
from harness.data import locations
from harness.data.corpus import build_corpus
from harness.data.formats.interleaved import write_jsonl, write_parquet
from harness.data.formats.llava_json import entry
from harness.data.formats.llava_json import write as write_llava
from harness.data.formats.text_jsonl import write as write_texts
from harness.data.formats.webdataset import ShardWriter
from harness.data.mixture import Mixture
from harness.world import World, WorldCfg
from tests.conftest import MICRO, ROOT

register_configs()
MICRO_WORLD = WorldCfg(name="shapes_micro", n_train=400, n_val=50, n_test=60, n_docs=150, n_texts=200)
EVERY_SOURCE = {"caption": 0.3, "synthetic_caption": 0.1, "interleaved": 0.3, "text": 0.1, "conversation": 0.2}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus_cache")


@pytest.fixture(scope="module")
def world(cache):
    return World.build_or_load(MICRO_WORLD, cache)


def corpus_for(world, cache, data_dir, mixture, sources=None, log=None):
    data = DataCfg(name="test", mixture=mixture, sources=SourcesCfg(**(sources or {})))
    return build_corpus([data], world, cache, data_dir, **({"log": log} if log else {}))


def pixels(seed: int, side: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def png(arr: np.ndarray, level: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# -- the world's export -----------------------------------------------------------------------------------------------
def test_export_read_stream_equals_the_world_stream(world, cache, tmp_path):
    """The default run's guarantee: reading the world through its export changes nothing the model sees: the same
    examples in the same order, with the same image ids and the same pixels."""
    corpus = corpus_for(world, cache, tmp_path, EVERY_SOURCE)
    direct, exported = Mixture(world, EVERY_SOURCE), Mixture(corpus, EVERY_SOURCE)
    rng_d, rng_e = np.random.default_rng(7), np.random.default_rng(7)
    seen = set()
    for k in range(600):
        a, b = direct.sample(rng_d), exported.sample(rng_e)
        assert (a.source, a.chunks) == (b.source, b.chunks), f"example {k} differs: {a} vs {b}"
        seen.update(a.images)
    assert seen and set(direct.counts) == set(EVERY_SOURCE)  # every source was drawn
    assert np.array_equal(corpus.images("train")[:], world.images("train")[:])  # every pixel of every image
    s = corpus.summary()
    assert s["images"] == len(world.images("train")) and s["duplicates"] > 0  # docs, curated set: caption images
    assert all(v["skipped"] == {} for v in s["sources"].values())


def test_data_configs_on_one_world_share_one_image_store(world, cache, tmp_path):
    a = corpus_for(world, cache, tmp_path, {"caption": 1.0})
    b = corpus_for(world, cache, tmp_path, {"interleaved": 0.9, "text": 0.1})
    assert a.hash == b.hash  # hence one feature-cache entry for every data ablation of a world
    with pytest.raises(KeyError, match="built for: caption"):
        a.part("interleaved")
    with pytest.raises(ValueError, match="training data only"):
        a.images("test")


# -- user data --------------------------------------------------------------------------------------------------------
@pytest.fixture
def messy_data(tmp_path):
    """One location per format, each with good records and one of every kind of damage."""
    d = tmp_path / "data"
    with ShardWriter(d / "shards", per_shard=10) as w:
        w.add("good1", {"jpg": jpeg(pixels(1)), "txt": b"a good jpeg."})
        w.add("corrupt", {"jpg": jpeg(pixels(2))[:100], "txt": b"a truncated jpeg."})
        w.add("notext", {"png": png(pixels(3))})
        w.add("good2", {"png": png(pixels(4)), "txt": b"a good png."})
    (d / "llava/images").mkdir(parents=True)
    (d / "llava/images/a.png").write_bytes(png(pixels(5)))
    write_llava(d / "llava/data.json", [entry("a", "a.png", [("what is it?", "a square.")]),
                                        entry("b", "gone.png", [("what is it?", "nothing.")]),
                                        {"id": "c", "image": "a.png"}])
    (d / "docs/img").mkdir(parents=True)
    (d / "docs/img/same.png").write_bytes(png(pixels(4), level=9))  # good2's picture, other bytes
    (d / "docs/img/bad.png").write_bytes(b"\x89PNG not really")
    write_jsonl(d / "docs/docs.jsonl", [
        {"texts": [None, "first.", None, "second."], "images": ["img/same.png", None, "img/missing.png", None]},
        {"texts": [None, "third."], "images": ["img/bad.png", None]}])
    with open(d / "docs/docs.jsonl", "a") as fh:
        fh.write("{broken\n")
    write_texts(d / "text/t.jsonl", ["a passage.", "another."])
    with open(d / "text/t.jsonl", "a") as fh:
        fh.write("not json\n")
    sources = {"caption": SourceCfg(format="webdataset", path="shards/{00000..00001}.tar"),
               "conversation": SourceCfg(format="llava_json", path="llava/data.json", images="llava/images"),
               "interleaved": SourceCfg(format="interleaved", path="docs/docs.jsonl"),
               "text": SourceCfg(format="text_jsonl", path="text/t.jsonl")}
    return d, sources


def test_bad_data_is_skipped_and_counted_per_source(world, tmp_path, messy_data):
    data_dir, sources = messy_data
    mix = dict.fromkeys(sources, 0.25)
    corpus = corpus_for(world, tmp_path / "cache", data_dir, mix, sources)
    assert corpus.skipped == {
        "caption": {"undecodable_image": 1, "missing_text": 1, "missing_file": 1},  # shard 00001 does not exist
        "conversation": {"missing_file": 1, "malformed_record": 1},
        "interleaved": {"missing_file": 1, "undecodable_image": 1, "malformed_record": 1},
        "text": {"malformed_record": 1},
    }
    assert {s: len(corpus.part(s)) for s in sources} == {"caption": 2, "conversation": 1, "interleaved": 2, "text": 2}
    cap = corpus.part("caption").records
    first, second = corpus.part("interleaved").records
    # A dead image leaves its document, the text stays: "second." becomes a text-only chunk.
    assert first["texts"] == [None, "first.", "second."] and first["images"][1:] == [None, None]
    assert second == {"images": [None], "texts": ["third."]}
    assert first["images"][0] == cap[1]["image"]  # the same picture in two formats and encodings: one image id
    assert corpus.duplicates == 1 and len(corpus.images()) == 3  # good1, good2 (= same.png) and llava's a.png
    assert np.array_equal(corpus.images()[cap[1]["image"]], np.asarray(Image.fromarray(pixels(4)).resize(
        (128, 128), Image.Resampling.BICUBIC)))  # decoded at the world's native size
    ex = Mixture(corpus, {"interleaved": 1.0}).sources["interleaved"].get(0, np.random.default_rng(0))
    assert [(c.image is None, c.text) for c in ex.chunks] == [(False, "first."), (True, "second.")]


def test_source_without_valid_samples_fails_clearly(world, tmp_path):
    sources = {"caption": SourceCfg(format="webdataset", path="nowhere/{00000..00003}.tar")}
    with pytest.raises(ValueError) as err:
        corpus_for(world, tmp_path / "cache", tmp_path, {"caption": 1.0}, sources)
    msg = str(err.value)
    assert "data source 'caption'" in msg and "yielded no valid sample" in msg and "'missing_file': 4" in msg
    assert "nowhere/00000.tar" in msg


def test_index_is_built_once_and_follows_file_changes(world, tmp_path):
    write_texts(tmp_path / "t.jsonl", ["one.", "two."])
    sources, logs = {"text": SourceCfg(format="text_jsonl", path="t.jsonl")}, []
    first = corpus_for(world, tmp_path / "cache", tmp_path, {"text": 1.0}, sources, logs.append)
    again = corpus_for(world, tmp_path / "cache", tmp_path, {"text": 1.0}, sources, logs.append)
    assert sum("[corpus] indexed" in m for m in logs) == 1 and again.hash == first.hash
    write_texts(tmp_path / "t.jsonl", ["one.", "two.", "three."])  # new size and mtime: a new key
    changed = corpus_for(world, tmp_path / "cache", tmp_path, {"text": 1.0}, sources, logs.append)
    assert sum("[corpus] indexed" in m for m in logs) == 2 and len(changed.part("text")) == 3


def test_parquet_embedded_images_are_kept_next_to_the_index(world, tmp_path):
    pytest.importorskip("pyarrow")
    write_parquet(tmp_path / "d.parquet", [{"texts": [None, "embedded."], "images": [png(pixels(9, 128)), None]}])
    sources = {"interleaved": SourceCfg(format="interleaved", path="*.parquet")}
    corpus = corpus_for(world, tmp_path / "cache", tmp_path, {"interleaved": 1.0}, sources)
    (doc,) = corpus.part("interleaved").records
    assert np.array_equal(corpus.images()[doc["images"][0]], pixels(9, 128))


def test_image_store_indexes_like_an_array(world, cache, tmp_path):
    store, ref = corpus_for(world, cache, tmp_path, {"caption": 1.0}).images(), world.images("train")
    assert store.shape == ref.shape and len(store) == len(ref)
    assert np.array_equal(store[3], ref[3]) and np.array_equal(store[-1], ref[-1])
    assert np.array_equal(store[[5, 1, 5]], ref[[5, 1, 5]]) and np.array_equal(store[2:6:2], ref[2:6:2])
    assert np.array_equal(store[np.arange(len(ref)) < 3], ref[:3])
    with pytest.raises(IndexError):
        store[len(ref)]


# -- data configs -----------------------------------------------------------------------------------------------------
def compose_micro(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):
        return compose(config_name="sweep", overrides=[*MICRO, *overrides])


WORLD_CAPTIONS = "webdataset: (default part) in the world's export"
CONFIG_CASES = {  # overrides -> a part of the one-line message (None: valid)
    "unknown_format": (["data.sources.caption={format:webdatset,path:'s/{0..9}.tar'}"],
                       "Unknown data format 'webdatset'. Did you mean: webdataset?"),
    "format_missing": (["data.sources.text.path=t.jsonl"], "sources.text: set its format too (one of"),
    "wrong_record_kind": (["data.sources.caption={format:text_jsonl,path:t.jsonl}"],
                          "format 'text_jsonl' yields text records; source 'caption' reads pair, conversation"),
    "absolute_path": (["data.sources.caption={format:webdataset,path:/abs/s.tar}"],
                      "'/abs/s.tar' is absolute; give it relative"),
    "wrong_file_ending": (["data.sources.caption={format:webdataset,path:s.json}"],
                          "must name .tar files for format 'webdataset'"),
    "unknown_root": (["data.sources.caption={format:webdataset,path:s.tar,root:web}"], "Unknown root 'web'"),
    "stage_on_run_data": (["train=minigpt4", "data=caption_only",
                           "data.sources.caption={format:webdataset,path:s.tar}", "train.stages.1.data=caption_only"],
                          None),  # a stage naming the run's data reads cfg.data, command-line overrides included
    # own sources on a run whose every stage names other data: the point would train on the world under their name
    "run_data_never_read": (["train=minigpt4", "data.sources.caption={format:webdataset,path:s.tar}"],
                            "data 'mm1_45_45_10' is never read: every stage of train 'minigpt4' names its own data"),
    "run_data_read_by_a_stage": (["train=minigpt4", "data.sources.caption={format:webdataset,path:s.tar}",
                                  "train.stages.0.data=null"], None),
    "two_places_for_one_source": (["train=minigpt4", "data=caption_only",
                                   "data.sources.caption={format:webdataset,path:s.tar}", "train.stages.0.data=null",
                                   "train.stages.1.data=mm1_45_45_10"],
                                  f"in data 'caption_only' but from {WORLD_CAPTIONS} in data 'mm1_45_45_10'"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_data_config_checks(case):
    overrides, message = CONFIG_CASES[case]
    cfg = compose_micro(overrides)
    if message is None:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_source_names_and_fields_are_checked_while_composing():
    from harness.data.sources import SOURCES

    assert set(SourcesCfg.__dataclass_fields__) == set(SOURCES.names())  # a new source needs its schema field
    for override, name in (("data.sources.captions={format:webdataset,path:s.tar}", "captions"),
                           ("data.sources.caption={format:webdataset,pth:s.tar}", "pth")):
        with pytest.raises(Exception) as err:
            compose_micro([override])
        assert name in f"{err.value} {err.value.__cause__}"


def test_hash_leaves_out_unset_sources_and_keeps_set_ones():
    plain = compose_micro([])
    hashed = hashed_config(resolve(plain), plain)
    assert "sources" not in hashed["data"] and "stage_data" not in hashed  # hashes as before `sources` existed
    custom = compose_micro(["data.sources.caption={format:webdataset,path:s.tar}"])
    assert hashed_config(resolve(custom), custom)["data"]["sources"]["caption"]["path"] == "s.tar"


def test_minigpt4_stages_read_their_own_data_from_one_corpus(world, cache, tmp_path):
    cfg = compose_micro(["train=minigpt4"])
    validate(cfg)
    data_cfgs = locations.stage_data(cfg)
    assert [d.name for d in locations.used_data(cfg, data_cfgs)] == ["caption_only", "minigpt4_detail"]
    hashed = hashed_config(resolve(cfg), cfg)
    assert set(hashed["stage_data"]) == {"caption_only", "minigpt4_detail"}
    assert "sources" in hashed["stage_data"]["minigpt4_detail"] and "sources" not in hashed["data"]
    corpus = build_corpus(locations.used_data(cfg, data_cfgs), world, cache, tmp_path)
    rng = np.random.default_rng(0)
    stage1 = [Mixture(corpus, data_cfgs["caption_only"].mixture).sample(rng) for _ in range(50)]
    stage2 = [Mixture(corpus, data_cfgs["minigpt4_detail"].mixture).sample(rng) for _ in range(50)]
    assert {e.source for e in stage1} == {"caption"} and {e.source for e in stage2} == {"conversation"}
    detail = [e.chunks for e in stage2]
    assert all(len(c) == 1 and c[0].text.startswith("Question: describe this image in detail. Answer: ")
               for c in detail)
    used = {i for e in stage1 + stage2 for i in e.images}
    assert max(used) < len(corpus.images())  # one feature bank covers both stages
    assert all(i % 20 == 0 for e in stage2 for i in e.images)  # the curated images: every 20th of the world
    samples = world.samples("train")
    assert all(c[0].text.endswith(samples[c[0].image]["dense_caption"]) for c in detail)
