"""Exact top-k of inner-product scores ``U V'``, scoring only the items that can make the list.

Factor models (ials, bpr) score ``float32(sum in float64 of u_f * v_f)``: products of float32
factors are exact in float64, so the score does not depend on how BLAS blocks or threads the
sum. Ranking the whole catalog that way (a float64 product, then
:func:`explorec.ranking.top_items` over float64 copies of every score block) costs 1.9 ms a
user at 100,000 items on this 2-core machine: 32 minutes for 1,000,000 users.

:func:`factor_top_items` returns the same lists (items, scores and the seeded tie order) and
scores a few percent of the catalog for most users:

1. items are sorted by vector norm, largest first, and scored in tiles (float32 BLAS sgemm for
   a block of users at a time, one block per thread);
2. per user (compiled): a size-``k`` heap holds the k best float32 scores seen, ``t`` its
   smallest; every item within ``2 eps`` of the heap's bar is kept as a candidate, where ``eps``
   bounds the float32 product's rounding error for that user
   (``(d + 2) 2^-24 |u| max_i |v_i|``, Higham's bound for any summation order);
3. a user is done once ``t - 2 eps`` exceeds ``|u|`` times the largest norm of the items not yet
   scored: by Cauchy-Schwarz none of them can reach, or tie, the k-th score. On implicit-feedback
   factors, where popular items have the long vectors, this stops after about 3% of a
   100,000-item catalog (benchmarks/scale.py);
4. candidates are rescored in float64 (a fixed-order loop), rounded to float32 and ordered by
   (score, :func:`explorec.ranking.tie_keys`) exactly as :func:`explorec.ranking.topk` orders.
   A user whose candidates overflow their buffer (thousands of exactly tied scores, e.g. a zero
   vector) is ranked by the full product instead.

A float64 sum can differ from BLAS' float64 sum in its last bit, which changes the float32
score only when it lies on a float32 rounding boundary (about one score in 2^29).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> U = rng.standard_normal((3, 8)).astype(np.float32)
>>> V = rng.standard_normal((50, 8)).astype(np.float32)
>>> items, scores = factor_top_items(U, V, np.arange(3), 5)
>>> from explorec.ranking import top_items
>>> ref = (U.astype(np.float64) @ V.T.astype(np.float64)).astype(np.float32)
>>> bool((items == top_items(ref, 5, rows=np.arange(3))[0]).all())
True
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from explorec._hashing import M_COL, M_MIX1, M_MIX2, M_ROW, M_SEED
from explorec.ranking import DEFAULT_SEED, TIE_SALT, check_k, top_items

try:  # numba is a dependency, but a broken LLVM install must not take ranking down with it
    import numba
except Exception:  # pragma: no cover - depends on the environment
    numba = None

_MASK = (1 << 64) - 1
BLOCK_USERS = 256  # users per block (per worker thread)
FIRST_TILE = 2048  # items in the first tile; each next tile is twice as long, up to MAX_TILE
MAX_TILE = 16384
_NEG = np.float32(-np.inf)


def available() -> bool:
    """Whether the compiled kernel can run here (else callers rank a float64 score matrix)."""
    return numba is not None


if numba is not None:
    @numba.njit(inline="always")
    def _key(row, col, add):  # pragma: no cover - compiled
        # explorec._hashing.hash64 (splitmix64 finaliser), one pair
        z = (np.uint64(row) * M_ROW) ^ (np.uint64(col) * M_COL)
        z = z + add
        z = (z ^ (z >> np.uint64(30))) * M_MIX1
        z = (z ^ (z >> np.uint64(27))) * M_MIX2
        return z ^ (z >> np.uint64(31))

    @numba.njit(inline="always")
    def _push(heap, size, k, x):  # pragma: no cover - compiled
        """Min-heap of the ``k`` largest values seen; returns the new size."""
        if size < k:
            heap[size] = x
            c = size
            while c > 0:
                p = (c - 1) // 2
                if heap[p] <= heap[c]:
                    break
                heap[p], heap[c] = heap[c], heap[p]
                c = p
            return size + 1
        heap[0] = x
        c = 0
        while True:
            a = 2 * c + 1
            if a >= k:
                break
            b = a + 1
            if b < k and heap[b] < heap[a]:
                a = b
            if heap[c] <= heap[a]:
                break
            heap[c], heap[a] = heap[a], heap[c]
            c = a
        return size

    @numba.njit(nogil=True, cache=True)
    def _tile(S, active, start, ex_ptr, ex_pos, ex_cur, slack, heaps, sizes, cand, cand_val,
              n_cand, overflow):  # pragma: no cover - compiled
        """Fold one tile of scores (rows ``active`` of the block, sorted item positions
        ``start..start + S.shape[1]``) into each row's heap and candidates."""
        w = S.shape[1]
        k = heaps.shape[1]
        cap = cand.shape[1]
        end = start + w
        for q in range(len(active)):
            r = active[q]
            s = S[q]
            j = ex_cur[r]
            while j < ex_ptr[r + 1] and ex_pos[j] < end:
                s[ex_pos[j] - start] = _NEG
                j += 1
            ex_cur[r] = j
            heap = heaps[r]
            size = sizes[r]
            nc = n_cand[r]
            sl = slack[r]
            bar = np.float32(np.float64(heap[0]) - sl) if size == k else _NEG
            for i in range(w):
                x = s[i]
                if not (x > _NEG) or x < bar:  # -inf, NaN: ineligible
                    continue
                if nc == cap:  # keep only what can still make the list
                    kept = 0
                    for c in range(nc):
                        if cand_val[r, c] >= bar:
                            cand[r, kept] = cand[r, c]
                            cand_val[r, kept] = cand_val[r, c]
                            kept += 1
                    nc = kept
                    if nc == cap:
                        overflow[r] = True
                        break
                cand[r, nc] = start + i
                cand_val[r, nc] = x
                nc += 1
                if size < k or x > heap[0]:
                    size = _push(heap, size, k, x)
                    if size == k:
                        bar = np.float32(np.float64(heap[0]) - sl)
            sizes[r] = size
            n_cand[r] = nc

    @numba.njit(nogil=True, cache=True)
    def _finish(U, Vs, order, rows, heaps, sizes, cand, cand_val, n_cand, slack, add,
                out_items, out_scores, out_n):  # pragma: no cover - compiled
        """Rescore each row's candidates in float64 and write its top k in tie-key order."""
        k = heaps.shape[1]
        d = U.shape[1]
        for r in range(len(U)):
            nc = n_cand[r]
            if sizes[r] == 0 or nc == 0:
                out_n[r] = 0
                continue
            cut = np.float32(np.float64(heaps[r, 0]) - slack[r]) if sizes[r] == k else _NEG
            pos = np.empty(nc, dtype=np.int64)
            m = 0
            for c in range(nc):
                if cand_val[r, c] >= cut:
                    pos[m] = cand[r, c]
                    m += 1
            val = np.empty(m, dtype=np.float64)
            keys = np.empty(m, dtype=np.uint64)
            u = U[r]
            for c in range(m):
                v = Vs[pos[c]]
                acc = 0.0
                for f in range(d):
                    acc += np.float64(u[f]) * np.float64(v[f])
                val[c] = np.float64(np.float32(acc))
                keys[c] = _key(rows[r], order[pos[c]], add)
            # order by (-score, key): stable sort by key, then stable sort by -score
            o1 = np.argsort(keys, kind="mergesort")
            o2 = np.argsort(-val[o1], kind="mergesort")
            take = min(k, m)
            for c in range(take):
                t = o1[o2[c]]
                out_items[r, c] = order[pos[t]]
                out_scores[r, c] = val[t]
            out_n[r] = take


def default_threads() -> int:
    """Worker threads when none are asked: ``OMP_NUM_THREADS`` where set (a Dask worker sets
    it to its own thread count), else one per core this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class PruneStats:
    """What :func:`factor_top_items` scored: item-scores computed out of ``users x items``."""

    users: int = 0
    items: int = 0
    scored: int = 0
    fallback_users: int = 0

    @property
    def scored_fraction(self) -> float:
        return self.scored / max(1, self.users * self.items)


@dataclass(frozen=True)
class PreparedItems:
    """Item vectors sorted by norm, longest first, for :func:`factor_top_items`; build once
    per item matrix with :func:`prepare_items` and reuse across calls."""

    V: np.ndarray  # the float32 vectors as given
    order: np.ndarray  # item ids by decreasing norm
    sorted_vectors: np.ndarray  # V[order], contiguous
    tail: np.ndarray  # (m + 1,) the largest norm from each sorted position on, 0 at the end
    max_norm: float
    inverse: np.ndarray  # sorted position of each item


def prepare_items(V: np.ndarray) -> PreparedItems:
    """Sort item vectors by norm (and check them) for :func:`factor_top_items`."""
    V = np.ascontiguousarray(V, dtype=np.float32)
    if V.ndim != 2:
        raise ValueError(f"item vectors must be (items, dim), got shape {V.shape}")
    if not np.isfinite(V).all():
        raise ValueError("item factor vectors contain NaN or infinite values; refit the model")
    vnorm = np.sqrt(np.einsum("ij,ij->i", V, V, dtype=np.float64))
    order = np.argsort(-vnorm, kind="stable")
    inverse = np.empty(len(V), dtype=np.int64)
    inverse[order] = np.arange(len(V))
    # room for the float64 norm's own rounding
    tail = np.append(vnorm[order], 0.0) * (1 + 1e-9)
    return PreparedItems(V, order, np.ascontiguousarray(V[order]), tail,
                         float(vnorm.max(initial=0.0)), inverse)


def factor_top_items(U: np.ndarray, V: np.ndarray | PreparedItems, rows: np.ndarray, k: int, *,
                     exclude: sp.csr_matrix | None = None, seed: int = DEFAULT_SEED,
                     threads: int = 0, block_users: int = BLOCK_USERS,
                     stats: PruneStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (items, scores) of ``U V'`` per row, best first, as
    :func:`explorec.ranking.top_items` ranks ``float32(U V')`` summed in float64.

    ``U``: (n, d) vectors of the rows ranked; ``V``: (m, d) item vectors (or
    :func:`prepare_items` of them, to sort them once for many calls); ``rows``: (n,) row
    ids for the tie keys (internal user ids); ``exclude``: (n, m) items never returned. The
    result is as wide as the longest row's eligible count (at most ``k``); shorter rows end
    in item ``-1``, score ``-inf``. ``threads``: worker threads (0: :func:`default_threads`), each
    ranking its own blocks of ``block_users`` users. ``stats``, when given, is filled in.
    """
    k = check_k(k)
    if not available():  # pragma: no cover - depends on the environment
        raise RuntimeError("factor_top_items needs numba (pip install numba)")
    prep = V if isinstance(V, PreparedItems) else prepare_items(V)
    V = prep.V
    U = np.ascontiguousarray(U, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise ValueError(f"user vectors {U.shape} and item vectors {V.shape} do not match")
    n, m = len(U), len(V)
    if len(rows) != n:
        raise ValueError(f"rows has {len(rows)} ids for {n} user vectors")
    if not np.isfinite(U).all():
        raise ValueError("user factor vectors contain NaN or infinite values; refit the model")
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != (n, m):
            raise ValueError(f"exclude has shape {exclude.shape}, expected {(n, m)}")
    kk = min(k, m)
    items = np.full((n, kk), -1, dtype=np.int64)
    scores = np.full((n, kk), -np.inf, dtype=np.float64)
    if n == 0 or kk == 0:
        return items, scores
    d = U.shape[1]
    order, Vs, tail, inv = prep.order, prep.sorted_vectors, prep.tail, prep.inverse
    unorm = np.sqrt(np.einsum("ij,ij->i", U, U, dtype=np.float64))
    gamma = (d + 2) * 2.0 ** -24 / (1 - (d + 2) * 2.0 ** -24)
    # 2 eps: the heap's float32 scores and each candidate's are both off by up to eps
    slack_all = 4 * gamma * unorm * prep.max_norm + 1e-30
    add = np.uint64(((seed ^ TIE_SALT) & _MASK) * int(M_SEED) & _MASK)
    cap = 8 * kk + 256
    got = np.zeros(n, dtype=np.int64)
    scored: list[int] = []
    fallback: list[np.ndarray] = []

    def run(s: int) -> None:
        e = min(n, s + block_users)
        R = e - s
        Ub = U[s:e]
        if exclude is not None:
            ex = exclude[s:e]
            ex_ptr = ex.indptr.astype(np.int64)
            # each row's excluded items as sorted positions
            pos = inv[ex.indices] + np.repeat(np.arange(R, dtype=np.int64) * m, np.diff(ex_ptr))
            ex_pos = np.sort(pos) - np.repeat(np.arange(R, dtype=np.int64) * m, np.diff(ex_ptr))
        else:
            ex_ptr, ex_pos = np.zeros(R + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        ex_cur = ex_ptr[:-1].copy()
        heaps = np.full((R, kk), _NEG, dtype=np.float32)
        sizes = np.zeros(R, dtype=np.int64)
        cand = np.empty((R, cap), dtype=np.int64)
        cand_val = np.empty((R, cap), dtype=np.float32)
        n_cand = np.zeros(R, dtype=np.int64)
        overflow = np.zeros(R, dtype=bool)
        slack = slack_all[s:e]
        active = np.arange(R, dtype=np.int64)
        a, width, done_items = 0, FIRST_TILE, 0
        while len(active) and a < m:
            b = min(m, a + width)
            S = Ub[active] @ Vs[a:b].T
            done_items += S.size
            _tile(S, active, a, ex_ptr, ex_pos, ex_cur, slack, heaps, sizes, cand, cand_val,
                  n_cand, overflow)
            full = sizes[active] == kk
            bound = unorm[s:e][active] * tail[b]
            finished = (full & (heaps[active, 0].astype(np.float64) - slack[active] > bound))
            active = active[~(finished | overflow[active])]
            a, width = b, min(MAX_TILE, 2 * width)
        _finish(Ub, Vs, order, rows[s:e], heaps, sizes, cand, cand_val, n_cand, slack, add,
                items[s:e], scores[s:e], got[s:e])
        scored.append(done_items)
        if overflow.any():
            fallback.append(s + np.flatnonzero(overflow))

    starts = list(range(0, n, block_users))
    workers = max(1, min(threads or default_threads(), len(starts)))
    # one BLAS thread per worker thread: BLAS' own threads and ours would spin against
    # each other (measured: 2.3x slower on 2 cores)
    with threadpool_limits(1, user_api="blas"):
        if workers == 1:
            for s in starts:
                run(s)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, starts))
    redo = np.concatenate(fallback) if fallback else np.zeros(0, dtype=np.int64)
    if len(redo):
        ref = (U[redo].astype(np.float64) @ V.T.astype(np.float64)).astype(np.float32)
        t, v = top_items(ref, kk, rows=rows[redo], seed=seed, warn=False,
                         exclude=exclude[redo] if exclude is not None else None)
        items[redo], scores[redo] = -1, -np.inf
        items[redo, :t.shape[1]], scores[redo, :t.shape[1]] = t, v
        got[redo] = np.isfinite(v).sum(axis=1)
    if stats is not None:
        stats.users, stats.items = n, m
        stats.scored = sum(scored) + len(redo) * m
        stats.fallback_users = len(redo)
    width = int(got.max())
    return items[:, :width], scores[:, :width]
