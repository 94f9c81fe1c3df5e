"""Per-part learning rates of a training stage, and the hash rule that keeps records made before a setting existed."""

from __future__ import annotations

from harness.config.hashing import config_hash, without_added_defaults
from harness.config.schema import StageCfg
from harness.train.loop import _param_groups
from tests.test_data_and_vlm import tiny_vlm, world  # noqa: F401  (module-scoped fixtures)


def _groups(vlm, stage: StageCfg) -> dict[str, tuple[float, int]]:
    vlm.set_trainable(list(stage.trainable))
    return {g["name"]: (g["lr"], sum(p.numel() for p in g["params"])) for g in _param_groups(vlm, stage)}


def test_encoder_lr_gives_the_encoder_its_own_group(tiny_vlm):  # noqa: F811
    n = {part: sum(p.numel() for p in getattr(tiny_vlm, m).parameters())
         for part, m in (("encoder", "encoder"), ("connector", "connector"), ("llm", "lm"))}
    parts = ["encoder", "connector", "llm"]
    shared = _groups(tiny_vlm, StageCfg(trainable=parts, lr=2e-3, llm_lr=1e-3))
    assert shared == {"connector+encoder": (2e-3, n["connector"] + n["encoder"]), "llm": (1e-3, n["llm"])}
    own = _groups(tiny_vlm, StageCfg(trainable=parts, lr=2e-3, llm_lr=1e-3, encoder_lr=1e-4))
    assert own == {"connector": (2e-3, n["connector"]), "encoder": (1e-4, n["encoder"]), "llm": (1e-3, n["llm"])}


def test_unset_encoder_lr_keeps_the_old_hash_and_a_set_one_changes_it():
    old = {"seed": 0, "train": {"name": "default", "stages": [{"name": "a", "lr": 2e-3}, {"name": "b", "lr": 1e-3}]}}
    new = {"seed": 0, "train": {"name": "default", "precision": "fp32",
                                "stages": [{"name": "a", "lr": 2e-3, "encoder_lr": None},
                                           {"name": "b", "lr": 1e-3, "encoder_lr": None}]}}
    assert without_added_defaults(new) == old
    assert config_hash(without_added_defaults(new), False) == config_hash(old, False)
    new["train"]["stages"][1]["encoder_lr"] = 1e-4
    pruned = without_added_defaults(new)
    assert pruned["train"]["stages"] == [{"name": "a", "lr": 2e-3}, {"name": "b", "lr": 1e-3, "encoder_lr": 1e-4}]
    assert new["train"]["stages"][0]["encoder_lr"] is None  # the input is left as it was
    assert config_hash(pruned, False) != config_hash(old, False)
