"""Error types. Every error raised on bad input names the file, column, row or id at fault."""

from __future__ import annotations

from pathlib import Path


class ExploRecError(Exception):
    """Base class for all errors explorec raises on purpose."""


class DataError(ExploRecError, ValueError):
    """Bad input data. The message names the source, the column and the row when known."""

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.column = column
        self.row = row
        where = []
        if self.source:
            where.append(f"file {self.source}")
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class UnknownNameError(ExploRecError, KeyError):
    """A dataset, model or split name that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class ChecksumError(ExploRecError):
    """A fetched or loaded file whose sha256 does not match the pinned value."""

    def __init__(self, path: str | Path, expected: str, actual: str) -> None:
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        super().__init__(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}")


class FetchError(ExploRecError):
    """A download or extraction that failed; the cache is left untouched."""


class ArtifactError(ExploRecError):
    """A model artifact that is missing, corrupt or of an unknown kind."""
