"""Hierarchical interest exploration: exploit slots from a base policy, explore slots that
sample a new *interest* by Thompson sampling and show its best item.

A slate of ``k`` has exploit slots and explore slots (Wang et al. 2024's "novel interest"
slots; MABWiser #40's topic -> item hierarchy; per-slot exploration inside a top-k list):

* **Interests** are fine clusters of the items' text vectors
  (:func:`explorec.interests.taxonomy.cluster_items`, sizes by silhouette), or labels given
  with :meth:`InterestTSPolicy.set_interests` (an :class:`~explorec.interests.InterestTaxonomy`'s).
  An interest is *novel* to a user when nothing in their history lies in it.
* **Exploit slots** take the exploit policy's ranking: the base model's (``exploit="greedy"``),
  or one posterior draw of linear Thompson sampling on LM features (``"lints"``) or of
  neural-linear on a two-tower model's embeddings (``"neural-linear"``), which learn from
  every reward as they do alone.
* **Explore slots** each sample a novel interest by Thompson sampling over the user's
  per-interest click posterior ``Beta(s * mu + clicks, s * (1 - mu) + shows - clicks)``,
  where ``shows``/``clicks`` count the user's impressions of that interest while it was novel
  to them, ``s`` is ``prior_strength`` and the prior mean ``mu`` is hierarchical: the
  interest's own novel click rate over all users (shrunk toward the global one by
  ``cluster_strength`` pseudo-shows) times the user's *lift* from a novel-interest predictor,
  ``P(next novel interest | the user's interest profile)`` over the novel interests with a
  candidate, times their number, clipped to ``[1/max_lift, max_lift]``. The predictor is a
  (K, K) transition table: by default P(b engaged | a engaged) from the base model's training
  history (:func:`~explorec.interests.novelty.engagement_table`); with time-ordered
  interactions (:meth:`set_interests`) the novel-transition table of Wang et al.
  (:func:`~explorec.interests.novelty.transition_table`); any distilled table (e.g. a
  fine-tuned language model's) fits the same slot. The slot then shows the interest's best
  unseen candidate by the base model, ties (new items the model has no score for) broken
  by text similarity to the user's history.
* **Budget**: each slot explores with probability ``budget``, raised per user by
  ``boredom`` for every visit in a row without a click (up to ``max_budget``): a user whose
  known interests stopped working is shown more new ones. Explore slots fill the slate
  from the bottom (``explore_slots="last"``, where position bias costs least) or sit at
  random positions (``"random"``).

Propensities: every request draws ``n_draws`` complete slates (each with its own exploit
posterior draw, budget coins and interest samples) and shows one chosen uniformly; the logged
per-position propensity is the share of draws that put the item there, exactly the
probability of what was shown given the draws (as :func:`explorec.explore.base.sampled_slates`).

State (:meth:`get_state`, safe arrays): the interests (labels, centroids, prior table), the
per-user counts keyed by the requests' user keys, each interest's counts, visit streaks and
the exploit policy's own state under ``exploit.``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.explore.base import (
    DEFAULT_SEED,
    BasePolicy,
    Feedback,
    Requests,
    slates_from_draws,
    topk_positions,
)
from explorec.explore.greedy import _check_budget

EXPLOITS = ("greedy", "lints", "neural-linear")
_GLOBAL_PRIOR = (0.5, 10.0)  # pseudo (clicks, shows) of the global novel click rate: 0.05


class InterestTSPolicy(BasePolicy):
    """Exploit slots from ``exploit``, explore slots by Thompson sampling over novel interests.

    See the module docstring. Parameters: ``budget`` (share of slots that explore), ``boredom``
    and ``max_budget`` (the per-user adaptation), ``prior_strength``, ``cluster_strength`` and
    ``max_lift`` (the hierarchical prior), ``exploit`` (greedy | lints | neural-linear) with
    the linear policies' ``scale``, ``dim``, ``n_context`` and ``base_weight``,
    ``n_clusters`` (None: chosen by silhouette), ``explore_slots`` (last | random),
    ``n_draws`` and ``seed``.
    """

    name = "interest-ts"
    needs_item_text = True
    catalog_state = frozenset({"labels"})

    def __init__(self, budget: float = 0.15, *, boredom: float = 0.0, max_budget: float = 0.6,
                 prior_strength: float = 50.0, cluster_strength: float = 20.0, max_lift: float = 4.0,
                 exploit: str = "lints", scale: float = 0.3, dim: int = 16, n_context: int = 0,
                 base_weight: float = 0.02, n_clusters: int | None = None,
                 explore_slots: str = "last", n_draws: int = 32, seed: int = DEFAULT_SEED) -> None:
        super().__init__(seed=seed)
        self.budget = _check_budget("budget", budget)
        self.max_budget = _check_budget("max_budget", max_budget)
        if boredom < 0:
            raise ExploRecError(f"boredom must be >= 0, got {boredom!r}")
        self.boredom = float(boredom)
        for pname, value in (("prior_strength", prior_strength), ("cluster_strength", cluster_strength)):
            if not value > 0:
                raise ExploRecError(f"{pname} must be > 0, got {value!r}")
        if not max_lift >= 1:
            raise ExploRecError(f"max_lift must be >= 1, got {max_lift!r}")
        self.prior_strength = float(prior_strength)
        self.cluster_strength = float(cluster_strength)
        self.max_lift = float(max_lift)
        if exploit not in EXPLOITS:
            raise ExploRecError(f"exploit must be one of {', '.join(EXPLOITS)}, got {exploit!r}")
        self.exploit = exploit
        # declared per instance: with neural-linear exploit slots it ranks only the two-tower
        # model's own items, as neural-linear does (the class default is False)
        self.uses_two_tower = exploit == "neural-linear"
        self.scale = float(scale)
        self.dim = int(dim)
        self.n_context = int(n_context) if exploit == "lints" else 0
        self.base_weight = float(base_weight)
        if n_clusters is not None and int(n_clusters) < 1:
            raise ExploRecError(f"n_clusters must be >= 1, got {n_clusters!r}")
        self.n_clusters = None if n_clusters is None else int(n_clusters)
        if explore_slots not in ("last", "random"):
            raise ExploRecError(f"explore_slots must be 'last' or 'random', got {explore_slots!r}")
        self.explore_slots = explore_slots
        if n_draws < 1:
            raise ExploRecError(f"n_draws must be >= 1, got {n_draws!r}")
        self.n_draws = int(n_draws)
        self._given: dict[str, Any] = {}
        self._representation: Any = None

    # ------------------------------------------------------------------ capabilities
    def set_representation(self, model: Any) -> InterestTSPolicy:
        """The fitted two-tower model whose embeddings ``exploit="neural-linear"`` reads."""
        self._representation = model
        return self

    def set_interests(self, *, labels: np.ndarray | None = None, centroids: np.ndarray | None = None,
                      prior: np.ndarray | None = None, interactions: Any = None) -> InterestTSPolicy:
        """Use these interests instead of clustering the item vectors: ``labels`` (one fine
        interest per item) with their ``centroids`` in the item-vector space (for items added
        later), and/or a ``prior`` (K, K) novel-interest table; ``interactions`` with
        timestamps give the prior as their novel-transition table. Call before prepare."""
        if labels is not None and centroids is None:
            raise ExploRecError("set_interests: labels need their centroids (new items join the "
                                "nearest one)")
        self._given = {"labels": labels, "centroids": centroids, "prior": prior,
                       "interactions": interactions}
        return self

    # ------------------------------------------------------------------ setup
    def _prepare(self) -> None:
        from explorec.explore.linear import LinTSPolicy, NeuralLinearPolicy

        if self.item_vectors is None and self._given.get("labels") is None:
            raise ExploRecError(f"policy {self.name!r} needs item_vectors (LM item embeddings) to "
                                "find interests, or labels from set_interests")
        self.inner: Any = None
        if self.exploit != "greedy":
            klass = NeuralLinearPolicy if self.exploit == "neural-linear" else LinTSPolicy
            kw: dict[str, Any] = {"scale": self.scale, "n_draws": self.n_draws,
                                  "base_weight": self.base_weight, "seed": self.seed}
            if self.exploit == "lints":
                kw.update(dim=self.dim, n_context=self.n_context)
            self.inner = klass(**kw)
            if self.exploit == "neural-linear" and self._representation is not None:
                self.inner.set_representation(self._representation)
            self.inner.prepare(self.model, n_items=self.n_items, item_vectors=self.item_vectors)
        self.labels_: np.ndarray | None = None  # found on first use (set_state restores them)
        self._reset_counts()

    def _reset_counts(self, k: int = 0) -> None:
        self._rows: dict[int, int] = {}
        self.user_keys_ = np.zeros(0, np.int64)
        self.user_shows_ = np.zeros((0, k), np.float32)
        self.user_clicks_ = np.zeros((0, k), np.float32)
        self.streak_ = np.zeros(0, np.int32)
        self.cluster_shows_ = np.zeros(k)
        self.cluster_clicks_ = np.zeros(k)

    def _ensure_interests(self) -> None:
        if self.labels_ is not None:
            return
        from explorec.interests.novelty import engagement_table, transition_table
        from explorec.interests.taxonomy import cluster_items

        g = self._given
        if g.get("labels") is not None:
            labels = np.asarray(g["labels"], np.int64)
            if labels.shape != (self.n_items,) or (len(labels) and labels.min() < 0):
                raise ExploRecError(f"labels must be one interest id >= 0 per item ({self.n_items})")
            cent = np.asarray(g["centroids"], np.float32)
        else:
            assert self.item_vectors is not None
            labels, cent = cluster_items(self.item_vectors, self.n_clusters, seed=self.seed)
        k = max(int(labels.max()) + 1 if len(labels) else 1, len(cent))
        prior = g.get("prior")
        if prior is None and g.get("interactions") is not None:
            prior = transition_table(g["interactions"], labels)
        if prior is None and self.model is not None and hasattr(self.model, "training_history"):
            hist = self.model.training_history()
            prior = engagement_table(hist, labels[: hist.shape[1]]) if hist.shape[1] else None
        if prior is None:
            prior = np.ones((k, k)) - np.eye(k)
        self._set_interests(labels, cent, np.asarray(prior, np.float64))

    def _set_interests(self, labels: np.ndarray, centroids: np.ndarray, prior: np.ndarray) -> None:
        k = len(centroids)
        if prior.shape != (k, k) or not np.isfinite(prior).all() or (prior < 0).any():
            raise ExploRecError(f"the novel-interest prior must be a ({k}, {k}) table of finite "
                                f"values >= 0, got shape {prior.shape}")
        if len(labels) and labels.max() >= k:
            raise ExploRecError(f"labels name interest {int(labels.max())}, but there are {k}")
        self.labels_ = labels
        self.centroids_ = centroids
        self.prior_ = prior
        self._onehot = sp.csr_matrix((np.ones(len(labels), np.float32), (np.arange(len(labels)), labels)),
                                     shape=(len(labels), k))
        if self.cluster_shows_.shape != (k,):
            self._reset_counts(k)

    def interest_labels(self) -> np.ndarray:
        """(n_items,) the interest of every item (a copy): what the policy explores over."""
        self._ensure_interests()
        return self.labels_.copy()

    @property
    def n_interests(self) -> int:
        self._ensure_interests()
        return len(self.centroids_)

    def _grow(self, n_new: int) -> None:
        if self.inner is not None:
            self.inner.add_items(n_new, None if self.item_vectors is None else self.item_vectors[-n_new:])
        if self.labels_ is None:
            return
        from explorec.interests.taxonomy import nearest_cluster

        if self.item_vectors is None:
            raise ExploRecError(f"policy {self.name!r} needs the new items' vectors")
        self._set_interests(np.concatenate([self.labels_, nearest_cluster(self.item_vectors[-n_new:],
                                                                          self.centroids_)]),
                            self.centroids_, self.prior_)

    def _refresh_items(self, items: np.ndarray, item_vectors: np.ndarray) -> None:
        if self.inner is not None:
            self.inner.update_item_vectors(items, item_vectors)
        if self.labels_ is not None:
            from explorec.interests.taxonomy import nearest_cluster

            labels = self.labels_.copy()
            labels[items] = nearest_cluster(item_vectors, self.centroids_)
            self._set_interests(labels, self.centroids_, self.prior_)

    # ------------------------------------------------------------------ per-user rows
    def _user_rows(self, users: np.ndarray, create: bool) -> np.ndarray:
        """Row of each user key in the per-user arrays (-1: unknown and not created)."""
        out = np.empty(len(users), np.int64)
        new: list[int] = []
        for i, u in enumerate(users.tolist()):
            r = self._rows.get(u)
            if r is None and create:
                r = self._rows[u] = len(self.user_keys_) + len(new)
                new.append(u)
            out[i] = -1 if r is None else r
        if new:
            k = len(self.centroids_)
            self.user_keys_ = np.concatenate([self.user_keys_, np.asarray(new, np.int64)])
            self.user_shows_ = np.vstack([self.user_shows_, np.zeros((len(new), k), np.float32)])
            self.user_clicks_ = np.vstack([self.user_clicks_, np.zeros((len(new), k), np.float32)])
            self.streak_ = np.concatenate([self.streak_, np.zeros(len(new), np.int32)])
        return out

    def _users(self, requests: Requests) -> np.ndarray:
        return np.arange(len(requests)) if requests.users is None else np.asarray(requests.users, np.int64)

    def _engaged(self, history: sp.csr_matrix) -> np.ndarray:
        """(B, K) counts of each user's history items per interest."""
        if history.shape[1] != self._onehot.shape[0]:
            raise ExploRecError(f"history has {history.shape[1]} item columns, the policy knows "
                                f"{self._onehot.shape[0]} items")
        return np.asarray((history @ self._onehot).todense())

    # ------------------------------------------------------------------ ranking
    def _exploit_draws(self, requests: Requests, base: np.ndarray, width: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(each draw's top-``width`` candidate positions (B, m, width), scores (B, C))."""
        if self.inner is None:
            top = topk_positions(base, width, requests.tie_keys())
            return np.broadcast_to(top[:, None, :], (len(requests), self.n_draws, width)), base
        self.inner.rng = self.rng  # one generator per policy: a seeded run draws the same
        draws, mean = self.inner.sample_scores(requests, base)
        return topk_positions(draws, width), mean

    def _text_vectors(self) -> np.ndarray | None:
        """The item vectors in 32 seeded random-projection dimensions (float32): enough to
        order the ties of the base scores by text similarity at a tenth of the cost."""
        if self.item_vectors is None:
            return None
        cached = getattr(self, "_text", None)
        if cached is None or len(cached) != len(self.item_vectors) or self._text_src is not self.item_vectors:
            d = self.item_vectors.shape[1]
            proj = np.random.default_rng(self.seed).standard_normal((d, min(d, 32))).astype(np.float32)
            self._text = np.asarray(self.item_vectors, np.float32) @ proj
            self._text_src = self.item_vectors
        return self._text

    def _best_per_interest(self, requests: Requests, base: np.ndarray, engaged: np.ndarray
                           ) -> np.ndarray:
        """(B, K) candidate position of each novel interest's best candidate (-1: none): the
        base model's highest score, ties by text similarity to the history, then tie keys."""
        cand = requests.candidates
        b, c = cand.shape
        cc = self.labels_[cand]
        novel = requests.mask & (engaged[np.arange(b)[:, None], cc] == 0)
        sim = np.zeros((b, c), np.float32)
        text = self._text_vectors()
        if text is not None and requests.history.nnz:
            hv = np.asarray(requests.history @ text)
            sim = np.einsum("bd,bcd->bc", hv, text[cand])
        key = np.where(novel, base, -np.inf)
        order = np.lexsort((requests.tie_keys(), -sim, -key, cc), axis=1)
        scc = np.take_along_axis(cc, order, axis=1)
        snovel = np.take_along_axis(novel, order, axis=1)
        first = np.ones((b, c), bool)
        first[:, 1:] = scc[:, 1:] != scc[:, :-1]
        # the first novel member of each interest group (novel members sort before the others)
        sel = first & snovel
        best = np.full((b, len(self.centroids_)), -1, np.int64)
        r, j = np.nonzero(sel)
        best[r, scc[r, j]] = order[r, j]
        return best

    def _posterior(self, rows: np.ndarray, engaged: np.ndarray, avail: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) (B, K) of each user's novel-interest click rates (module docstring)."""
        g_clicks, g_shows = _GLOBAL_PRIOR
        glob = (self.cluster_clicks_.sum() + g_clicks) / (self.cluster_shows_.sum() + g_shows)
        rate = (self.cluster_clicks_ + self.cluster_strength * glob) / (self.cluster_shows_
                                                                         + self.cluster_strength)
        w = engaged / np.maximum(engaged.sum(axis=1, keepdims=True), 1)
        s = w @ self.prior_
        empty = engaged.sum(axis=1) == 0
        if empty.any():
            s[empty] = self.prior_.mean(axis=0)
        s = np.where(avail, s, 0.0)
        n_avail = avail.sum(axis=1, keepdims=True)
        total = s.sum(axis=1, keepdims=True)
        lift = np.where(total > 0, s * n_avail / np.where(total > 0, total, 1.0), 1.0)
        lift = np.clip(lift, 1.0 / self.max_lift, self.max_lift)
        mu = np.clip(rate[None, :] * lift, 1e-4, 0.99)
        shows = np.zeros_like(mu)
        clicks = np.zeros_like(mu)
        known = rows >= 0
        shows[known] = self.user_shows_[rows[known]]
        clicks[known] = self.user_clicks_[rows[known]]
        a = self.prior_strength * mu + clicks
        return a, np.maximum(self.prior_strength * (1 - mu) + shows - clicks, 1e-3)

    def _rank(self, requests: Requests, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._ensure_interests()
        base = self.base_scores(requests)
        b, c = requests.candidates.shape
        m = self.n_draws
        width = min(2 * k, c)
        exploit_top, mean = self._exploit_draws(requests, base, width)
        engaged = self._engaged(requests.history)
        best = self._best_per_interest(requests, base, engaged)
        avail = best >= 0
        rows = self._user_rows(self._users(requests), create=False)
        streak = np.where(rows >= 0, self.streak_[np.maximum(rows, 0)] if len(self.streak_) else 0, 0)
        budget = np.minimum(self.budget + self.boredom * streak, max(self.max_budget, self.budget))
        alpha, beta = self._posterior(rows, engaged, avail)
        n_k = len(self.centroids_)
        ke = min(k, n_k)
        theta = np.full((b, m, n_k), -np.inf)
        ab, ak = np.nonzero(avail)  # sample only the interests a request can explore
        theta[ab, :, ak] = self.rng.beta(alpha[ab, ak][:, None], beta[ab, ak][:, None],
                                         size=(len(ab), m))
        top_interests = topk_positions(theta, ke)                          # (B, m, ke)
        n_explore = np.minimum(self.rng.binomial(k, budget[:, None], size=(b, m)),
                               avail.sum(axis=1)[:, None])                 # (B, m)
        n_explore = np.minimum(n_explore, ke)
        explore_items = np.take_along_axis(best[:, None, :], top_interests, axis=2)  # (B, m, ke)
        use = np.arange(ke)[None, None, :] < n_explore[:, :, None]
        # exploit fill: the draw's ranking minus the explore items and padding
        valid_top = np.take_along_axis(requests.mask, exploit_top.reshape(b, -1), axis=1).reshape(b, m, width)
        clash = ((exploit_top[:, :, :, None] == explore_items[:, :, None, :])
                 & use[:, :, None, :]).any(axis=3)
        keep = valid_top & ~clash
        rank = np.cumsum(keep, axis=2) - 1
        n_exploit = k - n_explore
        keep &= rank < n_exploit[:, :, None]
        slots = np.empty((b, m, k), np.int64)
        if self.explore_slots == "last":
            exploit_slot = rank
            explore_slot = n_exploit[:, :, None] + np.arange(ke)[None, None, :]
        else:  # the explore slots at the first n_explore positions of a random permutation
            perm = np.argsort(self.rng.random((b, m, k)), axis=2)
            is_explore = np.arange(k)[None, None, :] < n_explore[:, :, None]
            exploit_pos = np.sort(np.where(is_explore, k + perm, perm), axis=2)  # exploit's, ascending
            exploit_slot = np.take_along_axis(exploit_pos, np.clip(rank, 0, k - 1), axis=2)
            explore_slot = perm[:, :, :ke]
        bi, mi, li = np.nonzero(keep)
        slots[bi, mi, exploit_slot[bi, mi, li]] = exploit_top[bi, mi, li]
        bi, mi, ei = np.nonzero(use)
        slots[bi, mi, explore_slot[bi, mi, ei]] = explore_items[bi, mi, ei]
        positions, dist = slates_from_draws(slots, c, self.rng)
        return positions, np.take_along_axis(mean, positions, axis=1), dist

    # ------------------------------------------------------------------ learning
    def update(self, feedback: Feedback) -> None:
        if self.inner is not None:
            self.inner.update(feedback)
        rows_o, pos, r = feedback.observed()
        if not len(rows_o):
            return
        self._ensure_interests()
        req = feedback.requests
        items = feedback.slates.items[rows_o, pos]
        cl = self.labels_[items]
        engaged = self._engaged(req.history)
        novel = engaged[rows_o, cl] == 0
        urows = self._user_rows(self._users(req), create=True)
        np.add.at(self.user_shows_, (urows[rows_o[novel]], cl[novel]), 1.0)
        np.add.at(self.user_clicks_, (urows[rows_o[novel]], cl[novel]), r[novel])
        np.add.at(self.cluster_shows_, cl[novel], 1.0)
        np.add.at(self.cluster_clicks_, cl[novel], r[novel])
        # visit streaks, in request order (a user may visit more than once in a batch)
        clicked = np.zeros(len(req), bool)
        clicked[rows_o[r > 0]] = True
        for row in np.unique(rows_o):
            u = urows[row]
            self.streak_[u] = 0 if clicked[row] else self.streak_[u] + 1

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        self._ensure_interests()
        state = {"labels": self.labels_.copy(), "centroids": self.centroids_.copy(),
                 "prior": self.prior_.copy(), "user_keys": self.user_keys_.copy(),
                 "user_shows": self.user_shows_.copy(), "user_clicks": self.user_clicks_.copy(),
                 "streak": self.streak_.copy(), "cluster_shows": self.cluster_shows_.copy(),
                 "cluster_clicks": self.cluster_clicks_.copy()}
        if self.inner is not None:
            state.update({f"exploit.{key}": v for key, v in self.inner.get_state().items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        need = ("labels", "centroids", "prior", "user_keys", "user_shows", "user_clicks", "streak",
                "cluster_shows", "cluster_clicks")
        missing = [n for n in need if n not in state]
        if missing:
            raise ExploRecError(f"policy state lacks {', '.join(missing)} (not an {self.name} state)")
        labels = np.asarray(state["labels"], np.int64)
        if labels.shape != (self.n_items,):
            raise ExploRecError(f"policy state has {labels.shape[0]} item labels for {self.n_items} items")
        self.labels_ = None
        self.cluster_shows_ = np.zeros(0)
        self._set_interests(labels.copy(), np.asarray(state["centroids"], np.float32).copy(),
                            np.asarray(state["prior"], np.float64).copy())
        keys = np.asarray(state["user_keys"], np.int64)
        k = len(self.centroids_)
        shows = np.asarray(state["user_shows"], np.float32).reshape(len(keys), k)
        clicks = np.asarray(state["user_clicks"], np.float32).reshape(len(keys), k)
        self.user_keys_ = keys.copy()
        self.user_shows_, self.user_clicks_ = shows.copy(), clicks.copy()
        self.streak_ = np.asarray(state["streak"], np.int32).copy()
        self._rows = {int(u): i for i, u in enumerate(keys.tolist())}
        self.cluster_shows_ = np.asarray(state["cluster_shows"], np.float64).copy()
        self.cluster_clicks_ = np.asarray(state["cluster_clicks"], np.float64).copy()
        if self.inner is not None:
            self.inner.set_state({key[len("exploit."):]: v for key, v in state.items()
                                  if key.startswith("exploit.")})
