"""The two learning-rate schedules (harness.train.schedule), on hand-computed points."""

from __future__ import annotations

import math

import pytest

from harness.train.schedule import pretrain_warmup_cosine, warmup_cosine


def test_stage_schedule_warms_up_then_decays_to_the_floor():
    f = warmup_cosine(10, 110)  # floor 0.1
    assert [f(0), f(4), f(9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == 1.0 and f(60) == pytest.approx(0.55)  # halfway through the 100 decay steps
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert warmup_cosine(0, 10, floor=0.0)(0) == 1.0  # no warm-up


def test_pretrain_schedule_multiplies_a_5_percent_warmup_into_one_cosine():
    f = pretrain_warmup_cosine(100)  # warm-up over 5 steps
    assert f(0) == pytest.approx(0.2 * 1.0)
    assert f(4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.04)))  # warm-up done, the cosine already running
    assert f(50) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert pretrain_warmup_cosine(10)(0) == 1.0  # 5% of 10 steps rounds down: at least one warm-up step
