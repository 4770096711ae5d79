"""Policies over a base model's scores: greedy, epsilon-greedy and softmax exploration.

The exploration budget of :class:`EpsilonGreedyPolicy` and :class:`SoftmaxPolicy` is the share
of requests that explore ("explore in 10% of requests", as Azure Personalizer put it); the
other requests get the greedy slate. Both log exact per-position propensities.
"""

from __future__ import annotations

import numpy as np

from explorec.errors import ExploRecError
from explorec.explore.base import (
    DEFAULT_SEED,
    BasePolicy,
    Requests,
    one_hot_distribution,
    sampled_slates,
    topk_positions,
)


def standardize(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-request z-scores over the valid candidates (0 on padding); scale-free temperatures."""
    s = np.where(mask, scores, 0.0)
    n = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    mean = s.sum(axis=1, keepdims=True) / n
    var = (np.where(mask, (s - mean) ** 2, 0.0)).sum(axis=1, keepdims=True) / n
    return np.where(mask, (s - mean) / np.sqrt(var + 1e-12), 0.0)


def _check_budget(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ExploRecError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


class GreedyPolicy(BasePolicy):
    """Pure exploitation: the base model's top-k. Propensity 1 for every shown item."""

    name = "greedy"
    deterministic = True

    def __init__(self, *, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.base_scores(requests)
        pos = topk_positions(s, k, requests.tie_keys())
        return pos, np.take_along_axis(s, pos, axis=1), one_hot_distribution(pos, s.shape[1])


class EpsilonGreedyPolicy(BasePolicy):
    """Greedy slate, except in ``epsilon`` of the requests a uniformly random slate.

    Per-position propensity of candidate ``i`` at position ``j``:
    ``(1 - epsilon) * [greedy puts i at j] + epsilon / n_valid_candidates``.
    """

    name = "egreedy"

    def __init__(self, epsilon: float = 0.1, *, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        self.epsilon = _check_budget("epsilon", epsilon)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.base_scores(requests)
        mask = requests.mask
        b, c = s.shape
        greedy = topk_positions(s, k, requests.tie_keys())
        uniform_keys = np.where(mask, self.rng.random((b, c)), -np.inf)
        random = topk_positions(uniform_keys, k)
        explore = self.rng.random(b) < self.epsilon
        pos = np.where(explore[:, None], random, greedy)
        dist = (1 - self.epsilon) * one_hot_distribution(greedy, c)
        dist += self.epsilon * (mask / mask.sum(axis=1, keepdims=True))[:, :, None]
        return pos, np.take_along_axis(s, pos, axis=1), dist


class SoftmaxPolicy(BasePolicy):
    """Greedy slate, except in ``budget`` of the requests a Plackett-Luce (softmax) slate.

    Exploring requests sample the slate from ``softmax(z / temperature)`` without replacement,
    where ``z`` are the per-request z-scores of the base model, so exploration favours items
    the model already likes. Sampling uses ``n_draws`` Gumbel-perturbed score draws; the
    logged propensity is the share of draws putting the item at that position (see
    :func:`explorec.explore.base.sampled_slates`).
    """

    name = "softmax"

    def __init__(self, temperature: float = 0.5, budget: float = 0.2, n_draws: int = 64, *,
                 seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        if temperature <= 0:
            raise ExploRecError(f"temperature must be > 0, got {temperature!r}")
        if n_draws < 1:
            raise ExploRecError(f"n_draws must be >= 1, got {n_draws!r}")
        self.temperature = float(temperature)
        self.budget = _check_budget("budget", budget)
        self.n_draws = int(n_draws)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.base_scores(requests)
        mask = requests.mask
        b, c = s.shape
        greedy = topk_positions(s, k, requests.tie_keys())
        logits = standardize(s, mask) / self.temperature
        gumbel = -np.log(-np.log(self.rng.random((b, self.n_draws, c)) + 1e-300) + 1e-300)
        draws = np.where(mask[:, None, :], logits[:, None, :] + gumbel, -np.inf)
        sampled, pl = sampled_slates(draws, k, self.rng)
        explore = self.rng.random(b) < self.budget
        pos = np.where(explore[:, None], sampled, greedy)
        dist = (1 - self.budget) * one_hot_distribution(greedy, c) + self.budget * pl
        return pos, np.take_along_axis(s, pos, axis=1), dist
