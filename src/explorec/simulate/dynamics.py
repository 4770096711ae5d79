"""Interest dynamics layered on a static :class:`~explorec.simulate.environment.Environment`.

The static environment gives every (user, item) pair a fixed click probability ``p_true``. An
:class:`InterestDynamics` multiplies it by a per-user, per-cluster factor that changes as the
run goes on (items are grouped by a plain ``item_clusters`` label array: k-means labels from
:func:`kmeans_item_clusters`, or a taxonomy's labels).

Active and dormant interests
    A user's *active* clusters are those of the earliest ``active_fraction`` (default half) of
    their ratings in time order; their *dormant* clusters are the clusters of their later
    positive ratings (``rating >= positive_rating``) that are not active. With the full
    ratings (``interactions=dataset.interactions``) and the environment's default
    ``history_fraction=0.5`` the active half is exactly what the policies were shown as logged
    history, and the dormant clusters are the tastes the real users went on to reveal. A
    dormant cluster's items click with ``p_true * dormant_factor`` until the user clicks one of
    them; the cluster then wakes (factor 1) and counts as active. Clusters neither active nor
    dormant keep factor 1 (``p_true`` is already low there).

Satiation
    Each user remembers the clusters of the last ``satiation_window`` items shown to them; the
    factor of a cluster is ``exp(-satiation_rate * n)`` with ``n`` its exposures in that window,
    so it falls while a cluster is shown again and again and recovers as other items push its
    exposures out of the window.

Leaving
    After ``patience`` consecutive visits without a click the user leaves: for good with
    probability ``p_quit``, else for ``away_rounds`` rounds (the streak restarts on return).
    Rounds whose scheduled user is away are given to a present user drawn by activity (the
    environment's arrival weights), from a generator of the dynamics' own, so the click draws
    stay on the runner's generator.

Timing
    The runner answers a batch of rounds at once; the probabilities of a batch come from the
    state at its start and the state is updated after it (in visit order within the batch), as
    the policies' feedback is. A user who leaves is therefore absent from the next batch on;
    with ``batch_size=1`` every effect is exact to the round.

Calibration (measured by :func:`calibrate_from_ratings`; reproduce with
``python -m explorec.simulate.dynamics``: ML-100K, MiniLM item vectors, 103 k-means clusters
from :func:`kmeans_item_clusters`, seed 2020, first half of each user's ratings as active)
    - 37.3% of the users' later positive ratings (>= 4) fall in clusters absent from their first
      half; 97.8% of users have at least one such dormant cluster, 7.6 on average beside 25.1
      active ones. Dormant interests are thus common and large, which is what the dormant
      clusters model; the size of the damping (``dormant_factor=0.2``) cannot be identified
      from ratings and is an assumption.
    - Runs of consecutive same-cluster ratings average 1.060 items against 1.031 after shuffling
      each user's sequence: real sequences barely stick to a cluster. With a 20-rating window
      the chance that the next rating is in a cluster shown n times, real over shuffled, is
      0.876 / 1.154 / 1.274 / 1.272 / 1.202 for n = 0 / 1 / 2 / 3 / 4+: no satiation up to 3
      exposures, a decline of about exp(-0.057) from 3 to 4+. The default
      ``satiation_rate=0.05`` with ``satiation_window=20`` matches that mild decline; it is
      an upper-end reading of weak evidence (ML-100K ratings were often entered in bulk, so
      their order is a poor proxy for consumption).
    - ML-100K holds ratings only (no impressions, non-clicks or sessions), so ``patience=5``,
      ``away_rounds=500`` and ``p_quit=0.1`` cannot be measured from it; they are assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from explorec.errors import ExploRecError


@dataclass(frozen=True)
class DynamicsParams:
    """The parameters of :class:`InterestDynamics` (see the module docstring)."""

    dormant_factor: float = 0.2
    satiation_rate: float = 0.05
    satiation_window: int = 20
    patience: int = 5
    away_rounds: int = 500
    p_quit: float = 0.1
    active_fraction: float = 0.5
    positive_rating: float = 4.0

    def __post_init__(self) -> None:
        if not 0 <= self.dormant_factor <= 1:
            raise ExploRecError(f"dormant_factor must be in [0, 1], got {self.dormant_factor!r}")
        if not self.satiation_rate >= 0:
            raise ExploRecError(f"satiation_rate must be >= 0, got {self.satiation_rate!r}")
        for name in ("satiation_window", "patience"):
            if int(getattr(self, name)) < 1:
                raise ExploRecError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.away_rounds) < 0:
            raise ExploRecError(f"away_rounds must be >= 0, got {self.away_rounds!r}")
        if not 0 <= self.p_quit <= 1:
            raise ExploRecError(f"p_quit must be in [0, 1], got {self.p_quit!r}")
        if not 0 < self.active_fraction <= 1:
            raise ExploRecError(f"active_fraction must be in (0, 1], got {self.active_fraction!r}")


def default_n_clusters(n_items: int) -> int:
    """``round(2.5 * sqrt(n_items))`` (103 for ML-100K's 1,682 items), at least 1."""
    return max(1, round(2.5 * np.sqrt(n_items)))


def kmeans_item_clusters(item_vectors: np.ndarray, n_clusters: int | None = None,
                         seed: int = 2020) -> np.ndarray:
    """Cluster labels (int64, one per item) from scikit-learn's MiniBatchKMeans (``n_init=3``,
    seeded, single-threaded BLAS) on the L2-normalised ``item_vectors``. ``n_clusters`` defaults
    to :func:`default_n_clusters` and is capped at the number of distinct vectors. Vectors of
    more than 512 dimensions (TF-IDF's 2,048) are first projected to 256 by a seeded Gaussian
    random projection, which keeps cosine geometry approximately and makes k-means 3x faster;
    MiniLM's 384 dimensions are clustered as they are."""
    x = np.asarray(item_vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ExploRecError(f"item_vectors must be a non-empty 2-d array, got shape {x.shape}")
    if n_clusters is None:
        n_clusters = default_n_clusters(len(x))
    if n_clusters < 1:
        raise ExploRecError(f"n_clusters must be >= 1, got {n_clusters!r}")
    if x.shape[1] > 512:
        x = x @ np.random.default_rng(seed).normal(size=(x.shape[1], 256))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0)
    n_distinct = len(np.unique(x, axis=0))
    n_clusters = min(n_clusters, n_distinct)
    if n_clusters == 1:
        return np.zeros(len(x), dtype=np.int64)
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError as err:  # pragma: no cover - sklearn is in the "explore" extra
        raise ExploRecError("kmeans_item_clusters needs scikit-learn: pip install 'explorec[explore]'"
                            ) from err
    from threadpoolctl import threadpool_limits

    km = MiniBatchKMeans(n_clusters=n_clusters, n_init=3, random_state=seed,
                         batch_size=min(1024, len(x)))
    with threadpool_limits(limits=1, user_api="blas"):
        labels = km.fit_predict(x)
    # relabel densely in first-appearance order (stable across sklearn's label permutations)
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv].astype(np.int64)


def check_clusters(item_clusters: np.ndarray, n_items: int) -> np.ndarray:
    """``item_clusters`` as int64 after checking its length and values."""
    labels = np.asarray(item_clusters)
    if labels.shape != (n_items,):
        raise ExploRecError(f"item_clusters must have one label per item ({n_items}), "
                            f"got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ExploRecError(f"item_clusters must be integer labels, got dtype {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise ExploRecError("item_clusters must be >= 0")
    return labels.astype(np.int64)


def _halves(interactions: Any, active_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(row order by user then time, mask over that order of the early part of each user)."""
    order = interactions.time_order()
    u = interactions.user[order]
    start = np.searchsorted(u, u, side="left")
    rank = np.arange(len(order)) - start
    counts = np.bincount(interactions.user, minlength=interactions.n_users)
    return order, rank < np.ceil(active_fraction * counts[u])


def interest_matrices(interactions: Any, item_clusters: np.ndarray, n_users: int, *,
                      active_fraction: float = 0.5, positive_rating: float = 4.0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(active, dormant) boolean (n_users, n_clusters) matrices; see the module docstring."""
    labels = np.asarray(item_clusters, dtype=np.int64)
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    active = np.zeros((n_users, n_clusters), bool)
    dormant = np.zeros((n_users, n_clusters), bool)
    if len(interactions) == 0:
        return active, dormant
    order, early = _halves(interactions, active_fraction)
    u, c = interactions.user[order], labels[interactions.item[order]]
    active[u[early], c[early]] = True
    pos = ~early
    if interactions.rating is not None:
        pos &= interactions.rating[order] >= positive_rating
    dormant[u[pos], c[pos]] = True
    dormant &= ~active
    return active, dormant


def calibrate_from_ratings(interactions: Any, item_clusters: np.ndarray, *, active_fraction: float = 0.5,
                           positive_rating: float = 4.0, window: int = 20, seed: int = 2020
                           ) -> dict[str, float]:
    """Figures of real rating sequences that the dynamics' defaults rest on.

    - ``later_positive_new_cluster_share``: share of the users' later positive ratings whose
      cluster is absent from their early part (the weight of dormant interests);
    - ``users_with_dormant_share`` and ``dormant_clusters_per_user`` (mean over users);
    - ``active_clusters_per_user`` (mean);
    - ``mean_run_length`` of consecutive same-cluster ratings in time order, and
      ``shuffled_run_length``: the same after shuffling each user's sequence (seeded); their
      ratio says whether real sequences stick to a cluster (> 1) or move on (< 1);
    - ``repeat_ratio_by_exposure``: for n = 0, 1, 2, 3, 4+ exposures of a cluster in the last
      ``window`` ratings, P(next rating in that cluster) real / shuffled (satiation shows as a
      ratio falling with n);
    - ``fitted_satiation_rate``: ``-slope`` of a least-squares line through
      ``log(ratio(n) / ratio(1))`` for n = 1..4+, clipped at 0.
    """
    labels = check_clusters(item_clusters, interactions.n_items)
    active, dormant = interest_matrices(interactions, labels, interactions.n_users,
                                        active_fraction=active_fraction, positive_rating=positive_rating)
    order, early = _halves(interactions, active_fraction)
    u = interactions.user[order]
    c = labels[interactions.item[order]]
    later_pos = ~early
    if interactions.rating is not None:
        later_pos &= interactions.rating[order] >= positive_rating
    new_share = float((~active[u[later_pos], c[later_pos]]).mean()) if later_pos.any() else float("nan")
    users = np.unique(interactions.user)

    def runs(cs: np.ndarray) -> float:
        boundary = np.ones(len(cs), bool)
        boundary[1:] = (cs[1:] != cs[:-1]) | (u[1:] != u[:-1])
        return float(len(cs) / boundary.sum())

    rng = np.random.default_rng(seed)
    perm = np.lexsort((rng.random(len(u)), u))  # u is sorted: shuffles within each user
    c_shuf = c[perm]

    def exposure_hits(cs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per n bucket: (#(position, cluster) pairs with n exposures, #of them hit next)."""
        n_clusters = int(labels.max()) + 1
        # one-hot cumulative counts per user would be (n_ratings x n_clusters); do it in chunks
        pairs = np.zeros(5)
        hits = np.zeros(5)
        start = np.searchsorted(u, users, side="left")
        stop = np.searchsorted(u, users, side="right")
        for s, e in zip(start, stop, strict=True):
            seq = cs[s:e]
            if len(seq) <= window:
                continue
            onehot = np.zeros((len(seq) + 1, n_clusters), np.int32)
            onehot[np.arange(1, len(seq) + 1), seq] = 1
            cum = np.cumsum(onehot, axis=0)
            idx = np.arange(window, len(seq))            # predict seq[idx] from seq[idx-window:idx]
            counts = cum[idx] - cum[idx - window]          # (m, n_clusters)
            bucket = np.minimum(counts, 4)
            present = counts > 0
            pairs += np.bincount(bucket[present], minlength=5)[:5]
            hit = counts[np.arange(len(idx)), seq[idx]]
            hits += np.bincount(np.minimum(hit, 4), minlength=5)[:5]
            # n = 0: clusters absent from the window (all of them minus present ones)
            pairs[0] += (~present).sum() - np.bincount(bucket[present], minlength=5)[0]
        return pairs, hits

    p_real, h_real = exposure_hits(c)
    p_shuf, h_shuf = exposure_hits(c_shuf)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (h_real / p_real) / (h_shuf / p_shuf)
    n = np.arange(1, 5, dtype=np.float64)
    ok = np.isfinite(ratio[1:]) & (ratio[1:] > 0)
    rate = float("nan")
    if ok.sum() >= 2 and np.isfinite(ratio[1]) and ratio[1] > 0:
        slope = np.polyfit(n[ok], np.log(ratio[1:][ok] / ratio[1]), 1)[0]
        rate = float(max(0.0, -slope))
    return {
        "later_positive_new_cluster_share": new_share,
        "users_with_dormant_share": float(dormant[users].any(axis=1).mean()),
        "dormant_clusters_per_user": float(dormant[users].sum(axis=1).mean()),
        "active_clusters_per_user": float(active[users].sum(axis=1).mean()),
        "mean_run_length": runs(c),
        "shuffled_run_length": runs(c_shuf),
        "repeat_ratio_by_exposure": [float(x) for x in ratio],  # type: ignore[dict-item]
        "fitted_satiation_rate": rate,
        "n_clusters": float(int(labels.max()) + 1),
        "window": float(window),
        "seed": float(seed),
    }


class InterestDynamics:
    """Per-run mutable interest state over a static environment; see the module docstring.

    ``interactions`` are the ratings the active and dormant clusters come from (default:
    ``env.logged``, split into its own early and late parts; pass the dataset's full
    interactions to use the later real ratings). :meth:`fresh` gives an independent copy in
    its initial state, which the runner takes at the start of every run.
    """

    def __init__(self, env: Any, item_clusters: np.ndarray, params: DynamicsParams | None = None, *,
                 interactions: Any = None, seed: int = 2020) -> None:
        self.params = params or DynamicsParams()
        self.env = env
        self.item_clusters = check_clusters(item_clusters, env.n_items)
        self.n_clusters = int(self.item_clusters.max()) + 1 if env.n_items else 0
        inter = env.logged if interactions is None else interactions
        if inter.n_users != env.n_users or inter.n_items != env.n_items:
            raise ExploRecError(f"interactions cover {inter.n_users} users x {inter.n_items} items, the "
                                f"environment {env.n_users} x {env.n_items}")
        self._active0, self._dormant0 = interest_matrices(
            inter, self.item_clusters, env.n_users, active_fraction=self.params.active_fraction,
            positive_rating=self.params.positive_rating)
        self.seed = seed
        self.reset()

    def fresh(self, seed: int | None = None) -> InterestDynamics:
        """An independent copy in the initial state (shares only read-only arrays)."""
        new = object.__new__(InterestDynamics)
        new.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k in ("params", "env", "item_clusters", "n_clusters", "_active0",
                                      "_dormant0", "seed")})
        new.reset(self.seed if seed is None else seed)
        return new

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        n_users, w = self.env.n_users, int(self.params.satiation_window)
        self.rng = np.random.default_rng(self.seed + 104_729)
        self.active = self._active0.copy()
        self.dormant = self._dormant0.copy()
        self.window = np.full((n_users, w), -1, dtype=np.int64)   # ring buffer of shown clusters
        self.pointer = np.zeros(n_users, dtype=np.int64)
        self.exposures = np.zeros((n_users, self.n_clusters), dtype=np.int32)
        self.streak = np.zeros(n_users, dtype=np.int64)           # visits in a row without a click
        self.away_until = np.zeros(n_users, dtype=np.int64)        # first round back
        self.quit = np.zeros(n_users, bool)
        self.departures = 0

    # ---- probabilities -------------------------------------------------------------------
    def multiplier(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(b, k) factors on ``p_true[users, items]`` in the current state."""
        c = self.item_clusters[items]
        u = np.asarray(users)[:, None]
        m = np.where(self.dormant[u, c], self.params.dormant_factor, 1.0)
        if self.params.satiation_rate:
            m = m * np.exp(-self.params.satiation_rate * self.exposures[u, c])
        return m

    def probabilities(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        return self.env.p_true[users[:, None], items].astype(np.float64) * self.multiplier(users, items)

    # ---- presence ------------------------------------------------------------------------
    def present(self, t: int) -> np.ndarray:
        """Users that may visit at round ``t`` (not gone for good, not away)."""
        return ~self.quit & (self.away_until <= t)

    def reschedule(self, users: np.ndarray, t0: int, entry: np.ndarray) -> np.ndarray:
        """``users`` (scheduled for rounds ``t0, t0+1, ...``) with every absent one replaced by a
        present, entered user drawn by activity; -1 where nobody is present."""
        users = np.array(users, dtype=np.int64)
        t = t0 + np.arange(len(users))
        absent = self.quit[users] | (self.away_until[users] > t)
        if not absent.any():
            return users
        pool = np.flatnonzero(self.present(t0) & (entry <= t0))
        if len(pool) == 0:
            users[absent] = -1
            return users
        w = self.env.activity[pool]
        users[absent] = pool[self.rng.choice(len(pool), size=int(absent.sum()), p=w / w.sum())]
        return users

    # ---- updates -------------------------------------------------------------------------
    def observe(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray, rounds: np.ndarray) -> None:
        """Update the state with one batch of visits (in visit order): ``users`` (b,), shown
        ``items`` (b, k), ``clicks`` (b, k) and the visits' ``rounds`` (b,)."""
        users = np.asarray(users, dtype=np.int64)
        clicked = np.asarray(clicks) > 0
        order = np.argsort(users, kind="stable")
        su = users[order]
        occurrence = np.empty(len(users), dtype=np.int64)
        occurrence[order] = np.arange(len(users)) - np.searchsorted(su, su, side="left")
        labels = self.item_clusters[items]
        w = self.window.shape[1]
        p = self.params
        for level in range(int(occurrence.max()) + 1 if len(users) else 0):
            rows = np.flatnonzero(occurrence == level)     # each user at most once here
            u = users[rows]
            # waking: a click in a dormant cluster makes it active
            cr, cp = np.nonzero(clicked[rows])
            cu, cc = u[cr], labels[rows[cr], cp]
            self.dormant[cu, cc] = False
            self.active[cu, cc] = True
            # satiation window: push the slate's clusters, evicting the oldest
            for j in range(labels.shape[1]):
                ptr = self.pointer[u]
                old = self.window[u, ptr]
                had = old >= 0
                self.exposures[u[had], old[had]] -= 1
                new = labels[rows, j]
                self.window[u, ptr] = new
                self.exposures[u, new] += 1
                self.pointer[u] = (ptr + 1) % w
            # leaving: only visits of present users count (a stale visit later in the batch of a
            # user who already left is ignored)
            here = ~self.quit[u] & (self.away_until[u] <= rounds[rows])
            got = clicked[rows].any(axis=1)
            self.streak[u[here]] = np.where(got[here], 0, self.streak[u[here]] + 1)
            leave = here & (self.streak[u] >= p.patience)
            if leave.any():
                lu = u[leave]
                gone = self.rng.random(len(lu)) < p.p_quit
                self.quit[lu[gone]] = True
                self.away_until[lu] = rounds[rows][leave] + int(p.away_rounds) + 1
                self.streak[lu] = 0
                self.departures += len(lu)


def _main() -> None:  # pragma: no cover - the calibration command quoted in the module docstring
    import json

    from explorec.data import load_dataset
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items

    ds = load_dataset("ml-100k")
    vectors = encode_items(ds.interactions.items, ds.catalog, get_encoder("minilm"))
    labels = kmeans_item_clusters(vectors, seed=2020)
    print(json.dumps(calibrate_from_ratings(ds.interactions, labels, seed=2020), indent=1))


if __name__ == "__main__":  # pragma: no cover
    _main()
