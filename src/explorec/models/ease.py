"""EASE: the closed-form shallow linear autoencoder (Steck, WWW 2019)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from explorec.models.base import BaseRecommender


class EASE(BaseRecommender):
    """Item-item weights ``B = I - P / diag(P)``, ``P = (X^T X + reg I)^-1``, with zero diagonal.

    Parameters
    ----------
    reg : L2 regularisation (lambda). 250 is RecBole's default for ML-100K.
    """

    name = "ease"
    param_constraints: ClassVar[dict[str, Any]] = {"reg": "> 0"}
    _state_names = ("weights_",)

    def __init__(self, reg: float = 250.0) -> None:
        super().__init__()
        self.reg = reg
        self.weights_: np.ndarray | None = None

    def _fit(self, X: sp.csr_matrix) -> None:
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.reg
        # G is symmetric positive definite: Cholesky-based inverse is faster and stabler.
        c, low = scipy.linalg.cho_factor(G, overwrite_a=True, check_finite=False)
        P = scipy.linalg.cho_solve((c, low), np.eye(G.shape[0]), check_finite=False)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0.0
        # C order: sparse @ dense products ravel the dense side, which copies an F-ordered array
        self.weights_ = np.ascontiguousarray(B, dtype=np.float32)

    def _score(self, users: np.ndarray) -> np.ndarray:
        assert self.user_items_ is not None and self.weights_ is not None
        return np.asarray(self.user_items_[users] @ self.weights_)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        assert self.weights_ is not None
        return np.asarray(history @ self.weights_)

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        assert self.weights_ is not None
        return self.weights_[np.ix_(history, items)].T.astype(np.float64)

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        assert self.weights_ is not None
        return self.weights_[:, items].T.astype(np.float64)
