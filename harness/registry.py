"""Named component registries that fail loudly.

Every buildable component (encoder, connector, LLM, data source, benchmark) is registered under one name. That name
is also the YAML option file name in ``sweeps/<group>/`` and the value written into the results column, so a
result row can always be traced back to the code that produced it.

Unknown names never fall back to a default: they raise a ``KeyError`` that says what was asked for, the closest
matches and every valid name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownComponentError(KeyError):
    """Raised for a name that no registry entry carries. ``str(err)`` is the full, actionable message."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    cfg_cls: type | None  # the dataclass schema of this component's config, if it has one


class Registry(Generic[T]):
    """A name -> component map with duplicate checks and did-you-mean errors.

    >>> CONNECTORS = Registry("connector")
    >>> @CONNECTORS.register("avg_pool", cfg=AvgPoolCfg)
    ... class AvgPool(Connector): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, cfg: type | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice ({self._entries[name].obj} and {obj})")
            self._entries[name] = Entry(name, obj, cfg)
            return obj

        return deco

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise UnknownComponentError(self.unknown_message(name))
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"Unknown {self.kind} '{name}'.{hint} Available: {', '.join(names) or '(none registered)'}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


class RegistryView(Registry[T]):
    """The entries of ``parent`` that ``keep`` accepts, read like a registry of their own (names, lookups and
    did-you-mean messages under ``kind``); ``register`` adds to ``parent``.

    >>> WORLD_TASKS = RegistryView(TASKS, "world task", lambda t: isinstance(t, WorldTask))
    """

    def __init__(self, parent: Registry[T], kind: str, keep: Callable[[T], bool]):  # no super(): no entries of its own
        self.parent, self.kind, self.keep = parent, kind, keep

    @property
    def _entries(self) -> dict[str, Entry[T]]:  # type: ignore[override]
        return {n: e for n, e in self.parent._entries.items() if self.keep(e.obj)}

    def register(self, name: str, cfg: type | None = None) -> Callable[[T], T]:
        return self.parent.register(name, cfg)


def check_choice(kind: str, value: Any, valid: list[str] | tuple[str, ...]) -> None:
    """Validate a free-form string option (not a registry) with the same did-you-mean message."""
    if value not in valid:
        close = difflib.get_close_matches(str(value), list(valid), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown {kind} '{value}'.{hint} Valid: {', '.join(map(str, valid))}")
