"""Progress bars (harness.progress): drawn on a terminal or when forced, absent from log files, never in the way of
the periodic log lines."""

from __future__ import annotations

import io
import re
import sys

import pytest
from tqdm import tqdm

from harness.progress import ENV, note, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _unset(monkeypatch):
    for name in (ENV, "WORLD_SIZE", "RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)


def test_not_a_terminal_gets_the_loop_unchanged_and_no_output():
    log = io.StringIO()
    steps = range(5)
    assert progress(steps, "train", "step", file=log) is steps
    bar = progress(5, "features", "img", file=log)
    assert not isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert log.getvalue() == ""


def test_a_terminal_gets_a_bar():
    term = _Terminal()
    assert list(progress(range(3), "world train", "img", file=term)) == [0, 1, 2]
    assert "world train" in term.getvalue() and "3/3" in term.getvalue()


def test_forced_bar_on_a_file_counts_by_hand_from_where_a_resume_starts(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    log = io.StringIO()
    bar = progress(10, "train pretrain", "step", initial=4, file=log)
    assert isinstance(bar, tqdm)
    bar.update(6)
    bar.close()
    text = log.getvalue()
    assert "train pretrain" in text and "10/10" in text and re.search(r"(step/s|s/step)", text), text


def test_zero_turns_bars_off_on_a_terminal(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    term = _Terminal()
    steps = range(3)
    assert progress(steps, "x", file=term) is steps
    assert term.getvalue() == ""


def test_show_false_and_an_empty_loop_draw_nothing(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    term = _Terminal()
    assert not isinstance(progress(3, "other rank", show=False, file=term), tqdm)
    assert not isinstance(progress(0, "nothing to do", file=term), tqdm)
    empty = range(0)
    assert progress(empty, "nothing to do", file=term) is empty
    assert term.getvalue() == ""


def test_only_rank_zero_draws(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not isinstance(progress(3, "train", file=io.StringIO()), tqdm)
    monkeypatch.setenv("RANK", "0")
    bar = progress(3, "train", file=io.StringIO())
    assert isinstance(bar, tqdm)
    bar.close()


def test_an_unknown_setting_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(ENV, "yes")
    with pytest.raises(ValueError, match=r"MM_ABLATE_PROGRESS='yes'.*accepted: 0 .*1 .*unset"):
        progress(range(3), "x", file=_Terminal())


def test_note_reaches_stdout_unchanged_with_a_bar_on_screen(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "1")
    bar = progress(4, "train pretrain", "step", file=sys.stderr)
    bar.update()
    note("[train] pretrain step 1/4 loss 9.000 (3 ms/step)")
    bar.close()
    note("[train] after the bar")
    out = capsys.readouterr().out
    assert out == "[train] pretrain step 1/4 loss 9.000 (3 ms/step)\n[train] after the bar\n"


BARS = ("world train", "pre-training", "features test tokens", "train pretrain", "eval caption@0", "eval vqa@0")


@pytest.mark.parametrize("forced", [True, False], ids=["MM_ABLATE_PROGRESS=1", "unset"])
def test_a_point_shows_bars_only_when_asked(forced, monkeypatch, capsys, tmp_path, shared_cache):
    """Forced, on a cold cache so every kind of loop runs: world generation, pre-training, feature encoding,
    training and evaluation each draw a bar on stderr. Unset, a captured (non-terminal) stderr gets none (the
    session's cache: training and evaluation run whatever it holds). The periodic log lines stay on stdout."""
    from harness.launch import run_point
    from tests.test_bad_configs import compose_micro

    if forced:
        monkeypatch.setenv(ENV, "1")
    cache = tmp_path / "cache" if forced else shared_cache
    rec = run_point(compose_micro(["runtime.device=cpu", "runtime.log_every=4", "eval.max_images=4"],
                                  tmp_path / "results", cache))
    assert rec.status == "ok", rec.error
    out, err = capsys.readouterr()
    assert "[train] pretrain step 8/8" in out
    for desc in BARS:
        assert (f"{desc}:" in err) == forced, (desc, err[-2000:])
    if forced:
        assert "[clip_tiny] step    5/6" in out and "[llama_tiny] step    5/6" in out
        assert "8/8" in err and re.search(r"(step/s|s/step)", err) and re.search(r"(batch/s|s/batch)", err)
