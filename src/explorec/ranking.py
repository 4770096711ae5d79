"""The one top-k: exclusions, candidate restriction and the tie rule.

Every ranked list explorec produces (metrics, ``recommend``, ``similar_items``, the service,
the simulator) goes through :func:`topk`. Its tie rule: **ties carry no information**. Items
with equal scores are ordered by a seeded pseudo-random key, a hash of (seed, row id, item
id), so

* a model whose scores are constant over the candidates ranks them in a uniformly random
  order, different for every user, and scores like ``random``;
* the same seed gives the same order (reproducible), and the order does not depend on
  where an item sits in a file (internal ids are sorted by external id, see
  :class:`explorec.data.IdMap`).

>>> import numpy as np
>>> scores = np.array([[0.0, 2.0, 1.0, 2.0]])
>>> topk(scores, 2).shape
(1, 2)
>>> sorted(topk(scores, 2)[0].tolist())  # the two items scored 2.0, in a seeded order
[1, 3]
>>> topk(scores, 3)[0, 2]
np.int64(2)
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from explorec._hashing import hash64

DEFAULT_SEED = 2020
# Tie keys use a salted seed so that they are not the same stream as ``random``'s scores
# for the same seed (a constant model then scores like random, not identically to it).
TIE_SALT = 0x7469_6573  # "ties"
#: above this fraction of non-zero scores, :func:`top_items_sparse` ranks a dense block
SPARSE_SCORES_DENSITY = 0.2

def tie_keys(rows: np.ndarray, cols: np.ndarray, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The tie-break keys :func:`topk` uses (smaller key first among equal scores)."""
    return hash64(rows, cols, seed ^ TIE_SALT)


def external_key(external_id: str) -> int:
    """A stable non-negative 62-bit integer for an external id (for the tie keys of users
    that have no internal id, e.g. new users of the service)."""
    digest = hashlib.blake2b(str(external_id).encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 2


def check_k(k: object, what: str = "k") -> int:
    """``k`` as a positive int, or a ValueError that names it."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"{what} must be a positive integer, got {k!r}")
    if k <= 0:
        raise ValueError(f"{what} must be a positive integer, got {k}")
    return int(k)


def _topk_inputs(scores: np.ndarray, k: int, rows: np.ndarray | None, cols: np.ndarray | None
                 ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """:func:`topk`'s and :func:`top_set`'s arguments checked: float scores with NaN as
    ``-inf``, ``k`` capped at the row length, row ids (n,) and column ids ((m,) or (n, m))."""
    k = check_k(k)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (rows, items), got shape {scores.shape}")
    n, m = scores.shape
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    row_ids = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(row_ids) != n:
        raise ValueError(f"rows has {len(row_ids)} ids for {n} score rows")
    col_ids = np.arange(m) if cols is None else np.asarray(cols, dtype=np.int64)
    if col_ids.shape not in ((m,), (n, m)):
        raise ValueError(f"cols has shape {col_ids.shape}, scores {scores.shape}")
    return scores, min(k, m), row_ids, col_ids


def topk(scores: np.ndarray, k: int, *, rows: np.ndarray | None = None,
         cols: np.ndarray | None = None, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Indices of the ``k`` highest scores of each row of (n, m) ``scores``, best first.

    Ties (including ties across the k-th place) are broken by :func:`tie_keys` of
    ``rows[r]`` (the row's id, e.g. the internal user id; default ``0..n-1``) and
    ``cols[c]`` (the column's item id; default ``0..m-1``; (m,) or (n, m)). NaN ranks as
    ``-inf``. Returns an (n, min(k, m)) int64 array; callers that exclude items with
    ``-inf`` check which of the returned entries are finite (see :func:`top_items`).
    """
    scores, k, row_ids, col_ids = _topk_inputs(scores, k, rows, cols)
    n, m = scores.shape
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=np.int64)

    def col_of(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return col_ids[c] if col_ids.ndim == 1 else col_ids[r, c]

    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    if k < m:
        kth = part_scores.min(axis=1)
        # rows where items outside the partition tie with the k-th score: choose among all
        # items at that score by tie key, not by where argpartition happened to stop
        tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
        if len(tied):
            part[tied] = _resolve_boundary(scores[tied], kth[tied], k, tied, row_ids, col_of,
                                               seed)
            part_scores[tied] = np.take_along_axis(scores[tied], part[tied], axis=1)
    rr = np.broadcast_to(np.arange(n)[:, None], part.shape)
    key = tie_keys(row_ids[rr], col_of(rr, part), seed)
    order = np.lexsort((key, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def top_set(scores: np.ndarray, k: int, *, rows: np.ndarray | None = None,
            cols: np.ndarray | None = None, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The members of each row's :func:`topk`, in no particular order: (n, min(k, m)).

    The same items as ``topk(scores, k, ...)`` (ties across the k-th place broken by the same
    keys) without ordering them: for candidate pools, whose order does not matter, at the cost
    of one partition (keys are hashed only for rows with a tie at the k-th place).

    >>> import numpy as np
    >>> s = np.array([[0.0, 2.0, 1.0, 2.0, 3.0]])
    >>> sorted(top_set(s, 3)[0].tolist()) == sorted(topk(s, 3)[0].tolist())
    True
    """
    scores, k, row_ids, col_ids = _topk_inputs(scores, k, rows, cols)
    n, m = scores.shape
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=np.int64)
    if k == m:
        return np.broadcast_to(np.arange(m), (n, m)).copy()
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = scores[np.arange(n), part[:, k - 1]]  # the partition put the k-th largest there
    tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
    if len(tied):
        def col_of(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            return col_ids[c] if col_ids.ndim == 1 else col_ids[r, c]

        part[tied] = _resolve_boundary(scores[tied], kth[tied], k, tied, row_ids, col_of, seed)
    return part


def _resolve_boundary(S: np.ndarray, kth: np.ndarray, k: int, which: np.ndarray,
                      row_ids: np.ndarray, col_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      seed: int) -> np.ndarray:
    """For rows ``which`` of the score matrix (given as ``S``): every item above the k-th
    score plus the tied items with the smallest tie keys, ``k`` per row (unordered).

    One (rows, m) key matrix: 0 above the k-th score, the tie key (never 0) at it, the
    largest key below; its ``k`` smallest entries per row are the answer.
    """
    K = np.full(S.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    K[S > kth[:, None]] = 0
    # keys are hashed for the tied entries only (a few of each row's m items, usually)
    r, c = np.nonzero(S == kth[:, None])
    K[r, c] = tie_keys(row_ids[which][r], col_of(which[r], c), seed) | np.uint64(1)
    return np.argpartition(K, k - 1, axis=1)[:, :k]


def candidate_mask(candidates: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items,) boolean mask of ``candidates``: item ids, or already a boolean mask.

    >>> candidate_mask(np.array([0, 2]), 4).tolist()
    [True, False, True, False]
    """
    c = np.asarray(candidates)
    if c.dtype == bool:
        if c.shape != (n_items,):
            raise ValueError(f"a boolean candidate mask must have shape ({n_items},), got {c.shape}")
        return c
    ids = c.astype(np.int64, copy=False).ravel()
    if ids.size and (ids.min() < 0 or ids.max() >= n_items):
        bad = ids[(ids < 0) | (ids >= n_items)][0]
        raise ValueError(f"candidate item {bad} out of range [0, {n_items})")
    keep = np.zeros(n_items, dtype=bool)
    keep[ids] = True
    return keep


def eligible_scores(scores: np.ndarray, *, exclude: sp.spmatrix | None = None,
                    candidates: np.ndarray | None = None, clip: bool = False) -> np.ndarray:
    """A float64 copy of (n, m) ``scores`` with ``-inf`` on every item that may not be ranked.

    Ineligible: the items in each row of ``exclude`` (a sparse (n, m) matrix, e.g. each
    user's training items) and, when ``candidates`` (item ids or an (m,) boolean mask) is
    given, every other item. A NaN score is ineligible too (``-inf``), and so is the model's
    own ``-inf``; with ``clip=True`` every allowed item stays rankable whatever the model
    scored it instead: NaN and ``-inf`` become the lowest finite float and ``+inf`` the
    highest (the evaluation protocol: each candidate a user has not seen is ranked, the
    lowest ones in :func:`topk`'s tie order). The input is never modified.

    >>> import scipy.sparse as sp
    >>> s = np.array([[3.0, np.nan, 1.0, -np.inf]])
    >>> seen = sp.csr_matrix(np.array([[1, 0, 0, 0]]))
    >>> eligible_scores(s, exclude=seen).tolist()
    [[-inf, -inf, 1.0, -inf]]
    >>> np.isfinite(eligible_scores(s, exclude=seen, clip=True)).tolist()
    [[False, True, True, True]]
    >>> eligible_scores(s, candidates=np.array([0, 2])).tolist()
    [[3.0, -inf, 1.0, -inf]]
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (rows, items), got shape {scores.shape}")
    n, m = scores.shape
    nan = np.isnan(scores)
    if nan.any():
        scores[nan] = -np.inf
    if clip:
        big = np.finfo(np.float64).max
        np.clip(scores, -big, big, out=scores)
    if exclude is not None:
        ex = sp.csr_matrix(exclude)
        if ex.shape[0] != n:
            raise ValueError(f"exclude has {ex.shape[0]} rows for {n} score rows")
        scores[np.repeat(np.arange(n), np.diff(ex.indptr)), ex.indices] = -np.inf
    if candidates is not None:
        scores[:, ~candidate_mask(candidates, m)] = -np.inf
    return scores


def top_items(scores: np.ndarray, k: int, *, rows: np.ndarray | None = None,
              exclude: sp.csr_matrix | None = None, candidates: np.ndarray | None = None,
              seed: int = DEFAULT_SEED, warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (items, scores) per row with exclusions and a candidate restriction.

    ``exclude``: (n, m) sparse matrix of items never to return (e.g. each user's training
    items); ``candidates``: the only items that may be returned. Ineligible items are never
    returned: when some row has fewer than ``k`` eligible items, the result is as wide as
    the longest row's eligible count and shorter rows end in item ``-1`` with score
    ``-inf`` (a warning says how many rows; ``warn=False`` silences it). Items scored
    ``-inf`` or NaN by the model count as ineligible.
    """
    k = check_k(k)
    scores = eligible_scores(scores, exclude=exclude, candidates=candidates)
    n = scores.shape[0]
    top = topk(scores, k, rows=rows, seed=seed)
    vals = np.take_along_axis(scores, top, axis=1)
    ok = np.isfinite(vals)
    if not ok.all():
        n_ok = ok.sum(axis=1)
        width = int(n_ok.max()) if n else 0
        top, vals, ok = top[:, :width], vals[:, :width], ok[:, :width]
        top = np.where(ok, top, -1)
        vals = np.where(ok, vals, -np.inf)
        short = int((n_ok < k).sum())
        if warn and short:
            _warn_short(short, n, k, stacklevel=3)
    return top, vals


def top_of_columns(scores: np.ndarray, cols: np.ndarray, k: int, *, rows: np.ndarray,
                   exclude: sp.spmatrix | None = None, seed: int = DEFAULT_SEED
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_items` over a subset of each row's items: ``scores`` (n, w) for the item
    ids ``cols`` ((w,) or (n, w)); ``-inf`` marks padding or an ineligible item, and so do
    the items of each row's ``exclude`` row (a sparse (n, n_items) matrix).

    Returns (item ids, scores), (n, min(k, w)), ``-1``/``-inf`` where a row has fewer finite
    entries; the order (ties included) is the one :func:`top_items` gives over all items, so
    a model that can name a superset of each row's top-k (for example every item scored
    above the rest, with the whole tie group at the boundary) gets the same answer without
    scoring the catalog.

    >>> import scipy.sparse as sp
    >>> seen = sp.csr_matrix(np.array([[0, 0, 0, 0, 0, 0, 0, 1]]))  # item 7
    >>> top_of_columns(np.array([[5.0, 4.0, 3.0]]), np.array([7, 2, 4]), 2, rows=np.array([0]),
    ...                exclude=seen)[0].tolist()
    [[2, 4]]
    """
    scores = np.asarray(scores, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.int64)
    if exclude is not None and exclude.nnz:
        scores = np.where(_excluded_cells(exclude, cols, scores.shape), -np.inf, scores)
    pos = topk(scores, k, rows=rows, cols=cols, seed=seed)
    vals = np.take_along_axis(scores, pos, axis=1)
    ids = np.take_along_axis(np.broadcast_to(cols, scores.shape), pos, axis=1)
    ok = np.isfinite(vals)
    width = int(ok.sum(axis=1).max()) if len(ok) else 0
    ids, vals, ok = ids[:, :width], vals[:, :width], ok[:, :width]
    return np.where(ok, ids, -1), np.where(ok, vals, -np.inf)


def _excluded_cells(exclude: sp.spmatrix, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, w) booleans: whether item ``cols[r, c]`` (``cols``: (w,) or (n, w)) is in row ``r``
    of the sparse ``exclude`` matrix."""
    ex = sp.csr_matrix(exclude)
    n = shape[0]
    if ex.shape[0] != n:
        raise ValueError(f"exclude has {ex.shape[0]} rows for {n} score rows")
    m = np.int64(ex.shape[1])
    ex_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(ex.indptr)) * m + ex.indices
    c = np.broadcast_to(cols, shape)
    keys = np.arange(n, dtype=np.int64)[:, None] * m + c
    return np.isin(keys, ex_keys) & (c >= 0)


def top_items_sparse(S: sp.spmatrix, k: int, *, rows: np.ndarray,
                     exclude: sp.spmatrix | None = None, seed: int = DEFAULT_SEED
                     ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_items` of sparse (n, m) scores ``S`` (absent entries score 0), the same
    lists without densifying the rows whose top-k is among their positive scores.

    A row with at least ``k`` eligible positive scores is ranked over its non-zeros alone
    (:func:`top_of_columns`); the other rows (whose lists reach the items scored 0), rows
    with very many non-zeros, and the whole block when it is dense enough
    (:data:`SPARSE_SCORES_DENSITY`) or mostly such rows, are ranked densely. ``exclude``:
    items never returned, as in :func:`top_items` (whose short-list padding applies; no
    warning is given).

    >>> import scipy.sparse as sp
    >>> S = sp.csr_matrix(np.array([[0.0, 3.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0]]))
    >>> top_items_sparse(S, 2, rows=np.array([0]))[0].tolist()
    [[1, 4]]
    >>> seen = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0, 0, 0]]))  # item 1
    >>> top_items_sparse(S, 2, rows=np.array([0]), exclude=seen)[0].tolist()
    [[4, 3]]
    """
    k = check_k(k)
    S0 = sp.csr_matrix(S, dtype=np.float64)
    n, m = S0.shape
    rows = np.asarray(rows, dtype=np.int64)
    ex = sp.csr_matrix(exclude) if exclude is not None else None
    if S0.nnz > SPARSE_SCORES_DENSITY * n * m:  # dense enough: rank it as a dense block
        return top_items(S0.toarray(), k, rows=rows, exclude=ex, seed=seed, warn=False)
    if ex is not None and ex.nnz:
        neg = sp.csr_matrix(ex, dtype=np.float64, copy=True)
        neg.data[:] = -np.inf
        S1 = sp.csr_matrix(S0 + neg)  # excluded items score -inf
    else:
        S1 = S0.copy()
    S1.data[~(S1.data > 0)] = -np.inf  # only positive scores can outrank the zeros
    lengths = np.diff(S1.indptr)
    r_of = np.repeat(np.arange(n), lengths)
    n_pos = np.bincount(r_of[np.isfinite(S1.data)], minlength=n)
    # rows whose top-k is among their positive scores; very long rows rank densely
    sparse_ok = (n_pos >= k) & (lengths <= max(8 * k, m // 8))
    sparse_rows = np.flatnonzero(sparse_ok)
    if len(sparse_rows) < n // 2:  # mostly rows that reach the zeros: one dense pass
        return top_items(S0.toarray(), k, rows=rows, exclude=ex, seed=seed, warn=False)
    width = int(lengths[sparse_rows].max()) if len(sparse_rows) else 0
    out_items = np.full((n, k), -1, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf)
    if len(sparse_rows):
        sub = S1[sparse_rows]
        r = np.repeat(np.arange(len(sparse_rows)), lengths[sparse_rows])
        c = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], lengths[sparse_rows])
        vals = np.full((len(sparse_rows), width), -np.inf)
        ids = np.zeros((len(sparse_rows), width), dtype=np.int64)
        vals[r, c] = sub.data
        ids[r, c] = sub.indices
        top, v = top_of_columns(vals, ids, k, rows=rows[sparse_rows], seed=seed)
        out_items[sparse_rows, :top.shape[1]] = top
        out_scores[sparse_rows, :top.shape[1]] = v
    dense_rows = np.flatnonzero(~sparse_ok)
    if len(dense_rows):
        top, v = top_items(S0[dense_rows].toarray(), k, rows=rows[dense_rows], seed=seed,
                           warn=False, exclude=ex[dense_rows] if ex is not None else None)
        out_items[dense_rows, :top.shape[1]] = top
        out_scores[dense_rows, :top.shape[1]] = v
    keep = int((out_items >= 0).sum(axis=1).max()) if n else 0
    return out_items[:, :keep], out_scores[:, :keep]


def stack_lists(parts: list[tuple[np.ndarray, np.ndarray]], k: int, n: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-batch (items, scores) top-``k`` lists of possibly different widths
    into one (n, widest) pair, padded with item ``-1`` and score ``-inf``; a
    :class:`ShortListWarning` says how many rows have fewer than ``k`` items (attributed to
    the caller's caller: the function that ranked the batches).

    >>> a = (np.array([[3, 1]]), np.array([2.0, 1.0])[None])
    >>> b = (np.array([[0]]), np.array([[5.0]]))
    >>> stack_lists([a, b], 1, 2)[0].tolist()
    [[3, 1], [0, -1]]
    """
    width = max((p[0].shape[1] for p in parts), default=0)
    items = np.full((n, width), -1, dtype=np.int64)
    scores = np.full((n, width), -np.inf)
    row = 0
    for top, vals in parts:
        items[row:row + len(top), :top.shape[1]] = top
        scores[row:row + len(top), :top.shape[1]] = vals
        row += len(top)
    short = int(((items >= 0).sum(axis=1) < k).sum())
    if short:
        _warn_short(short, n, k, stacklevel=4)
    return items, scores


def _warn_short(short: int, n: int, k: int, stacklevel: int) -> None:
    warnings.warn(f"{short} of {n} rows have fewer than k={k} eligible items; their lists are "
                  "shorter (padded with item -1, score -inf)", ShortListWarning,
                  stacklevel=stacklevel)


class ShortListWarning(UserWarning):
    """Fewer than k items were eligible for some rows."""
