"""docs/extending.md's steps, followed in a temporary package: a toy connector, a toy world task and a toy TSV
benchmark, each added with only the files that page lists, then run through the real code path (the registries,
Hydra composition and validation, preflight, the Evaluator's units, the summary table).

The world task and the benchmark are the page's own code blocks (``<name>`` filled in), so the page and the code
cannot drift apart. A module placed in ``harness/eval/tasks/`` is imported with that package; here the temporary
package's module is imported instead, which is the same registration. The registries are restored afterwards.
"""

from __future__ import annotations

import importlib
import math
import re
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.config.schema import EvalCfg
from harness.config.store import register_configs
from harness.config.validate import validate
from harness.eval.aggregates import unit_of
from harness.eval.benchmarks import BENCHMARKS, export_world_benchmarks
from harness.eval.preflight import preflight
from harness.eval.runner import Evaluator
from harness.eval.tasks import TASKS, WORLD_TASKS, world_tasks
from harness.models.connectors import CONNECTORS, FeatureSpec, build_connector
from tests.test_benchmarks import tiny_vlm, world  # noqa: F401  (module-scoped fixtures)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
SWEEPS = ROOT / "sweeps"
PACKAGE = "toy_extension"


def doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def doc_code(title: str, name: str) -> str:
    """The first python block of section ``title``, ``<name>`` filled in."""
    (block, *_) = re.findall(r"```python\n(.*?)```", doc_section(title), flags=re.DOTALL)
    return textwrap.dedent(block).replace("<name>", name)


@pytest.fixture
def package(tmp_path, monkeypatch):
    """An empty package on sys.path; the registries it fills are restored, its modules forgotten, afterwards."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for registry in (TASKS, CONNECTORS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    yield pkg
    for mod in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[mod]


def add_module(pkg: Path, name: str, code: str):
    (pkg / f"{name}.py").write_text(code)
    importlib.invalidate_caches()
    return importlib.import_module(f"{PACKAGE}.{name}")


def compose_with(search: Path, overrides: list[str]):
    """``sweeps/sweep.yaml`` with the option files under ``search`` added (as if they were in ``sweeps/``)."""
    register_configs()  # stores the schemas of every registered component, the new ones included
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(config_name="sweep", overrides=[f"hydra.searchpath=[file://{search}]", *overrides])


TOY_CONNECTOR = '''
"""A toy connector: mean over patches, then one Linear per emitted token (no paper; the extension test's)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.models.connectors import CONNECTORS, Connector, ConnectorCfg, FeatureMapSpec, FeatureSpec


@dataclass
class ToyCfg(ConnectorCfg):
    width: int = 8


@CONNECTORS.register("toy_conn", cfg=ToyCfg)
class ToyConnector(Connector):
    def __init__(self, cfg: ToyCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        self.down = nn.Linear(feat.dim, cfg.width)
        self.up = nn.ModuleList(nn.Linear(cfg.width, d_llm) for _ in range(int(cfg.num_tokens)))

    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        h = self.down(x.mean(dim=1))
        return torch.stack([up(h) for up in self.up], dim=1)
'''

TOY_CONNECTOR_YAML = """\
defaults:
  - /schema/connector/toy_conn@_here_
  - _self_
name: toy_conn
num_tokens: ${visual_tokens}
"""


def test_a_toy_connector(package, tmp_path):
    # 1. harness/models/connectors/<name>.py  2. its import (here: importing the temporary package's module)
    add_module(package, "toy_conn", TOY_CONNECTOR)
    assert "toy_conn" in CONNECTORS
    # 3. sweeps/connector/<name>.yaml
    (tmp_path / "sweeps" / "connector").mkdir(parents=True)
    (tmp_path / "sweeps" / "connector" / "toy_conn.yaml").write_text(TOY_CONNECTOR_YAML)
    cfg = compose_with(tmp_path / "sweeps", ["connector=toy_conn", "connector.width=6", "visual_tokens=4"])
    validate(cfg)  # registry name, schema, and the constructor on a stand-in encoder output
    node = OmegaConf.to_object(cfg.connector)
    assert type(node).__name__ == "ToyCfg" and (node.width, node.num_tokens) == (6, 4)
    conn = build_connector(node, FeatureSpec(dim=16, grid=(3, 3)), d_llm=12)
    out = conn(torch.randn(2, 9, 16))
    assert out.shape == (2, 4, 12) and conn.num_params() > 0


def test_a_toy_world_task(package, tmp_path, world, tiny_vlm):  # noqa: F811
    name = "toy_dense"
    # 1. harness/eval/tasks/<name>.py: the page's own example
    add_module(package, name, doc_code("A world task", name))
    assert name in world_tasks() and WORLD_TASKS.get(name).metric == "cider"
    # 2. sweeps/eval/<option>.yaml: list it under tasks
    (tmp_path / "sweeps" / "eval").mkdir(parents=True)
    (tmp_path / "sweeps" / "eval" / "toy_eval.yaml").write_text(textwrap.dedent(f"""\
        defaults:
          - /schema/eval/base@_here_
          - _self_
        name: toy_eval
        shots: [0]
        tasks: [caption, vqa, {name}]
        text_tasks: []
        """))
    cfg = compose_with(tmp_path / "sweeps", ["eval=toy_eval"])
    validate(cfg)
    assert list(cfg.eval.tasks) == ["caption", "vqa", name] and preflight(cfg.eval) == []
    # an unknown task still fails loudly, with the new one among the valid names
    with pytest.raises(Exception, match=f"unknown task 'toy_dens'.*{name}.*Did you mean: {name}"):
        preflight(EvalCfg(name="t", tasks=["toy_dens"], text_tasks=[]))

    # the real path: the Evaluator's units on the micro world, 0- and 1-shot
    ecfg = EvalCfg(name="t", max_images=3, shots=[0, 1], tasks=[name], text_tasks=[], max_new_tokens_caption=2)
    ev = Evaluator(tiny_vlm, world, ecfg, tmp_path / "run", seed=0)
    assert ev.units() == [f"{name}@0", f"{name}@1"]
    entries = ev.run()
    mine = [e for e in entries if e["task"] == name]
    assert [(e["shots"], e["metric"], e["subset"], e["status"], e["n"]) for e in mine] == [
        (0, "cider", "all", "ok", 3), (1, "cider", "all", "ok", 3)]
    assert all(math.isfinite(e["value"]) for e in mine)
    avg = next(e for e in entries if e["task"] == "mm1_average" and e["shots"] == 0 and e["metric"] == "cider_mean")
    assert avg["tasks"] == [name]  # a CIDEr task enters the captioning average
    preds = (tmp_path / "run" / "predictions" / f"{name}_1shot_t0.jsonl").read_text().splitlines()
    assert len(preds) == 3 and all('"prompt": "a detailed image of"' in p and '"max_new_tokens": 4' in p for p in preds)
    # what the rest of the harness reads from the registry: old-style units, a failed point, the summary's column
    from harness.analysis.summary import record_row
    from harness.launch import _nan_metrics
    from harness.records import Record

    assert unit_of({k: v for k, v in mine[0].items() if k != "unit"}) == f"{name}@0"
    nan = _nan_metrics(OmegaConf.create({"eval": {"shots": [0], "tasks": [name, "vqa"]}}))
    assert [(e["task"], e["metric"]) for e in nan] == [(name, "cider"), ("vqa", "vqa_accuracy")]
    assert record_row(Record(cfg_hash="x", status="ok", metrics=entries))[name] == mine[0]["value"]


def test_a_toy_tsv_benchmark(package, tmp_path, world, tiny_vlm):  # noqa: F811
    name = "toy_bench"
    # 1. register a BenchmarkSpec: the page's own example, in a module of its own
    add_module(package, name, doc_code("A TSV benchmark", name))
    spec = BENCHMARKS.get(name)
    assert (spec.kind, spec.metric, spec.file) == ("vqa", "vqa_accuracy", "MY_SET_VAL.tsv") and name in TASKS
    # 2. its file under the benchmark root (here: the world's VQA test set, also registered as world_vqa)
    root = tmp_path / "lmu"
    export_world_benchmarks(world, root, max_images=3, kinds=("vqa",))
    shutil.copy(root / "WORLD_VQA_TEST.tsv", root / spec.file)
    # 3. list it under benchmarks
    cfg = EvalCfg(name="t", max_images=3, shots=[0], tasks=[], text_tasks=[], max_new_tokens_vqa=2,
                  benchmarks=[name, "world_vqa"], benchmark_root=str(root))
    assert preflight(cfg) == []
    ev = Evaluator(tiny_vlm, world, cfg, tmp_path / "run", seed=0)
    assert ev.units() == [f"bench:{name}@0", "bench:world_vqa@0"]
    got = {e["task"]: e for e in ev.run() if e.get("subset") == "all" and e["task"] in (name, "world_vqa")}
    toy, ref = got[name], got["world_vqa"]
    assert (toy["kind"], toy["metric"], toy["status"], toy["unit"]) == ("vqa", "vqa_accuracy", "ok", f"bench:{name}@0")
    assert toy["n"] == ref["n"] > 0 and toy["value"] == pytest.approx(ref["value"])  # same rows, same prompts
    assert toy["file"] == str(root / spec.file)
