"""Contextual linear bandits on language-model contexts: LinUCB, linear TS and neural-linear.

All three share one Bayesian linear reward model ``r ~ N(theta . x, noise)`` with prior
``theta ~ N(0, I / prior_precision)`` over features ``x(user, item, position)``. Its sufficient
statistics ``A = prior_precision * I + X'X`` and ``b = X'r`` are updated in place from each
feedback batch (a rank-``n`` update; no refit); the Cholesky factor of ``A`` is refreshed lazily
once per batch (``O(d^3)`` with ``d`` well under 200).

Features (:class:`LMFeatures`) for LinUCB and linear TS:

* ``z``: the base model's per-request z-scored score of the item (collaborative signal);
* ``v_i``: the item's LM vector (PCA-reduced to ``dim``, whitened);
* ``u * v_i``: elementwise product with the user's interest vector, the mean LM vector of
  the user's history (zero for a new user);
* ``c (x) v_i``: user features (e.g. age, gender) crossed with the item vector, so new users
  without history still get personalised contexts;
* a position one-hot (learned, so position bias does not leak into item weights; it shifts
  every candidate of a slot equally and so never changes a ranking).

Neural-linear (:class:`NeuralLinearPolicy`, Riquelme et al. 2018) uses a two-tower model's
learned representations instead: ``x = [z, u_emb * v_emb_i, b_i]``, a Bayesian head on the
network's last layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

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
from explorec.explore.greedy import standardize

# ------------------------------------------------------------------ features


def _selected(requests: Requests, base: np.ndarray, cols: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Standardised base scores and candidate ids (B, C'), only the candidates at ``cols``
    when given."""
    z = standardize(base, requests.mask)
    cand = requests.candidates
    if cols is not None:
        z = np.take_along_axis(z, cols, axis=1)
        cand = np.take_along_axis(cand, cols, axis=1)
    return z, cand


class LMFeatures:
    """x(user, item) from base scores, PCA-reduced LM item vectors and user features."""

    def __init__(self, item_vectors: np.ndarray, dim: int = 16, n_context: int = 0,
                 seed: int = DEFAULT_SEED) -> None:
        v = np.asarray(item_vectors, np.float64)
        self.mean_ = v.mean(axis=0)
        dim = min(dim, v.shape[1], max(v.shape[0] - 1, 1))
        # PCA by SVD of the centred vectors; whitened so each component has unit variance
        _, s, vt = np.linalg.svd(v - self.mean_, full_matrices=False)
        self.components_ = vt[:dim]
        self.scale_ = s[:dim] / np.sqrt(max(v.shape[0] - 1, 1)) + 1e-12
        self.dim = dim
        self.n_context = n_context
        self.V = self.transform(v)

    def transform(self, v: np.ndarray) -> np.ndarray:
        return ((np.asarray(v, np.float64) - self.mean_) @ self.components_.T) / self.scale_

    def add_items(self, v: np.ndarray) -> None:
        self.V = np.vstack([self.V, self.transform(v)])

    @property
    def n_features(self) -> int:
        return 1 + 2 * self.dim + self.n_context * self.dim

    def user_vectors(self, requests: Requests) -> np.ndarray:
        """Each request's weighted mean of its history's item vectors (0 for no history):
        ``(h @ V) / h.sum(1)``, the row sums added segment by segment from the CSR arrays
        (``h.sum(1)`` without its per-call cost: the same for 0/1 histories, within float32
        rounding for weighted ones)."""
        h = requests.history
        if not isinstance(h, sp.csr_matrix):
            h = sp.csr_matrix(h)
        ip = h.indptr
        data = np.append(h.data, h.data.dtype.type(0))  # reduceat may point one past the data
        counts = np.add.reduceat(data, ip[:-1]) if len(ip) > 1 else np.zeros(0, data.dtype)
        counts[ip[1:] == ip[:-1]] = 0  # reduceat gives an empty segment its first element
        return np.asarray(h @ self.V[: h.shape[1]]) / np.maximum(counts, 1)[:, None]

    def __call__(self, requests: Requests, base: np.ndarray, cols: np.ndarray | None = None
                 ) -> np.ndarray:
        """(B, C', n_features) for the candidates at ``cols`` (all candidates when None)."""
        z, cand = _selected(requests, base, cols)
        v = self.V[cand]  # (B, C, d)
        u = self.user_vectors(requests)
        parts = [z[..., None], v, u[:, None, :] * v]
        if self.n_context:
            c = requests.context
            if c is None or c.shape[1] != self.n_context:
                got = None if c is None else c.shape[1]
                raise ExploRecError(f"policy expects {self.n_context} user context features, got {got}")
            parts.append((c[:, None, :, None] * v[:, :, None, :]).reshape(*v.shape[:2], -1))
        return np.concatenate(parts, axis=2)


class TwoTowerFeatures:
    """x(user, item) = [z, u_emb * v_emb_i, b_i] from a fitted two-tower model.

    ``z`` is the base model's per-request z-score (the base model may be the two-tower itself
    or another recommender); the embedding features are divided by their standard deviation
    over (logged user, item) pairs so the prior ``N(0, I / prior_precision)`` has a sensible
    scale.
    """

    def __init__(self, model: Any, seed: int = DEFAULT_SEED) -> None:
        from explorec.models.base import VectorRepresentation

        if not isinstance(model, VectorRepresentation) or getattr(model, "item_vectors_",
                                                                   None) is None:
            raise ExploRecError("neural-linear needs a fitted two-tower base model "
                                f"(got {type(model).__name__})")
        self.model = model
        rng = np.random.default_rng(seed)
        hist = model.ordered_history()
        v, b = model.item_representation()
        if hist.shape[0]:
            rows = rng.choice(hist.shape[0], min(hist.shape[0], 500), replace=False)
            u = model.user_vectors(hist[rows])
        else:
            u = np.ones((1, v.shape[1]))
        x = u[rng.integers(0, len(u), 5000)] * v[rng.integers(0, len(v), 5000)]
        self.scale_ = np.append(x.std(axis=0), b.std()) + 1e-12

    @property
    def n_features(self) -> int:
        return int(self.model.item_representation()[0].shape[1]) + 2

    def __call__(self, requests: Requests, base: np.ndarray, cols: np.ndarray | None = None
                 ) -> np.ndarray:
        """[z(base score), scaled u_emb * v_emb, scaled item bias] for each candidate."""
        z, cand = _selected(requests, base, cols)
        u = self.model.user_vectors(requests.history)
        V, B = self.model.item_representation()
        v, b = V[cand], B[cand]
        x = np.concatenate([u[:, None, :] * v, b[..., None]], axis=2).astype(np.float64)
        return np.concatenate([z[..., None], x / self.scale_], axis=2)


# ------------------------------------------------------------------ Bayesian linear model
class BayesianLinear:
    """Gaussian linear regression with conjugate prior; in-place sufficient statistics.

    ``A = prior_precision * I + X'X`` and ``b = prior_precision * prior_mean + X'r``; the noise
    variance is folded into the sampling ``scale`` (Agrawal & Goyal's ``v``).
    """

    def __init__(self, n_features: int, prior_precision: float = 1.0,
                 prior_mean: np.ndarray | None = None) -> None:
        self.A = prior_precision * np.eye(n_features)
        self.b = np.zeros(n_features) if prior_mean is None else prior_precision * np.asarray(prior_mean)
        self.n = 0
        self._chol: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self._chol_inv: np.ndarray | None = None

    def update(self, X: np.ndarray, r: np.ndarray) -> None:
        self.A += X.T @ X
        self.b += X.T @ r
        self.n += len(r)
        self._chol = self._mean = self._chol_inv = None

    def load(self, A: np.ndarray, b: np.ndarray, n: int) -> None:
        """Replace the sufficient statistics (a restored state)."""
        self.A, self.b, self.n = A, b, int(n)
        self._chol = self._mean = self._chol_inv = None

    @property
    def chol(self) -> np.ndarray:
        if self._chol is None:
            self._chol = scipy.linalg.cholesky(self.A, lower=True)
        return self._chol

    @property
    def mean(self) -> np.ndarray:
        if self._mean is None:  # cached until the next update: ranks outnumber rewards
            self._mean = scipy.linalg.cho_solve((self.chol, True), self.b)
        return self._mean

    def sample(self, size: int, scale: float, rng: np.random.Generator) -> np.ndarray:
        """(size, d) draws from N(mean, scale^2 A^-1)."""
        z = rng.standard_normal((self.A.shape[0], size))
        return self.mean[None, :] + scale * scipy.linalg.solve_triangular(self.chol.T, z).T

    def variance(self, X: np.ndarray) -> np.ndarray:
        """x' A^-1 x for X of shape (..., d): ||L^-1 x||^2 with A = L L'.

        L^-1 is cached until the next update (ranks outnumber rewards), so a batch of
        candidates costs one matrix product instead of a triangular solve per call.
        """
        if self._chol_inv is None:
            d = self.A.shape[0]
            self._chol_inv = scipy.linalg.solve_triangular(self.chol, np.eye(d), lower=True)
        w = X.reshape(-1, X.shape[-1]) @ self._chol_inv.T
        return np.einsum("ij,ij->i", w, w).reshape(X.shape[:-1])


class _LinearPolicy(BasePolicy):
    """Shared plumbing: features, position one-hot, the Bayesian model, state."""

    uses_two_tower = False
    representation: Any = None

    needs_item_text = True

    def __init__(self, *, dim: int = 16, n_context: int = 0, prior_precision: float = 1.0,
                 base_weight: float = 0.02, n_positions: int = 10, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        self.base_weight = float(base_weight)
        if prior_precision <= 0:
            raise ExploRecError(f"prior_precision must be > 0, got {prior_precision!r}")
        self.dim = int(dim)
        self.n_context = int(n_context)
        self.prior_precision = float(prior_precision)
        self.n_positions = int(n_positions)

    def _prepare(self) -> None:
        if self.uses_two_tower:
            rep = self.representation if self.representation is not None else self.model
            self.features: Any = TwoTowerFeatures(rep, self.seed)
        else:
            if self.item_vectors is None:
                raise ExploRecError(f"policy {self.name!r} needs item_vectors (LM item embeddings)")
            self.features = LMFeatures(self.item_vectors, self.dim, self.n_context, self.seed)
        # prior mean: the base model's ranking, worth ``base_weight`` reward per unit of score,
        # so a fresh policy starts as greedy and the data takes over (see module docstring)
        mu0 = np.zeros(self.features.n_features + self.n_positions)
        mu0[0] = self.base_weight
        self.linear = BayesianLinear(len(mu0), self.prior_precision, mu0)

    def _grow(self, n_new: int) -> None:
        if isinstance(self.features, LMFeatures):
            assert self.item_vectors is not None
            self.features.add_items(self.item_vectors[-n_new:])

    def _refresh_items(self, items: np.ndarray, item_vectors: np.ndarray) -> None:
        if isinstance(self.features, LMFeatures):
            self.features.V[items] = self.features.transform(item_vectors)

    def _weights(self, theta: np.ndarray) -> np.ndarray:
        return theta[..., : self.features.n_features]

    def update(self, feedback: Feedback) -> None:
        rows, pos, r = feedback.observed()
        if not len(rows):
            return
        req = feedback.requests.take(np.unique(rows))
        remap = np.searchsorted(np.unique(rows), rows)
        base = self.base_scores(req)
        cols = feedback.slates.positions[np.unique(rows)]
        x = self.features(req, base, cols)[remap, pos]  # (n, d)
        onehot = np.zeros((len(rows), self.n_positions))
        onehot[np.arange(len(rows)), np.minimum(pos, self.n_positions - 1)] = 1.0
        self.linear.update(np.hstack([x, onehot]), r)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"A": self.linear.A.copy(), "b": self.linear.b.copy(), "n": np.array([self.linear.n])}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        A = np.asarray(state["A"], np.float64)
        if A.shape != self.linear.A.shape:
            raise ExploRecError(f"policy state has A of shape {A.shape}, expected {self.linear.A.shape}")
        self.linear.load(A.copy(), np.asarray(state["b"], np.float64).copy(),
                         int(np.asarray(state["n"])[0]))


class LinUCBPolicy(_LinearPolicy):
    """LinUCB (Li et al. 2010), shared-parameter: ``theta'x + alpha * sqrt(x' A^-1 x)``."""

    name = "linucb"
    deterministic = True

    def __init__(self, alpha: float = 0.1, *, dim: int = 16, n_context: int = 0,
                 prior_precision: float = 1.0, base_weight: float = 0.02, n_positions: int = 10,
                 seed: int = DEFAULT_SEED) -> None:
        super().__init__(dim=dim, n_context=n_context, prior_precision=prior_precision,
                         base_weight=base_weight, n_positions=n_positions, seed=seed)
        if alpha < 0:
            raise ExploRecError(f"alpha must be >= 0, got {alpha!r}")
        self.alpha = float(alpha)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base = self.base_scores(requests)
        X = self.features(requests, base)
        pad = np.zeros((*X.shape[:2], self.n_positions))
        pad[..., 0] = 1.0
        Xp = np.concatenate([X, pad], axis=2)
        mean = X @ self._weights(self.linear.mean)
        ucb = mean + self.alpha * np.sqrt(self.linear.variance(Xp))
        key = np.where(requests.mask, ucb, -np.inf)
        pos = topk_positions(key, k, requests.tie_keys())
        return pos, np.take_along_axis(key, pos, axis=1), one_hot_distribution(pos, key.shape[1])


class LinTSPolicy(_LinearPolicy):
    """Linear Thompson sampling (Agrawal & Goyal 2013): theta ~ N(mean, scale^2 A^-1) per draw."""

    name = "lints"

    def __init__(self, scale: float = 0.3, n_draws: int = 64, *, dim: int = 16, n_context: int = 0,
                 prior_precision: float = 1.0, base_weight: float = 0.02, n_positions: int = 10,
                 seed: int = DEFAULT_SEED) -> None:
        super().__init__(dim=dim, n_context=n_context, prior_precision=prior_precision,
                         base_weight=base_weight, n_positions=n_positions, seed=seed)
        if scale < 0 or n_draws < 1:
            raise ExploRecError(f"need scale >= 0 and n_draws >= 1, got {scale!r}, {n_draws!r}")
        self.scale = float(scale)
        self.n_draws = int(n_draws)

    def sample_scores(self, requests: Requests, base: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(draws (B, m, C) of the candidates' scores under ``n_draws`` posterior samples,
        -inf on padding; posterior mean scores (B, C))."""
        base = self.base_scores(requests) if base is None else base
        X = self.features(requests, base)  # (B, C, d)
        b, c, d = X.shape
        # the m posterior draws are shared by the batch's requests (one BLAS product); each
        # request shows the top-k of one of them, so its logged propensities stay exact
        theta = self._weights(self.linear.sample(self.n_draws, self.scale, self.rng))  # (m, d)
        draws = (X.reshape(b * c, d) @ theta.T).reshape(b, c, self.n_draws).transpose(0, 2, 1)
        draws = np.where(requests.mask[:, None, :], draws, -np.inf)
        return draws, X @ self._weights(self.linear.mean)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        draws, mean = self.sample_scores(requests)
        pos, dist = sampled_slates(draws, k, self.rng)
        return pos, np.take_along_axis(mean, pos, axis=1), dist


class NeuralLinearPolicy(LinTSPolicy):
    """Thompson sampling with a Bayesian linear head on a two-tower model's embeddings.

    The embeddings come from ``representation`` (a fitted two-tower model, see
    :meth:`set_representation`), or from the base model when that is a two-tower model.
    """

    name = "neural-linear"
    uses_two_tower = True

    def set_representation(self, model: Any) -> NeuralLinearPolicy:
        """Use ``model``'s (a fitted two-tower) user and item embeddings; call before prepare."""
        self.representation = model
        return self
