"""Readers for users' own files: CSV/TSV/Parquet with a column mapping, RecBole atomic files."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from explorec.data.catalog import ItemCatalog, UserTable
from explorec.data.interactions import Interactions, show_value
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
    if path.is_dir():
        raise DataError("is a directory, not a file (a directory of Parquet files holds "
                        "interactions only: --dataset DIR)", source=path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            _check_unique_names(pq.read_schema(path).names, path)
            df = pd.read_parquet(path)
        else:
            if sep is None:
                sep = "\t" if suffix in (".tsv", ".inter", ".item", ".user", ".kg", ".link") else (
                    _sniff(path))
            _check_unique_names(_header(path, sep), path)
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


def _header(path: Path, sep: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return next(csv.reader(f, delimiter=sep), [])


def _check_unique_names(names: list[str], path: Path) -> None:
    """Duplicate column names are an error (pandas would silently rename one 'x.1')."""
    seen: set[str] = set()
    for name in (str(n).strip() for n in names):
        if name in seen:
            raise DataError("duplicate column name in the header", source=path, column=name)
        seen.add(name)


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


INTERACTION_ROLES = ("user", "item", "rating", "timestamp")


def load_interactions(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    sep: str | None = None,
    duplicates: str = "error",
    max_id_length: int | None = None,
    batch_size: int | None = None,
) -> Interactions:
    """Load interactions from CSV/TSV/Parquet, or a directory of Parquet files.

    ``columns`` maps our roles to the file's column names, e.g.
    ``{"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "ts"}``.
    ``rating`` and ``timestamp`` are optional: map them to ``None`` or leave them out when the
    file has no such column under the default name.

    A directory (flat, or hive-partitioned ``dir/key=value/part.parquet``, where a key may be
    a mapped column) is read in bounded memory, ``batch_size`` rows at a time
    (:mod:`explorec.data.parquet_dir`), into the same interactions a single file with its
    rows gives.
    """
    return read_interactions(path, columns=columns, sep=sep, duplicates=duplicates,
                             max_id_length=max_id_length, batch_size=batch_size)[0]


def read_interactions(path: str | Path, *, columns: Mapping[str, str] | None = None,
                      sep: str | None = None, duplicates: str = "error",
                      max_id_length: int | None = None, batch_size: int | None = None
                      ) -> tuple[Interactions, dict[str, str | None]]:
    """:func:`load_interactions` plus the role -> file column mapping it used."""
    if Path(path).is_dir():
        from explorec.data.parquet_dir import read_parquet_dir

        return read_parquet_dir(path, columns=columns, duplicates=duplicates,
                                max_id_length=max_id_length, batch_size=batch_size)
    df = read_table(path, sep=sep)
    cols = resolve_columns(columns, df.columns, source=path)
    inter = Interactions.from_frame(
        df,
        user_col=cols["user"],  # type: ignore[arg-type]
        item_col=cols["item"],  # type: ignore[arg-type]
        rating_col=cols["rating"],
        timestamp_col=cols["timestamp"],
        source=str(path),
        duplicates=duplicates,
        max_id_length=max_id_length,
    )
    return inter, cols


def resolve_columns(columns: Mapping[str, str | None] | None, present: object, *,
                    source: str | Path) -> dict[str, str | None]:
    """Role -> file column for an interaction file: defaults ``user``, ``item``, ``rating``,
    ``timestamp``; optional roles not mapped and not present are dropped."""
    cols: dict[str, str | None] = {r: r for r in INTERACTION_ROLES}
    if columns:
        unknown = sorted(set(columns) - set(cols))
        if unknown:
            raise DataError(f"unknown column role(s) {unknown} in the column mapping; roles are "
                            f"{', '.join(INTERACTION_ROLES)}", source=source)
        cols.update(columns)
    names = {str(c) for c in present}  # type: ignore[attr-defined]
    for role in ("rating", "timestamp"):
        if (columns is None or role not in columns) and cols[role] not in names:
            cols[role] = None
    return cols


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
                raise DataError(f"non-numeric value {show_value(df[name].iloc[row - 1])}",
                                source=path, column=name, row=row)
            df[name] = num
    return df, types


def load_atomic_interactions(path: str | Path, *, duplicates: str = "error",
                             max_id_length: int | None = None) -> Interactions:
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
        max_id_length=max_id_length,
    )


# RecBole's MovieLens item fields -> the names our default text template uses
_RECBOLE_ITEM_FIELDS = {"movie_title": "title", "release_year": "year", "class": "genres"}


def recbole_item_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A RecBole ``.item`` frame with readable text fields: ``movie_title``/``release_year``/
    ``class`` renamed to ``title``/``year``/``genres``; title-like token lists joined by
    spaces (other token lists stay lists, joined with ", " in texts)."""
    out = df.rename(columns={k: v for k, v in _RECBOLE_ITEM_FIELDS.items() if k in df.columns})
    for col in out.columns:
        if col.endswith(("title", "name")) and out[col].map(lambda v: isinstance(v, list)).any():
            out[col] = out[col].map(lambda toks: " ".join(toks) if isinstance(toks, list) else "")
    return out


def load_catalog(path: str | Path, *, item_col: str = "item", sep: str | None = None,
                 columns: Mapping[str, str] | None = None, template: str | None = None,
                 max_id_length: int | None = None) -> ItemCatalog:
    """Load an item catalog (id column plus text/feature columns) from CSV/TSV/Parquet/atomic.

    ``columns`` maps ``item`` to the file's id column and, optionally, text fields to file
    columns (``{"item": "sku", "title": "name"}``: the id is ``sku``, the field ``title`` is
    the file's ``name``). When it names fields besides ``item``, only those are kept.
    ``template`` sets the catalog's text template (e.g. ``"{name}. {description}"``).
    """
    path = Path(path)
    if path.suffix == ".item":
        df, _ = read_atomic(path)
        df = recbole_item_frame(df)
        item_col = "item_id"
    else:
        df = read_table(path, sep=sep)
    df, item_col = _select_columns(df, columns, "item", item_col, path)
    catalog = ItemCatalog.from_frame(df, item_col=item_col, source=str(path),
                                     max_id_length=max_id_length)
    return catalog.with_template(template) if template else catalog


def load_user_table(path: str | Path, *, user_col: str = "user",
                    columns: Mapping[str, str] | None = None,
                    max_id_length: int | None = None) -> UserTable:
    """Load user features (id column plus feature columns); ``columns`` as for
    :func:`load_catalog` with the role ``user``."""
    path = Path(path)
    if path.suffix == ".user":
        df, _ = read_atomic(path)
        user_col = "user_id"
    else:
        df = read_table(path)
    df, user_col = _select_columns(df, columns, "user", user_col, path)
    return UserTable.from_frame(df, user_col=user_col, source=str(path),
                                max_id_length=max_id_length)


def _select_columns(df: pd.DataFrame, columns: Mapping[str, str] | None, role: str,
                    id_col: str, path: Path) -> tuple[pd.DataFrame, str]:
    """Apply an id + fields mapping (``{role: ID_COLUMN, field: COLUMN, ...}``) to a side
    table: the id column it names, and only the fields it names (renamed) when it names any."""
    mapping = dict(columns or {})
    id_col = mapping.pop(role, id_col)
    found = list(map(str, df.columns))
    if id_col not in df.columns:
        raise DataError(f"missing {role} id column; found columns {found} (map it with "
                        f"--{role}-columns {role}=NAME)", source=path, column=id_col)
    if mapping:
        absent = [c for c in mapping.values() if c not in df.columns]
        if absent:
            raise DataError(f"missing column; found columns {found}", source=path,
                            column=absent[0])
        df = df[[id_col, *mapping.values()]].set_axis([id_col, *mapping.keys()], axis=1)
    return df, id_col


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
