"""``build_vlm(cfg, device)``: a sweep point's model, from its composed config.

World -> tokenizer -> the pre-trained backbones (LLM, image encoder, and for a connector that needs one the
high-resolution encoder), each loaded from the cache or pre-trained into it -> connector -> VLM.

The backbones are independent cache artifacts, each built under its own lock. On a cold cache the jobs of a parallel
sweep would all queue on the first one; instead a job skips a backbone another job is building, builds a free one,
and waits only when every backbone it still needs is being built elsewhere. So three cold jobs pre-train the three
backbones side by side. Which job builds what changes nothing in the result: a backbone's weights follow from its
config (its pre-training seeds itself, initialisation included), and the connector starts from the point's seed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness import artifacts
from harness.runtime import seed_everything


def build_vlm(cfg: DictConfig, device, world=None):
    """``(world, vlm, llm)`` for the point ``cfg`` on ``device`` (``world``: an already loaded World, reused)."""
    from harness.models.connectors import CONNECTORS, build_connector
    from harness.models.encoders import build_encoder
    from harness.models.llm import build_llm, build_tokenizer
    from harness.models.vlm import VLM
    from harness.world import World

    cache = Path(cfg.paths.cache_dir).expanduser()
    world = world or World.build_or_load(OmegaConf.to_object(cfg.world), cache)
    llm_cfg = OmegaConf.to_object(cfg.llm)
    tok = build_tokenizer(llm_cfg, world, cache)
    conn_cfg = OmegaConf.to_object(cfg.connector)
    steps: dict[str, Callable[[], Any]] = {
        "llm": lambda: build_llm(llm_cfg, world, cache),
        "encoder": lambda: build_encoder(OmegaConf.to_object(cfg.encoder), cfg.resolution, world, tok, cache),
    }
    if CONNECTORS.get(conn_cfg.name).needs_hr:
        steps["hr_encoder"] = lambda: build_encoder(OmegaConf.to_object(cfg.hr_encoder), cfg.hr_resolution, world,
                                                    tok, cache)
    built = build_free_first(steps)
    llm, encoder, hr_encoder = built["llm"], built["encoder"], built.get("hr_encoder")
    # The connector's init starts from the point's seed, whatever this job drew before (building and pre-training a
    # backbone leave the global RNG as it was), so the result does not depend on which job built what.
    seed_everything(cfg.seed)
    connector = build_connector(conn_cfg, encoder.spec, llm.d_model, hr_encoder.map_spec if hr_encoder else None)
    vlm = VLM(encoder, connector, llm, hr_encoder).to(device)
    return world, vlm, llm


def build_free_first(steps: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run every step (each gets or builds cache artifacts); a step whose artifact another process is building is
    put off while any other step can go on, and waited for only when none can. Returns ``{name: result}``."""
    built: dict[str, Any] = {}
    pending = list(steps)
    while pending:
        progressed = False
        for name in list(pending):
            try:
                with artifacts.no_wait():
                    built[name] = steps[name]()
            except artifacts.Busy:
                continue
            pending.remove(name)
            progressed = True
        if pending and not progressed:  # all being built elsewhere: wait for the first
            name = pending.pop(0)
            built[name] = steps[name]()
    return built
