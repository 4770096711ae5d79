"""SLIM: sparse linear item-item model with elastic-net penalty (Ning & Karypis 2011),
solved by ADMM (Steck, Dimakopoulou, Riabov & Jebara, WSDM 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from explorec.models.base import ItemToItemRecommender, NotFittedError, csr_bytes


class SLIM(ItemToItemRecommender):
    """``min_W |X - XW|^2 + l2 |W|^2 + 2 l1 |W|_1`` s.t. ``diag(W) = 0`` (and ``W >= 0``).

    The classic SLIM solves one elastic-net regression per item by coordinate descent
    (RecBole's SLIMElastic calls scikit-learn once per item). ADMM solves all items at once:
    one Cholesky factorisation of the Gram matrix, then a few dense matrix products per
    iteration, with the zero diagonal handled in closed form (Steck et al. 2020). The result is
    the same objective's optimum; small weights are cut to zero by the soft threshold.

    Parameters
    ----------
    l1 : L1 penalty (sparsity).
    l2 : L2 penalty.
    rho : ADMM penalty parameter; ``None`` uses ``l2``.
    iterations : ADMM iterations.
    positive : constrain weights to be non-negative (as SLIM does).
    """

    name = "slim"
    param_constraints: ClassVar[dict[str, Any]] = {"rho": "> 0"}
    _state_names = ("weights_",)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Dense ADMM over items x items: about fourteen float32 copies at its peak."""
        return 56 * n_items**2 + 3 * csr_bytes(nnz, n_users, 8)

    memory_alternative = "use itemknn (sparse neighbours) or ials"

    def __init__(self, l1: float = 1.0, l2: float = 250.0, rho: float | None = None,
                 iterations: int = 20, positive: bool = True) -> None:
        super().__init__()
        self.l1 = l1
        self.l2 = l2
        self.rho = rho
        self.iterations = iterations
        self.positive = positive
        self.weights_: sp.csr_matrix | None = None

    def _fit(self, X: sp.csr_matrix) -> None:
        for p in ("l1", "l2"):
            if float(getattr(self, p)) < 0:
                raise ValueError(f"{p} must be >= 0, got {getattr(self, p)!r}")
        if int(self.iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations!r}")
        rho = float(self.l2 if self.rho is None else self.rho)
        if rho <= 0:
            raise ValueError(f"rho must be > 0, got {self.rho!r}")
        X = sp.csr_matrix(X, dtype=np.float64)
        X.data[:] = 1.0
        G = (X.T @ X).toarray()
        n = G.shape[0]
        A = G.copy()
        A[np.diag_indices(n)] += float(self.l2) + rho
        c = scipy.linalg.cho_factor(A, overwrite_a=True, check_finite=False)
        P = scipy.linalg.cho_solve(c, np.eye(n), check_finite=False)
        # the iterations run in float32: twice as fast, and the weights are stored as float32
        P = P.astype(np.float32)
        G = G.astype(np.float32)
        B_aux = P @ G
        dP = np.diag(P).copy()
        Gamma = np.zeros_like(G)
        C = np.zeros_like(G)
        thresh = np.float32(float(self.l1) / rho)
        rho = np.float32(rho)
        for _ in range(int(self.iterations)):
            B = B_aux + P @ (rho * C - Gamma)
            B -= P * (np.diag(B) / dP)[None, :]  # exact zero diagonal
            C = B + Gamma / rho
            if self.positive:  # soft threshold, then the non-negative part
                C = np.maximum(C - thresh, 0.0)
            else:
                C = np.sign(C) * np.maximum(np.abs(C) - thresh, 0.0)
            Gamma += rho * (B - C)
        np.fill_diagonal(C, 0.0)
        W = sp.csr_matrix(C.astype(np.float32, copy=False))
        W.eliminate_zeros()
        self.weights_ = W

    def _item_weights(self) -> sp.csr_matrix:
        if self.weights_ is None:
            raise NotFittedError(f"{self.name} is not fitted; call fit() first")
        return self.weights_

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        assert self.weights_ is not None
        return self.weights_[:, items].T.toarray().astype(np.float64)
