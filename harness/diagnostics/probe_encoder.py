"""``python -m harness.bench probe``: which scene attributes a frozen image encoder's tokens carry, before a
connector or LM reads them (the first rung of the diagnosis; ``probe_connector`` and ``probe_vlm`` are the others).

Why this exists: a per-type VQA score at the majority answer (the summary's dagger) has two readings. Either the
encoder discarded the attribute, and no connector can bring it back, or the features hold it and the VLM does not
learn to read it at the step budget. A probe tells the two apart in minutes, without training a VLM.

Method: linear probing (Alain & Bengio, "Understanding intermediate layers using linear classifier probes", 2016),
plus a one-hidden-layer MLP probe, because an attribute can be present but not linearly decodable (Hewitt & Liang,
EMNLP 2019, on reading probe results). Both are fitted on the train split's cached features and scored on the test
split, beside the majority answer of the train labels. The probe is given the *oracle location*: the scene record
says where each object sits, so the question is "do these tokens carry it", not "can a model find it".

* ``shape`` / ``colour``: the ``window`` x ``window`` tokens around the grid cell of each object's centre
  (zero-padded at the border), one row per object.
* ``glyph``: the tokens whose cells overlap the glyph zone (``harness.world.scene.GLYPH_ZONE``).
* ``count`` and ``pattern``: all tokens, mean-pooled (global attributes; the pattern is the resolution control).
* ``dot``: the column of the dot (the visual-token control), from all tokens side by side: where it is, not
  whether it is there, so the probe sees every token's place.
* ``pair`` / ``split``: the opt-in token controls' yes/no (two small dots in one cell of the 4x4 grid; the black
  dot across a cell edge), from all tokens side by side (linear) and by a *set* probe: one MLP applied to every token,
  then the mean of its outputs, which is what a per-token nonlinearity followed by uniform attention can compute.
  With ``--pool n`` the grid is first average-pooled to n x n tokens (what ``avg_pool`` hands its Linear), so the
  two token counts of a control can be compared on the frozen features.

Features are standardised per channel with train statistics. Shapes: ``feats [n_img, G*G, D]`` -> one row per
(attribute, probe) with accuracy, majority baseline and sample counts.

The probes train small heads on cached features, not the VLM, so there is no VLM training loop here to share with
``harness.train.loop``. ``frozen_run`` and ``add_run_args`` serve all three probe commands.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
from torch import nn

from harness.world.scene import DOT_GRID, GLYPH_ZONE, Scene

ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "glyph", "count", "pattern", "dot", "pair", "split")
# Attributes read as a property of single tokens: their MLP probe is a set probe (one MLP on every token, then the
# mean of its outputs), the reader a per-token nonlinearity gives; a flat MLP over all tokens overfits instead.
TOKEN_SET: tuple[str, ...] = ("pair", "split")


def grid_side(n_tokens: int) -> int:
    g = math.isqrt(n_tokens)
    if g * g != n_tokens:
        raise ValueError(f"probes need a square token grid, got {n_tokens} tokens")
    return g


def glyph_cells(g: int) -> list[tuple[int, int]]:
    """(row, col) of every grid cell that overlaps the glyph zone."""
    x0, y0, x1, y1 = GLYPH_ZONE
    rows = range(int(y0 * g), math.ceil(y1 * g))
    cols = range(int(x0 * g), math.ceil(x1 * g))
    return [(r, c) for r in rows for c in cols]


def probe_inputs(feats: torch.Tensor, samples: list[dict], attribute: str, window: int = 3
                 ) -> tuple[torch.Tensor, list[str]]:
    """``feats [n_img, G*G, D]`` (already standardised) -> (inputs ``[n_rows, ...]``, labels) for ``attribute``."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown probe attribute '{attribute}'; available: {', '.join(ATTRIBUTES)}")
    n, t, d = feats.shape
    g = grid_side(t)
    grid = feats.reshape(n, g, g, d)
    if attribute == "count":
        return feats.mean(1), [str(len(s["objects"])) for s in samples]
    if attribute in TOKEN_SET:
        keep = [i for i, s in enumerate(samples) if s.get(attribute) is not None]
        answer = (lambda sc: sc.pair_together) if attribute == "pair" else (lambda sc: sc.split_across)
        labels = ["yes" if answer(Scene.from_dict(samples[i])) else "no" for i in keep]
        return feats.reshape(n, -1)[keep], labels
    if attribute in ("pattern", "dot"):
        keep = [i for i, s in enumerate(samples) if s.get(attribute) is not None]
        x = feats.mean(1) if attribute == "pattern" else feats.reshape(n, -1)
        labels = [str(samples[i]["pattern"]) if attribute == "pattern" else str(samples[i]["dot"] % DOT_GRID)
                  for i in keep]  # fmt: skip
        return x[keep], labels
    if attribute == "glyph":
        keep = [i for i, s in enumerate(samples) if s.get("glyph") is not None]
        cells = glyph_cells(g)
        x = torch.stack([grid[:, r, c] for r, c in cells], 1).reshape(n, -1)
        return x[keep], [samples[i]["glyph"] for i in keep]
    if window < 1 or window % 2 == 0:
        raise ValueError(f"probe window must be an odd number >= 1, got {window}")
    h = window // 2
    padded = torch.zeros(n, g + 2 * h, g + 2 * h, d, dtype=feats.dtype)
    padded[:, h : h + g, h : h + g] = grid
    xs, ys = [], []
    for i, s in enumerate(samples):
        for o in s["objects"]:
            r, c = min(g - 1, int(o["y"] * g)), min(g - 1, int(o["x"] * g))
            xs.append(padded[i, r : r + window, c : c + window].reshape(-1))
            ys.append(o[attribute])
    return torch.stack(xs), ys


def pool_grid(feats: torch.Tensor, side: int) -> torch.Tensor:
    """``[n, G*G, D] -> [n, side*side, D]``: the average pool ``avg_pool`` applies before its Linear."""
    n, t, d = feats.shape
    g = grid_side(t)
    grid = feats.transpose(1, 2).reshape(n, d, g, g)
    return nn.functional.adaptive_avg_pool2d(grid, side).flatten(2).transpose(1, 2)


def probe_name(hidden: int, token_dim: int | None = None) -> str:
    return "linear" if hidden == 0 else f"set{hidden}" if token_dim else f"mlp{hidden}"


class SetProbe(nn.Module):
    """``[n, T*D] -> [n, classes]``: one MLP on each of the T tokens, then the mean over tokens."""

    def __init__(self, token_dim: int, hidden: int, classes: int):
        super().__init__()
        self.token_dim = token_dim
        self.mlp = nn.Sequential(nn.Linear(token_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, classes))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.view(x.shape[0], -1, self.token_dim)).mean(1)


def encode_labels(y_train: list[str], y_test: list[str]) -> tuple[list[str], torch.Tensor, torch.Tensor, dict]:
    """(classes, train targets, test targets, label facts for the result row). A test label unseen in training gets
    target -1, which no prediction can hit; the baseline is the train labels' majority answer, scored on test."""
    labels = sorted(set(y_train))
    index = {y: k for k, y in enumerate(labels)}
    majority = Counter(y_train).most_common(1)[0][0]
    facts = {"majority_baseline": float(np.mean([y == majority for y in y_test])), "n_train": len(y_train),
             "n_test": len(y_test), "classes": len(labels)}
    return (labels, torch.tensor([index[y] for y in y_train]), torch.tensor([index.get(y, -1) for y in y_test]),
            facts)


def missing_labels(attribute: str, y_train: list[str], y_test: list[str]) -> dict | None:
    """A NaN result with the reason when a split has no labels (e.g. a world drawn without the glyph): nothing to
    fit, and never a score of 0. None when both splits have labels."""
    if y_train and y_test:
        return None
    return {"accuracy": float("nan"), "status": f"no {attribute} labels in the {'train' if not y_train else 'test'} split"}


def fit_probe(x_train: torch.Tensor, y_train: list[str], x_test: torch.Tensor, y_test: list[str], hidden: int = 0,
              epochs: int = 15, lr: float = 1e-3, seed: int = 0, token_dim: int | None = None) -> dict:
    """Fit a linear (``hidden=0``) or MLP probe with AdamW; test accuracy and the majority baseline. With
    ``token_dim`` the MLP is a :class:`SetProbe` over tokens of that width."""
    labels, ytr, yte, facts = encode_labels(y_train, y_test)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dim = x_train.shape[1]
    if hidden == 0:
        model = nn.Linear(dim, len(labels))
    elif token_dim:
        model = SetProbe(token_dim, hidden, len(labels))
    else:
        model = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.2), nn.Linear(hidden, len(labels)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    with torch.enable_grad():
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(ytr), generator=gen).split(128):
                loss = nn.functional.cross_entropy(model(x_train[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x_test).argmax(-1) == yte).float().mean())
        train_acc = float((model(x_train).argmax(-1) == ytr).float().mean())
    return {"probe": probe_name(hidden, token_dim), "accuracy": acc, "train_accuracy": train_acc, **facts}


def run_probes(train_feats: torch.Tensor, train_samples: list[dict], test_feats: torch.Tensor,
               test_samples: list[dict], attributes: tuple[str, ...] = ATTRIBUTES, hidden: tuple[int, ...] = (0, 512),
               window: int = 3, epochs: int = 15, seed: int = 0) -> list[dict]:
    """Every (attribute, probe) pair on features ``[n_img, G*G, D]`` of the two splits."""
    train_feats, test_feats = train_feats.float(), test_feats.float()
    mu = train_feats.mean((0, 1))
    sd = train_feats.std((0, 1)) + 1e-5
    train_feats, test_feats = (train_feats - mu) / sd, (test_feats - mu) / sd
    rows = []
    for attribute in attributes:
        x_tr, y_tr = probe_inputs(train_feats, train_samples, attribute, window)
        x_te, y_te = probe_inputs(test_feats, test_samples, attribute, window)
        token_dim = train_feats.shape[2] if attribute in TOKEN_SET else None
        for h in hidden:
            where = {"attribute": attribute, "window": window if attribute in ("shape", "colour") else None}
            missing = missing_labels(attribute, y_tr, y_te)
            rows.append({**where, "probe": probe_name(h, token_dim), **missing} if missing else
                        {**where, **fit_probe(x_tr, y_tr, x_te, y_te, hidden=h, epochs=epochs, seed=seed,
                                              token_dim=token_dim)})
    return rows


# -- command line: python -m harness.bench probe [options] [hydra overrides] ----------------------------------------
def add_parser(sub) -> None:
    c = sub.add_parser("probe", help="linear / MLP probes of what the frozen encoder's tokens carry, per attribute")
    c.add_argument("--n-train", type=int, default=8000, help="train images (the features come from the cache)")
    c.add_argument("--hidden", default="0,512", help="probe hidden widths, comma-separated (0 = linear)")
    c.add_argument("--attributes", default=",".join(a for a in ATTRIBUTES if a not in TOKEN_SET),
                   help=f"comma-separated, of {', '.join(ATTRIBUTES)} (the opt-in controls "
                        f"{', '.join(TOKEN_SET)} only when named: the default world has neither)")
    c.add_argument("--window", type=int, default=3, help="tokens per side around an object (odd)")
    c.add_argument("--epochs", type=int, default=15)
    c.add_argument("--pool", type=int, default=0, help="average-pool the token grid to POOL x POOL first (0: no)")
    add_run_args(c, "encoder=aim_tiny resolution=128", seed=False)


def add_run_args(c, example: str, seed: bool = True) -> None:
    """The options every probe command shares: the run (Hydra overrides), its threads, where the JSON goes and, for
    the commands that train a fresh connector, the seed (see ``frozen_run``)."""
    if seed:
        c.add_argument("--seed", type=int, default=None,
                       help="connector initialisation, batch order and probe heads (default: the run's `seed`)")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--out", default="results/bench")
    c.add_argument("overrides", nargs="*", help=f"Hydra overrides, e.g. {example}")


def frozen_run(overrides: list[str], threads: int, seed: int | None = None):
    """(cfg, world, vlm, feature-cache folder, threads) of the run that ``overrides`` compose, every part frozen, so
    that feature banks read (or fill) the feature cache: what the probe commands start from. The build is seeded
    with ``seed`` (default: the run's ``seed``), as ``run_point`` seeds it, so a fresh connector's initialisation
    follows the seed; ``cfg.seed`` is the seed used."""
    from pathlib import Path

    from harness.config.store import compose_sweep
    from harness.models.build import build_vlm
    from harness.runtime import seed_everything, set_offline, set_threads

    set_offline()
    threads = set_threads(threads)
    cfg = compose_sweep([*overrides, *([] if seed is None else [f"seed={seed}"])])
    seed_everything(cfg.seed)
    world, vlm, _ = build_vlm(cfg, torch.device("cpu"))
    vlm.set_trainable([])
    return cfg, world, vlm, Path(cfg.paths.cache_dir).expanduser(), threads


def bench_probe(args) -> dict:
    from harness.data.features import bank_for

    if args.pool < 0:  # before the (slow) build
        raise SystemExit(f"--pool must be 0 (no pooling) or a grid side >= 1, got {args.pool}")
    cfg, world, vlm, cache, threads = frozen_run(args.overrides, args.threads)

    def split(name: str, n: int | None = None) -> tuple[torch.Tensor, list[dict]]:
        bank, samples = bank_for(vlm, world, name, cache), world.samples(name)[:n]
        with torch.no_grad():
            feats = [bank.get(list(range(i, min(i + 512, len(samples))))).feats for i in range(0, len(samples), 512)]
        return torch.cat(feats).float(), samples

    train, test = split("train", args.n_train), split("test")
    if args.pool:
        train, test = (pool_grid(train[0], args.pool), train[1]), (pool_grid(test[0], args.pool), test[1])
    hidden = tuple(int(h) for h in args.hidden.split(","))
    rows = run_probes(*train, *test, attributes=tuple(args.attributes.split(",")), hidden=hidden,
                      window=args.window, epochs=args.epochs)
    print(f"[probe] {cfg.encoder.name} at {cfg.resolution} px, layer {cfg.encoder.get('feature_layer', '-')}, "
          f"{train[0].shape[1]} tokens x {train[0].shape[2]}")
    for r in rows:
        if "status" in r:
            print(f"[probe] {r['attribute']:7s} {r['probe']:7s} accuracy nan  ({r['status']})")
            continue
        print(f"[probe] {r['attribute']:7s} {r['probe']:7s} accuracy {r['accuracy']:.3f}  "
              f"(majority {r['majority_baseline']:.3f}, train {r['train_accuracy']:.3f}, n {r['n_train']}/{r['n_test']})")
    return {"benchmark": "probe", "threads": threads, "overrides": list(args.overrides), "encoder": cfg.encoder.name,
            "pool": args.pool,
            "resolution": cfg.resolution, "tokens": int(train[0].shape[1]), "dim": int(train[0].shape[2]),
            "epochs": args.epochs, "rows": rows}
