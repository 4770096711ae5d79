"""The one Policy protocol: rank a slate with propensities, learn from its rewards.

A policy answers *requests*. One request is a user (with the history it has now), a set of
candidate items and optional user features; the answer is a :class:`Slate` of ``k`` items,
their scores and, for every position, the probability with which the policy put that item
there. Those per-position (marginal) propensities are what off-policy evaluation needs
(:mod:`explorec.evaluate.ope`), so every policy logs them:

* deterministic policies (greedy, UCB1, LinUCB) log 1 for each shown item;
* epsilon-greedy's are exact: ``(1 - eps) * [greedy] + eps / n_candidates``;
* sampling policies (softmax, Thompson sampling) draw ``n_draws`` score samples per request,
  show the top-k of one of them chosen uniformly, and log the share of draws that put each
  item at each position. Given the draws that is the exact probability of what was shown, and
  its expectation is the policy's true marginal.

Work is batched: :meth:`Policy.rank_batch` answers ``B`` requests at once with array
operations (the simulator and the service's batch path use it); :meth:`Policy.rank` is the
one-request convenience. :meth:`Policy.update` learns from a :class:`Feedback` batch by
sufficient-statistic / rank-one updates, never a refit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from inspect import isabstract
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.ranking import tie_keys

DEFAULT_SEED = 2020


@dataclass(frozen=True)
class Requests:
    """``B`` ranking requests over internal item ids.

    Attributes
    ----------
    candidates : (B, C) int array of internal item ids; rows may be padded where ``valid`` is False.
    history : (B, n_items) CSR of each user's interactions so far (1 = interacted).
    users : (B,) int array of user keys: any stable integer per user (policies use them only
        to order ties, see :meth:`tie_keys`); the service gives new users a hash of their id.
    base_scores : (B, C) scores of the policy's base model for the candidates, or None to let
        the policy compute them from ``history``.
    context : (B, f) user features, or None.
    valid : (B, C) bool, False for padding; None means every candidate is valid.
    """

    candidates: np.ndarray
    history: sp.csr_matrix
    users: np.ndarray | None = None
    base_scores: np.ndarray | None = None
    context: np.ndarray | None = None
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        c = np.asarray(self.candidates)
        if c.ndim != 2:
            raise ExploRecError(f"candidates must be (requests, candidates), got shape {c.shape}")
        b = c.shape[0]
        if self.history.shape[0] != b:
            raise ExploRecError(f"history has {self.history.shape[0]} rows for {b} requests")
        for name in ("users", "base_scores", "context", "valid"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != b:
                raise ExploRecError(f"{name} has {len(arr)} rows for {b} requests")
        for name in ("base_scores", "valid"):
            arr = getattr(self, name)
            if arr is not None and np.shape(arr) != c.shape:
                raise ExploRecError(f"{name} has shape {np.shape(arr)}, candidates {c.shape}")

    def __len__(self) -> int:
        return int(self.candidates.shape[0])

    @property
    def mask(self) -> np.ndarray:
        return np.ones(self.candidates.shape, bool) if self.valid is None else self.valid

    def tie_keys(self) -> np.ndarray:
        """(B, C) tie-break keys per (user, candidate item): equal scores are ordered by
        these (seeded hashes, :func:`explorec.ranking.tie_keys`), never by candidate position,
        so ties carry no information. Anonymous requests (no ``users``) hash their row."""
        users = np.arange(len(self)) if self.users is None else np.asarray(self.users)
        return tie_keys(users[:, None], self.candidates)

    def with_base_scores(self, scores: np.ndarray) -> Requests:
        return Requests(self.candidates, self.history, self.users, scores, self.context, self.valid)

    def take(self, rows: np.ndarray) -> Requests:
        def sel(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return Requests(self.candidates[rows], self.history[rows], sel(self.users),
                        sel(self.base_scores), sel(self.context), sel(self.valid))


@dataclass(frozen=True)
class Slate:
    """One answer: ``items`` (internal ids, best first), their scores and per-position propensities."""

    items: np.ndarray
    scores: np.ndarray
    propensities: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SlateBatch:
    """``B`` answers. ``positions`` index into each request's candidates.

    ``distribution`` (B, C, k), when kept, is the full per-position marginal distribution over
    the candidates: every ``distribution[b, :, j]`` sums to 1 and ``propensities[b, j] ==
    distribution[b, positions[b, j], j]``.
    """

    items: np.ndarray
    positions: np.ndarray
    scores: np.ndarray
    propensities: np.ndarray
    distribution: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def slate(self, row: int) -> Slate:
        return Slate(self.items[row], self.scores[row], self.propensities[row], dict(self.info))


@dataclass(frozen=True)
class Feedback:
    """Rewards for served slates: ``rewards`` (B, k) in [0, 1], NaN where no reward is known."""

    requests: Requests
    slates: SlateBatch
    rewards: np.ndarray

    def __post_init__(self) -> None:
        if np.shape(self.rewards) != self.slates.items.shape:
            raise ExploRecError(f"rewards have shape {np.shape(self.rewards)}, the slates "
                                f"{self.slates.items.shape}")
        r = np.asarray(self.rewards, dtype=np.float64)
        bad = ~np.isnan(r) & ((r < 0) | (r > 1))
        if bad.any():
            b, j = np.argwhere(bad)[0]
            raise ExploRecError(f"reward {float(r[b, j])!r} at request {int(b)}, position {int(j)} "
                                "is not in [0, 1]")

    def observed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(request row, slate position, reward) for every slot with a known reward."""
        r = np.asarray(self.rewards, dtype=np.float64)
        rows, pos = np.nonzero(~np.isnan(r))
        return rows, pos, r[rows, pos]


@runtime_checkable
class Policy(Protocol):
    """Rank with propensities; learn incrementally from rewards."""

    name: str

    def rank(self, user: int, candidates: np.ndarray, k: int,
             context: dict[str, Any] | None = None) -> Slate: ...

    def rank_batch(self, requests: Requests, k: int, *, keep_distribution: bool = False
                   ) -> SlateBatch: ...

    def update(self, feedback: Feedback) -> None: ...


class BasePolicy(ABC):
    """Shared plumbing: base-model scores, candidate masking, the single-request path, state.

    Subclasses implement :meth:`_rank` on (B, C) arrays and, when they learn, :meth:`update`.
    Policies that need a base model get it from :meth:`prepare` (any fitted Recommender that can
    score histories) and those that need item vectors (LM embeddings) get them there too.
    """

    name: str = "policy"
    #: True for policies whose slate is a deterministic function of the scores
    deterministic: bool = False
    #: True for policies that explore over item text vectors (they need an item catalog)
    needs_item_text: bool = False
    #: True for policies whose features come from the base model's own representation
    #: (a two-tower model's user and item vectors, :class:`~explorec.models.base.VectorRepresentation`):
    #: they can rank only the model's items, not items added through the API
    uses_two_tower: bool = False
    #: True for policies that learn from rewards: set for every subclass that overrides
    #: :meth:`update`, which must then also override :meth:`get_state` and :meth:`set_state`
    #: (else what it learned would be lost at every restart of the service)
    learns: bool = False
    #: how many user context features (``Requests.context`` columns) the policy reads; 0: it
    #: takes no context (the service refuses ``context.features`` rather than drop them);
    #: -1: any number
    n_context: int = 0
    #: keys of :meth:`get_state` arrays that describe the catalog rather than what was learned
    #: (e.g. interest labels derived from the item vectors): a new item gets its entry from
    #: its own vector, not from a prior
    catalog_state: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "learns" not in cls.__dict__:
            cls.learns = cls.update is not BasePolicy.update
        if cls.learns and not isabstract(cls) and (cls.get_state is BasePolicy.get_state
                                                   or cls.set_state is BasePolicy.set_state):
            raise TypeError(f"policy {cls.__name__} learns (overrides update) but does not "
                            "override get_state and set_state: what it learns would be lost "
                            "on restart")

    def __init__(self, *, seed: int = DEFAULT_SEED) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.model: Any = None
        self.n_items: int = 0
        self.item_vectors: np.ndarray | None = None

    # ------------------------------------------------------------------ setup
    def prepare(self, model: Any = None, *, n_items: int | None = None,
                item_vectors: np.ndarray | None = None) -> Self:
        """Attach the base model (for scores) and item vectors (for contexts); returns self."""
        self.model = model
        if n_items is None:
            if model is None:
                raise ExploRecError(f"policy {self.name!r} needs a base model or n_items")
            n_items = int(model.n_items)
        self.n_items = int(n_items)
        if item_vectors is not None:
            item_vectors = np.asarray(item_vectors, dtype=np.float64)
            if item_vectors.shape[0] != self.n_items:
                raise ExploRecError(f"item_vectors has {item_vectors.shape[0]} rows for "
                                    f"{self.n_items} items")
        self.item_vectors = item_vectors
        self._prepare()
        return self

    def _prepare(self) -> None:  # noqa: B027 - optional hook
        """Hook: build per-item state once the catalog size is known."""

    def add_items(self, n_new: int, item_vectors: np.ndarray | None = None) -> None:
        """Grow the catalog by ``n_new`` items (new items start from the prior)."""
        self.n_items += int(n_new)
        if self.item_vectors is not None:
            if item_vectors is None or len(item_vectors) != n_new:
                raise ExploRecError(f"policy {self.name!r} needs item_vectors for the {n_new} new items")
            self.item_vectors = np.vstack([self.item_vectors, np.asarray(item_vectors, np.float64)])
        self._grow(int(n_new))

    def _grow(self, n_new: int) -> None:  # noqa: B027 - optional hook
        """Hook: extend per-item state."""

    def update_item_vectors(self, items: np.ndarray, item_vectors: np.ndarray) -> None:
        """New vectors for existing items (their text changed); a policy that keeps vectors
        or features derived from them refreshes them (:meth:`_refresh_items`)."""
        items = np.asarray(items, dtype=np.int64)
        vectors = np.asarray(item_vectors, dtype=np.float64)
        if len(items) != len(vectors):
            raise ExploRecError(f"update_item_vectors: {len(items)} items, {len(vectors)} vectors")
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            raise ExploRecError(f"update_item_vectors: item ids must be in [0, {self.n_items})")
        if self.item_vectors is not None:
            self.item_vectors[items] = vectors
        self._refresh_items(items, vectors)

    def _refresh_items(self, items: np.ndarray, item_vectors: np.ndarray) -> None:  # noqa: B027
        """Hook: recompute per-item state derived from these items' vectors."""

    # ------------------------------------------------------------------ ranking
    def base_scores(self, requests: Requests) -> np.ndarray:
        """Base-model scores of the candidates (B, C); -inf on padding."""
        if requests.base_scores is not None:
            s = np.asarray(requests.base_scores, dtype=np.float64)
        elif self.model is None:
            s = np.zeros(requests.candidates.shape)
        else:
            full = np.asarray(self.model.score_history(requests.history), dtype=np.float64)
            s = np.take_along_axis(full, requests.candidates, axis=1)
        return np.where(requests.mask, s, -np.inf)

    def rank_batch(self, requests: Requests, k: int, *, keep_distribution: bool = False
                   ) -> SlateBatch:
        """Answer ``B`` requests: a slate of ``k`` items each, with per-position propensities."""
        if k < 1:
            raise ExploRecError(f"k must be >= 1, got {k}")
        n_valid = requests.mask.sum(axis=1)
        if len(requests) and n_valid.min() < k:
            b = int(np.argmin(n_valid))
            raise ExploRecError(f"request {b} has {int(n_valid[b])} valid candidates, fewer than k={k}")
        if requests.candidates.size and (requests.candidates.min() < 0
                                         or requests.candidates.max() >= self.n_items):
            raise ExploRecError(f"candidate item ids must be in [0, {self.n_items})")
        positions, scores, dist = self._rank(requests, k)
        items = np.take_along_axis(requests.candidates, positions, axis=1)
        props = np.take_along_axis(dist, positions[:, None, :], axis=1)[:, 0, :]
        return SlateBatch(items, positions, scores, props, dist if keep_distribution else None,
                          {"policy": self.name})

    @abstractmethod
    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions (B, k) into candidates, scores (B, k), distribution (B, C, k))."""

    def rank(self, user: int, candidates: np.ndarray, k: int,
             context: dict[str, Any] | None = None) -> Slate:
        """Rank ``candidates`` (internal ids) for one user.

        ``context`` may hold ``history`` (internal item ids the user interacted with) and
        ``features`` (a user feature vector).
        """
        context = context or {}
        hist = np.asarray(context.get("history", []), dtype=np.int64)
        h = sp.csr_matrix((np.ones(len(hist), np.float32), (np.zeros(len(hist), int), hist)),
                          shape=(1, self.n_items))
        feats = context.get("features")
        req = Requests(np.asarray(candidates, dtype=np.int64)[None, :], h, np.array([user]),
                       None, None if feats is None else np.asarray(feats, np.float64)[None, :])
        return self.rank_batch(req, k).slate(0)

    def update(self, feedback: Feedback) -> None:  # noqa: B027 - non-learning policies
        """Learn from rewards (no-op for policies that do not learn)."""

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Arrays that fully describe what the policy has learned (for artifacts and stores)."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Restore :meth:`get_state`'s arrays."""

    def get_params(self) -> dict[str, Any]:
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


# ------------------------------------------------------------------ propensity helpers
def topk_positions(scores: np.ndarray, k: int, tie: np.ndarray | None = None) -> np.ndarray:
    """Indices of the top-``k`` of each row of (..., C) scores, best first.

    ``tie`` (same shape, e.g. :meth:`Requests.tie_keys`) orders equal scores, smaller key
    first; without it ties go to the lower index (only for continuous draws, where ties have
    probability zero).
    """
    c = scores.shape[-1]
    if tie is not None:
        order = np.lexsort((tie, -np.asarray(scores, dtype=np.float64)), axis=-1)
        return order[..., :k]
    if k <= 8 and k < c:
        # small k: k argmax passes beat a partition + sort (argmax takes the lowest index on ties)
        work = np.array(scores, dtype=np.float64, copy=True)
        flat = work.reshape(-1, c)
        rows = np.arange(flat.shape[0])
        out = np.empty((flat.shape[0], k), dtype=np.int64)
        for j in range(k):
            best = np.argmax(flat, axis=1)
            out[:, j] = best
            flat[rows, best] = -np.inf
        return out.reshape(*scores.shape[:-1], k)
    if k < c:
        part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    else:
        part = np.broadcast_to(np.arange(c), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=-1)
    # stable on (-score, index) so ties resolve to the lower candidate index
    order = np.lexsort((part, -vals), axis=-1)
    return np.take_along_axis(part, order, axis=-1)


def one_hot_distribution(positions: np.ndarray, n_candidates: int) -> np.ndarray:
    """(B, C, k) distribution putting probability 1 on ``positions`` (B, k)."""
    b, k = positions.shape
    dist = np.zeros((b, n_candidates, k))
    dist[np.arange(b)[:, None], positions, np.arange(k)[None, :]] = 1.0
    return dist


def sampled_slates(draws: np.ndarray, k: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Slates from score draws (B, m, C): show the top-k of one draw chosen uniformly.

    Returns (positions (B, k), distribution (B, C, k)) where the distribution is the share of
    the ``m`` draws that put each candidate at each position: exactly the probability, given
    the draws, that the shown slate has that candidate there.
    """
    return slates_from_draws(topk_positions(draws, k), draws.shape[2], rng)


def slates_from_draws(top: np.ndarray, n_candidates: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Show one of ``m`` drawn slates per request, chosen uniformly: ``top`` (B, m, k) holds
    each draw's candidate positions. Returns (positions (B, k), distribution (B, C, k)), the
    distribution being the share of draws that put each candidate at each position."""
    b, m, k = top.shape
    chosen = rng.integers(0, m, size=b)
    positions = top[np.arange(b), chosen]
    flat = (np.arange(b)[:, None, None] * n_candidates + top) * k + np.arange(k)[None, None, :]
    dist = np.bincount(flat.ravel(), minlength=b * n_candidates * k).reshape(b, n_candidates, k) / m
    return positions, dist
