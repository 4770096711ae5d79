"""One generic name registry: name -> entry (a class, a factory, a lazy ``"module:attr"`` spec).

The model, policy, dataset and encoder registries are instances of :class:`Registry`. An
unknown name raises :class:`~explorec.errors.UnknownNameError` (``unknown model 'x'; known:
...``) unless the registry is given its own ``error``. A leaf module: it imports only
:mod:`explorec.errors`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from explorec.errors import UnknownNameError

T = TypeVar("T")


def import_object(spec: str) -> Any:
    """The object a ``"package.module:attr"`` spec names, imported on demand."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """Names (in registration order) mapped to entries, with optional aliases.

    ``kind`` names the registry in errors (``"model"``); ``error(name, known)`` builds the
    exception for an unknown name (default: :class:`UnknownNameError`).
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None, *,
                 aliases: Mapping[str, str] | None = None,
                 error: Callable[[str, list[str]], Exception] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._error = error
        for name, entry in (entries or {}).items():
            self.register(name, entry)
        for alias, name in (aliases or {}).items():
            self.alias(alias, name)

    def register(self, name: str, entry: T, *, aliases: Iterable[str] = ()) -> T:
        """Add ``name`` (a name or alias already taken is a ValueError); returns ``entry``."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        for alias in aliases:
            self.alias(alias, name)
        return entry

    def alias(self, alias: str, name: str) -> None:
        """Let ``alias`` stand for the registered ``name``."""
        target = self.canonical(name)
        if alias in self:
            raise ValueError(f"{self.kind} {alias!r} is already registered")
        self._aliases[alias] = target

    def names(self) -> list[str]:
        """The registered names in registration order (aliases left out)."""
        return list(self._entries)

    def unknown(self, name: str) -> Exception:
        """The error for a name that is not registered (to raise)."""
        known = self.names()
        return self._error(name, known) if self._error else UnknownNameError(self.kind, name, known)

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` is, or that it is an alias of."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise self.unknown(name)

    def get(self, name: str) -> T:
        """The entry of ``name`` (or of the name it is an alias of)."""
        return self._entries[self.canonical(name)]

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
