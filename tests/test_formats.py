"""Each data-format reader on small fixture files written here; bad records are skipped and counted, never fatal."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.formats import FORMATS, decode, encode_png, expand, expand_braces
from harness.data.formats.base import ImageRef
from harness.data.formats.images import UndecodableImage, read_bytes
from harness.data.formats.interleaved import write_jsonl, write_parquet
from harness.data.formats.llava_json import entry
from harness.data.formats.llava_json import write as write_llava
from harness.data.formats.text_jsonl import write as write_texts
from harness.data.formats.webdataset import ShardWriter, split_key
from harness.registry import UnknownComponentError

S = 16  # decoded side: tiny fixtures, fast tests


def pixels(seed: int, h: int = S, w: int = S) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def read(fmt: str, files: list[Path], images_root: Path | None = None) -> tuple[list[dict], Counter]:
    skipped = Counter()
    return list(FORMATS.get(fmt)().read(files, images_root or files[0].parent, skipped)), skipped


# -- file specs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,expected", [
    ("shards/{00000..00002}.tar", ["shards/00000.tar", "shards/00001.tar", "shards/00002.tar"]),
    ("{8..10}.tar", ["8.tar", "9.tar", "10.tar"]),  # no leading zero, different widths: no padding
    ("{3..1}", ["3", "2", "1"]),
    ("{a,b}/{0..1}.json", ["a/0.json", "a/1.json", "b/0.json", "b/1.json"]),  # left to right, as a product
    ("plain.jsonl", ["plain.jsonl"]),
])
def test_brace_expansion(spec, expected):
    assert expand_braces(spec) == expected


@pytest.mark.parametrize("spec", ["{a,{b,c}}", "a{b", "a}b", "x{y}z"])
def test_bad_brace_specs_are_rejected(spec):
    with pytest.raises(ValueError, match="brace"):
        expand_braces(spec)


def test_globs_sort_and_unmatched_patterns_stay_visible(tmp_path):
    for name in ("b.tar", "a.tar", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand("*.tar", tmp_path)] == ["a.tar", "b.tar"]  # sorted, never listing order
    assert expand("none-*.tar", tmp_path) == [tmp_path / "none-*.tar"]  # the reader counts it as missing


# -- decode ---------------------------------------------------------------------------------------------------------
def test_decode_png_is_exact_and_crop_is_centred():
    arr = pixels(0)
    assert np.array_equal(decode(encode_png(arr), S), arr)  # lossless at the native size: no resize
    wide = np.zeros((S, 2 * S, 3), np.uint8)
    wide[:, : S // 2] = 255  # white borders left and right, black centre: the crop must keep only the centre
    wide[:, -S // 2 :] = 255
    assert decode(encode_png(wide), S).max() == 0


def test_decode_jpeg_downscales_with_draft():
    big = np.kron(pixels(1, 4, 4), np.ones((160, 160, 1), np.uint8))  # 640x640 of 4x4 flat blocks
    out = decode(jpeg(big), S)
    assert out.shape == (S, S, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - decode(jpeg(big), S, draft=False).astype(int)).mean() < 8  # same picture


@pytest.mark.parametrize(("fmt", "dtype", "scale"), [("PNG", np.uint16, 257), ("TIFF", np.uint16, 257),
                                                     ("TIFF", np.float32, 1 / 255)])
def test_deep_greyscale_scales_to_eight_bits(fmt, dtype, scale):
    # A 16-bit PNG scan opens as PIL mode I;16, a float TIFF as F; convert("RGB") clipped both (a white or black
    # photo). The decoded grey must be the 8-bit value the file's range maps to.
    grey = np.tile(np.linspace(0, 255, S).round(), (S, 1))  # 8-bit target values, black to white
    buf = io.BytesIO()
    Image.fromarray((grey * scale).astype(dtype)).save(buf, format=fmt)
    import base64

    from harness.eval.benchmarks import decode_image
    from harness.models.load import image_preprocess

    # every decode path: training's, a TSV benchmark's base64 cell, the evaluation kits' adapters (a PIL image)
    for out in (decode(buf.getvalue(), S), decode_image(base64.b64encode(buf.getvalue()).decode()),
                image_preprocess(Image.open(io.BytesIO(buf.getvalue())))):
        assert out.shape == (S, S, 3) and np.array_equal(out[..., 0], out[..., 2])
        assert np.abs(out[..., 0].astype(int) - grey.astype(int)).max() <= 1, (out[0, :8, 0], grey[0, :8])


def test_decode_rejects_corrupt_bytes():
    with pytest.raises(UndecodableImage):
        decode(jpeg(pixels(2))[:200], S)  # truncated JPEG
    with pytest.raises(UndecodableImage):
        decode(b"not an image", S)


# -- webdataset -----------------------------------------------------------------------------------------------------
def test_split_key_follows_webdataset():
    assert split_key("000123.jpg") == ("000123", "jpg")
    assert split_key("dir/abc.seg.PNG") == ("dir/abc", "seg.png")


def test_webdataset_reads_shards_by_offset(tmp_path):
    with ShardWriter(tmp_path / "shards", per_shard=2) as w:
        w.add("a", {"png": encode_png(pixels(0)), "txt": b"first caption."})
        caps = json.dumps({"captions": ["x.", "y."]}).encode()  # alternatives win over .txt
        w.add("b", {"jpg": jpeg(pixels(1)), "txt": b"ignored.", "json": caps})
        w.add("c", {"webp": b"", "txt": b"broken image, caught by the corpus."})
    spec = w.close()
    assert spec == "shards/{00000..00001}.tar" and sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "00000.tar", "00001.tar"]
    recs, skipped = read("webdataset", expand(spec, tmp_path))
    assert [r["texts"] for r in recs] == [["first caption."], ["x.", "y."], ["broken image, caught by the corpus."]]
    assert not skipped
    ref = recs[0]["image"]
    assert isinstance(ref, ImageRef) and ref.size > 0
    assert np.array_equal(decode(read_bytes(ref), S), pixels(0))  # one seek + read, nothing unpacked


def test_webdataset_counts_bad_samples_and_shards(tmp_path):
    with ShardWriter(tmp_path / "s", per_shard=10) as w:
        w.add("no_image", {"txt": b"a caption without its image."})
        w.add("no_text", {"png": encode_png(pixels(0))})
        w.add("bad_json", {"png": encode_png(pixels(1)), "json": b"{not json"})
        w.add("good", {"png": encode_png(pixels(2)), "txt": b"kept."})
    (tmp_path / "s" / "00001.tar").write_bytes(b"\x1f\x8b gzip is not an uncompressed tar" * 20)
    recs, skipped = read("webdataset", expand("s/{00000..00002}.tar", tmp_path))
    assert [r["texts"] for r in recs] == [["kept."]]
    assert skipped == Counter(missing_image=1, missing_text=1, malformed_record=1, bad_shard=1, missing_file=1)


def test_webdataset_shards_are_reproducible(tmp_path):
    for d in ("x", "y"):
        with ShardWriter(tmp_path / d, per_shard=5) as w:
            w.add("k", {"png": encode_png(pixels(0)), "txt": b"same."})
    assert (tmp_path / "x/00000.tar").read_bytes() == (tmp_path / "y/00000.tar").read_bytes()  # one cache key
    with tarfile.open(tmp_path / "x/00000.tar") as tf:
        assert [m.name for m in tf] == ["k.png", "k.txt"]


# -- llava_json -----------------------------------------------------------------------------------------------------
def test_llava_json_conversations(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img/1.png").write_bytes(encode_png(pixels(0)))
    good = entry("1", "1.png", [("describe this image in detail.", "a red circle."), ("what colour?", "red")])
    assert good["conversations"][0]["value"] == "<image>\ndescribe this image in detail."
    sharegpt = {"id": "2", "image": "1.png", "conversations": [{"from": "system", "value": "be brief"},
                {"from": "user", "value": "what is it?\n<image>"}, {"from": "assistant", "value": "a circle"}]}
    bad = [{"id": "3", "conversations": good["conversations"]},  # no image
           {"id": "4", "image": "1.png", "conversations": [{"from": "gpt", "value": "an answer first"}]},
           {"id": "5", "image": "1.png", "conversations": [{"from": "human", "value": "a question, no answer"}]},
           "not an entry"]
    write_llava(tmp_path / "data.json", [good, sharegpt, *bad])
    recs, skipped = read("llava_json", [tmp_path / "data.json"], tmp_path / "img")
    assert [r["turns"] for r in recs] == [
        [["describe this image in detail.", "a red circle."], ["what colour?", "red"]], [["what is it?", "a circle"]]]
    assert recs[0]["image"] == ImageRef(str(tmp_path / "img/1.png"))
    assert skipped == Counter(malformed_record=4)


def test_llava_jsonl_and_broken_files(tmp_path):
    line = json.dumps(entry("1", "1.png", [("q?", "a")]))
    (tmp_path / "d.jsonl").write_text(f"{line}\n{{broken\n\n{line}\n")
    (tmp_path / "broken.json").write_text('[{"id": 1,')
    recs, skipped = read("llava_json", [tmp_path / "d.jsonl", tmp_path / "broken.json", tmp_path / "gone.json"])
    assert len(recs) == 2 and skipped == Counter(malformed_record=2, missing_file=1)


# -- interleaved ----------------------------------------------------------------------------------------------------
def test_interleaved_jsonl(tmp_path):
    docs = [{"id": 0, "texts": [None, "a red circle.", None, "a blue square."],
             "images": ["i/0.png", None, "i/1.png", None]},
            {"texts": ["intro", None], "images": [None, None]},  # an all-null position is dropped
            {"texts": ["both set"], "images": ["i/0.png"]},  # malformed: a position with text and image
            {"texts": ["length mismatch"], "images": []},
            {"texts": [None], "images": ["i/0.png"]}]  # no text at all
    write_jsonl(tmp_path / "docs.jsonl", docs)
    with open(tmp_path / "docs.jsonl", "a") as fh:
        fh.write("{not json\n")
    recs, skipped = read("interleaved", [tmp_path / "docs.jsonl"])
    assert recs[0] == {"images": [ImageRef(str(tmp_path / "i/0.png")), None, ImageRef(str(tmp_path / "i/1.png")), None],
                       "texts": [None, "a red circle.", None, "a blue square."]}
    assert recs[1] == {"images": [None], "texts": ["intro"]}
    assert skipped == Counter(malformed_record=3, empty_record=1)


def test_interleaved_parquet_embedded_bytes_and_paths(tmp_path):
    pytest.importorskip("pyarrow")
    png = encode_png(pixels(3))
    write_parquet(tmp_path / "emb.parquet", [{"texts": [None, "t."], "images": [png, None]}])
    write_parquet(tmp_path / "paths.parquet", [{"texts": ["t.", None], "images": [None, "x.png"]}])
    recs, skipped = read("interleaved", [tmp_path / "emb.parquet", tmp_path / "paths.parquet"])
    assert recs[0]["images"][0] == png and recs[1]["images"][1] == ImageRef(str(tmp_path / "x.png"))
    assert not skipped


# -- text_jsonl -----------------------------------------------------------------------------------------------------
def test_text_jsonl(tmp_path):
    write_texts(tmp_path / "t.jsonl", ["one passage.", "two."])
    with open(tmp_path / "t.jsonl", "a") as fh:
        fh.write('{"text": "   "}\n{"body": "no text key"}\n[1, 2]\n{broken\n')
    recs, skipped = read("text_jsonl", [tmp_path / "t.jsonl"])
    assert recs == [{"text": "one passage."}, {"text": "two."}]
    assert skipped == Counter(malformed_record=3, empty_record=1)


def test_unknown_format_lists_valid_ones():
    with pytest.raises(UnknownComponentError) as err:
        FORMATS.get("webdatset")
    assert "Did you mean: webdataset" in str(err.value)
    assert all(n in str(err.value) for n in FORMATS.names())


def test_decode_bench_writes_json(tmp_path):
    from harness.bench import main

    main(["decode", "--images", "6", "--shards", "2", "--size", "32", "--out", str(tmp_path)])
    (out,) = tmp_path.glob("decode-*.json")
    result = json.loads(out.read_text())
    assert result["images"] == 6 and result["source_image"]["width"] == 640
    assert [r["draft"] for r in result["rows"]] == [True, False]
    assert all(r["images_per_cpu_s"] > 0 for r in result["rows"])
