"""VLMEvalKit adapter: a finished harness run as a VLMEvalKit model, so the kit's benchmarks run on our models.

VLMEvalKit's model API (vlmeval/vlm/base.py, ``BaseModel``): the kit calls ``generate(message, dataset)``, which
checks the message and calls ``generate_inner(message, dataset)``; a message is a list of ``{"type": "image" |
"text", "value": path | str}`` dicts, several images when the class sets ``INTERLEAVE = True``. A model may build
its own prompt from a TSV row: ``use_custom_prompt(dataset)`` returning True makes the kit call
``build_prompt(line, dataset)`` instead of the dataset's (vlmeval/inference.py). Models are looked up by name in
``vlmeval.config.supported_VLM`` (name -> ``functools.partial`` of the class), which ``run.py --model`` reads.

Why a custom prompt: our models are base models trained on captions and ``Question: ... Answer:`` lines, not on the
kit's chat instructions ("Please select the correct answer from the options above"). Captioning rows get the run's
``eval.caption_prompt``, questions its ``eval.vqa_prompt``, as the harness's own TSV benchmarks do
(harness.eval.tasks); multiple choice asks the question without the options and maps the answer words back to the
option letter (harness.eval.tasks.option_letter) before the kit's matcher sees it. Answers are the harness's: greedy,
the run's generation budget, the same post-processing, so a world TSV scores in the kit as in ``eval.benchmarks``.

The kit is imported only inside :func:`model_class` (``import harness`` never needs it; its dependencies conflict
with hydra's omegaconf, docs/dependencies.md). Run it from a VLMEvalKit checkout's ``run.py`` without editing the kit::

    python -m harness.eval.adapters.vlmevalkit --run-dir RUN --vlmevalkit /path/to/VLMEvalKit -- \\
        --data WORLD_VQA_TEST --data-config '{"WORLD_VQA_TEST": {"class": "ImageVQADataset"}}' --work-dir out

which registers the run as model ``mm_ablate`` and executes ``run.py --model mm_ablate <the rest>``.
"""

from __future__ import annotations

import argparse
import math
import runpy
import string
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from harness.eval.adapters.core import IMAGE, TEXT, RunModel, Segment
from harness.eval.tasks import option_letter

# Extra keys on the prompt's text item: the kit passes message dicts through untouched (it checks only type/value),
# so what build_prompt knows about the row (caption or question, the options) reaches generate_inner with it.
KIND_KEY, OPTIONS_KEY = "mm_ablate_kind", "mm_ablate_options"


def is_missing(value: Any) -> bool:
    """An empty TSV cell as pandas reads it: None, NaN or blank."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def line_options(line: Mapping) -> dict[str, str]:
    """A row's multiple-choice options ``{letter: text}`` (columns A, B, ... that hold a value)."""
    return {c: str(line[c]).strip() for c in string.ascii_uppercase if c in line and not is_missing(line[c])}


def custom_prompt(line: Mapping, dataset_type: str | None, caption_prompt: str, vqa_prompt: str) -> tuple[str, str]:
    """(kind, text) for a TSV row: ``caption`` (a Caption dataset, or a row without a question) with the caption
    prompt, else ``mcq`` (the row has options) or ``vqa``, with the question in the VQA template."""
    question = line.get("question")
    if dataset_type == "Caption" or is_missing(question):
        return "caption", caption_prompt
    return ("mcq" if line_options(line) else "vqa"), vqa_prompt.format(question=str(question).strip())


def message_segments(message: Sequence[Mapping]) -> list[Segment]:
    """A VLMEvalKit message (``[{type, value}, ...]``, images as file paths) -> interleaved segments, in order."""
    out = []
    for item in message:
        if item["type"] not in (IMAGE, TEXT):
            raise ValueError(f"VLMEvalKit message item of type {item['type']!r}: mm-ablate models read images and text")
        out.append(Segment(item["type"], item["value"]))
    return out


def message_kind(message: Sequence[Mapping], dataset_type: str | None) -> tuple[str, dict[str, str]]:
    """What build_prompt decided for this message (kind, options); for a dataset's own prompt, ``caption`` on a
    Caption dataset and ``vqa`` otherwise."""
    for item in message:
        if KIND_KEY in item:
            return item[KIND_KEY], dict(item.get(OPTIONS_KEY) or {})
    return ("caption" if dataset_type == "Caption" else "vqa"), {}


def model_class():
    """The ``BaseModel`` subclass (imports VLMEvalKit)."""
    from vlmeval.dataset import DATASET_MODALITY, DATASET_TYPE
    from vlmeval.vlm.base import BaseModel

    class MMAblate(BaseModel):
        INTERLEAVE = True  # few-shot and multi-image prompts: each image opens a chunk (harness.eval.adapters.core)

        def __init__(self, run_dir: str, cache_dir: str | None = None, device: str = "cpu", **kwargs):
            super().__init__()
            self.model = RunModel(run_dir, cache_dir, device)
            self._types: dict[str, str] = {}

        def dataset_type(self, dataset: str | None) -> str | None:
            if dataset is None:
                return None
            if dataset not in self._types:  # DATASET_TYPE warns on every call for a custom dataset: ask once
                self._types[dataset] = DATASET_TYPE(dataset)
            return self._types[dataset]

        def use_custom_prompt(self, dataset: str) -> bool:
            return dataset is not None and DATASET_MODALITY(dataset) == "IMAGE"

        def build_prompt(self, line, dataset=None):
            paths = self.dump_image(line, dataset)
            e = self.model.cfg.eval
            kind, text = custom_prompt(line, self.dataset_type(dataset), e.caption_prompt, e.vqa_prompt)
            images = [{"type": IMAGE, "value": p} for p in (paths if isinstance(paths, list) else [paths])]
            return images + [{"type": TEXT, "value": text, KIND_KEY: kind, OPTIONS_KEY: line_options(line)}]

        def generate_inner(self, message, dataset=None):
            kind, options = message_kind(message, self.dataset_type(dataset))
            answer = self.model.answer(message_segments(message), "caption" if kind == "caption" else "vqa")
            return option_letter(answer, options) if kind == "mcq" and options else answer

    return MMAblate


def register(run_dir: str | Path, name: str = "mm_ablate", **kwargs) -> str:
    """Add the run to ``vlmeval.config.supported_VLM`` as ``name`` (what ``run.py --model name`` builds)."""
    from vlmeval.config import supported_VLM

    supported_VLM[name] = partial(model_class(), run_dir=str(run_dir), **kwargs)
    return name


def main(argv: list[str] | None = None) -> None:
    """Register a run, then hand the remaining arguments to VLMEvalKit's ``run.py`` (``--model`` added)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    ours = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="python -m harness.eval.adapters.vlmevalkit", description=main.__doc__)
    p.add_argument("--run-dir", required=True, help="a finished run folder that holds weights.pt")
    p.add_argument("--cache-dir", default=None, help="the cache the run was built from (default: as recorded)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", default="mm_ablate", help="the model name in VLMEvalKit's outputs")
    p.add_argument("--vlmevalkit", required=True, help="a VLMEvalKit checkout (the folder holding run.py)")
    args = p.parse_args(ours)
    run_py = Path(args.vlmevalkit).expanduser() / "run.py"
    if not run_py.is_file():
        p.error(f"{run_py} does not exist: --vlmevalkit must be a VLMEvalKit checkout (its run.py is not installed)")
    register(args.run_dir, args.name, cache_dir=args.cache_dir, device=args.device)
    sys.argv = [str(run_py), "--model", args.name, *rest]
    runpy.run_path(str(run_py), run_name="__main__")


if __name__ == "__main__":
    main()
