"""Readers for users' own files: CSV/TSV/Parquet with a column mapping, RecBole atomic files."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from explorec.data.catalog import ItemCatalog, UserTable
from explorec.data.interactions import Interactions
from explorec.errors import DataError


def read_table(path: str | Path, *, sep: str | None = None, **kwargs: object) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file into a DataFrame of strings/numbers.

    The format follows the suffix (``.parquet``/``.pq``, ``.tsv``/``.inter``, else CSV with
    a sniffed delimiter). Empty or unreadable files raise :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=path)
    if path.stat().st_size == 0:
        raise DataError("empty file", source=path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            if sep is None:
                sep = "\t" if suffix in (".tsv", ".inter", ".item", ".user", ".kg", ".link") else (
                    _sniff(path))
            kwargs.setdefault("index_col", False)
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                                 na_values=[""], **kwargs)  # type: ignore[arg-type]
    except pd.errors.ParserWarning as e:
        row = _first_long_row(path, sep or ",")
        raise DataError(f"more fields than the header has names ({e})", source=path,
                        row=row) from e
    except DataError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise DataError(f"cannot parse: {e}", source=path) from e
    if len(df) == 0:
        raise DataError("no data rows (header only)", source=path)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _first_long_row(path: Path, sep: str) -> int | None:
    """1-based data row of the first line with more fields than the header (error path only)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(f, delimiter=sep)
        width = len(next(rows, []))
        for i, r in enumerate(rows, start=1):
            if len(r) > width:
                return i
    return None


def _sniff(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(8192)
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def load_interactions(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    sep: str | None = None,
    duplicates: str = "error",
) -> Interactions:
    """Load interactions from CSV/TSV/Parquet.

    ``columns`` maps our roles to the file's column names, e.g.
    ``{"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "ts"}``.
    ``rating`` and ``timestamp`` are optional: map them to ``None`` or leave them out when the
    file has no such column under the default name.
    """
    df = read_table(path, sep=sep)
    cols = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}
    if columns:
        unknown = set(columns) - set(cols)
        if unknown:
            raise ValueError(f"unknown column roles {sorted(unknown)}; use {sorted(cols)}")
        cols.update(columns)  # type: ignore[arg-type]
    # Optional roles that were not mapped explicitly and are absent are dropped.
    for role in ("rating", "timestamp"):
        if (columns is None or role not in columns) and cols[role] not in df.columns:
            cols[role] = None  # type: ignore[assignment]
    return Interactions.from_frame(
        df,
        user_col=cols["user"],
        item_col=cols["item"],
        rating_col=cols["rating"],
        timestamp_col=cols["timestamp"],
        source=str(path),
        duplicates=duplicates,
    )


# ---------------------------------------------------------------- RecBole atomic files
_ATOMIC_TYPES = {"token", "token_seq", "float", "float_seq"}


def read_atomic(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a RecBole atomic file (tab-separated, header ``name:type``).

    Returns the frame with plain column names and a ``{name: type}`` dict. ``token_seq``
    columns become lists of strings; ``float`` columns are parsed as numbers.
    """
    path = Path(path)
    df = read_table(path, sep="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
    types: dict[str, str] = {}
    names = []
    for col in df.columns:
        if ":" not in col:
            raise DataError("atomic header must be 'name:type'", source=path, column=col)
        name, typ = col.rsplit(":", 1)
        if typ not in _ATOMIC_TYPES:
            raise DataError(f"unknown atomic type {typ!r}; expected one of "
                            f"{sorted(_ATOMIC_TYPES)}", source=path, column=col)
        names.append(name)
        types[name] = typ
    df.columns = names
    for name, typ in types.items():
        if typ == "token_seq":
            df[name] = df[name].fillna("").str.split()
        elif typ == "float":
            num = pd.to_numeric(df[name], errors="coerce")
            bad = num.isna() & df[name].notna()
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0]) + 1
                raise DataError(f"non-numeric value {df[name].iloc[row - 1]!r}", source=path,
                                column=name, row=row)
            df[name] = num
    return df, types


def load_atomic_interactions(path: str | Path, *, duplicates: str = "error") -> Interactions:
    """Load a RecBole ``.inter`` file (user_id, item_id, optional rating and timestamp)."""
    df, _ = read_atomic(path)
    return Interactions.from_frame(
        df,
        user_col="user_id",
        item_col="item_id",
        rating_col="rating" if "rating" in df.columns else None,
        timestamp_col="timestamp" if "timestamp" in df.columns else None,
        source=str(path),
        duplicates=duplicates,
    )


def load_catalog(path: str | Path, *, item_col: str = "item", sep: str | None = None
                 ) -> ItemCatalog:
    """Load an item catalog (id column plus text/feature columns) from CSV/TSV/Parquet/atomic."""
    path = Path(path)
    if path.suffix == ".item":
        df, _ = read_atomic(path)
        return ItemCatalog.from_frame(df, item_col="item_id", source=str(path))
    return ItemCatalog.from_frame(read_table(path, sep=sep), item_col=item_col, source=str(path))


def load_user_table(path: str | Path, *, user_col: str = "user") -> UserTable:
    path = Path(path)
    if path.suffix == ".user":
        df, _ = read_atomic(path)
        return UserTable.from_frame(df, user_col="user_id", source=str(path))
    return UserTable.from_frame(read_table(path), user_col=user_col, source=str(path))


def write_atomic(df: pd.DataFrame, types: Mapping[str, str], path: str | Path) -> None:
    """Write a RecBole atomic file atomically (header ``name:type``)."""
    from explorec._io import atomic_path

    out = df.copy()
    for name, typ in types.items():
        if typ.endswith("_seq"):
            out[name] = out[name].map(lambda v: " ".join(map(str, v)))
    out.columns = [f"{c}:{types[c]}" for c in out.columns]
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
