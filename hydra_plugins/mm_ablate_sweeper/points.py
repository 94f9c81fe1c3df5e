"""``hydra/sweeper=points``: a sweep given as an explicit list of points instead of a grid.

Hydra's basic sweeper runs the Cartesian product of its parameters. Some designs are not grids: a calibration study
wants eight seeds of one configuration but three of each control, and a grid would train every control at eight
seeds. Here each entry of ``hydra.sweeper.points`` is one point, written as the overrides it adds
(``"resolution=32 seed=1"``). Grid parameters (``hydra.sweeper.params`` and ``-m key=a,b`` on the command line) still
apply and multiply the list, so ``python sweep.py experiment=calibration runtime.threads=2`` changes every point
and ``... connector=avg_pool,mining`` runs the list once per connector. Where a point sets a key itself, the point
wins (the calibration's split-dot points keep their 5000 steps under ``train.stages.0.steps=300``). The option is ``sweeps/hydra/sweeper/points.yaml``.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def expand(grid: list[list[str]], points: list[str]) -> list[list[str]]:
    """Every grid combination followed by every point's overrides, in that order (a point wins over the grid).

    >>> expand([["a=1"], ["a=2"]], ["s=0", "s=1 b=x"])
    [['a=1', 's=0'], ['a=1', 's=1', 'b=x'], ['a=2', 's=0'], ['a=2', 's=1', 'b=x']]
    """
    parsed = [shlex.split(p) for p in points]
    if not parsed:
        raise ValueError("hydra.sweeper.points is empty: list one point per entry, e.g. points: ['seed=0', 'seed=1']")
    bad = [p for p, words in zip(points, parsed, strict=True) if not words or any("=" not in w for w in words)]
    if bad:
        raise ValueError(f"each point must be space-separated key=value overrides; not: {bad}")
    return [[*combo, *point] for combo in grid for point in parsed]


class PointsSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None,
                 points: list[str] | None = None) -> None:  # fmt: skip
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.points = list(points or [])

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        (grid,) = self.split_arguments(overrides, None)  # one batch: the whole grid
        jobs = expand(grid, self.points)
        log.info(f"points sweeper: {len(jobs)} points ({len(grid)} grid combination(s) x {len(self.points)} points)")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        size = self.max_batch_size or len(jobs)
        returns, start = [], 0
        for batch in (jobs[i : i + size] for i in range(0, len(jobs), size)):
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=start)
            for r in results:
                _ = r.return_value  # raises when the job failed, as the basic sweeper does
            start += len(batch)
            returns.append(results)
        return returns
