"""The interaction log: external <-> internal id maps, ratings, timestamps, CSR matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from explorec._hashing import hash64
from explorec.errors import DataError
from explorec.ids import FORBIDDEN_PATTERN, MAX_ID_LENGTH, id_problem


@dataclass(frozen=True)
class IdMap:
    """Dense internal ids ``0..n-1`` for external ids (always strings)."""

    ids: pd.Index

    @classmethod
    def from_values(cls, values: Sequence[str] | np.ndarray) -> IdMap:
        """Ids in the given order (internal id ``n`` is ``values[n]``)."""
        return cls(pd.Index(np.asarray(values, dtype=object), dtype=object))

    @classmethod
    def sorted(cls, values: Sequence[str] | np.ndarray) -> IdMap:
        """The distinct ``values`` in a canonical order that depends only on which ids exist:
        numerically when every id is an integer (``"2" < "10"``), else by string.

        Loaders use this, so internal ids (and everything seeded that reads them: splits,
        tie keys) never depend on the order of a file's rows.
        """
        uniq = pd.unique(np.asarray(values, dtype=object))
        strs = pd.Series(uniq, dtype=object).astype(str)
        if len(strs) and strs.str.fullmatch(r"[+-]?\d{1,18}").all():
            frame = pd.DataFrame({"n": strs.astype(np.int64), "s": strs})
            order = frame.sort_values(["n", "s"], kind="stable").index.to_numpy()
        else:
            order = np.argsort(strs.to_numpy(dtype=object), kind="stable")
        return cls.from_values(strs.to_numpy(dtype=object)[order])

    def __len__(self) -> int:
        return len(self.ids)

    def to_internal(self, external: Sequence[object] | np.ndarray, *, what: str = "id") -> np.ndarray:
        """Map external ids to internal ids; raises naming the first unknown id."""
        ext = np.asarray([str(e) for e in external], dtype=object)
        idx = self.ids.get_indexer(ext)
        if (idx < 0).any():
            bad = ext[np.flatnonzero(idx < 0)[0]]
            raise DataError(f"unknown {what} {bad!r}")
        return idx.astype(np.int64)

    def to_external(self, internal: np.ndarray) -> np.ndarray:
        return self.ids.values[np.asarray(internal, dtype=np.int64)]

    def __contains__(self, external: object) -> bool:
        return str(external) in self.ids


RowLocator = Callable[[int], tuple[str, int]]
"""Maps a 0-based row of the rows being built to ``(source, 1-based row in that source)``."""


@dataclass(frozen=True)
class Interactions:
    """An interaction log over a fixed universe of users and items.

    ``user`` and ``item`` hold internal ids; ``users`` and ``items`` map them to external
    ids. Subsets (splits, filters) keep the same id maps, so matrices of a train, valid and
    test part line up.
    """

    users: IdMap
    items: IdMap
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    source: str = "<memory>"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.user)
        if len(self.item) != n:
            raise DataError("user and item arrays differ in length", source=self.source)
        for name in ("rating", "timestamp"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} array differs in length", source=self.source)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = "rating",
        timestamp_col: str | None = "timestamp",
        source: str = "<frame>",
        duplicates: str = "error",
        users: IdMap | None = None,
        items: IdMap | None = None,
        max_id_length: int | None = None,
    ) -> Interactions:
        """Build from a DataFrame, validating every column.

        ``duplicates`` says what to do with repeated (user, item) pairs: ``"error"`` (name the
        rows), ``"keep"``, ``"first"`` or ``"last"`` (by timestamp when present, else by row),
        or ``"sum"`` (one row per pair: ratings summed, or counted when there is no rating
        column; the latest timestamp). Ids longer than ``max_id_length`` characters (default
        :data:`MAX_ID_LENGTH`) are refused. Row numbers in errors are 1-based data rows (the
        header is not counted).

        The result depends only on the rows' contents, not their order: ids are numbered in
        :meth:`IdMap.sorted` order and, when there are timestamps, rows are stored in
        :meth:`time_order` (by user, then time; rows sharing a timestamp in a fixed
        pseudo-random order, so that neither the file nor the item ids impose a sequence on
        them). Without timestamps the file's row order is kept: it is the only record of which
        interaction came first.
        """
        if duplicates not in DUPLICATE_RULES:
            raise ValueError(f"duplicates must be one of {'|'.join(DUPLICATE_RULES)}, "
                             f"not {duplicates!r}")
        if len(df) == 0:
            raise DataError("no interactions (empty file or table)", source=source)
        for col in (user_col, item_col, rating_col, timestamp_col):
            if col is not None and col not in df.columns:
                raise DataError(
                    f"missing column; found columns {list(map(str, df.columns))}",
                    source=source,
                    column=col,
                )
        if not df.columns.is_unique:
            dup = df.columns[df.columns.duplicated()][0]
            raise DataError("duplicate column name", source=source, column=str(dup))
        user_ext = clean_ids(df[user_col], source=source, column=user_col,
                             max_length=max_id_length)
        item_ext = clean_ids(df[item_col], source=source, column=item_col,
                             max_length=max_id_length)
        rating = None
        if rating_col is not None:
            rating = _numeric(df[rating_col], source=source, column=rating_col).astype(np.float32)
        timestamp = None
        if timestamp_col is not None:
            timestamp = _timestamps(df[timestamp_col], source=source, column=timestamp_col)

        user_codes, user_ids = factorize_ids(user_ext)
        item_codes, item_ids = factorize_ids(item_ext)
        return cls.from_codes(
            user_codes, user_ids, item_codes, item_ids, rating, timestamp,
            user_col=user_col, item_col=item_col, source=source, duplicates=duplicates,
            users=users, items=items, copy=False,
        )

    @classmethod
    def from_codes(
        cls,
        user: np.ndarray,
        user_ids: np.ndarray,
        item: np.ndarray,
        item_ids: np.ndarray,
        rating: np.ndarray | None = None,
        timestamp: np.ndarray | None = None,
        *,
        user_col: str = "user",
        item_col: str = "item",
        source: str = "<arrays>",
        duplicates: str = "error",
        users: IdMap | None = None,
        items: IdMap | None = None,
        locate: RowLocator | None = None,
        copy: bool = True,
    ) -> Interactions:
        """Build from compact arrays: per-row integer codes into vocabularies of distinct,
        already cleaned external ids (:func:`clean_ids` then :func:`factorize_ids`), ratings
        and timestamps (seconds). :meth:`from_frame` cleans a frame's columns and calls this,
        and so does the Parquet-directory reader, so both follow the same rules: the
        ``duplicates`` policy, :meth:`IdMap.sorted` id maps over the ids the rows use, and
        rows in :meth:`time_order` when there are timestamps (row order kept otherwise).

        ``locate`` maps a 0-based row to ``(source, 1-based row)`` for error messages (a
        directory's rows live in several files); by default ``(source, row + 1)``.
        ``copy=False`` hands the arrays over: they are then reused in place (ids mapped and
        rows sorted inside them), which keeps the peak memory near one set of arrays.
        """
        if duplicates not in DUPLICATE_RULES:
            raise ValueError(f"duplicates must be one of {'|'.join(DUPLICATE_RULES)}, "
                             f"not {duplicates!r}")
        where = locate if locate is not None else (lambda r: (source, r + 1))
        user = np.asarray(user, dtype=np.int64)
        item = np.asarray(item, dtype=np.int64)
        user_ids = np.asarray(user_ids, dtype=object)
        item_ids = np.asarray(item_ids, dtype=object)
        n = len(user)
        if n == 0:
            raise DataError("no interactions (empty file or table)", source=source)
        if len(item) != n or any(a is not None and len(a) != n for a in (rating, timestamp)):
            raise DataError("user, item, rating and timestamp arrays differ in length",
                            source=source)
        for codes, ids, col in ((user, user_ids, user_col), (item, item_ids, item_col)):
            if n and (codes.min() < 0 or codes.max() >= len(ids)):
                raise DataError(f"codes outside the {len(ids):,} ids given", source=source,
                                column=col)
            if not pd.Index(ids).is_unique:
                raise DataError("the ids given are not distinct", source=source, column=col)
        if rating is not None:
            rating = np.asarray(rating, dtype=np.float32)
        if timestamp is not None:
            timestamp = np.asarray(timestamp, dtype=np.float64)
        for name, arr in (("rating", rating), ("timestamp", timestamp)):
            if arr is not None and not np.isfinite(arr).all():
                src, row = where(int(np.flatnonzero(~np.isfinite(arr))[0]))
                raise DataError(f"non-finite {name}", source=src, row=row)

        keep: np.ndarray | slice = slice(None)
        pair = _pair_keys(user, item, len(item_ids))
        # is any pair repeated? a sorted copy answers in 9 bytes a row (a hash table of every
        # row would take ~30); the rows are only marked when some are
        ordered = np.sort(pair)
        repeated = bool((ordered[1:] == ordered[:-1]).any())
        del ordered
        dup = pd.Series(pair).duplicated(keep=False).to_numpy() if repeated else None
        if dup is not None:
            if duplicates == "error":
                r0 = int(np.flatnonzero(dup)[0])
                r1 = int(np.flatnonzero(pair == pair[r0])[1])
                (src0, row0), (src1, row1) = where(r0), where(r1)
                rows = (f"rows {row0} and {row1}" if src0 == src1
                        else f"row {row0} of {src0} and row {row1}")
                raise DataError(
                    f"duplicate (user, item) pair ({user_ids[user[r0]]!r}, "
                    f"{item_ids[item[r0]]!r}) in {rows}; pass "
                    "duplicates='first'|'last'|'sum'|'keep' (--duplicates on the command line)",
                    source=src1,
                    row=row1,
                )
            if duplicates in ("first", "last"):
                # by time, then by rating: which row of a pair is kept depends on the rows'
                # contents, not on their order in the file
                keys = [np.arange(n)]
                if rating is not None:
                    keys.append(rating)
                if timestamp is not None:
                    keys.append(timestamp)
                order = np.lexsort(tuple(keys))
                first = ~pd.Series(pair[order]).duplicated(keep=duplicates).to_numpy()
                keep = np.zeros(n, dtype=bool)
                keep[order[first]] = True
            elif duplicates == "sum":
                codes, _ = pd.factorize(pair)
                first_row = np.full(codes.max() + 1, n)
                np.minimum.at(first_row, codes, np.arange(n))
                keep = np.zeros(n, dtype=bool)
                keep[first_row] = True
                total = np.bincount(codes, weights=rating if rating is not None else None)
                rating = total[codes].astype(np.float32)
                if timestamp is not None:
                    latest = np.full(codes.max() + 1, -np.inf)
                    np.maximum.at(latest, codes, timestamp)
                    timestamp = latest[codes]
        del pair, dup

        if not isinstance(keep, slice):  # new, compact arrays: ours to overwrite
            user, item = user[keep], item[keep]
            rating = rating[keep] if rating is not None else None
            timestamp = timestamp[keep] if timestamp is not None else None
        elif copy:
            rating = rating.copy() if rating is not None else None
            timestamp = timestamp.copy() if timestamp is not None else None
        # arrays handed over may still be read-only views (pandas' copy-on-write)
        owned = not copy or not isinstance(keep, slice)
        user, item = (a if a.flags.writeable else a.copy() for a in (user, item))
        rating, timestamp = (a if a is None or a.flags.writeable else a.copy()
                             for a in (rating, timestamp))
        if users is None:
            users = IdMap.sorted(user_ids[np.bincount(user, minlength=len(user_ids)) > 0])
        if items is None:
            items = IdMap.sorted(item_ids[np.bincount(item, minlength=len(item_ids)) > 0])
        user = _to_internal(users, user_ids, user, f"user (column {user_col!r})", in_place=owned)
        item = _to_internal(items, item_ids, item, f"item (column {item_col!r})", in_place=owned)
        if timestamp is not None:
            order = _time_sort(user, item, timestamp, rating)
            # one array at a time, in place: the peak holds one reordered copy, not four
            for arr in (user, item, timestamp, rating):
                if arr is not None:
                    arr[:] = arr[order]
            del order
        return cls(users=users, items=items, user=user, item=item, rating=rating,
                   timestamp=timestamp, source=source)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def matrix(self, *, binary: bool = True, dtype: type = np.float32) -> sp.csr_matrix:
        """User x item CSR matrix over the full universe (1.0 per interaction, or ratings)."""
        key = ("matrix", binary, np.dtype(dtype).str)
        if key not in self._cache:
            if binary or self.rating is None:
                data = np.ones(len(self), dtype=dtype)
            else:
                data = self.rating.astype(dtype)
            m = sp.csr_matrix(
                (data, (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=dtype
            )
            m.sum_duplicates()
            if binary:
                m.data[:] = 1
            m.sort_indices()
            self._cache[key] = m
        return self._cache[key]

    def time_order(self) -> np.ndarray:
        """Row indices by user, then time; rows of a user that share a timestamp in a fixed
        pseudo-random order (:func:`tie_order`: a hash of user and item ids, so no order is
        read into them). Without timestamps: by user, then row order."""
        if self.timestamp is None:
            return np.lexsort((np.arange(len(self)), self.user))
        return np.lexsort((np.arange(len(self)), tie_order(self.user, self.item),
                           self.timestamp, self.user))

    @cached_property
    def active_users(self) -> np.ndarray:
        """Internal ids of users with at least one interaction here, sorted."""
        return np.unique(self.user)

    @cached_property
    def active_items(self) -> np.ndarray:
        return np.unique(self.item)

    def subset(self, mask: np.ndarray) -> Interactions:
        """Rows where ``mask`` is true (boolean mask or integer index), same id maps."""
        return Interactions(
            users=self.users,
            items=self.items,
            user=self.user[mask],
            item=self.item[mask],
            rating=self.rating[mask] if self.rating is not None else None,
            timestamp=self.timestamp[mask] if self.timestamp is not None else None,
            source=self.source,
        )

    def concat(self, other: Interactions) -> Interactions:
        if other.users is not self.users or other.items is not self.items:
            raise ValueError("can only concatenate interactions over the same id maps")

        def cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return None if a is None or b is None else np.concatenate([a, b])

        return Interactions(
            users=self.users,
            items=self.items,
            user=np.concatenate([self.user, other.user]),
            item=np.concatenate([self.item, other.item]),
            rating=cat(self.rating, other.rating),
            timestamp=cat(self.timestamp, other.timestamp),
            source=self.source,
        )

    def compact(self) -> Interactions:
        """Drop users and items with no interactions and renumber them densely."""
        u_keep, u_new = np.unique(self.user, return_inverse=True)
        i_keep, i_new = np.unique(self.item, return_inverse=True)
        return Interactions(
            users=IdMap(self.users.ids[u_keep]),
            items=IdMap(self.items.ids[i_keep]),
            user=u_new.astype(np.int64),
            item=i_new.astype(np.int64),
            rating=self.rating,
            timestamp=self.timestamp,
            source=self.source,
        )

    # ------------------------------------------------------------------ filters
    def filter_rating(self, threshold: float) -> Interactions:
        """Keep interactions with rating >= threshold (ids are kept; call ``compact`` to drop)."""
        if self.rating is None:
            raise DataError("cannot filter by rating: no rating column", source=self.source)
        return self.subset(self.rating >= threshold)

    def k_core(self, k: int, *, user_k: int | None = None, item_k: int | None = None) -> Interactions:
        """Iteratively drop users and items with fewer than k interactions, then compact."""
        uk = k if user_k is None else user_k
        ik = k if item_k is None else item_k
        mask = np.ones(len(self), dtype=bool)
        while True:
            ucount = np.bincount(self.user[mask], minlength=self.n_users)
            icount = np.bincount(self.item[mask], minlength=self.n_items)
            new = mask & (ucount[self.user] >= uk) & (icount[self.item] >= ik)
            if new.sum() == mask.sum():
                break
            mask = new
        if not mask.any():
            raise DataError(f"the {uk}/{ik}-core is empty", source=self.source)
        return self.subset(mask).compact()

    # ------------------------------------------------------------------ export
    def to_frame(self) -> pd.DataFrame:
        cols: dict[str, np.ndarray] = {
            "user": self.users.to_external(self.user),
            "item": self.items.to_external(self.item),
        }
        if self.rating is not None:
            cols["rating"] = self.rating
        if self.timestamp is not None:
            cols["timestamp"] = self.timestamp
        return pd.DataFrame(cols)

    def describe(self) -> dict[str, float | int]:
        n = len(self)
        return {
            "users": len(self.active_users),
            "items": len(self.active_items),
            "interactions": int(n),
            "density": float(n / max(1, len(self.active_users) * len(self.active_items))),
            "has_rating": self.rating is not None,
            "has_timestamp": self.timestamp is not None,
        }


# ---------------------------------------------------------------------- validation
_SEQUENCE_SALT = 0x5E9_0E0  # tie_order's seed: a fixed one, it is a canonical order


def tie_order(user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Keys that order interactions sharing a timestamp: a seeded hash of (user, item), the
    same for a pair whatever the file's row order, unrelated to how ids sort."""
    out = np.empty(len(user), dtype=np.uint64)
    for a in range(0, len(user), _HASH_BLOCK):  # elementwise: blocks bound the temporaries
        out[a:a + _HASH_BLOCK] = hash64(user[a:a + _HASH_BLOCK], item[a:a + _HASH_BLOCK],
                                        _SEQUENCE_SALT)
    return out


_HASH_BLOCK = 1 << 20



DUPLICATE_RULES = ("error", "first", "last", "sum", "keep")


def show_value(v: object) -> str:
    """A cell value as a reader would write it: ``'abc'``, ``1.5``, ``nan`` (no numpy reprs)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str):
        return repr(v if len(v) <= 60 else v[:57] + "...")
    return str(v)


def clean_ids(col: pd.Series, *, source: str, column: str, max_length: int | None = None
              ) -> np.ndarray:
    """External ids as stripped strings; rejects missing, empty, too long (``max_length``,
    default :data:`MAX_ID_LENGTH`) and control-character ids, naming the file, column and row.
    """
    limit = MAX_ID_LENGTH if max_length is None else int(max_length)
    col = col.reset_index(drop=True)
    values = col.to_numpy()
    missing = pd.isna(col).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise DataError("missing id", source=source, column=column, row=row)
    if col.dtype.kind not in "iuf":
        # Text read from CSV/TSV: a column of numbers with decimal points is a float column.
        text = col.astype(str).str.strip()
        num = pd.to_numeric(text, errors="coerce")
        if num.notna().all() and text.str.contains(r"[.eE]", regex=True).any():
            col, values = num, num.to_numpy()
    if col.dtype.kind == "f":
        frac = np.modf(values.astype(np.float64))[0] != 0
        if frac.any():
            row = int(np.flatnonzero(frac)[0]) + 1
            raise DataError(f"non-integer numeric id {show_value(values[row - 1])}",
                            source=source, column=column, row=row)
        values = values.astype(np.int64)
    strs = pd.Series(values).astype(str).str.strip()
    lengths = strs.str.len().to_numpy()
    long = lengths > limit
    if long.any():
        row = int(np.flatnonzero(long)[0]) + 1
        raise DataError(f"id of {int(lengths[row - 1]):,} characters is longer than the limit "
                        f"of {limit} (raise it with max_id_length / --max-id-length)",
                        source=source, column=column, row=row)
    bad = (lengths == 0) | strs.str.contains(FORBIDDEN_PATTERN, regex=True).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        problem = id_problem(strs.iloc[row - 1], limit)
        what = ("empty id (blank once surrounding whitespace is stripped)" if lengths[row - 1] == 0
                else f"invalid id {show_value(values[row - 1])}: it {problem} (the id rule: explorec.ids)")
        raise DataError(what, source=source, column=column, row=row)
    return strs.to_numpy(dtype=object)


def factorize_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cleaned external ids (strings, as :func:`clean_ids` returns them) -> (int64 codes,
    distinct ids in order of first appearance, an object array of ``str``)."""
    codes, uniques = pd.factorize(np.asarray(ids, dtype=object))
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


def _pair_keys(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 per (user code, item code) pair, equal exactly when the pairs are."""
    n_users = int(user.max()) + 1 if len(user) else 0
    if n_users * max(1, n_items) < 2**62:
        return user * np.int64(max(1, n_items)) + item
    return pd.factorize(pd.MultiIndex.from_arrays([user, item]))[0].astype(np.int64)


def _time_sort(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray,
               rating: np.ndarray | None) -> np.ndarray:
    """The row order of :meth:`Interactions.from_frame`: by user, time, :func:`tie_order`,
    rating, then row — ``np.lexsort((rating, tie_order, timestamp, user))`` exactly, computed
    as a sort by (user, time) and a second sort of the rows that share a (user, time) only
    (hashes for those rows alone)."""
    order = np.lexsort((timestamp, user))
    u = user[order]  # one gathered column at a time
    same = u[1:] == u[:-1]  # row k+1 ties with row k
    del u
    t = timestamp[order]
    same &= t[1:] == t[:-1]
    del t
    if not same.any():
        return order
    tied = np.flatnonzero(np.concatenate(([False], same)) | np.concatenate((same, [False])))
    group = np.cumsum(np.concatenate(([True], ~same)))[tied]
    del same
    rows = order[tied]  # within a group in row order: the lexsort is stable
    keys = [tie_order(user[rows], item[rows]), group]
    if rating is not None:
        keys.insert(0, rating[rows])
    order[tied] = rows[np.lexsort(tuple(keys))]
    return order


def _to_internal(ids: IdMap, vocab: np.ndarray, codes: np.ndarray, what: str, *,
                 in_place: bool = False) -> np.ndarray:
    """Codes into ``vocab`` -> internal ids of ``ids`` (written over ``codes`` when
    ``in_place``); names the first row's unknown id the way :meth:`IdMap.to_internal` does."""
    lookup = ids.ids.get_indexer(vocab).astype(np.int64, copy=False)
    if (lookup < 0).any():
        unknown = lookup[codes] < 0
        if unknown.any():
            bad = vocab[codes[np.flatnonzero(unknown)[0]]]
            raise DataError(f"unknown {what} {bad!r}")
    if not in_place:
        return lookup[codes]
    # codes are valid indices (checked on entry), so mode="clip" changes nothing but lets
    # numpy write element by element into the index array itself, without a buffer
    return np.take(lookup, codes, out=codes, mode="clip")


def _numeric(col: pd.Series, *, source: str, column: str) -> np.ndarray:
    col = col.reset_index(drop=True)
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna().to_numpy() | ~np.isfinite(num.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(
            f"non-numeric value {show_value(col.iloc[row - 1])}", source=source, column=column,
            row=row)
    return num.to_numpy(dtype=np.float64)


def number_count(col: pd.Series) -> int:
    """How many values of a timestamp column read as numbers (:func:`_timestamps` reads the
    column as numbers when at least half of them do)."""
    return int(pd.to_numeric(col, errors="coerce").notna().sum())


def _timestamps(col: pd.Series, *, source: str, column: str, numbers: bool | None = None
                ) -> np.ndarray:
    """Seconds since the epoch; accepts numbers, ISO date strings or a datetime column.

    A column whose values are mostly numbers is read as numbers, so a stray ``nan`` or word
    is reported at its own row rather than making every number a bad date. ``numbers`` gives
    that decision when the caller made it over more rows than ``col`` holds (a column read in
    batches).
    """
    col = col.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        # a datetime column (Parquet timestamps): its instants, not its integer ticks
        parsed = pd.to_datetime(col, utc=True)
    else:
        if numbers is None:
            numbers = len(col) > 0 and number_count(col) / len(col) >= 0.5
        if numbers:
            return _numeric(col, source=source, column=column)
        parsed = pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(
            f"not a number or a date: {show_value(col.iloc[row - 1])}", source=source,
            column=column, row=row)
    return (parsed - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()


def normalized_item_vectors(train: sp.csr_matrix) -> sp.csr_matrix:
    """Items as L2-normalised vectors of their training users (for intra-list diversity)."""
    items = train.T.tocsr().astype(np.float64)
    norms = np.sqrt(np.asarray(items.multiply(items).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.diags(inv) @ items
