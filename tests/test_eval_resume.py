"""A killed evaluation resumes from its predictions files: only the missing answers are generated, and the scores
and final files equal an uninterrupted run's. Answers written for other weights are never reused."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from harness.config.schema import EvalCfg
from harness.eval import runner
from harness.eval.runner import Evaluator
from tests.test_eval_speed import tiny_vlm, world  # noqa: F401  (module-scoped fixtures)

# caption and VQA, 0- and 1-shot, two trials at k=1: six predictions files of several batches each
CFG = EvalCfg(name="t", max_images=6, shots=[0, 1], trials=2, batch_size=4, max_new_tokens_caption=8,
              max_new_tokens_vqa=4, text_tasks=[])


GREEDY_GENERATE = runner.greedy_generate


class Killed(BaseException):
    """Stands in for the process being killed in the middle of generation. Not an ``Exception``: ``run_point``
    records those as a failed point, while after a kill nothing runs at all."""


def count_generation(monkeypatch, kill_after: int | None = None) -> list[int]:
    """Prompts per ``greedy_generate`` call from now on; with ``kill_after``, the next call after that many raises."""
    calls: list[int] = []

    def counted(vlm, prompts, *args):
        if kill_after is not None and len(calls) == kill_after:
            raise Killed
        calls.append(len(prompts))
        return GREEDY_GENERATE(vlm, prompts, *args)

    monkeypatch.setattr(runner, "greedy_generate", counted)
    return calls


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_killed_evaluation_resumes_where_it_stopped(world, tiny_vlm, tmp_path, monkeypatch):  # noqa: F811
    calls = count_generation(monkeypatch)
    whole = Evaluator(tiny_vlm, world, CFG, tmp_path / "a", seed=0).run()
    total = sum(calls)
    ref = tmp_path / "a" / "predictions"
    assert len(list(ref.glob("*.jsonl"))) == 6 and len(calls) > 10

    run = tmp_path / "b"
    calls = count_generation(monkeypatch, kill_after=len(calls) // 2)
    with pytest.raises(Killed):
        Evaluator(tiny_vlm, world, CFG, run, seed=0).run()
    pred = run / "predictions"
    # the file being written when the kill came holds the batches generated so far
    (partial,) = [p for p in pred.glob("*.jsonl") if len(lines(p)) < len(lines(ref / p.name))]
    kept = lines(partial)[: len(lines(partial)) // 2]
    assert kept, "kill later: the interrupted file should hold at least two lines"
    # ... truncated midway, and its last line half-written
    half = lines(ref / partial.name)[len(kept)][:40]
    partial.write_text("".join(f"{line}\n" for line in kept) + half)
    saved = sum(len(lines(p)) for p in pred.glob("*.jsonl")) - 1  # minus the half line
    assert 0 < saved < total

    calls = count_generation(monkeypatch)
    resumed = Evaluator(tiny_vlm, world, CFG, run, seed=0).run()
    assert sum(calls) == total - saved  # only the missing answers were generated
    assert json.dumps(resumed, sort_keys=True) == json.dumps(whole, sort_keys=True)
    for p in ref.glob("*.jsonl"):  # the final files too: complete, in query order, byte for byte
        assert (pred / p.name).read_bytes() == p.read_bytes(), p.name
    assert not list(pred.glob(".*.tmp"))

    calls = count_generation(monkeypatch)
    again = Evaluator(tiny_vlm, world, CFG, run, seed=0).run()  # a finished evaluation generates nothing
    assert calls == [] and json.dumps(again, sort_keys=True) == json.dumps(whole, sort_keys=True)


def test_answers_of_other_weights_are_generated_again(world, tiny_vlm, tmp_path, monkeypatch):  # noqa: F811
    calls = count_generation(monkeypatch)
    Evaluator(tiny_vlm, world, CFG, tmp_path, seed=0).run()
    total = sum(calls)
    # The same run folder after a retrain (runtime.rerun=true) that ended on slightly different weights
    other = copy.deepcopy(tiny_vlm)
    with torch.no_grad():
        next(other.connector.parameters()).add_(1e-3)
    calls = count_generation(monkeypatch)
    Evaluator(other, world, CFG, tmp_path, seed=0).run()
    assert sum(calls) == total
    assert runner.weights_fingerprint(other) != runner.weights_fingerprint(tiny_vlm)
    rows = [json.loads(line) for p in (tmp_path / "predictions").glob("*.jsonl") for line in lines(p)]
    assert {r["model"] for r in rows} == {runner.weights_fingerprint(other)}


def test_killed_sweep_point_resumes_its_evaluation(shared_cache, tmp_path, monkeypatch):
    """The whole path: a point killed while evaluating is launched again, resumes training from the checkpoint of
    its last step (same weights, so the same fingerprint) and generates only the answers it had not written."""
    from harness.launch import run_point
    from tests.test_bad_configs import compose_micro

    over = ["train.stages.0.steps=4", "runtime.checkpoint_every=2", "runtime.device=cpu", "eval.batch_size=4"]
    calls = count_generation(monkeypatch)
    reference = run_point(compose_micro(over, tmp_path / "ref", shared_cache))
    total = sum(calls)
    assert reference.status == "ok" and len(calls) > 4

    calls = count_generation(monkeypatch, kill_after=len(calls) // 2)
    with pytest.raises(Killed):
        run_point(compose_micro(over, tmp_path / "killed", shared_cache))
    (run_dir,) = (tmp_path / "killed" / "runs").iterdir()
    assert run_dir.name == reference.cfg_hash  # one folder per config hash: a rerun finds its own answers
    saved = sum(len(lines(p)) for p in (run_dir / "predictions").glob("*.jsonl"))
    assert 0 < saved < total

    calls = count_generation(monkeypatch)
    resumed = run_point(compose_micro(over, tmp_path / "killed", shared_cache))
    assert resumed.status == "ok" and resumed.resumed_from_step == 4
    assert sum(calls) == total - saved
    assert json.dumps(resumed.metrics, sort_keys=True) == json.dumps(reference.metrics, sort_keys=True)
