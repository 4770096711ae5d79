"""Non-personalised baselines: seeded random and popularity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import DEFAULT_SEED
from explorec.models.base import BaseRecommender


def _hash_uniform(users: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) per (seed, user, item): a splitmix64 hash, vectorised."""
    u = users.astype(np.uint64)[:, None]
    i = np.arange(n_items, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        z = (u * np.uint64(0x9E3779B97F4A7C15)) ^ (i * np.uint64(0xC2B2AE3D27D4EB4F))
        z = z + np.uint64(seed) * np.uint64(0x165667B19E3779F9)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class RandomRecommender(BaseRecommender):
    """Uniformly random scores; the same seed gives the same ranking for a user."""

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
