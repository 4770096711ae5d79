"""Per-item (context-free) bandits: UCB1 and Bernoulli Thompson sampling.

Both keep two sufficient statistics per item, shows and clicks, updated with ``np.add.at``
over a whole feedback batch. Every shown position counts as one pull.
"""

from __future__ import annotations

import numpy as np

from explorec.errors import ExploRecError
from explorec.explore.base import (
    DEFAULT_SEED,
    BasePolicy,
    Feedback,
    Requests,
    one_hot_distribution,
    sampled_slates,
    topk_positions,
)


class _ItemCounts(BasePolicy):
    def _prepare(self) -> None:
        self.shows = np.zeros(self.n_items)
        self.clicks = np.zeros(self.n_items)

    def _grow(self, n_new: int) -> None:
        self.shows = np.concatenate([self.shows, np.zeros(n_new)])
        self.clicks = np.concatenate([self.clicks, np.zeros(n_new)])

    def update(self, feedback: Feedback) -> None:
        rows, pos, r = feedback.observed()
        items = feedback.slates.items[rows, pos]
        np.add.at(self.shows, items, 1.0)
        np.add.at(self.clicks, items, r)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"shows": self.shows.copy(), "clicks": self.clicks.copy()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.shows = np.asarray(state["shows"], np.float64).copy()
        self.clicks = np.asarray(state["clicks"], np.float64).copy()
        self.n_items = len(self.shows)


class UCB1Policy(_ItemCounts):
    """UCB1 (Auer et al. 2002): mean click rate plus ``sqrt(c * ln t / n_i)``; unshown items first.

    Ties (e.g. among unshown items) go to the base model's higher score, so a fresh UCB1 starts
    from the base model's ranking rather than from item-id order.
    """

    name = "ucb"
    deterministic = True

    def __init__(self, c: float = 2.0, *, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        if c < 0:
            raise ExploRecError(f"c must be >= 0, got {c!r}")
        self.c = float(c)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cand = requests.candidates
        n = self.shows[cand]
        t = max(self.shows.sum(), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ucb = np.where(n > 0, self.clicks[cand] / n + np.sqrt(self.c * np.log(t) / n), np.inf)
        base = self.base_scores(requests)
        # unshown items first (value 1e6), ties broken by the base model's rank (< 1e-6),
        # and ties in the base scores by the requests' tie keys
        tie = requests.tie_keys()
        ascending = np.lexsort((~tie, np.where(requests.mask, base, -np.inf)), axis=1)
        rank = np.argsort(ascending, axis=1)
        value = np.where(np.isfinite(ucb), ucb, 1e6)
        key = np.where(requests.mask, value + 1e-7 * rank / cand.shape[1], -np.inf)
        pos = topk_positions(key, k, tie)
        return pos, np.take_along_axis(value, pos, axis=1), one_hot_distribution(pos, cand.shape[1])


class BernoulliTSPolicy(_ItemCounts):
    """Bernoulli Thompson sampling with Beta(alpha0, beta0) priors (as ZOZOTOWN's BTS).

    Each request draws ``n_draws`` samples ``theta_i ~ Beta(alpha0 + clicks_i, beta0 + shows_i
    - clicks_i)`` for its candidates and shows the top-k of one of them; the propensities are
    the shares of draws putting each item at each position. Per-item priors can be set with
    :meth:`set_prior` (e.g. BTS's published priors).
    """

    name = "ts"

    def __init__(self, alpha0: float = 1.0, beta0: float = 20.0, n_draws: int = 64, *,
                 seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        if alpha0 <= 0 or beta0 <= 0:
            raise ExploRecError(f"alpha0 and beta0 must be > 0, got {alpha0!r}, {beta0!r}")
        if n_draws < 1:
            raise ExploRecError(f"n_draws must be >= 1, got {n_draws!r}")
        self.alpha0 = float(alpha0)
        self.beta0 = float(beta0)
        self.n_draws = int(n_draws)
        self._alpha_prior: np.ndarray | None = None
        self._beta_prior: np.ndarray | None = None

    def set_prior(self, alpha: np.ndarray, beta: np.ndarray) -> None:
        alpha, beta = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
        if alpha.shape != (self.n_items,) or beta.shape != (self.n_items,):
            raise ExploRecError(f"priors need shape ({self.n_items},), got {alpha.shape}, {beta.shape}")
        if (alpha <= 0).any() or (beta <= 0).any():
            raise ExploRecError("Beta priors must be > 0")
        self._alpha_prior, self._beta_prior = alpha, beta

    def _grow(self, n_new: int) -> None:
        super()._grow(n_new)
        if self._alpha_prior is not None and self._beta_prior is not None:
            self._alpha_prior = np.concatenate([self._alpha_prior, np.full(n_new, self.alpha0)])
            self._beta_prior = np.concatenate([self._beta_prior, np.full(n_new, self.beta0)])

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        a0 = self.alpha0 if self._alpha_prior is None else self._alpha_prior
        b0 = self.beta0 if self._beta_prior is None else self._beta_prior
        return a0 + self.clicks, b0 + np.maximum(self.shows - self.clicks, 0.0)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.posterior()
        cand = requests.candidates
        nb, c = cand.shape
        theta = self.rng.beta(a[cand][:, None, :], b[cand][:, None, :], size=(nb, self.n_draws, c))
        draws = np.where(requests.mask[:, None, :], theta, -np.inf)
        pos, dist = sampled_slates(draws, k, self.rng)
        mean = a[cand] / (a[cand] + b[cand])
        return pos, np.take_along_axis(mean, pos, axis=1), dist
