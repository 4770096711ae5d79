"""Maximal marginal relevance (Carbonell & Goldstein 1998) diversity re-ranking.

Greedily fills the slate with ``argmax lambda * relevance - (1 - lambda) * max_sim(selected)``
where relevance is the base model's per-request z-score (rescaled to [0, 1]) and similarity
is the cosine of the items' LM vectors. Deterministic: propensity 1 per shown item. Vectorised
over the batch; the loop is over the ``k`` slate positions only.
"""

from __future__ import annotations

import numpy as np

from explorec.errors import ExploRecError
from explorec.explore.base import DEFAULT_SEED, BasePolicy, Requests, one_hot_distribution
from explorec.explore.greedy import standardize


def mmr_positions(relevance: np.ndarray, vectors: np.ndarray, mask: np.ndarray, k: int,
                  lam: float, tie: np.ndarray | None = None) -> np.ndarray:
    """MMR order (B, k) of candidates given relevance (B, C) and unit vectors (B, C, d).

    Equal values go to the smallest ``tie`` key (B, C) (default: the lower position)."""
    b, c = relevance.shape
    rows = np.arange(b)
    chosen = np.zeros((b, k), dtype=np.int64)
    max_sim = np.zeros((b, c))
    available = mask.copy()
    for j in range(k):
        value = np.where(available, lam * relevance - (1 - lam) * max_sim, -np.inf)
        if tie is None:
            pick = np.argmax(value, axis=1)
        else:
            best = value == value.max(axis=1, keepdims=True)
            pick = np.argmin(np.where(best, tie, np.iinfo(np.uint64).max), axis=1)
        chosen[:, j] = pick
        available[rows, pick] = False
        sim = np.einsum("bcd,bd->bc", vectors, vectors[rows, pick])
        max_sim = np.maximum(max_sim, sim)
    return chosen


class MMRPolicy(BasePolicy):
    """Base-model ranking re-ranked for diversity with MMR over LM item vectors."""

    name = "mmr"
    needs_item_text = True
    deterministic = True

    def __init__(self, lam: float = 0.7, *, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        if not 0 <= lam <= 1:
            raise ExploRecError(f"lam must be in [0, 1], got {lam!r}")
        self.lam = float(lam)

    def _prepare(self) -> None:
        if self.item_vectors is None:
            raise ExploRecError("policy 'mmr' needs item_vectors (LM item embeddings)")
        v = self.item_vectors
        self._unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def _grow(self, n_new: int) -> None:
        self._prepare()

    def _refresh_items(self, items: np.ndarray, item_vectors: np.ndarray) -> None:
        """Re-texted items: their unit vectors (the rest of the catalog is untouched)."""
        v = np.asarray(item_vectors, np.float64)
        self._unit[items] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base = self.base_scores(requests)
        z = standardize(base, requests.mask)
        lo = np.where(requests.mask, z, np.inf).min(axis=1, keepdims=True)
        hi = np.where(requests.mask, z, -np.inf).max(axis=1, keepdims=True)
        rel = (z - lo) / np.maximum(hi - lo, 1e-12)
        pos = mmr_positions(rel, self._unit[requests.candidates], requests.mask, k, self.lam,
                            requests.tie_keys())
        return pos, np.take_along_axis(base, pos, axis=1), one_hot_distribution(pos, base.shape[1])
