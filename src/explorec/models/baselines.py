"""Non-personalised baselines: seeded random and popularity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from explorec._hashing import hash_uniform
from explorec.data.splits import DEFAULT_SEED
from explorec.models.base import BaseRecommender


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

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        return self._score(items)

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.zeros((len(items), len(history)))  # popularity owes nothing to the history
