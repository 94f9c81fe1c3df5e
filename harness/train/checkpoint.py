"""Training checkpoints: what a killed or preempted run needs to continue exactly where it stopped.

Why: cluster jobs are preempted (SLURM sends SIGTERM, submitit's requeue signal is SIGUSR2, some sites use SIGUSR1)
or die without warning, and a resumed run must give the same numbers as an uninterrupted one, or its record could
not be trusted. So a checkpoint holds everything the rest of training depends on:

- weights of every part trained so far (``harness.models.weights``) (the connector always: it is small and randomly initialised, never cached);
  frozen pre-trained parts come back from the content-addressed cache when the point is built again;
- the current stage's optimizer and LR-scheduler state;
- the data stream: the loop's numpy Generator state *and* the queue of length-grouped batches already drawn but not
  yet trained on (restoring the generator alone would draw a different pool);
- python, numpy-global, torch and CUDA RNG states;
- the loop's ``Progress`` (stage, step, totals, loss history, wall time, train-log length) and the mixture's counts.

Files are written to a temporary sibling, fsynced and renamed, so a kill mid-write leaves the previous checkpoint
whole. They are read with ``weights_only=True``: tensors and plain containers only, no pickled code.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Self

import numpy as np
import torch

from harness.models.weights import save_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Checkpointer:
    """One run's checkpoint file: how often to write it, and which step the newest one holds."""

    def __init__(self, run_dir: Path, every: int, cfg_hash: str):
        self.path = Path(run_dir) / CHECKPOINT
        self.every = every  # steps between checkpoints; 0 = only when a stop signal asks for one
        self.cfg_hash = cfg_hash
        self.saved_step: int | None = None  # global step of the newest checkpoint on disk

    def due(self, global_step: int, last_step: bool) -> bool:
        """Every ``every`` steps, and after the last step (evaluation can be interrupted too)."""
        return self.every > 0 and (global_step % self.every == 0 or last_step)

    def save(self, state: dict[str, Any]) -> None:
        save_atomic(self.path, {"format": FORMAT, "cfg_hash": self.cfg_hash, **state})
        self.saved_step = state["global_step"]

    def load(self) -> dict[str, Any] | None:
        """The checkpoint's state (tensors on CPU), or None when there is none."""
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if (state.get("format"), state.get("cfg_hash")) != (FORMAT, self.cfg_hash):
            raise ValueError(
                f"{self.path} has format {state.get('format')} / config {state.get('cfg_hash')}, "
                f"expected {FORMAT} / {self.cfg_hash}; runtime.rerun=true starts this point over"
            )
        self.saved_step = state["global_step"]
        return state

    def remove(self) -> None:
        """Delete the checkpoint and any temporary file a killed writer left (finished runs keep only records)."""
        for p in [self.path, *self.path.parent.glob(f".{CHECKPOINT}.*.tmp")]:
            p.unlink(missing_ok=True)
        self.saved_step = None

    def describe(self) -> str:
        if self.saved_step is None:
            return f"no checkpoint written yet (runtime.checkpoint_every={self.every})"
        return f"last good checkpoint: {self.path} (after global step {self.saved_step})"


# -- random number generators -----------------------------------------------------------------------------------------
def rng_state(loop_rng: np.random.Generator) -> dict[str, Any]:
    np_global = np.random.get_state(legacy=False)
    np_global["state"]["key"] = np_global["state"]["key"].tolist()  # plain ints: weights_only loading refuses arrays
    return {
        "loop": loop_rng.bit_generator.state,
        "python": random.getstate(),
        "numpy": np_global,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any], loop_rng: np.random.Generator) -> None:
    loop_rng.bit_generator.state = state["loop"]
    random.setstate(state["python"])
    np_global = state["numpy"]
    np_global["state"]["key"] = np.asarray(np_global["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_global)
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


# -- stop signals -----------------------------------------------------------------------------------------------------
class Preempted(RuntimeError):
    """A stop signal arrived during training and the checkpoint is written; ``exit()`` then ends the process."""

    def __init__(self, message: str, signum: int, previous: Callable | int | None):
        super().__init__(message)
        self.signum = signum
        self.previous = previous  # the handler installed before training (submitit's requeue handler, say)

    def exit(self) -> NoReturn:
        """Hand the signal on to the handler it would have reached (submitit requeues the job there), then exit
        with the conventional ``128 + signal`` status instead of starting the next point of a multirun."""
        if callable(self.previous):
            self.previous(self.signum, None)
        raise SystemExit(128 + self.signum)


_ACTIVE: list[StopSignals] = []  # the handlers of the training now running in this process (main thread)


def check_stop(where: str) -> None:
    """Raise :class:`Preempted` if a stop signal arrived during training, for work inside one step that can run for
    minutes (a real-size feature store is built in the first step that needs it: 20 minutes for 8000 images at
    6 a second). Waiting for the step's end would outlast SLURM's grace period, and the job would be killed with
    nothing recorded and a half-written store left behind. A no-op outside training."""
    if not _ACTIVE or _ACTIVE[-1].signum is None:
        return
    stop = _ACTIVE[-1]
    raise Preempted(f"{signal.Signals(stop.signum).name} received while {where}; stopped there, inside a step, so "
                    "nothing new was checkpointed. Running the same command again resumes from the last checkpoint "
                    "(or starts the point again if none was written)", stop.signum, stop.previous.get(stop.signum))


class StopSignals:
    """While training, SIGTERM/SIGUSR1/SIGUSR2 only set ``signum``; the loop checkpoints at the end of the step.

    Python runs handlers in the main thread only, so elsewhere (a launcher running jobs in threads) nothing is
    installed and a signal keeps its previous meaning.
    """

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
            _ACTIVE.append(self)
        return self

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def preempted(self, where: str, ckpt: Checkpointer) -> Preempted:
        name = signal.Signals(self.signum).name
        return Preempted(
            f"{name} received; stopped after {where}; checkpoint written to {ckpt.path}. Running the same "
            f"command again resumes from it",
            self.signum,
            self.previous.get(self.signum),
        )
