"""Check an eval config before anything is built: a wrong benchmark name or a missing file fails in seconds, not
after a training run.

:func:`preflight` resolves every ``eval.benchmarks`` entry (a registry key to its file under ``eval.benchmark_root``
/ ``$LMUData`` / ``~/LMUData``, or a path; harness.eval.benchmarks.resolve_benchmark), checks that each file exists
and has the columns its kind needs, that no two entries give the same task name, that ``eval.tasks`` are world tasks
(harness.eval.tasks) and that ``eval.text_tasks`` are local or lm-eval tasks (harness.eval.textcore.check_text_tasks).
Every problem is one line naming the fix; all of them are raised together as one
:class:`~harness.config.schema.ConfigError`. Text tasks whose data is not available offline are not problems: they
will be recorded as skipped, and the returned notes say so (one line each).
"""

from __future__ import annotations

from harness.config.schema import ConfigError
from harness.eval.tasks import is_world_task, unknown_world_task


def preflight(eval_cfg) -> list[str]:
    """Notes (one line each: text tasks that will be skipped) for a valid ``eval_cfg`` (EvalCfg or its DictConfig);
    raises ``ConfigError`` whose message holds one line per problem. Reads each benchmark file's header and first
    rows; loads each lm-eval standard text task's data from the local cache (offline)."""
    from harness.eval.benchmarks import parse_benchmark, resolve_benchmark
    from harness.eval.textcore import check_text_tasks

    problems: list[str] = []
    for task in eval_cfg.tasks:
        if not is_world_task(task):
            problems.append(f"eval.tasks: {unknown_world_task(task)}")
    root = getattr(eval_cfg, "benchmark_root", None)
    seen: dict[str, str] = {}
    for entry in getattr(eval_cfg, "benchmarks", None) or []:
        try:
            ref = parse_benchmark(entry)
        except ConfigError as err:
            problems.append(str(err))
            continue
        if ref.task in seen:
            problems.append(f"eval.benchmarks: '{entry}' and '{seen[ref.task]}' are both recorded as task "
                            f"'{ref.task}'; list a benchmark once, or rename one of the files")
            continue
        seen[ref.task] = str(entry)
        try:
            resolve_benchmark(ref, root)
        except ConfigError as err:
            problems.append(str(err))
    text_problems, notes = check_text_tasks(list(getattr(eval_cfg, "text_tasks", None) or []))
    problems += text_problems
    if problems:
        raise ConfigError("\n".join(problems))
    return notes
