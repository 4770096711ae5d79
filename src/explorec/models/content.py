"""Content model: users' interests as LM-embedding profiles of what they interacted with."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import DEFAULT_SEED
from explorec.encoders.base import l2_normalise
from explorec.models.base import BaseRecommender, csr_bytes
from explorec.models.text_items import ENCODER_BYTES, TextItemsMixin


def interaction_weights(inputs, rating_weight: bool, recency_half_life: float  # type: ignore[no-untyped-def]
                        ) -> sp.csr_matrix:
    """User x item weights: ratings scaled to (0, 1], times ``0.5 ** (newer / half_life)``.

    ``newer`` counts the user's interactions that came after this one (0 = the latest).
    """
    train = inputs.train
    w = np.ones(len(train), dtype=np.float64)
    if rating_weight and train.rating is not None:
        r = train.rating.astype(np.float64)
        lo, hi = r.min(), r.max()
        w *= (r - lo + 1) / (hi - lo + 1)
    if recency_half_life > 0 and train.timestamp is not None:
        order = np.lexsort((np.arange(len(train)), -train.timestamp, train.user))
        u_sorted = train.user[order]
        starts = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
        counts = np.diff(np.r_[starts, len(order)])
        newer = np.empty(len(train), dtype=np.float64)
        newer[order] = np.arange(len(order)) - np.repeat(starts, counts)
        w *= 0.5 ** (newer / recency_half_life)
    m = sp.csr_matrix((w, (train.user, train.item)), shape=(train.n_users, train.n_items))
    m.sum_duplicates()
    return m


class ContentRecommender(TextItemsMixin, BaseRecommender):
    """Score = cosine between an item's text vector and the user's interest vector(s).

    Parameters
    ----------
    encoder : ``minilm`` (all-MiniLM-L6-v2), ``tfidf``, or a sentence-transformers path.
    template : item text template over catalog fields (None: the catalog's own).
    rating_weight : weight history items by their rating.
    recency_half_life : halve an item's weight every this many newer interactions (0 = off).
    n_interests : 1 = one profile; more = keep this many interest centroids per user and
        score an item by its best-matching interest.
    interest_clusters : number of global topic clusters the interests are drawn from.
    """

    name = "content"
    param_constraints: ClassVar[dict[str, Any]] = {"recency_half_life": ">= 0", "n_interests": ">= 1",
                                                   "interest_clusters": ">= 1"}
    _state_names = ("item_text_vectors_", "profiles_")

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """The encoder and item vectors, and ``n_interests`` profile vectors per user."""
        d = 384
        return (ENCODER_BYTES + 3 * 4 * n_items * d + 2 * 4 * n_users * int(self.n_interests) * d
                + 3 * csr_bytes(nnz, n_users, 8))

    def __init__(self, encoder: str = "minilm", template: str | None = None,
                 rating_weight: bool = True, recency_half_life: float = 0.0,
                 n_interests: int = 1, interest_clusters: int = 24,
                 seed: int = DEFAULT_SEED) -> None:
        super().__init__()
        self.encoder = encoder
        self.template = template
        self.rating_weight = rating_weight
        self.recency_half_life = recency_half_life
        self.n_interests = n_interests
        self.interest_clusters = interest_clusters
        self.seed = seed
        self.item_text_vectors_: np.ndarray | None = None
        self.profiles_: np.ndarray | None = None  # (n_users, n_interests, dim)
        self.clusters_: np.ndarray | None = None

    def _fit(self, X: sp.csr_matrix) -> None:
        self.item_text_vectors_ = self._encode_catalog()
        W = interaction_weights(self._inputs, self.rating_weight, self.recency_half_life)
        self.profiles_ = self._profiles(W)

    def _profiles(self, W: sp.csr_matrix) -> np.ndarray:
        V = self.item_text_vectors_
        assert V is not None
        if self.n_interests <= 1:
            return l2_normalise(np.asarray(W @ V))[:, None, :]
        from scipy.cluster.vq import kmeans2

        c = min(self.interest_clusters, V.shape[0])
        _, labels = kmeans2(V.astype(np.float64), c, seed=self.seed, minit="++")
        # per (user, cluster) weighted sums, then keep each user's strongest clusters
        onehot = sp.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)),
                               shape=(len(labels), c))
        mass = np.asarray((W @ onehot).todense())  # (users, clusters)
        m = min(self.n_interests, c)
        top = np.argsort(-mass, axis=1, kind="stable")[:, :m]
        profiles = np.zeros((W.shape[0], m, V.shape[1]), dtype=np.float32)
        for j in range(m):  # m is small (a handful of interests); users stay vectorised
            sel = (labels[None, :] == top[:, j:j + 1])  # (users, items) mask of cluster
            Wj = W.multiply(sp.csr_matrix(sel)).tocsr()
            profiles[:, j, :] = l2_normalise(np.asarray(Wj @ V))
        return profiles

    def _score_profiles(self, P: np.ndarray) -> np.ndarray:
        V = self.item_text_vectors_
        assert V is not None
        s = np.einsum("umd,id->umi", P, V, optimize=True)
        # an all-zero interest (user with fewer clusters than n_interests) must not win
        empty = ~np.any(P != 0, axis=2)
        s[empty] = -np.inf
        best = s.max(axis=1)
        return np.where(np.isfinite(best), best, 0.0)

    def _score(self, users: np.ndarray) -> np.ndarray:
        assert self.profiles_ is not None
        return self._score_profiles(self.profiles_[users])

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self._score_profiles(self._profiles(history))

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        V = self.item_text_vectors_
        assert V is not None
        return V[items] @ V[history].T

    def _set_item_vectors(self, internal: np.ndarray, vectors: np.ndarray) -> None:
        """Nothing beyond ``item_text_vectors_`` (already set): content scores in LM space."""
