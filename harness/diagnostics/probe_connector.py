"""``python -m harness.bench probe-connector``: can the sweep's connector compute an attribute from the frozen
features, without the LM?

The second rung of a three-rung diagnosis of a per-type VQA score at the majority answer:

1. ``bench probe`` (``harness.diagnostics.probe_encoder``): do the frozen encoder's tokens carry the attribute?
2. ``bench probe-connector`` (this module): can the connector, trained directly on the attribute, turn those tokens
   into visual tokens from which a linear head reads it? If yes, the attribute is lost in the third rung:
3. ``bench probe-vlm`` (``harness.diagnostics.probe_vlm``): the VLM trained on one question type, where the LM must
   learn to read the visual tokens (and the connector to compute them) from next-token loss alone.

Each fit trains a freshly initialised copy of the run's connector (the config's own architecture and
``visual_tokens``; high-resolution maps for mining) together with a linear head, with AdamW on cross-entropy, and
scores it on the test split beside the majority answer of the train labels. Two readouts of the ``[B, M, d_llm]``
visual tokens:

* ``mean``: the head sees the average of the M tokens. This is all an LM gets whose attention spreads evenly over
  the image's tokens (an untrained reader has no reason to prefer one); an attribute read here needs no spatial
  selection.
* ``flat``: the head sees the M tokens concatenated, with weights of its own per token position: a readout that can
  select where to look, as a trained attention head would.

Labels: ``colour``, ``shape`` and ``position`` from single-object scenes (one object, so no referent has to be
bound, as "the red object" does in the VQA questions); ``glyph`` and ``count`` from every scene. Unlike the feature
probe there is no oracle location: the connector mixes tokens, so the model must find the object itself.

Shapes: features ``[n_img, N, D_enc]`` (and maps) -> connector ``[n_img, M, d_llm]`` -> head ``[n_img, classes]``.

The fits train a connector and a classification head on cross-entropy, with no LM and no token sequences, so the
VLM training step of ``harness.train.loop`` (sequences, next-token loss through the LM) does not apply to them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from harness.diagnostics.probe_encoder import add_run_args, encode_labels, frozen_run, missing_labels
from harness.models.connectors.base import Connector
from harness.models.vlm import VisualInputs

ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "position", "glyph", "count")
READOUTS: tuple[str, ...] = ("mean", "flat")
SINGLE_OBJECT = ("colour", "shape", "position")


def probe_labels(samples: list[dict], attribute: str) -> tuple[list[int], list[str]]:
    """(image indices, labels) of the images that answer ``attribute`` (see the module docstring for which)."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown connector-probe attribute '{attribute}'; available: {', '.join(ATTRIBUTES)}")
    if attribute in SINGLE_OBJECT:
        keep = [i for i, s in enumerate(samples) if len(s["objects"]) == 1]
        return keep, [samples[i]["objects"][0][attribute] for i in keep]
    if attribute == "glyph":
        keep = [i for i, s in enumerate(samples) if s.get("glyph") is not None]
        return keep, [samples[i]["glyph"] for i in keep]
    return list(range(len(samples))), [str(len(s["objects"])) for s in samples]


class Readout(nn.Module):
    """``[B, M, d] -> [B, classes]``: a linear head on the mean (``mean``) or the concatenation (``flat``)."""

    def __init__(self, kind: str, tokens: int, dim: int, classes: int):
        super().__init__()
        if kind not in READOUTS:
            raise ValueError(f"unknown readout '{kind}'; available: {', '.join(READOUTS)}")
        self.kind = kind
        self.head = nn.Linear(dim if kind == "mean" else tokens * dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens.mean(1) if self.kind == "mean" else tokens.flatten(1))


def fit_connector_probe(connector: Connector, get_train: Callable[[list[int]], VisualInputs], train_idx: list[int],
                        y_train: list[str], test_vis: VisualInputs, y_test: list[str], readout: str = "mean",
                        steps: int = 1500, lr: float = 1e-3, batch_size: int = 32, seed: int = 0) -> dict:
    """Train ``connector`` (modified in place: pass a fresh copy) and a ``readout`` head; test accuracy and baseline."""
    labels, ytr, yte, facts = encode_labels(y_train, y_test)
    torch.manual_seed(seed)
    head = Readout(readout, connector.num_tokens, connector.d_llm, len(labels))
    params = [*connector.trainable_parameters(), *head.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    connector.train()
    with torch.enable_grad():
        for _ in range(steps):
            pick = rng.integers(len(train_idx), size=batch_size)
            vis = get_train([train_idx[k] for k in pick])
            loss = nn.functional.cross_entropy(head(connector(vis.feats, vis.hr)), ytr[torch.from_numpy(pick)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    connector.eval()
    with torch.no_grad():
        pred = []
        for s in range(0, len(yte), 256):
            hr = None if test_vis.hr is None else [m[s : s + 256] for m in test_vis.hr]
            pred.append(head(connector(test_vis.feats[s : s + 256], hr)).argmax(-1))
        acc = float((torch.cat(pred) == yte).float().mean())
    return {"readout": readout, "accuracy": acc, "final_train_loss": float(loss.detach()), "steps": steps, "lr": lr,
            **facts, "fit_s": time.time() - t0}


def run_connector_probes(connector: Connector, get_train: Callable[[list[int]], VisualInputs], train_samples: list[dict],
                         get_test: Callable[[list[int]], VisualInputs], test_samples: list[dict],
                         attributes: tuple[str, ...] = ATTRIBUTES, readouts: tuple[str, ...] = READOUTS,
                         steps: int = 1500, lr: float = 1e-3, seed: int = 0, log: Callable[[str], None] = print
                         ) -> list[dict]:
    """Every (attribute, readout) pair, each on a fresh copy of ``connector`` as initialised."""
    rows = []
    for attribute in attributes:
        tr_idx, y_tr = probe_labels(train_samples, attribute)
        te_idx, y_te = probe_labels(test_samples, attribute)
        test_vis = get_test(te_idx) if te_idx else None
        for readout in readouts:
            where = {"attribute": attribute, "readout": readout}
            missing = missing_labels(attribute, y_tr, y_te)
            rows.append({**where, **(missing or fit_connector_probe(copy.deepcopy(connector), get_train, tr_idx, y_tr,
                                                                    test_vis, y_te, readout, steps, lr, seed=seed))})
            log(format_row(rows[-1]))
    return rows


def format_row(r: dict) -> str:
    head = f"[probe-connector] {r['attribute']:8s} {r['readout']:4s}"
    if "status" in r:
        return f"{head} accuracy nan  ({r['status']})"
    return (f"{head} accuracy {r['accuracy']:.3f}  (majority {r['majority_baseline']:.3f}, n {r['n_train']}/"
            f"{r['n_test']}, {r['steps']} steps, {r['fit_s']:.0f} s)")


# -- command line: python -m harness.bench probe-connector [options] [hydra overrides] ------------------------------
def add_parser(sub) -> None:
    c = sub.add_parser("probe-connector",
                       help="train the run's connector + a linear head on each attribute directly (no LM)")
    c.add_argument("--steps", type=int, default=1500, help="training steps per fit (batch 32)")
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--readouts", default=",".join(READOUTS), help=f"comma-separated, of {', '.join(READOUTS)}")
    c.add_argument("--attributes", default=",".join(ATTRIBUTES))
    add_run_args(c, "connector=avg_pool resolution=128")


def bench_connector_probe(args) -> dict:
    from harness.data.features import bank_for

    cfg, world, vlm, cache, threads = frozen_run(args.overrides, args.threads, args.seed)
    train_bank, test_bank = bank_for(vlm, world, "train", cache), bank_for(vlm, world, "test", cache)
    print(f"[probe-connector] {cfg.connector.name} ({vlm.connector.num_tokens} tokens of {vlm.connector.d_llm}) on "
          f"{cfg.encoder.name} at {cfg.resolution} px, {args.steps} steps per fit", flush=True)
    rows = run_connector_probes(vlm.connector, train_bank.get, world.samples("train"), test_bank.get,
                                world.samples("test"), attributes=tuple(args.attributes.split(",")),
                                readouts=tuple(args.readouts.split(",")), steps=args.steps, lr=args.lr, seed=cfg.seed,
                                log=lambda line: print(line, flush=True))
    return {"benchmark": "probe-connector", "threads": threads, "overrides": list(args.overrides),
            "connector": cfg.connector.name, "encoder": cfg.encoder.name, "resolution": cfg.resolution,
            "visual_tokens": vlm.connector.num_tokens, "steps": args.steps, "lr": args.lr, "seed": cfg.seed,
            "rows": rows}
