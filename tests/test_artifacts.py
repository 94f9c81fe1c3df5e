"""Content-addressed artifacts: atomic, never half-read, built once under concurrency."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from harness.artifacts import Busy, atomic_write, build_once, content_hash, is_complete, no_wait


def _slow_build(final: str, counter: str) -> None:
    def build(tmp: Path) -> dict:
        with open(counter, "a") as f:
            f.write("x")
        time.sleep(0.5)
        (tmp / "payload.txt").write_text("done")
        return {}

    build_once(Path(final), build, log=lambda s: None)


def test_concurrent_builders_build_once(tmp_path):
    final, counter = tmp_path / "enc" / "a-123", tmp_path / "count"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_build, args=(str(final), str(counter))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert counter.read_text() == "x"  # one build, two waiters
    assert (final / "payload.txt").read_text() == "done" and is_complete(final)


def test_half_written_folder_is_rebuilt_not_read(tmp_path):
    final = tmp_path / "llm" / "m-1"
    final.mkdir(parents=True)
    (final / "model.bin").write_text("truncated")  # a killed writer's leftovers: no DONE marker
    calls = []
    build_once(final, lambda tmp: (calls.append(1), (tmp / "model.bin").write_text("good"))[0] and {} or {})
    assert calls == [1] and (final / "model.bin").read_text() == "good" and is_complete(final)


def test_failed_build_leaves_nothing(tmp_path):
    final = tmp_path / "x" / "y"

    def boom(tmp: Path) -> dict:
        (tmp / "partial").write_text("...")
        raise RuntimeError("killed")

    try:
        build_once(final, boom)
    except RuntimeError:
        pass
    assert not final.exists()
    assert not [p for p in final.parent.iterdir() if p.name.startswith(".y.tmp")]


def test_hash_is_canonical():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def _build_world(cache: str, counter: str) -> None:
    import harness.world.build as wb

    real = wb._generate

    def counted(*args, **kwargs):
        with open(counter, "a") as f:
            f.write("x")
        return real(*args, **kwargs)

    wb._generate = counted
    wb.World.build_or_load(wb.WorldCfg(name="shapes_micro", n_train=60, n_val=20, n_test=20, n_docs=20, n_texts=20),
                           cache)


def test_parallel_jobs_generate_the_world_once(tmp_path):
    counter = tmp_path / "count"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_build_world, args=(str(tmp_path / "cache"), str(counter))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    assert counter.read_text() == "x"  # one generator; the other jobs waited and loaded its world


def test_tokenizer_fingerprint_follows_content_not_folder(tmp_path):
    """Backbone cache keys hash the tokenizer; a cache reached through another path (moved, mounted elsewhere, or the
    symlinked shadow cache of ``bench cache``) must find the same backbones instead of pre-training them again."""
    import shutil

    from harness.artifacts import tokenizer_fingerprint
    from harness.models.llm.tokenizer import load_tokenizer, train_tokenizer

    texts = ["a small red circle at the top left.", "the number 7 is written in the bottom right corner."] * 20
    # sizes above the printable-ASCII alphabet (about 100 symbols with the specials), so they differ in merges
    train_tokenizer(texts, 140, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    (tmp_path / "shadow").symlink_to(tmp_path / "a")
    train_tokenizer(texts, 120, tmp_path / "other")
    fp = {name: tokenizer_fingerprint(load_tokenizer(tmp_path / name)) for name in ("a", "moved", "shadow", "other")}
    assert fp["a"] == fp["moved"] == fp["shadow"]
    assert fp["other"] != fp["a"]


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    with atomic_write(path) as fh:  # creates the folder
        fh.write("old")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["f.txt"]  # no sibling left
    with atomic_write(path, "wb", fsync=True) as fh:
        fh.write(b"new")
    assert path.read_bytes() == b"new" and [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_no_wait_skips_a_backbone_another_job_is_building(tmp_path):
    """Cold cache, parallel sweep: a job builds the backbone nobody holds first and waits only when all are held."""
    from harness.artifacts import file_lock
    from harness.models.build import build_free_first

    order: list[str] = []

    def step(name: str):
        def run() -> str:
            build_once(tmp_path / name, lambda tmp: order.append(name) or {}, log=lambda s: None)
            return name

        return run

    held = tmp_path / ".llm.lock"  # another job is pre-training the LLM: it holds that lock
    with file_lock(held):
        with pytest.raises(Busy), no_wait():
            build_once(tmp_path / "llm", lambda tmp: {}, log=lambda s: None)
        out = build_free_first({"encoder": step("encoder"), "hr_encoder": step("hr_encoder")})
    assert out == {"encoder": "encoder", "hr_encoder": "hr_encoder"} and order == ["encoder", "hr_encoder"]
    # the lock released (the other job finished): the put-off step runs
    assert build_free_first({"llm": step("llm"), "encoder": step("encoder")}) == {"llm": "llm", "encoder": "encoder"}
    assert order == ["encoder", "hr_encoder", "llm"] and is_complete(tmp_path / "llm")


def test_build_free_first_puts_off_a_busy_step_then_waits_for_it():
    from harness.models.build import build_free_first

    calls: list[str] = []
    busy = {"llm": 1}  # busy on the first try, free when waited for

    def llm() -> str:
        calls.append("llm")
        from harness.artifacts import _NO_WAIT

        if _NO_WAIT.get() and busy["llm"]:
            busy["llm"] -= 1
            raise Busy("llm")
        return "L"

    def enc() -> str:
        calls.append("enc")
        return "E"

    assert build_free_first({"llm": llm, "encoder": enc}) == {"llm": "L", "encoder": "E"}
    assert calls == ["llm", "enc", "llm"]  # tried, put off, the encoder built, then the LLM
