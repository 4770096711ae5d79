"""RP3beta: item-item random walks with popularity penalisation (Paudel et al. 2017)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.models.base import ItemToItemRecommender, NotFittedError, csr_bytes


def _row_normalise(M: sp.csr_matrix) -> sp.csr_matrix:
    n = np.asarray(M.sum(axis=1)).ravel()
    inv = np.divide(1.0, n, out=np.zeros_like(n, dtype=np.float64), where=n > 0)
    return sp.csr_matrix(sp.diags(inv) @ M)


class RP3beta(ItemToItemRecommender):
    """Three-step random walk item -> user -> item, penalised by the target's popularity.

    ``W[i, j] = sum_u P(u | i)^alpha P(j | u)^alpha / pop(j)^beta``, each row keeping its ``k``
    largest entries; ``score(u, j) = sum_{i in u} W[i, j]``. ``alpha = 1, beta = 0`` is P3.

    Parameters
    ----------
    alpha : exponent applied to the transition probabilities.
    beta : popularity penalty exponent of the target item.
    k : neighbours kept per item (row of ``W``).
    normalize : L1-normalise each row of ``W`` after the top-k cut.
    """

    name = "rp3beta"
    param_constraints: ClassVar[dict[str, Any]] = {"alpha": ">= 0", "beta": ">= 0"}
    _state_names = ("similarity_",)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """The two-step transition product (sparse, at worst items x items) and two dense
        float64 copies of it."""
        return 32 * n_items**2 + 4 * csr_bytes(nnz, n_users, 8)

    memory_alternative = "use itemknn (sparse neighbours) or ials"

    def __init__(self, alpha: float = 1.0, beta: float = 0.6, k: int = 100,
                 normalize: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.normalize = normalize
        self.similarity_: sp.csr_matrix | None = None

    def _fit(self, X: sp.csr_matrix) -> None:
        if float(self.alpha) <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if float(self.beta) < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k!r}")
        X = sp.csr_matrix(X, dtype=np.float64)
        X.data[:] = 1.0
        p_ui = _row_normalise(X)  # user -> item
        p_iu = _row_normalise(X.T.tocsr())  # item -> user
        p_ui.data **= self.alpha
        p_iu.data **= self.alpha
        pop = np.asarray(X.sum(axis=0)).ravel()
        penalty = np.divide(1.0, pop ** self.beta, out=np.zeros_like(pop), where=pop > 0)
        W = (p_iu @ p_ui).toarray() * penalty[None, :]
        np.fill_diagonal(W, 0.0)
        W = _keep_topk_rows(W, int(self.k))
        if self.normalize:
            W = _row_normalise(W)
        self.similarity_ = W.astype(np.float32)

    def _item_weights(self) -> sp.csr_matrix:
        if self.similarity_ is None:
            raise NotFittedError(f"{self.name} is not fitted; call fit() first")
        return self.similarity_

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        assert self.similarity_ is not None
        return self.similarity_[items].toarray().astype(np.float64)


def _keep_topk_rows(W: np.ndarray, k: int) -> sp.csr_matrix:
    """Sparse copy of ``W`` keeping the ``k`` largest positive entries of each row."""
    n = W.shape[1]
    k = min(k, n)
    idx = np.argpartition(-W, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(W, idx, axis=1)
    keep = vals > 0
    rows = np.repeat(np.arange(W.shape[0]), k)[keep.ravel()]
    return sp.csr_matrix((vals[keep], (rows, idx[keep])), shape=W.shape)
