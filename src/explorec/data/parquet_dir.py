"""Interactions from a directory of Parquet files (hive-partitioned or flat), in bounded memory.

``dir/part-0.parquet, dir/part-1.parquet`` or ``dir/user_bucket=3/x.parquet``: every file under
the directory is one slice of the log. Hive partition keys (``key=value`` directory names) are
columns like any other, so a mapped column may live in the path (``--columns
timestamp=day`` for ``dir/day=2024-01-03/...``). Names starting with ``.`` or ``_`` (Spark's
``_SUCCESS``, ``.crc`` files) are skipped; any other file that is not ``.parquet``/``.pq`` is an
error naming it.

The files are read with :mod:`pyarrow.dataset`, only the mapped columns, a batch at a time.
Each batch becomes compact arrays at once — id columns as integer codes into a vocabulary of
the raw values seen so far (``pandas.factorize`` per batch, merged into the vocabulary), ratings
as float32, timestamps as float64 — so the peak memory is about the final arrays plus one
batch, never a frame of strings for every row. Ids are then cleaned once per distinct value
(:func:`~explorec.data.interactions.clean_ids` on the vocabulary) and the log is built by
:meth:`Interactions.from_codes`, the constructor :meth:`Interactions.from_frame` also uses: the
result is the one a single file holding the same rows gives, whatever the split into files or
the batch size. Without a timestamp column the row order is the files' (sorted by path), then
each file's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorec.data.interactions import (
    DUPLICATE_RULES,
    Interactions,
    _numeric,
    _timestamps,
    clean_ids,
    factorize_ids,
    number_count,
)
from explorec.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
IGNORED_PREFIXES = (".", "_")
DEFAULT_BATCH_SIZE = 1 << 18
#: peak bytes per row of reading and building (codes, ratings, timestamps, then the
#: duplicate check and time sort of :meth:`Interactions.from_codes`), plus a fixed part for
#: the modules, one batch and the id vocabularies: measured by ``benchmarks/parquet_dir.py``
#: (60 bytes/row at 20M rows, 1M users) and rounded up. Ids are assumed to repeat (distinct
#: ids a small share of the rows); every distinct text id costs a few hundred bytes more.
BYTES_PER_ROW = 72
FIXED_BYTES = 256 * 2**20

_ALLOWED = {
    "user": ("number", "string", "boolean"),
    "item": ("number", "string", "boolean"),
    "rating": ("number", "string", "boolean", "decimal"),
    "timestamp": ("number", "string", "temporal", "decimal"),
}


def is_parquet_dir(path: str | Path) -> bool:
    """True for a directory that holds at least one ``.parquet``/``.pq`` file (at any depth)."""
    p = Path(path)
    return p.is_dir() and any(f.suffix.lower() in PARQUET_SUFFIXES for f in _data_files(p))


def _data_files(root: Path) -> Iterator[Path]:
    """Files under ``root``, skipping any path with a part named ``.x`` or ``_x``."""
    for f in root.rglob("*"):
        rel = f.relative_to(root).parts
        if any(part.startswith(IGNORED_PREFIXES) for part in rel):
            continue
        if f.is_file():
            yield f


def parquet_files(root: str | Path) -> list[Path]:
    """The data files of a Parquet directory, sorted by path; raises naming the first file
    that is not Parquet, or the directory when it holds none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("not a directory", source=root)
    files = sorted(_data_files(root), key=lambda f: f.relative_to(root).parts)
    for f in files:
        if f.suffix.lower() not in PARQUET_SUFFIXES:
            raise DataError("not a Parquet file (a directory of interactions holds only "
                            ".parquet/.pq files; names starting with '.' or '_' are skipped)",
                            source=f)
    if not files:
        raise DataError("no .parquet files in the directory", source=root)
    return files


def _type_class(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    for name, test in (("number", lambda x: pa.types.is_integer(x) or pa.types.is_floating(x)),
                       ("string", lambda x: pa.types.is_string(x) or pa.types.is_large_string(x)
                        or getattr(pa.types, "is_string_view", lambda _: False)(x)),
                       ("boolean", pa.types.is_boolean), ("decimal", pa.types.is_decimal),
                       ("temporal", pa.types.is_temporal)):
        if test(t):
            return name
    return str(t)


@dataclass
class _Part:
    """One file of the directory."""

    path: Path
    fragment: Any  # pyarrow.dataset.ParquetFileFragment
    rows: int
    start: int  # first global row
    schema: dict[str, Any]  # file column -> arrow type
    keys: dict[str, str | None]  # partition key -> value from the path


def _partition_keys(root: Path, f: Path) -> dict[str, str | None]:
    """Hive ``key=value`` directory names between ``root`` and ``f``, values URI-decoded as
    pyarrow writes them and kept as text (as a CSV would hold them, so ``007`` stays
    ``007``); ``__HIVE_DEFAULT_PARTITION__`` is a missing value."""
    from urllib.parse import unquote

    keys: dict[str, str | None] = {}
    for part in f.relative_to(root).parts[:-1]:
        if "=" in part:
            key, value = part.split("=", 1)
            keys[unquote(key)] = None if value == HIVE_NULL else unquote(value)
    return keys


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _parts(root: Path, files: list[Path]) -> list[_Part]:
    """Every file's footer (rows, schema) and partition keys, in order."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    # No dataset-wide schema: files are checked one by one (_check_columns) and each is
    # scanned with its own, so a mismatch is reported with the file that has it.
    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet")
        fragments = list(dataset.get_fragments())
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable Parquet file: {e}", source=_named(e, files, root)) from e
    out: list[_Part] = []
    start = 0
    for f, frag in zip(files, fragments, strict=True):
        try:
            rows = int(frag.metadata.num_rows)
            schema = frag.physical_schema
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"not a readable Parquet file: {e}", source=f) from e
        seen: set[str] = set()
        for name in schema.names:
            if name in seen:
                raise DataError("duplicate column name in the file", source=f, column=name)
            seen.add(name)
        out.append(_Part(f, frag, rows, start, {n: schema.field(n).type for n in schema.names},
                         _partition_keys(root, f)))
        start += rows
    return out


def _named(e: BaseException, files: list[Path], root: Path) -> Path:
    """The file an arrow error message names, else the directory."""
    text = str(e)
    return next((f for f in files if str(f) in text), root)


def _check_columns(parts: list[_Part], roles: Mapping[str, str]) -> None:
    """Every file has every mapped column (in the file or in its path, not both), of one
    kind of type across the files."""
    first: dict[str, tuple[str, Path]] = {}
    for p in parts:
        found = sorted({*p.schema, *p.keys})
        for role, col in roles.items():
            in_file, in_path = col in p.schema, col in p.keys
            if in_file and in_path:
                raise DataError(f"the column is both in the file and a partition key of its "
                                f"path ({col}=...)", source=p.path, column=col)
            if not (in_file or in_path):
                raise DataError(f"missing column; found columns {found}", source=p.path,
                                column=col)
            kind = _type_class(p.schema[col]) if in_file else "string"
            if kind not in _ALLOWED[role]:
                raise DataError(f"a column of type {p.schema[col]} cannot hold {role}s",
                                source=p.path, column=col)
            if col not in first:
                first[col] = (kind, p.path)
            elif first[col][0] != kind:
                what = f"of type {p.schema[col]}" if in_file else "a partition key (text)"
                raise DataError(f"schema mismatch: the column is {what} here but {first[col][0]} "
                                f"in {first[col][1]}", source=p.path, column=col)


def _detail(e: DataError) -> str:
    """A :class:`DataError`'s message without its ``file ..., column ..., row ...:`` prefix."""
    prefix = str(DataError("", source=e.source, column=e.column, row=e.row))
    text = str(e)
    return text[len(prefix):] if text.startswith(prefix) else text


def _series(arr: Any) -> pd.Series:
    import pyarrow as pa

    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr.to_pandas()


def _uniques(values: Any) -> np.ndarray:
    """``pandas.factorize`` uniques as a numpy array that concatenates across batches and
    files of one kind of type without changing a value."""
    u = np.asarray(values)
    if u.dtype.kind == "u":
        return u.astype(np.int64) if (len(u) == 0 or u.max() < 2**63) else u.astype(object)
    if u.dtype.kind == "i":
        return u.astype(np.int64, copy=False)
    if u.dtype.kind == "f":
        return u.astype(np.float64, copy=False)
    if u.dtype.kind == "b":
        return u
    return np.asarray(values, dtype=object)


@dataclass
class _IdColumn:
    """One id column: per-row int64 codes into a vocabulary of its raw values in order of
    first appearance, grown batch by batch."""

    n: int
    codes: np.ndarray = field(init=False)
    vocab: np.ndarray | None = None
    pending: list[np.ndarray] = field(default_factory=list)
    pending_len: int = 0
    filled: int = 0
    mark: int = 0  # rows [mark, filled) hold codes into vocab + pending, not yet merged

    def __post_init__(self) -> None:
        self.codes = np.empty(self.n, dtype=np.int64)

    def add(self, values: pd.Series) -> int | None:
        """Append a batch; returns the batch position of its first missing id, if any."""
        missing = values.isna().to_numpy()
        if missing.any():
            return int(np.flatnonzero(missing)[0])
        codes, uniques = pd.factorize(values)
        offset = (0 if self.vocab is None else len(self.vocab)) + self.pending_len
        self.codes[self.filled:self.filled + len(codes)] = codes + offset
        self.filled += len(codes)
        self.pending.append(_uniques(uniques))
        self.pending_len += len(uniques)
        vocab_len = 0 if self.vocab is None else len(self.vocab)
        if self.pending_len > max(2 * vocab_len, 1 << 20):
            self.merge()
        return None

    def merge(self) -> None:
        """Fold the pending batch uniques into the vocabulary; re-code the rows added since."""
        if not self.pending:
            return
        parts = ([] if self.vocab is None else [self.vocab]) + self.pending
        joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
        g, uniq = pd.factorize(joined)
        rows = self.codes[self.mark:self.filled]
        np.take(g, rows, out=rows, mode="clip")  # valid indices: in place, no buffer
        self.vocab = _uniques(uniq)
        self.pending, self.pending_len, self.mark = [], 0, self.filled

    def finish(self, *, column: str, max_length: int | None,
               locate: Any) -> tuple[np.ndarray, np.ndarray]:
        """(codes, cleaned distinct ids): :func:`clean_ids` on the vocabulary (in order of
        first appearance, so the first bad value is the first bad row's), errors at their row."""
        self.merge()
        assert self.vocab is not None
        try:
            cleaned = clean_ids(pd.Series(self.vocab), source="", column=column,
                                max_length=max_length)
        except DataError as e:
            assert e.row is not None
            src, row = locate(int(np.flatnonzero(self.codes == e.row - 1)[0]))
            raise DataError(_detail(e), source=src, column=column, row=row) from None
        g, ids = factorize_ids(cleaned)  # distinct raw values may clean to one id (" 7", "7")
        codes = self.codes
        np.take(g, codes, out=codes, mode="clip")  # valid indices: in place, no buffer
        return codes, ids


@dataclass
class _FirstError:
    """The first bad row of a value column (errors are raised in :meth:`from_frame`'s order,
    after every row is read)."""

    row: int | None = None
    message: str = ""

    def note(self, start: int, e: DataError) -> None:
        if self.row is None:
            self.row = start + (e.row or 1) - 1
            self.message = _detail(e)


def read_parquet_dir(
    root: str | Path,
    *,
    columns: Mapping[str, str | None] | None = None,
    duplicates: str = "error",
    max_id_length: int | None = None,
    batch_size: int | None = None,
    memory_limit: str | int | float | None = None,
) -> tuple[Interactions, dict[str, str | None]]:
    """Interactions from every Parquet file under ``root`` (see the module docstring), plus
    the role -> column mapping used. ``columns``, ``duplicates`` and ``max_id_length`` as for
    :func:`~explorec.data.readers.load_interactions`; ``batch_size`` rows are read at a time
    (default :data:`DEFAULT_BATCH_SIZE`). Before reading, the rows the files' footers count
    are checked against the memory this process may use (``memory_limit``, else
    ``EXPLOREC_MEMORY_LIMIT`` / ``--memory-limit``, else what the machine has)."""
    from explorec.data.readers import resolve_columns
    from explorec.memory import check_memory, format_bytes

    root = Path(root)
    if duplicates not in DUPLICATE_RULES:
        raise ValueError(f"duplicates must be one of {'|'.join(DUPLICATE_RULES)}, "
                         f"not {duplicates!r}")
    bs = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    files = parquet_files(root)
    parts = _parts(root, files)
    present = {name for p in parts for name in (*p.schema, *p.keys)}
    cols = resolve_columns(columns, present, source=root)
    roles = {role: col for role, col in cols.items() if col is not None}
    _check_columns(parts, roles)
    n = sum(p.rows for p in parts)
    if n == 0:
        raise DataError(f"no data rows in any of the {len(parts)} Parquet files", source=root)
    need = n * BYTES_PER_ROW + FIXED_BYTES + 64 * bs * len(roles)
    check_memory(f"reading {n:,} interactions from {len(parts):,} Parquet files needs "
                 f"~{format_bytes(need)}", need, limit=memory_limit,
                 alternative="read fewer files (a subset of the partitions) or raise "
                 "--memory-limit")

    starts = np.array([p.start for p in parts], dtype=np.int64)

    def locate(r: int) -> tuple[str, int]:
        i = int(np.searchsorted(starts, r, side="right")) - 1
        return str(parts[i].path), r - int(starts[i]) + 1

    ts_col = roles.get("timestamp")
    ts_temporal = ts_col is not None and any(
        _type_class(p.schema[ts_col]) == "temporal" for p in parts if ts_col in p.schema)
    ids = {role: _IdColumn(n) for role in ("user", "item")}
    missing: dict[str, int] = {}
    rating = np.empty(n, dtype=np.float32) if "rating" in roles else None
    timestamp = np.empty(n, dtype=np.float64) if ts_col is not None else None
    bad = {"rating": _FirstError(), "timestamp": _FirstError()}
    numbers = 0
    for start, batch in _batches(parts, list(roles.values()), bs):
        u = batch[roles["user"]]
        miss = ids["user"].add(u)
        if miss is not None:  # nothing outranks the first missing user id: stop here
            src, row = locate(start + miss)
            raise DataError("missing id", source=src, column=roles["user"], row=row)
        if "item" not in missing and (miss := ids["item"].add(batch[roles["item"]])) is not None:
            missing["item"] = start + miss
        if rating is not None:
            try:
                rating[start:start + len(u)] = _numeric(batch[roles["rating"]], source="",
                                                        column=roles["rating"])
            except DataError as e:
                bad["rating"].note(start, e)
        if timestamp is not None and ts_col is not None:
            col = batch[ts_col]
            if not ts_temporal:
                numbers += number_count(col)
            try:
                timestamp[start:start + len(u)] = _timestamps(
                    col, source="", column=ts_col, numbers=None if ts_temporal else True)
            except DataError as e:
                bad["timestamp"].note(start, e)

    def fail(role: str, row: int, message: str) -> DataError:
        src, local = locate(row)
        return DataError(message, source=src, column=roles[role], row=local)

    user_codes, user_ids = ids["user"].finish(column=roles["user"], max_length=max_id_length,
                                              locate=locate)
    if "item" in missing:
        raise fail("item", missing["item"], "missing id")
    item_codes, item_ids = ids["item"].finish(column=roles["item"], max_length=max_id_length,
                                              locate=locate)
    del ids
    if bad["rating"].row is not None:
        raise fail("rating", bad["rating"].row, bad["rating"].message)
    if timestamp is not None and ts_col is not None:
        if not ts_temporal and not numbers / n >= 0.5:
            # mostly not numbers: dates, as a single file's column would be read (second pass)
            for start, batch in _batches(parts, [ts_col], bs):
                col = batch[ts_col]
                try:
                    timestamp[start:start + len(col)] = _timestamps(col, source="", column=ts_col,
                                                                    numbers=False)
                except DataError as e:
                    raise fail("timestamp", start + (e.row or 1) - 1, _detail(e)) from None
        elif bad["timestamp"].row is not None:
            raise fail("timestamp", bad["timestamp"].row, bad["timestamp"].message)
    inter = Interactions.from_codes(
        user_codes, user_ids, item_codes, item_ids, rating, timestamp,
        user_col=roles["user"], item_col=roles["item"], source=str(root),
        duplicates=duplicates, locate=locate, copy=False,
    )
    return inter, cols


def _batches(parts: list[_Part], names: list[str], batch_size: int
             ) -> Iterator[tuple[int, dict[str, pd.Series]]]:
    """(first global row, column -> values) for every batch of every file, in order."""
    import pyarrow as pa

    for p in parts:
        if p.rows == 0:
            continue
        in_file = [c for c in dict.fromkeys(names) if c in p.schema]
        start = p.start
        try:
            for b in p.fragment.to_batches(columns=in_file, batch_size=batch_size,
                                           batch_readahead=1, fragment_readahead=1):
                if b.num_rows == 0:
                    continue
                if start + b.num_rows > p.start + p.rows:
                    raise DataError(f"more rows than the file's footer counts ({p.rows:,})",
                                    source=p.path)
                cols = {c: _series(b.column(c)) for c in in_file}
                for c in names:
                    if c not in cols:
                        cols[c] = pd.Series(np.full(b.num_rows, p.keys.get(c), dtype=object))
                yield start, cols
                start += b.num_rows
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"cannot read: {e}", source=p.path) from e
        if start != p.start + p.rows:
            raise DataError(f"{start - p.start:,} rows read, the file's footer counts "
                            f"{p.rows:,}", source=p.path)
