"""iALS: matrix factorisation for implicit feedback by alternating least squares (Hu et al. 2008).

Loss over *all* user-item pairs, ``sum c_ui (p_ui - x_u.y_i)^2 + reg (|x_u|^2 + |y_i|^2)``, with
``p_ui = 1`` for interactions and 0 elsewhere and confidence ``c_ui = 1 + alpha`` on
interactions, 1 elsewhere. Each half-step solves every user's (or item's) normal equations
``(Y'Y + alpha Y_u'Y_u + reg_u I) x_u = (1 + alpha) Y_u' 1``.

Three solvers; the default was chosen by measurement (docs/models.md, "Model zoo"):

- ``solver="cg"`` (default): a few conjugate-gradient steps per half-step, warm-started, in
  float32, by a compiled kernel (:mod:`explorec.models.als_kernels`, numba) that walks each
  user's interactions in cache, in parallel over users. Without numba it falls back to
  ``"cg-numpy"``.
- ``solver="cg-numpy"``: the same CG steps vectorised over all users at once in numpy (for
  small matrices as two dense products, otherwise as gathers over the interactions).
- ``solver="cholesky"``: exact solves, vectorised. The per-user Gram terms
  ``Y_u'Y_u`` for all users come from one sparse x dense product ``X @ [y_i y_i']`` (rows of
  ``f*f`` outer products), then one batched Cholesky solve. No Python loop over users, but
  ``f*f`` work per interaction: 20x slower than CG on ML-100K at ``f = 64``.
- ``solver="implicit"``: the ``implicit`` library's CPU solver (its own C++ conjugate gradient),
  if installed (``pip install 'explorec[zoo]'``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import DEFAULT_SEED
from explorec.models import als_kernels
from explorec.models.base import BaseRecommender, csr_bytes, factor_scores

_SOLVERS = ("cholesky", "cg", "cg-numpy", "implicit")
_DENSE_CELLS = 4_000_000  # CG uses dense products below this many matrix cells


class IALS(BaseRecommender):
    """Implicit-feedback ALS (see module docstring).

    Parameters
    ----------
    factors : latent dimension.
    alpha : confidence of an observed interaction is ``1 + alpha``.
    reg : L2 regularisation.
    reg_exponent : frequency-scaled regularisation (Rendle et al. 2022, "Revisiting iALS"):
        a user's (item's) penalty is ``reg * (1 + alpha * n)**reg_exponent`` with ``n`` its
        interaction count; 0 gives the classic constant ``reg``.
    iterations : ALS sweeps (one user and one item half-step each).
    solver : ``"cholesky"``, ``"cg"`` or ``"implicit"`` (see module docstring).
    cg_steps : conjugate-gradient steps per half-step for the CG solvers.
    init_std : standard deviation of the initial factors.
    seed : random seed of the initial factors.
    threads : CPU threads for ``solver="cg"`` and ``"implicit"`` (0: all cores). Rows are
        solved independently, so the result does not depend on it.
    """

    name = "ials"
    exact_factor_scores = True
    param_constraints: ClassVar[dict[str, Any]] = {
        "alpha": ">= 0", "reg": ">= 0", "reg_exponent": ">= 0",
        "solver": _SOLVERS, "cg_steps": ">= 1", "init_std": "> 0",
        "threads": ">= 0"}
    _state_names = ("user_factors_", "item_factors_")

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Both factor matrices with solver temporaries, and the matrix and its transpose
        with confidences."""
        f = int(self.factors)
        common = 4 * 8 * (n_users + n_items) * f + 4 * csr_bytes(nnz, max(n_users, n_items), 8)
        if self.solver == "cholesky":  # bounded blocks of f x f systems
            return common + 6 * (64 << 20)
        if self.solver == "implicit":
            return common
        if self.solver == "cg" and als_kernels.available():
            return common
        # CG gathers the other side's factors at every interaction (three nnz x f arrays)
        dense = 12 * n_users * n_items if n_users * n_items <= _DENSE_CELLS else 0
        return common + 3 * 4 * nnz * f + 8 * nnz + dense

    memory_alternative = "lower --param ials.factors"

    def __init__(self, factors: int = 64, alpha: float = 10.0, reg: float = 1.0,
                 reg_exponent: float = 0.0, iterations: int = 15, solver: str = "cg",
                 cg_steps: int = 3, init_std: float = 0.01, seed: int = DEFAULT_SEED,
                 threads: int = 0) -> None:
        super().__init__()
        self.factors = factors
        self.alpha = alpha
        self.reg = reg
        self.reg_exponent = reg_exponent
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.seed = seed
        self.threads = threads
        self.user_factors_: np.ndarray | None = None
        self.item_factors_: np.ndarray | None = None
        self._item_factors64: tuple[np.ndarray, np.ndarray] | None = None

    def _check_params(self) -> None:
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, not {self.solver!r}")
        for p in ("factors", "iterations", "cg_steps"):
            if int(getattr(self, p)) < 1:
                raise ValueError(f"{p} must be >= 1, got {getattr(self, p)!r}")
        for p in ("alpha", "reg", "reg_exponent", "init_std"):
            if float(getattr(self, p)) < 0:
                raise ValueError(f"{p} must be >= 0, got {getattr(self, p)!r}")

    def _fit(self, X: sp.csr_matrix) -> None:
        self._check_params()
        X = sp.csr_matrix(X, dtype=np.float64)
        X.data[:] = 1.0
        if self.solver == "implicit":
            self._fit_implicit(X)
            return
        rng = np.random.default_rng(self.seed)
        f = int(self.factors)
        # CG runs in float32 (it only needs a few accurate digits); Cholesky in float64
        dt = np.float64 if self.solver == "cholesky" else np.float32
        X = X.astype(dt)
        U = rng.normal(0, self.init_std, (X.shape[0], f)).astype(dt)
        V = rng.normal(0, self.init_std, (X.shape[1], f)).astype(dt)
        Xt = X.T.tocsr()
        reg_u = self._reg_vector(X).astype(dt)
        reg_i = self._reg_vector(Xt).astype(dt)
        for _ in range(int(self.iterations)):
            U = self._half_step(X, V, U, reg_u)
            V = self._half_step(Xt, U, V, reg_i)
        self.user_factors_ = U.astype(np.float32)
        self.item_factors_ = V.astype(np.float32)

    def _reg_vector(self, X: sp.csr_matrix) -> np.ndarray:
        n = np.diff(X.indptr).astype(np.float64)
        return float(self.reg) * (1.0 + float(self.alpha) * n) ** float(self.reg_exponent)

    def _half_step(self, X: sp.csr_matrix, Y: np.ndarray, old: np.ndarray, reg: np.ndarray
                   ) -> np.ndarray:
        """New factors for the rows of ``X`` given the other side's factors ``Y``."""
        a = float(self.alpha)
        if self.solver == "cg" and als_kernels.available():
            return als_kernels.cg_half_step(X.indptr, X.indices, Y, a, reg, old.copy(),
                                            int(self.cg_steps), int(self.threads))
        YtY = Y.T @ Y
        b = np.asarray(X @ Y) * Y.dtype.type(1.0 + a)
        if self.solver in ("cg", "cg-numpy"):
            return _cg_solve(X, Y, YtY, a, reg, b, old, int(self.cg_steps))
        f = Y.shape[1]
        out = np.empty((X.shape[0], f))
        eye = np.eye(f)
        # outer products y_i y_i' as rows, in item chunks to bound memory at ~64 MiB
        chunk = max(1, (64 << 20) // (8 * f * f))
        block = max(1, (64 << 20) // (8 * f * f))
        for s in range(0, X.shape[0], block):
            rows = X[s:s + block]
            A = np.zeros((rows.shape[0], f * f))
            for c in range(0, Y.shape[0], chunk):
                Yc = Y[c:c + chunk]
                outer = (Yc[:, :, None] * Yc[:, None, :]).reshape(len(Yc), f * f)
                A += np.asarray(rows[:, c:c + chunk] @ outer)
            A = a * A.reshape(-1, f, f) + YtY[None] + reg[s:s + block, None, None] * eye[None]
            L = np.linalg.cholesky(A)
            out[s:s + block] = _cho_solve_batched(L, b[s:s + block])
        return out

    def _fit_implicit(self, X: sp.csr_matrix) -> None:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("solver='implicit' needs the implicit library: "
                              "pip install 'explorec[zoo]'") from e
        if self.reg_exponent:
            raise ValueError("reg_exponent is not supported by solver='implicit'; use "
                             "solver='cholesky' or 'cg'")
        model = AlternatingLeastSquares(
            # implicit's confidence of an interaction is its alpha; ours is 1 + alpha
            factors=int(self.factors), regularization=float(self.reg),
            alpha=1.0 + float(self.alpha),
            iterations=int(self.iterations), use_cg=True, calculate_training_loss=False,
            num_threads=int(self.threads), random_state=int(self.seed))
        model.cg_steps = int(self.cg_steps)
        model.fit(sp.csr_matrix(X, dtype=np.float32), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def factor_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.user_factors_ is not None and self.item_factors_ is not None
        return self.user_factors_, self.item_factors_

    def _score(self, users: np.ndarray) -> np.ndarray:
        """``U[users] V'``, summed in float64 and rounded to float32 (:func:`factor_scores`)."""
        assert self.user_factors_ is not None and self.item_factors_ is not None
        cached = self._item_factors64
        if cached is None or cached[0] is not self.item_factors_:  # refit or loaded
            cached = (self.item_factors_, np.ascontiguousarray(self.item_factors_.T, np.float64))
            self._item_factors64 = cached
        return factor_scores(self.user_factors_, cached[1], users)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        """Fold-in: one exact user half-step against the learned item factors."""
        assert self.item_factors_ is not None
        return (self._fold_in(history) @ self.item_factors_.astype(np.float64).T).astype(np.float32)

    def _score_history_items(self, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        assert self.item_factors_ is not None
        V = self.item_factors_[items].astype(np.float64)
        return (self._fold_in(history) @ V.T).astype(np.float32)

    def history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """The fold-in user factors of :meth:`score_history`."""
        self._check_fitted()
        return self._fold_in(sp.csr_matrix(history, dtype=np.float32)).astype(np.float32)

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        assert self.item_factors_ is not None
        X = sp.csr_matrix(history, dtype=np.float64)
        X.data[:] = 1.0
        V = self.item_factors_.astype(np.float64)
        solver = self.solver
        try:
            self.solver = "cholesky"
            U = self._half_step(X, V, np.zeros((X.shape[0], V.shape[1])), self._reg_vector(X))
        finally:
            self.solver = solver
        return U

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        assert self.item_factors_ is not None
        V = self.item_factors_ / np.maximum(np.linalg.norm(self.item_factors_, axis=1,
                                                           keepdims=True), 1e-12)
        return V[items] @ V.T


def _cho_solve_batched(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``L L' x = b`` for a batch of lower-triangular ``L`` (n, f, f), ``b`` (n, f)."""
    import scipy.linalg

    # batched triangular solves through numpy's generic solver would refactor; two
    # substitutions via scipy per matrix would loop. solve_triangular handles a batch only in
    # recent SciPy, so fall back to np.linalg.solve on the factor (still one LAPACK call each).
    try:
        y = scipy.linalg.solve_triangular(L, b[..., None], lower=True, check_finite=False)
        return scipy.linalg.solve_triangular(np.swapaxes(L, 1, 2), y, lower=False,
                                             check_finite=False)[..., 0]
    except ValueError:  # pragma: no cover - SciPy without batched triangular solves
        y = np.linalg.solve(L, b[..., None])
        return np.linalg.solve(np.swapaxes(L, 1, 2), y)[..., 0]


def _cg_solve(X: sp.csr_matrix, Y: np.ndarray, YtY: np.ndarray, alpha: float, reg: np.ndarray,
              b: np.ndarray, x: np.ndarray, steps: int) -> np.ndarray:
    """Warm-started conjugate gradient for all rows at once.

    ``A_u x = YtY x + alpha sum_{i in u} y_i (y_i . x) + reg_u x``; the sum is a gather of the
    item factors at the interactions, a row-wise dot, and a sparse scatter back to rows.
    """
    if X.shape[0] * X.shape[1] <= _DENSE_CELLS:
        # small matrices: two dense products beat gathers over the interactions
        D = X.toarray() * Y.dtype.type(alpha)
        Yt = Y.T.copy()

        def matvec(v: np.ndarray) -> np.ndarray:
            return v @ YtY + (D * (v @ Yt)) @ Y + reg[:, None] * v
    else:
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        Yi = Y[X.indices]

        def matvec(v: np.ndarray) -> np.ndarray:
            dots = np.einsum("nf,nf->n", Yi, v[rows])
            part = sp.csr_matrix((dots * Y.dtype.type(alpha), X.indices, X.indptr),
                                 shape=X.shape) @ Y
            return v @ YtY + np.asarray(part) + reg[:, None] * v

    x = x.copy()
    r = b - matvec(x)
    p = r.copy()
    rs = np.einsum("nf,nf->n", r, r)
    for _ in range(steps):
        Ap = matvec(p)
        denom = np.einsum("nf,nf->n", p, Ap)
        step = np.divide(rs, denom, out=np.zeros_like(rs), where=denom > 0)
        x += step[:, None] * p
        r -= step[:, None] * Ap
        rs_new = np.einsum("nf,nf->n", r, r)
        beta = np.divide(rs_new, rs, out=np.zeros_like(rs), where=rs > 0)
        p = r + beta[:, None] * p
        rs = rs_new
    return x
