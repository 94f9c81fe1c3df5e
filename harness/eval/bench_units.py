"""TSV benchmarks as evaluation units (``bench:<name>@<k>``): the part of the Evaluator that reads VLMEvalKit-style
files (harness.eval.benchmarks) instead of the world.

A benchmark runs like a world task (same prompt layout, greedy decoding, metrics), with two differences: its images
come from the file, decoded when a row is scored and encoded with :func:`encode_visual` (float16-rounded, as the
feature bank stores the world's), and its demonstrations are the file's other rows. A row whose image does not
decode is skipped and counted (:meth:`BenchmarkUnits.run_benchmark`). Every trial's answers are written to
``predictions/<name>_<k>shot_t<trial>.jsonl`` with their prompts.

:class:`BenchmarkUnits` is a mixin of :class:`harness.eval.runner.Evaluator`: it uses the evaluator's ``cfg``,
``seed``, ``vlm``, ``builder``, ``out_dir``, ``image_chunk`` and ``_generate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from harness.data.features import as_stored
from harness.data.sequences import Chunk
from harness.eval.metrics import mean_result
from harness.models.vlm import VLM


@torch.no_grad()
def encode_visual(vlm: VLM, images: list[np.ndarray]) -> list[torch.Tensor]:
    """uint8 ``[H, W, 3]`` images -> their visual tokens ``[M, d]`` each, encoded in groups of one image size, with
    the features rounded to float16 as the feature bank stores them: an image from a TSV file (or an evaluation kit,
    harness.eval.adapters) scores exactly as the same image in the world's own task."""
    out: list[torch.Tensor | None] = [None] * len(images)
    by_shape: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        by_shape.setdefault(tuple(img.shape), []).append(i)
    for group in by_shape.values():
        vis = as_stored(vlm.encode_images(torch.from_numpy(np.stack([images[i] for i in group]))))
        for i, tok in zip(group, vlm.visual_tokens(vis)):
            out[i] = tok
    return out


class BenchmarkUnits:
    """The ``bench:`` units of an Evaluator (see the module docstring)."""

    def _resolved(self, entry: str):
        cache = self.__dict__.setdefault("_resolved_cache", {})
        if entry not in cache:
            from harness.eval.benchmarks import resolve_benchmark

            cache[entry] = resolve_benchmark(entry, getattr(self.cfg, "benchmark_root", None))
        return cache[entry]

    def _items(self, path: Path) -> list:
        """A TSV's rows, read once per evaluation (a benchmark's units at several k share them)."""
        cache = self.__dict__.setdefault("_items_cache", {})
        if path not in cache:
            from harness.eval.benchmarks import read_tsv

            cache[path] = read_tsv(path)
        return cache[path]

    def run_benchmark(self, entry: str, shots: list[int] | None = None) -> list[dict]:
        """One VLMEvalKit-style TSV benchmark (``eval.benchmarks`` entry: a registry key or a path, see
        harness.eval.benchmarks) at every k in ``shots`` (default ``eval.shots``): the same prompts, decoding and
        metrics as the world's tasks. Demonstrations come from the file's other rows (a TSV holds one split; MM1
        draws from val when there is no train split), never the query itself.

        A row whose image does not decode (truncated, corrupt, not an image; an ``image_path`` naming no file) is
        skipped and counted, as training skips a bad sample: it is not scored (``n`` counts the rows scored;
        ``skipped_rows`` and ``skipped_index`` name the others, ``skip_reason``: ``undecodable_image``,
        ``missing_file``), and a demonstration drawn on it moves to the next good row. A benchmark with no
        decodable row fails its unit, naming the first bad row."""
        bench = self._resolved(entry)
        name, spec, path = bench.task, bench.spec, bench.path
        limit = int(getattr(self.cfg, "benchmark_limit", 0) or 0)
        items = self._items(path)
        asked = list(range(min(limit, len(items)) if limit > 0 else len(items)))
        why = {i: self._undecodable(path, items, i) for i in asked}
        queries = [i for i in asked if why[i] is None]
        skipped = [items[i].index for i in asked if why[i] is not None]
        if skipped and path not in self.__dict__.setdefault("_skips_said", set()):  # once, not once per k
            self._skips_said.add(path)
            first = next(w for w in why.values() if w is not None)
            print(f"[eval] bench:{name}: {len(skipped)} of {len(asked)} rows skipped, no decodable image (index "
                  f"{', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}; first: {first})", flush=True)
        reasons = ", ".join(sorted({"missing_file" if w.startswith("missing_file") else "undecodable_image"
                                    for w in why.values() if w is not None}))
        if not queries:
            raise ValueError(f"{path}: no row's image decodes (row 1: {why[0]})" if asked else f"{path}: no rows")
        entries = []
        (self.out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        for k in self.cfg.shots if shots is None else shots:
            trials = 1 if k == 0 else max(1, self.cfg.trials)
            per_trial = [self._bench_trial(name, spec, path, items, asked, queries, k, t) for t in range(trials)]
            for t, qs in enumerate(per_trial):  # named as the world tasks' files: every trial, prompts included
                with open(self.out_dir / "predictions" / f"{name}_{k}shot_t{t}.jsonl", "w") as f:
                    f.writelines(json.dumps(q) + "\n" for q in qs)
            scores = [spec.scores(qs) for qs in per_trial]
            r = mean_result(np.mean(scores, axis=0).tolist())
            entries.append({"task": name, "shots": k, "metric": spec.metric, "subset": "all", "split": spec.split,
                            "trials": trials, "file": str(path), **r.to_dict(),
                            "trial_std": float(np.std([np.mean(s) for s in scores])), "kind": spec.kind}
                           | ({"skipped_rows": len(skipped), "skip_reason": reasons,
                               "skipped_index": skipped[:20]} if skipped else {}))
        return entries

    def _undecodable(self, path: Path, items, i: int) -> str | None:
        """Why row ``i``'s image does not decode, or None. Each row is decoded once per evaluation and its pixels
        are not kept: checking costs the rows a benchmark shows, in time, not memory."""
        checked = self.__dict__.setdefault("_decodes", {}).setdefault(path, {})
        if i not in checked:
            try:
                items[i].decode_image()
                checked[i] = None
            except FileNotFoundError as err:  # an image_path that names no file
                checked[i] = f"missing_file: {err.filename}"
            except Exception as err:  # noqa: BLE001 - any failure to decode is a corrupt sample
                kind = type(err).__name__
                kind = f"{type(err).__module__}.{kind}" if kind == "Error" else kind  # binascii.Error: bad base64
                text = str(err).strip().splitlines()
                checked[i] = f"{kind}: {text[0]}" if text else kind
        return checked[i]

    def _demo_rows(self, path: Path, items, qi: int, draw) -> list[int]:
        """Drawn positions among the rows other than query ``qi`` -> rows. A row whose image does not decode gives
        way to the next decodable row not yet shown (in file order, wrapping): with no bad row the demonstrations
        are exactly the draw, and they never depend on which other units ran before."""
        n, demos = len(items), []
        for j in draw:
            r = int(j) + int(j >= qi)
            for _ in range(n):
                if r != qi and r not in demos and self._undecodable(path, items, r) is None:
                    break
                r = (r + 1) % n
            else:
                raise ValueError(f"{path}: fewer rows with a decodable image than {len(draw)} demonstrations need")
            demos.append(r)
        return demos

    def _bench_trial(self, name, spec, path, items, asked, queries, k, trial) -> list[dict]:
        """One trial over ``queries`` (the rows of ``asked`` whose image decodes)."""
        c = self.cfg
        rng = np.random.default_rng([self.seed, k, trial, spec.stream])  # spec.name is the record's task
        prompts, out = [], []
        scored = set(queries)
        for qi in asked:
            draw = rng.choice(len(items) - 1, size=min(k, len(items) - 1), replace=False) if k else []
            if qi not in scored:  # drawn all the same: the other queries' demonstrations stay the intact file's
                continue
            demos = self._demo_rows(path, items, qi, draw)  # every row but the query
            chunks = [Chunk(i, spec.demo(items[i], c)) for i in demos]
            prompts.append(self.builder.prompt(chunks, Chunk(qi, spec.prompt(items[qi], c))))
            out.append({"index": items[qi].index, "question": items[qi].question, "demos": demos,
                        "prompt": spec.prompt(items[qi], c), "refs": items[qi].answers})
        cache: dict[int, torch.Tensor] = {}
        self._bench_tokens(items, sorted({i for p in prompts for i in p.images}), cache)
        visual = lambda batch: (torch.stack([cache[i] for p in batch for i in p.images])
                                if any(p.images for p in batch) else None)
        max_new = spec.max_new_tokens(c)
        for q, qi, text in zip(out, queries, self._generate(prompts, max_new, visual, f"eval bench:{name}@{k}")):
            q["raw"] = text
            q["prediction"] = spec.postprocess(text, items[qi])
        return out

    def _bench_tokens(self, items, idx: list[int], cache: dict) -> None:
        """Visual tokens of rows ``idx``, decoded and encoded ``eval.batch_size`` images at a time (at most
        :attr:`image_chunk`)."""
        bs = min(self.cfg.batch_size, self.image_chunk)
        for s in range(0, len(idx), bs):
            rows = idx[s : s + bs]
            for i, tok in zip(rows, encode_visual(self.vlm, [items[i].decode_image() for i in rows])):
                cache[i] = tok
