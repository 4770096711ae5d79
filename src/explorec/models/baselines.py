"""Non-personalised baselines: seeded random and popularity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from explorec._hashing import hash_uniform
from explorec.data.splits import DEFAULT_SEED
from explorec.models.base import BaseRecommender, csr_bytes
from explorec.ranking import top_of_columns


def _hash_uniform(users: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) per (seed, user, item)."""
    return hash_uniform(np.asarray(users)[:, None], np.arange(n_items)[None, :], seed)


class RandomRecommender(BaseRecommender):
    """Uniformly random scores; the same seed gives the same ranking for a user.

    Parameters
    ----------
    seed : seed of the scores (a hash of seed, user and item, so any batch order gives the
        same ranking).
    """

    name = "random"

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Nothing is learned: the training matrix's reference only."""
        return csr_bytes(nnz, n_users)

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        super().__init__()
        self.seed = seed

    def _fit(self, X: sp.csr_matrix) -> None:
        pass

    def _score(self, users: np.ndarray) -> np.ndarray:
        return _hash_uniform(users, self.n_items, self.seed)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return _hash_uniform(np.arange(history.shape[0]) + 2**40, self.n_items, self.seed)

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        return _hash_uniform(items + self.n_users, self.n_items, self.seed)

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.zeros((len(items), len(history)))  # random scores owe nothing to the history


class PopularityRecommender(BaseRecommender):
    """Most-interacted items first (count of training users per item)."""

    name = "pop"
    _state_names = ("item_counts_",)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """The training matrix and one count per item."""
        return 2 * csr_bytes(nnz, n_users) + 16 * n_items

    def __init__(self) -> None:
        super().__init__()
        self.item_counts_: np.ndarray | None = None

    def _fit(self, X: sp.csr_matrix) -> None:
        self.item_counts_ = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)

    def _score(self, users: np.ndarray) -> np.ndarray:
        assert self.item_counts_ is not None
        return np.broadcast_to(self.item_counts_, (len(users), len(self.item_counts_))).copy()

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self._score(np.zeros(history.shape[0], dtype=np.int64))

    def _score_history_items(self, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        assert self.item_counts_ is not None
        return np.broadcast_to(self.item_counts_[items], (history.shape[0], len(items))).copy()

    def _recommend_sparse(self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                          seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The global list minus each user's excluded items: only the items counted at least
        as often as the ``k + most excluded``-th are ranked (with all the items tied with it),
        which holds every user's top-k."""
        assert self.item_counts_ is not None
        counts = self.item_counts_
        order = getattr(self, "_order_cache", None)
        if order is None or len(order) != len(counts):
            order = np.argsort(-counts, kind="stable")
            self._order_cache = order
        n_ex = np.diff(exclude.indptr) if exclude is not None else np.zeros(len(users), int)
        need = k + (int(n_ex.max()) if len(n_ex) else 0)
        if need >= len(counts):
            return None
        cut = counts[order[need - 1]]
        width = int(np.searchsorted(-counts[order], -cut, side="right"))
        if width * 4 > len(counts):  # the tie group is most of the catalog: score densely
            return None
        cand = order[:width]
        scores = np.broadcast_to(counts[cand], (len(users), width))
        return top_of_columns(scores, cand, k, rows=users, exclude=exclude, seed=seed)

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        return self._score(items)

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.zeros((len(items), len(history)))  # popularity owes nothing to the history
