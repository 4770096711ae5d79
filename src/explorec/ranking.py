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


def topk(scores: np.ndarray, k: int, *, rows: np.ndarray | None = None,
         cols: np.ndarray | None = None, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Indices of the ``k`` highest scores of each row of (n, m) ``scores``, best first.

    Ties (including ties across the k-th place) are broken by :func:`tie_keys` of
    ``rows[r]`` (the row's id, e.g. the internal user id; default ``0..n-1``) and
    ``cols[c]`` (the column's item id; default ``0..m-1``; (m,) or (n, m)). NaN ranks as
    ``-inf``. Returns an (n, min(k, m)) int64 array; callers that exclude items with
    ``-inf`` check which of the returned entries are finite (see :func:`top_items`).
    """
    k = check_k(k)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (rows, items), got shape {scores.shape}")
    n, m = scores.shape
    k = min(k, m)
    if n == 0 or k == 0:
        return np.zeros((n, k), dtype=np.int64)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    row_ids = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if cols is None:
        col_ids = np.arange(m)
    else:
        col_ids = np.asarray(cols, dtype=np.int64)
        if col_ids.shape not in ((m,), (n, m)):
            raise ValueError(f"cols has shape {col_ids.shape}, scores {scores.shape}")
    if len(row_ids) != n:
        raise ValueError(f"rows has {len(row_ids)} ids for {n} score rows")

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


def _resolve_boundary(S: np.ndarray, kth: np.ndarray, k: int, which: np.ndarray,
                      row_ids: np.ndarray, col_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      seed: int) -> np.ndarray:
    """For rows ``which`` of the score matrix (given as ``S``): every item above the k-th
    score plus the tied items with the smallest tie keys, ``k`` per row (unordered).

    One (rows, m) key matrix: 0 above the k-th score, the tie key (never 0) at it, the
    largest key below; its ``k`` smallest entries per row are the answer.
    """
    rr = np.broadcast_to(np.arange(len(S))[:, None], S.shape)
    cc = np.broadcast_to(np.arange(S.shape[1])[None, :], S.shape)
    K = tie_keys(row_ids[which][:, None], col_of(which[rr], cc), seed) | np.uint64(1)
    K[S > kth[:, None]] = 0
    K[S < kth[:, None]] = np.iinfo(np.uint64).max
    return np.argpartition(K, k - 1, axis=1)[:, :k]


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
    scores = np.array(scores, dtype=np.float64, copy=True)
    n, m = scores.shape
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        ex = sp.csr_matrix(exclude)
        scores[np.repeat(np.arange(n), np.diff(ex.indptr)), ex.indices] = -np.inf
    if candidates is not None:
        keep = np.zeros(m, dtype=bool)
        keep[np.asarray(candidates, dtype=np.int64)] = True
        scores[:, ~keep] = -np.inf
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
            warnings.warn(f"{short} of {n} rows have fewer than k={k} eligible items; "
                          "their lists are shorter (padded with item -1, score -inf)",
                          ShortListWarning, stacklevel=2)
    return top, vals


def top_of_columns(scores: np.ndarray, cols: np.ndarray, k: int, *, rows: np.ndarray,
                   seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_items` over a subset of each row's items: ``scores`` (n, w) for the item
    ids ``cols`` ((w,) or (n, w)); ``-inf`` marks padding or an ineligible item.

    Returns (item ids, scores), (n, min(k, w)), ``-1``/``-inf`` where a row has fewer finite
    entries; the order (ties included) is the one :func:`top_items` gives over all items, so
    a model that can name a superset of each row's top-k (for example every item scored
    above the rest, with the whole tie group at the boundary) gets the same answer without
    scoring the catalog.
    """
    scores = np.asarray(scores, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.int64)
    pos = topk(scores, k, rows=rows, cols=cols, seed=seed)
    vals = np.take_along_axis(scores, pos, axis=1)
    ids = np.take_along_axis(np.broadcast_to(cols, scores.shape), pos, axis=1)
    ok = np.isfinite(vals)
    width = int(ok.sum(axis=1).max()) if len(ok) else 0
    ids, vals, ok = ids[:, :width], vals[:, :width], ok[:, :width]
    return np.where(ok, ids, -1), np.where(ok, vals, -np.inf)


class ShortListWarning(UserWarning):
    """Fewer than k items were eligible for some rows."""
