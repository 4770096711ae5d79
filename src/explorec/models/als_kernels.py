"""Compiled conjugate-gradient half-step for iALS (numba), one user (or item) per loop turn.

The vectorised numpy CG in :mod:`explorec.models.ials` gathers the other side's factors at
every interaction (``nnz x f`` temporaries, memory-bound). This kernel walks each row's
interactions in cache instead, the way implicit's C++ solver does, and keeps explorec's
per-row regularisation (``reg_exponent``), which implicit has no place for. It runs in
parallel over rows (``numba.prange``) with ``threads`` threads.

Each row solves ``(YtY + alpha Y_u'Y_u + reg_u I) x_u = (1 + alpha) Y_u' 1`` with ``steps``
warm-started CG steps: identical maths to the numpy path (``tests/test_ials_kernel.py``).

``available()`` is False when numba is not installed; iALS then uses the numpy path.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency, but a broken LLVM install must not take iALS down with it
    import numba
    _NUMBA_ERROR: Exception | None = None
except Exception as e:  # pragma: no cover - depends on the environment
    numba = None
    _NUMBA_ERROR = e


def available() -> bool:
    """Whether the compiled kernel can run here."""
    return numba is not None


if numba is not None:
    @numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
    def _cg_rows(indptr, indices, Y, YtY, alpha, reg, x, steps):  # pragma: no cover - compiled
        n, f = x.shape
        c = np.float32(1.0) + alpha
        zero = np.float32(0.0)
        for u in numba.prange(n):
            start, end = indptr[u], indptr[u + 1]
            xu = x[u]
            r = np.empty(f, dtype=x.dtype)
            p = np.empty(f, dtype=x.dtype)
            ap = np.empty(f, dtype=x.dtype)
            # r = b - A x, with b = c * sum_i y_i
            for a in range(f):
                acc = zero
                for b in range(f):
                    acc += YtY[a, b] * xu[b]
                r[a] = -acc - reg[u] * xu[a]
            for j in range(start, end):
                i = indices[j]
                d = zero
                for a in range(f):
                    d += Y[i, a] * xu[a]
                w = c - alpha * d
                for a in range(f):
                    r[a] += w * Y[i, a]
            rs = zero
            for a in range(f):
                p[a] = r[a]
                rs += r[a] * r[a]
            for _ in range(steps):
                if rs < 1e-20:
                    break
                for a in range(f):
                    acc = zero
                    for b in range(f):
                        acc += YtY[a, b] * p[b]
                    ap[a] = acc + reg[u] * p[a]
                for j in range(start, end):
                    i = indices[j]
                    d = zero
                    for a in range(f):
                        d += Y[i, a] * p[a]
                    d *= alpha
                    for a in range(f):
                        ap[a] += d * Y[i, a]
                pap = zero
                for a in range(f):
                    pap += p[a] * ap[a]
                if pap <= zero:
                    break
                step = rs / pap
                rs_new = zero
                for a in range(f):
                    xu[a] += step * p[a]
                    r[a] -= step * ap[a]
                    rs_new += r[a] * r[a]
                beta = rs_new / rs
                for a in range(f):
                    p[a] = r[a] + beta * p[a]
                rs = rs_new


def cg_half_step(indptr: np.ndarray, indices: np.ndarray, Y: np.ndarray, alpha: float,
                 reg: np.ndarray, x: np.ndarray, steps: int, threads: int = 0) -> np.ndarray:
    """New factors for every row of a CSR pattern (``indptr``, ``indices``) given the other
    side's factors ``Y`` (n_other, f), warm-started from ``x`` (n_rows, f); ``x`` is updated in
    place and returned. ``threads`` 0 uses numba's default (all cores).
    """
    if numba is None:  # pragma: no cover - depends on the environment
        raise ImportError(f"the compiled iALS kernel needs numba: {_NUMBA_ERROR}")
    dt = np.dtype(np.float32)  # the kernel accumulates in float32 (CG needs a few digits)
    x = np.ascontiguousarray(x, dtype=dt)
    Y = np.ascontiguousarray(Y, dtype=dt)
    YtY = np.ascontiguousarray(Y.T @ Y)
    reg = np.ascontiguousarray(reg, dtype=dt)
    old = numba.get_num_threads()
    want = int(threads) if threads and int(threads) > 0 else numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(min(want, numba.config.NUMBA_NUM_THREADS))
    try:
        _cg_rows(indptr.astype(np.int64, copy=False), indices.astype(np.int32, copy=False),
                 Y, YtY, dt.type(alpha), reg, x, int(steps))
    finally:
        numba.set_num_threads(old)
    return x
