"""Process settings: the automatic thread count follows the launcher the point runs under."""

from __future__ import annotations

import os

from harness.runtime import auto_threads


def test_auto_threads_follows_the_launcher(monkeypatch) -> None:
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert auto_threads() == len(os.sched_getaffinity(0))  # a plain run uses the CPUs it may use
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    assert auto_threads() == 1  # side-by-side local jobs: one thread each
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert auto_threads() == 6  # a SLURM allocation wins
