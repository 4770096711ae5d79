"""EASE: the closed-form shallow linear autoencoder (Steck, WWW 2019)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.models.base import BaseRecommender, csr_bytes

#: bytes a block of the Gram product may take (its dense rows plus the sparse product)
GRAM_BLOCK_BYTES = 256 * 2**20


def _gram_block(n_items: int) -> int:
    return max(1, min(n_items, GRAM_BLOCK_BYTES // (20 * max(n_items, 1))))


def gram_float32(X: sp.csr_matrix) -> np.ndarray:
    """Dense float32 ``X^T X`` (items x items), built in row blocks of bounded memory.

    No sparse product of the whole Gram matrix is ever held (its index arrays would be larger
    than the dense result), and no float64 copy is made.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    Xt = X.T.tocsr()
    n = X.shape[1]
    G = np.empty((n, n), dtype=np.float32)
    b = _gram_block(n)
    for s in range(0, n, b):
        e = min(n, s + b)
        G[s:e] = (Xt[s:e] @ X).toarray()
    return G


def symmetrize_lower(A: np.ndarray, block: int = 1024) -> None:
    """Copy the lower triangle of square ``A`` onto its upper one, in place, in blocks."""
    n = A.shape[0]
    for s in range(0, n, block):
        e = min(n, s + block)
        D = A[s:e, s:e]
        D[np.triu_indices(e - s, 1)] = D.T[np.triu_indices(e - s, 1)]
        if e < n:
            A[s:e, e:] = A[e:, s:e].T


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

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Peak bytes of ``fit``: one float32 item x item matrix (Gram, then its inverse, then
        the weights, all in place) plus a bounded block of the Gram product."""
        block = _gram_block(n_items)
        return 4 * n_items**2 + 20 * block * n_items + 3 * csr_bytes(nnz, max(n_users, n_items))

    memory_alternative = ("use ials or itemknn, or keep fewer items (--k-core, --min-rating)")

    def _fit(self, X: sp.csr_matrix) -> None:
        n = X.shape[1]
        G = gram_float32(X)
        G[np.diag_indices(n)] += np.float32(self.reg)
        # In place, no identity matrix: the transpose of the C-ordered symmetric G is the same
        # matrix in Fortran order, which LAPACK overwrites (potrf: Cholesky, potri: inverse).
        F = G.T
        _, info = scipy.linalg.lapack.spotrf(F, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            raise ExploRecError(f"ease: the Gram matrix plus reg={self.reg} is not positive "
                                f"definite (LAPACK potrf info {info}); raise reg")
        _, info = scipy.linalg.lapack.spotri(F, lower=0, overwrite_c=1)
        if info != 0:
            raise ExploRecError(f"ease: inverting the Gram matrix failed (LAPACK potri info {info})")
        symmetrize_lower(G)  # potri wrote F's upper triangle, i.e. G's lower one
        d = np.diag(G).copy()
        np.divide(G, -d[None, :], out=G)  # B = -P / diag(P), column-wise
        G[np.diag_indices(n)] = 0.0
        self.weights_ = G

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
