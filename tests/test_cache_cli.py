"""``python -m harness.cache``: listing and cleaning a temporary cache; dry runs delete nothing, builds in progress
are never touched, and the cache folder is found the way a sweep point finds it (``MM_ABLATE_CACHE``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.cache import human_size, main

DAY = 86400
KEY = {
    "artifact": "clip_tiny-0123abcd",
    "layer": "penultimate",
    "resolution": 64,
    "split": "train",
    "world": "w1",
    "dtype": "float16",
    "v": 1,
}


def entry(root: Path, kind: str, name: str, age_s: float, done: bool = True, meta: dict | None = None) -> Path:
    path = root / kind / name
    path.mkdir(parents=True)
    (path / "data.bin").write_bytes(b"x" * 2048)
    if meta is not None:
        (path / "meta.json").write_text(json.dumps(meta))
    if done:
        (path / "DONE").write_text("ok\n")
    stamp = time.time() - age_s
    for p in [*path.iterdir(), path]:
        os.utime(p, (stamp, stamp))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> dict[str, Path]:
    root = tmp_path / "cache"
    paths = {
        "old_features": entry(root, "features", "aaaa1111", 3 * DAY, meta={"key": KEY, "images": 400}),
        "new_features": entry(root, "features", "bbbb2222", 60, meta={"key": KEY | {"kind": "maps"}}),
        "encoder": entry(root, "encoders", "clip_tiny-cccc3333", 2 * DAY),
        "building": entry(root, "encoders", ".clip_tiny-dddd.tmp-123-ab", 120, done=False),
        "abandoned": entry(root, "world", "shapes-eeee", 2 * 3600, done=False),
        "tokenizer": entry(root, "tokenizers", "bpe256-ffff", 5 * DAY),
    }
    (root / "encoders" / ".clip_tiny-dddd.lock").touch()
    monkeypatch.setenv("MM_ABLATE_CACHE", str(root))
    return paths


def run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def present(cache: dict[str, Path]) -> set[str]:
    return {k for k, p in cache.items() if p.exists()}


def test_list_shows_kinds_sizes_status_and_feature_keys(cache, capsys) -> None:
    out = run(capsys, "list")
    assert str(cache["encoder"].parents[1]) in out and "6 entries" in out
    lines = {line.split()[1]: line for line in out.splitlines()[1:]}
    assert lines["aaaa1111"].startswith("features") and "3.0 d" in lines["aaaa1111"]
    assert "artifact=clip_tiny-0123abcd layer=penultimate resolution=64 split=train world=w1" in lines["aaaa1111"]
    assert "kind=maps" in lines["bbbb2222"] and human_size(size(cache["new_features"])) in lines["bbbb2222"]
    assert "building" in lines[".clip_tiny-dddd.tmp-123-ab"] and "partial" in lines["shapes-eeee"]
    assert lines["clip_tiny-cccc3333"].rstrip().endswith("ok")


def test_overrides_pick_the_cache_like_sweep_py(cache, capsys, tmp_path) -> None:
    out = run(capsys, "list", f"paths.cache_dir={tmp_path / 'elsewhere'}")
    assert "elsewhere: 0 entries" in out


def test_clean_is_a_dry_run_without_yes(cache, capsys) -> None:
    out = run(capsys, "clean", "--all")
    assert present(cache) == set(cache)
    assert "would delete" in out and "dry run" in out


def test_clean_features_deletes_only_features(cache, capsys) -> None:
    freed = human_size(size(cache["old_features"]) + size(cache["new_features"]))
    out = run(capsys, "clean", "--features", "--yes")
    assert present(cache) == set(cache) - {"old_features", "new_features"}
    assert f"2 entries, {freed} deleted" in out
    assert not list(cache["encoder"].parents[1].rglob("*.deleting-*"))


def test_clean_all_skips_builds_in_progress(cache, capsys) -> None:
    out = run(capsys, "clean", "--all", "--yes")
    assert present(cache) == {"building"}  # an hour-old folder without DONE is a leftover; a 2-minute one is live
    assert "skip" in out and ".clip_tiny-dddd.tmp-123-ab" in out
    assert (cache["building"].parent / ".clip_tiny-dddd.lock").exists()


def test_clean_older_than(cache, capsys) -> None:
    run(capsys, "clean", "--older-than", "2.5", "--yes")
    assert present(cache) == set(cache) - {"old_features", "tokenizer"}
    run(capsys, "clean", "--encoders", "--older-than", "1", "--yes")
    assert "encoder" not in present(cache) and "building" in present(cache)


def test_clean_needs_a_selection(cache, capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["clean", "--yes"])
    assert err.value.code == 2 and "--features" in capsys.readouterr().err
    assert present(cache) == set(cache)
