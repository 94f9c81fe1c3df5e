"""Progress bars for the long loops (world generation, backbone pre-training, feature encoding, training, evaluation).

A bar is drawn on stderr when stderr is a terminal; log files (``hydra/launcher=local``, submitit, SLURM, a
redirected stderr, a pipe) get none, as the periodic ``[train] ... step i/N`` lines on stdout already say where a
run stands there. ``MM_ABLATE_PROGRESS=0`` turns bars off, ``=1`` draws them on a non-terminal too. Only rank 0 of a
multi-process launch draws: every rank shares the terminal.

Lines printed while a bar is on screen go through :func:`note`, so the bar is cleared, the line written to stdout
unchanged, and the bar redrawn below it instead of the two sharing one terminal line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

ENV = "MM_ABLATE_PROGRESS"
# Seconds without a console line after which a long loop (a training step, a feature-store build) says where it is:
# a log file has no bar, and a silent SLURM log for minutes reads as a hang.
HEARTBEAT_S = 60.0


class _NoBar:
    """What a disabled :func:`progress` returns for a total: the calls a loop makes on a bar, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def enabled(stream: TextIO | None = None) -> bool:
    """Whether bars are drawn on ``stream`` (default: the current ``sys.stderr``), per the module docstring."""
    value = os.environ.get(ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{ENV}={value!r} is not understood; accepted: 0 (no progress bars), 1 (bars even when "
                         "stderr is not a terminal), or unset (bars when stderr is a terminal)")
    if value == "0":
        return False
    stream = sys.stderr if stream is None else stream
    if value != "1" and not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    from harness.train.distributed import launched_world  # lazily: importing it loads torch

    return launched_world()[0] == 0


def progress(iterable: Iterable | int, desc: str = "", unit: str = "it", *, total: int | None = None,
             initial: int = 0, show: bool = True, file: TextIO | None = None) -> Any:
    """A tqdm bar over ``iterable``, or, given an int, a bar of that total to ``update(n)`` and ``close()`` by hand.

    Without a bar (see :func:`enabled`; ``show=False`` also turns it off: an unlabelled loop, a rank other than 0
    of a process group), ``iterable`` itself comes back untouched, or for a total a stand-in whose methods do
    nothing, so the loop runs exactly as it would without this call; so does a loop of length 0. ``total`` gives an
    iterable without ``len`` its length; ``initial`` is where a resumed loop starts.
    """
    file = sys.stderr if file is None else file
    if isinstance(iterable, int):
        iterable, total = None, iterable
    elif total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    # total 0: nothing to do (every answer reused, say), so no bar stuck at 0/0
    if total == 0 or not (show and enabled(file)):
        return _NoBar() if iterable is None else iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, file=file, dynamic_ncols=True,
                mininterval=0.5)


def note(message: str) -> None:
    """``print(message, flush=True)``, but with a bar on screen the bar is cleared first and redrawn after, so the
    line stands on its own (it reaches stdout unchanged either way)."""
    from tqdm import tqdm

    if getattr(tqdm, "_instances", None):
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()
    else:
        print(message, flush=True)
