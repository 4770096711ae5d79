"""Neighbourhood models: item-based and user-based k-nearest neighbours (cosine + shrinkage)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.models.base import BaseRecommender, ItemToItemRecommender, NotFittedError, csr_bytes


def topk_cosine(M: sp.csr_matrix, k: int, shrink: float = 0.0, alpha: float = 0.5,
                block: int = 512) -> sp.csr_matrix:
    """Row-row cosine similarity of ``M``, keeping the ``k`` largest per row (self excluded).

    ``sim(a, b) = a.b / (|a|^(2(1-alpha)) |b|^(2 alpha) + shrink)``: ``alpha = 0.5`` is the
    cosine; other values give the asymmetric cosine (Aiolli 2013), where row ``a`` is the
    query and ``b`` its neighbour. Computed in row blocks of dense products so memory stays at
    ``block x n_rows``; the result is a CSR matrix (row = neighbours of a row).
    """
    M = sp.csr_matrix(M, dtype=np.float64)
    n = M.shape[0]
    k = min(k, n - 1)
    norms = np.sqrt(np.asarray(M.multiply(M).sum(axis=1)).ravel())
    Mt = M.T.tocsc()
    rows, cols, vals = [], [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        dots = (M[s:e] @ Mt).toarray()
        denom = norms[s:e, None] ** (2 * (1 - alpha)) * norms[None, :] ** (2 * alpha) + shrink
        sim = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        sim[np.arange(e - s), np.arange(s, e)] = 0.0  # no self-similarity
        if k <= 0:
            continue
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        v = np.take_along_axis(sim, idx, axis=1)
        keep = v > 0
        rows.append(np.repeat(np.arange(s, e), k)[keep.ravel()])
        cols.append(idx[keep])
        vals.append(v[keep])
    if not rows:
        return sp.csr_matrix((n, n))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n))


class ItemKNN(ItemToItemRecommender):
    """Item-based kNN: score(u, i) = sum of similarities of i to the items u interacted with.

    Parameters
    ----------
    k : neighbours kept per item (each candidate item keeps its ``k`` most similar items).
    shrink : shrinkage added to the cosine denominator (penalises similarities from few users).
    alpha : asymmetry of the cosine; 0.5 is the plain cosine. Larger values divide more by the
        popularity of the history item.
    user_weighting : ``"none"`` (RecBole's ItemKNN) or ``"iuf"`` — each user's row is scaled
        by ``1/sqrt(n_u)`` before similarities are computed, so that heavy users count less.
    """

    name = "itemknn"
    param_constraints: ClassVar[dict[str, Any]] = {"alpha": "[0, 1]", "user_weighting": ("none", "iuf")}
    _state_names = ("similarity_",)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """float64 copies of the matrix, one block of dense similarities (512 x items), and the
        kept neighbours (three copies while the sparse result is assembled)."""
        return 3 * csr_bytes(nnz, n_items, 8) + 8 * 8 * min(512, n_items) * n_items + 3 * 24 * min(
            int(self.k), n_items) * n_items

    memory_alternative = "lower --param itemknn.k"

    def __init__(self, k: int = 100, shrink: float = 0.0, alpha: float = 0.5,
                 user_weighting: str = "none") -> None:
        super().__init__()
        self.k = k
        self.shrink = shrink
        self.alpha = alpha
        self.user_weighting = user_weighting
        self.similarity_: sp.csr_matrix | None = None

    def _fit(self, X: sp.csr_matrix) -> None:
        Xw = _weight_users(X, self.user_weighting)
        # Row j of the top-k matrix holds candidate j's neighbours; transposed, scores = X @ W
        # gather, for each candidate, its similarity to the user's items among its k neighbours.
        self.similarity_ = topk_cosine(Xw.T.tocsr(), self.k, self.shrink, self.alpha).T.tocsr()

    def _item_weights(self) -> sp.csr_matrix:
        if self.similarity_ is None:
            raise NotFittedError(f"{self.name} is not fitted; call fit() first")
        return self.similarity_


def _weight_users(X: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    if weighting == "none":
        return X
    if weighting == "iuf":
        n = np.asarray(X.sum(axis=1)).ravel()
        inv = np.divide(1.0, np.sqrt(n), out=np.zeros_like(n, dtype=np.float64), where=n > 0)
        return sp.csr_matrix(sp.diags(inv) @ X)
    raise ValueError(f"user_weighting must be 'none' or 'iuf', not {weighting!r}")


class UserKNN(BaseRecommender):
    """User-based kNN: score(u, i) = sum over u's k most similar users who interacted with i.

    Parameters
    ----------
    k : neighbours kept per user (its ``k`` most similar users by cosine).
    shrink : shrinkage added to the cosine denominator (penalises similarities from few items).
    """

    name = "userknn"
    _state_names = ("similarity_",)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """As itemknn's, with users in place of items."""
        return 3 * csr_bytes(nnz, n_users, 8) + 8 * 8 * min(512, n_users) * n_users + 3 * 24 * min(
            int(self.k), n_users) * n_users

    memory_alternative = "lower --param userknn.k, or use itemknn (items x items)"

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        super().__init__()
        self.k = k
        self.shrink = shrink
        self.similarity_: sp.csr_matrix | None = None

    def _fit(self, X: sp.csr_matrix) -> None:
        self.similarity_ = topk_cosine(X, self.k, self.shrink)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._sparse_scores(users).toarray())

    def _sparse_scores(self, users: np.ndarray) -> sp.csr_matrix:
        assert self.user_items_ is not None and self.similarity_ is not None
        return sp.csr_matrix(self.similarity_[users] @ self.user_items_)
