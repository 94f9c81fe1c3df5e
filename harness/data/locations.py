"""Where each data source of a run reads from: data configs -> one location per source, checked before building.

A data config (``sweeps/data/*.yaml``, schema ``DataCfg``) names source weights in ``mixture`` and, in ``sources``,
where a source reads from: a format (``harness.data.formats``), a file spec and an image folder, relative to a
root. Two roots exist, so that no absolute path is ever written in a config (style rule 11):

- ``data``: ``paths.data_dir`` (``$MM_ABLATE_DATA``), the user's own data;
- ``world``: the world's export (``harness.world.export``), e.g. MiniGPT-4's curated set ``curated/detail.json``.

A source whose entry has no ``format`` (the default) reads the world's export of it, in the export's format: the
default run reads the world through the real readers. Stages may name other data configs
(``train.stages[i].data``), loaded here from ``sweeps/data/<name>.yaml``. One run routes each source name to one
location, across all its stages: the training loop builds a stage's mixture from source names alone, so two
stages cannot read ``caption`` from two places (a check says so, and names the conflict).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.config.schema import ConfigError, DataCfg
from harness.registry import UnknownComponentError, check_choice

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
ROOTS = ("data", "world")
RUN = "__run__"  # the key of the run's own data config in the data-config map the training loop reads


@dataclass(frozen=True)
class Location:
    """One place records are read from. ``path == ""`` with ``root == "world"``: the world's own export of the
    source (its spec depends on the world's size, so it is filled in when the world exists)."""

    format: str
    path: str
    root: str
    images: str = ""

    def describe(self) -> str:
        where = "the world's export" if self.root == "world" else "paths.data_dir"
        return f"{self.format}: {self.path or '(default part)'} in {where}"


def data_options() -> list[str]:
    return sorted(p.stem for p in (SWEEPS / "data").glob("*.yaml"))


def load_data_option(name: str) -> DictConfig:
    """``sweeps/data/<name>.yaml`` validated against ``DataCfg``, as the training loop reads a data config."""
    path = SWEEPS / "data" / f"{name}.yaml"
    if not path.is_file():
        check_choice("data config", name, data_options())  # raises with the did-you-mean list
    node = OmegaConf.load(path)
    node.pop("defaults", None)  # the Hydra defaults list only pulls in the schema, merged here directly
    return OmegaConf.merge(OmegaConf.structured(DataCfg), node)


def stage_data(cfg: DictConfig) -> dict[str, DictConfig]:
    """Every data config a stage of ``cfg.train`` reads, by name; ``__run__`` is the run's ``data`` (a stage with
    ``data: null`` reads it). The run's own name maps to ``cfg.data`` itself, so command-line overrides apply."""
    out = {RUN: cfg.data, cfg.data.name: cfg.data}
    for i, stage in enumerate(cfg.train.stages):
        if stage.data is not None and stage.data not in out:
            try:
                out[stage.data] = load_data_option(stage.data)
            except ValueError as err:
                raise ConfigError(f"train.stages.{i} ('{stage.name}').data: {err}") from None
    return out


def used_data(cfg: DictConfig, data_cfgs: dict[str, DictConfig]) -> list[DictConfig]:
    """The data configs the stages train on, in stage order, each once."""
    names = dict.fromkeys(stage.data or RUN for stage in cfg.train.stages)
    seen, out = set(), []
    for name in names:
        node = data_cfgs[name]
        if node.name not in seen:
            seen.add(node.name)
            out.append(node)
    return out


def location(data: DictConfig | DataCfg, source: str) -> Location:
    """Where ``data`` reads ``source``: its ``sources`` entry if that names a format, else the world's export."""
    from harness.world.export import PART_FORMATS

    spec = getattr(data.sources, source, None)
    if spec is None or not spec.format:
        if source not in PART_FORMATS:
            raise ConfigError(f"data '{data.name}': source '{source}' has no world export; set "
                              f"data.sources.{source} (format, path) to read it from paths.data_dir")
        return Location(PART_FORMATS[source], "", "world")
    return Location(spec.format, spec.path, spec.root, spec.images or "")


def route(datas: list) -> dict[str, Location]:
    """Source name -> location over every positively weighted source of ``datas``; ConfigError on a conflict."""
    from harness.data.mixture import normalise_weights

    routes: dict[str, tuple[Location, str]] = {}
    for data in datas:
        for source in normalise_weights(dict(data.mixture)):
            loc = location(data, source)
            if source in routes and routes[source][0] != loc:
                other, where = routes[source]
                raise ConfigError(f"source '{source}' reads from {other.describe()} in data '{where}' but from "
                                  f"{loc.describe()} in data '{data.name}'; one run reads a source from one place")
            routes.setdefault(source, (loc, data.name))
    return {s: loc for s, (loc, _) in routes.items()}


def _check_run_data_is_read(cfg: DictConfig, data_cfgs: dict[str, DictConfig]) -> None:
    """Own sources on the run's ``data`` that no stage reads (``train=minigpt4`` names each stage's data) would be
    recorded under the run's config and hash while the point trains on the world: refuse, and say how to route them."""
    if any(data is cfg.data for data in used_data(cfg, data_cfgs)):  # stage_data maps the run's name to cfg.data
        return
    stages = list(cfg.train.stages)
    own = [name for name, spec in cfg.data.sources.items() if spec is not None and spec.format]
    if own:
        named = ", ".join(f"{i} '{stage.name}': {stage.data}" for i, stage in enumerate(stages))
        raise ConfigError(
            f"data '{cfg.data.name}' is never read: every stage of train '{cfg.train.name}' names its own data "
            f"(stages {named}), so data.sources.{', data.sources.'.join(own)} would train nothing. Let a stage "
            f"read the run's data with train.stages.<i>.data=null (e.g. train.stages.0.data=null), or choose that "
            f"stage's data option (data={stages[0].data}) for your sources")


def check(cfg: DictConfig) -> None:
    """Every stage's data config exists, and every set ``sources`` entry names a known format and root, a relative
    file spec with the format's file endings, and a format whose records the source can read. (Source names and
    entry fields are checked by the schema while composing.)"""
    from harness.data.formats import FORMATS
    from harness.data.formats.paths import expand_braces
    from harness.data.mixture import normalise_weights
    from harness.data.sources import SOURCES

    data_cfgs = stage_data(cfg)
    _check_run_data_is_read(cfg, data_cfgs)
    for data in used_data(cfg, data_cfgs):
        try:
            normalise_weights(dict(data.mixture))
        except (ValueError, UnknownComponentError) as err:
            raise ConfigError(f"data '{data.name}'.mixture: {err}") from None
        for source in SOURCES.names():
            spec, key = getattr(data.sources, source), f"data '{data.name}'.sources.{source}"
            if not spec.format:
                if spec.path or spec.images or spec.root != "data":
                    raise ConfigError(f"{key}: set its format too (one of {', '.join(FORMATS.names())}); an empty "
                                      f"format means the world's export of '{source}'")
                continue
            try:
                reader = FORMATS.get(spec.format)
                accepts = SOURCES.get(source).accepts
                check_choice("root", spec.root, ROOTS)
                names = expand_braces(spec.path)
            except (ValueError, UnknownComponentError) as err:
                raise ConfigError(f"{key}: {err}") from None
            if reader.kind not in accepts:
                fits = [n for n in FORMATS.names() if FORMATS.get(n).kind in accepts]
                raise ConfigError(f"{key}: format '{spec.format}' yields {reader.kind} records; source '{source}' "
                                  f"reads {', '.join(accepts)} records (formats: {', '.join(fits)})")
            for p in (spec.path, spec.images or ""):
                if Path(p).is_absolute() or p.startswith("~"):
                    raise ConfigError(f"{key}: '{p}' is absolute; give it relative to the root '{spec.root}' "
                                      f"(root data = paths.data_dir, set by $MM_ABLATE_DATA)")
            bad = [n for n in names if not n.endswith(reader.suffixes) and not n.endswith(("*", "]"))]
            if not spec.path or bad:
                raise ConfigError(f"{key}: path '{spec.path}' must name {', '.join(reader.suffixes)} files for "
                                  f"format '{spec.format}'")
    route(used_data(cfg, data_cfgs))
