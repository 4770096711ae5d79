"""Run policies in an :class:`~explorec.simulate.environment.Environment`, vectorised in batches.

Each batch of ``batch_size`` rounds is answered at once: one base-model scoring call, one
candidate retrieval, one ``rank_batch`` and one ``update`` (so feedback reaches a policy with
at most ``batch_size`` rounds of delay, as in a service that learns in micro-batches).

Candidates per round (the same retrieval for every policy): the base model's top
``n_candidates`` unseen released items, ``n_random`` other released items drawn uniformly, and
the ``n_fresh`` most recently released new items. The oracle knows ``p_true`` and picks the best
slate from the same candidates; regret is the oracle's expected clicks minus the policy's.

Reported per run: realised cumulative clicks, cumulative expected regret, catalog coverage
(share of released items ever shown), for new users the number of their own visits until
their first click, and for new items the number of rounds from release to first click (both
censored at the end of the run and counted as the observed lower bound; the share that
reached a click is reported beside them).

Exploration's value, reported by every run (they only read the run, so adding them changed no
other number): distinct item clusters with a click per visiting user (mean), new interests per
1,000 visits (clicks in a cluster where the user had no logged rating and no earlier click;
each (user, cluster) counted once), the share of visiting users still present at the end (1
without dynamics), visits per visiting user, intra-list diversity (mean pairwise cosine distance
of each slate's item vectors, averaged over slates; NaN when every vector is zero or slates have
one item), novelty (mean over shown items of ``-log2`` of the item's smoothed share of
``env.logged``, ``(count + 1) / (n_logged + n_items)``), the discoverable corpus (items with at
least ``discover_min_clicks`` = 5 clicks in the run) and catalog coverage over all items.
Cluster labels: ``item_clusters`` when given, else the dynamics' labels, else
:func:`~explorec.simulate.dynamics.kmeans_item_clusters` on ``env.item_vectors`` with
``round(2.5 * sqrt(n_items))`` clusters and the run's seed.

With ``dynamics`` (an :class:`~explorec.simulate.dynamics.InterestDynamics`; a fresh copy is
taken per run) clicks, the oracle and regret use the dynamic probabilities of the state at the
batch's start (regret is against that myopic oracle), absent users' rounds go to present users,
and the state is updated after each batch. Without it (the default) every draw is as before.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.explore.base import Feedback, Requests
from explorec.explore.registry import create_policy, policy_class
from explorec.ranking import topk
from explorec.simulate.dynamics import DynamicsParams, InterestDynamics, kmeans_item_clusters
from explorec.simulate.environment import Environment


@dataclass
class SimulationResult:
    policy: str
    seed: int
    rounds: int
    cumulative_reward: float
    cumulative_regret: float
    coverage: float
    new_user_first_click_rounds: float
    new_item_first_click_rounds: float
    new_users_reached: float
    new_items_reached: float
    ctr: float
    oracle_ctr: float
    seconds: float
    curves: dict[str, list[float]] = field(default_factory=dict)
    dynamics: str = "static"
    n_clusters: int = 0
    distinct_clusters_clicked: float = float("nan")
    new_interests_per_1k_visits: float = float("nan")
    users_retained: float = 1.0
    visits_per_user: float = float("nan")
    intra_list_diversity: float = float("nan")
    novelty: float = float("nan")
    discoverable_items: int = 0
    catalog_coverage: float = float("nan")

    def to_dict(self, *, curves: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not curves:
            d.pop("curves")
        return d


def make_policy(name: str, env: Environment, base_model: Any, *, seed: int,
                params: dict[str, Any] | None = None, representation: Any = None) -> Any:
    """Create and prepare a registered policy for ``env`` (user features wired to linear ones).

    ``representation`` is the fitted two-tower model whose embeddings neural-linear uses
    (default: the base model).
    """
    params = dict(params or {})
    sig = inspect.signature(policy_class(name).__init__).parameters
    if "n_context" in sig and name != "neural-linear":
        params.setdefault("n_context", env.user_features.shape[1])
    params.setdefault("seed", seed)
    policy = create_policy(name, **params)
    if representation is not None and hasattr(policy, "set_representation"):
        policy.set_representation(representation)
    if hasattr(policy, "set_interests"):  # the logged data's time order gives the novelty prior
        policy.set_interests(interactions=env.logged)
    return policy.prepare(base_model, n_items=env.n_items, item_vectors=env.item_vectors)


def uses_representation(name: str, params: dict[str, Any] | None = None) -> bool:
    """Whether policy ``name`` with ``params`` reads a two-tower model's embeddings."""
    return bool(create_policy(name, **dict(params or {})).uses_two_tower)


def _select(key: np.ndarray, k: int, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items of each row of ``key`` (ties by the users' tie keys) and which are real."""
    pos = topk(key, k, rows=users)
    return pos, np.isfinite(np.take_along_axis(key, pos, axis=1))


def run_policy(env: Environment, policy: Any, base_model: Any, *, rounds: int, slate_size: int,
               seed: int, batch_size: int = 100, n_candidates: int = 100, n_random: int = 20,
               n_fresh: int = 10, n_curve_points: int = 100,
               progress: Callable[[int], None] | None = None,
               dynamics: InterestDynamics | None = None, item_clusters: np.ndarray | None = None,
               discover_min_clicks: int = 5) -> SimulationResult:
    """Simulate ``rounds`` rounds of ``policy``; returns the run's metrics and curves.

    BLAS runs single-threaded here: the per-batch matrices are small, and a multi-threaded
    OpenBLAS on a busy 2-core machine was measured 100x slower on them.

    ``dynamics``: an :class:`~explorec.simulate.dynamics.InterestDynamics` (a fresh copy of it
    runs; None: the static simulator, drawing exactly as before). ``item_clusters``: the labels
    of the cluster metrics (default: the dynamics' labels, else k-means on the item vectors).
    ``discover_min_clicks``: clicks that make an item count in the discoverable corpus.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _run_policy(env, policy, base_model, rounds=rounds, slate_size=slate_size, seed=seed,
                           batch_size=batch_size, n_candidates=n_candidates, n_random=n_random,
                           n_fresh=n_fresh, n_curve_points=n_curve_points, progress=progress,
                           dynamics=dynamics, item_clusters=item_clusters,
                           discover_min_clicks=discover_min_clicks)


def run_clusters(env: Environment, seed: int, item_clusters: np.ndarray | None = None,
                 dynamics: InterestDynamics | None = None) -> np.ndarray | None:
    """The cluster labels the metrics use (see the module docstring); None when k-means is
    unavailable (scikit-learn missing), which leaves the cluster metrics NaN."""
    from explorec.simulate.dynamics import check_clusters

    if item_clusters is not None:
        return check_clusters(item_clusters, env.n_items)
    if dynamics is not None:
        return dynamics.item_clusters
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:  # pragma: no cover - the "explore" extra
        return None
    return kmeans_item_clusters(env.item_vectors, seed=seed)


def _run_policy(env: Environment, policy: Any, base_model: Any, *, rounds: int, slate_size: int,
                seed: int, batch_size: int, n_candidates: int, n_random: int, n_fresh: int,
                n_curve_points: int, progress: Callable[[int], None] | None,
                dynamics: InterestDynamics | None = None, item_clusters: np.ndarray | None = None,
                discover_min_clicks: int = 5) -> SimulationResult:
    if rounds < 1 or slate_size < 1 or batch_size < 1:
        raise ExploRecError("rounds, slate_size and batch_size must be >= 1")
    if discover_min_clicks < 1:
        raise ExploRecError(f"discover_min_clicks must be >= 1, got {discover_min_clicks!r}")
    if dynamics is not None and dynamics.env is not env:
        raise ExploRecError("dynamics was built on another environment")
    if slate_size > n_candidates:
        raise ExploRecError(f"slate_size {slate_size} exceeds n_candidates {n_candidates}")
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed + 7919)  # clicks and random candidates
    users_seq, entry, release = env.schedule(rounds, seed)
    n_users, n_items = env.n_users, env.n_items
    seen = env.logged.matrix(binary=True).toarray() > 0
    is_new_item = np.zeros(n_items, bool)
    is_new_item[env.new_items] = True
    is_new_user = np.zeros(n_users, bool)
    is_new_user[env.new_users] = True
    exam = env.examination(slate_size)
    shown = np.zeros(n_items, bool)
    visits = np.zeros(n_users, dtype=np.int64)
    user_first = np.full(n_users, -1, dtype=np.int64)      # visits until first click
    item_first = np.full(n_items, -1, dtype=np.int64)      # round of first click
    clicks_per_round = np.zeros(rounds)
    regret_per_round = np.zeros(rounds)
    oracle_per_round = np.zeros(rounds)
    metrics = _Metrics(env, run_clusters(env, seed, item_clusters, dynamics), rounds)
    dyn = dynamics.fresh(seed) if dynamics is not None else None

    for t0 in range(0, rounds, batch_size):
        t1 = min(t0 + batch_size, rounds)
        users = users_seq[t0:t1]
        round_idx = np.arange(t0, t1)
        if dyn is not None:
            users = dyn.reschedule(users, t0, entry)
            round_idx = round_idx[users >= 0]
            users = users[users >= 0]
            if len(users) == 0:
                metrics.end_batch(t0, t1, dyn)
                if progress:
                    progress(t1 - t0)
                continue
        b = len(users)
        rows = np.arange(b)
        h_rows, h_cols = np.nonzero(seen[users])
        H = sp.csr_matrix((np.ones(len(h_rows), np.float32), (h_rows, h_cols)), shape=(b, n_items))
        base_full = np.asarray(base_model.score_history(H), dtype=np.float64)
        eligible = (release <= t0)[None, :] & ~seen[users]
        top, v_top = _select(np.where(eligible, base_full, -np.inf), n_candidates, users)
        rest = eligible.copy()
        rest[rows[:, None], top] = False
        rnd, v_rnd = _select(np.where(rest, rng.random((b, n_items)), -np.inf), n_random, users)
        rest[rows[:, None], rnd] = False
        fresh, v_fresh = _select(np.where(rest & is_new_item[None, :], release[None, :] + 0.0, -np.inf),
                                 n_fresh, users)
        cand = np.hstack([top, rnd, fresh])
        valid = np.hstack([v_top, v_rnd, v_fresh])
        base = np.take_along_axis(base_full, cand, axis=1)
        req = Requests(cand, H, users, np.where(valid, base, 0.0), env.user_features[users], valid)
        slates = policy.rank_batch(req, slate_size)

        if dyn is None:
            p = env.p_true[users[:, None], slates.items].astype(np.float64)
        else:
            p = dyn.probabilities(users, slates.items)
        clicks = (rng.random(p.shape) < p * exam[None, :]).astype(np.float64)
        if dyn is None:
            p_cand = np.where(valid, env.p_true[users[:, None], cand], -np.inf)
        else:
            p_cand = np.where(valid, dyn.probabilities(users, cand), -np.inf)
        best = -np.sort(-p_cand, axis=1)[:, :slate_size]
        oracle = (best * exam).sum(axis=1)
        expected = (p * exam).sum(axis=1)
        clicks_per_round[round_idx] = clicks.sum(axis=1)
        regret_per_round[round_idx] = oracle - expected
        oracle_per_round[round_idx] = oracle

        policy.update(Feedback(req, slates, clicks))
        metrics.observe(users, slates.items, clicks, round_idx)
        if dyn is not None:
            dyn.observe(users, slates.items, clicks, round_idx)
        metrics.end_batch(t0, t1, dyn)

        # bookkeeping: histories, coverage, first clicks (vectorised over the batch)
        shown[slates.items.ravel()] = True
        clicked_rows, clicked_pos = np.nonzero(clicks)
        seen[users[clicked_rows], slates.items[clicked_rows, clicked_pos]] = True
        got = clicks.sum(axis=1) > 0
        # visit numbers within this batch for users that appear several times
        order = np.argsort(users, kind="stable")
        su = users[order]
        first_idx = np.searchsorted(su, su, side="left")
        occurrence = np.empty(b, dtype=np.int64)
        occurrence[order] = np.arange(b) - first_idx
        visit_no = visits[users] + occurrence + 1
        np.add.at(visits, users, 1)
        cand_first = np.where(got & is_new_user[users], visit_no, np.iinfo(np.int64).max)
        best_visit = np.full(n_users, np.iinfo(np.int64).max)
        np.minimum.at(best_visit, users, cand_first)
        newly = (user_first < 0) & (best_visit < np.iinfo(np.int64).max)
        user_first[newly] = best_visit[newly]
        ci = slates.items[clicked_rows, clicked_pos]
        round_of = round_idx[clicked_rows]
        new_ci = is_new_item[ci] & (item_first[ci] < 0)
        if new_ci.any():
            first_round = np.full(n_items, np.iinfo(np.int64).max)
            np.minimum.at(first_round, ci[new_ci], round_of[new_ci])
            fresh_hit = (item_first < 0) & (first_round < np.iinfo(np.int64).max)
            item_first[fresh_hit] = first_round[fresh_hit]
        if progress:
            progress(b)

    entered = env.new_users[entry[env.new_users] < rounds]
    u_time = np.where(user_first[entered] > 0, user_first[entered], visits[entered] + 1)
    released = env.new_items[release[env.new_items] < rounds]
    i_time = np.where(item_first[released] >= 0, item_first[released] - release[released],
                      rounds - release[released])
    live = np.ones(n_items, bool)
    live[env.new_items] = release[env.new_items] < rounds
    bins = np.array_split(np.arange(rounds), min(n_curve_points, rounds))
    curves = {
        "round": [int(x[-1]) + 1 for x in bins],
        "ctr": [float(clicks_per_round[x].sum() / (len(x) * slate_size)) for x in bins],
        "cumulative_regret": [float(regret_per_round[: x[-1] + 1].sum()) for x in bins],
        "cumulative_reward": [float(clicks_per_round[: x[-1] + 1].sum()) for x in bins],
    }
    return SimulationResult(
        policy=getattr(policy, "name", type(policy).__name__), seed=seed, rounds=rounds,
        cumulative_reward=float(clicks_per_round.sum()),
        cumulative_regret=float(regret_per_round.sum()),
        coverage=float(shown[live].mean()),
        new_user_first_click_rounds=float(u_time.mean()) if len(u_time) else float("nan"),
        new_item_first_click_rounds=float(i_time.mean()) if len(i_time) else float("nan"),
        new_users_reached=float((user_first[entered] > 0).mean()) if len(entered) else float("nan"),
        new_items_reached=float((item_first[released] >= 0).mean()) if len(released) else float("nan"),
        ctr=float(clicks_per_round.sum() / (rounds * slate_size)),
        oracle_ctr=float(oracle_per_round.sum() / (rounds * exam.sum())),
        seconds=round(time.perf_counter() - t_start, 3),
        curves={**curves, **metrics.curves(bins)},
        dynamics="static" if dyn is None else "interests",
        **metrics.summary(visits, shown, dyn, discover_min_clicks),
    )


class _Metrics:
    """The exploration-value metrics of one run (module docstring); reads, never draws."""

    def __init__(self, env: Environment, labels: np.ndarray | None, rounds: int) -> None:
        self.labels = labels
        self.n_clusters = int(labels.max()) + 1 if labels is not None and len(labels) else 0
        n_users, n_items = env.n_users, env.n_items
        logged = env.logged
        self.known = np.zeros((n_users, self.n_clusters), bool)
        self.clicked = np.zeros((n_users, self.n_clusters), bool)
        if labels is not None:
            self.known[logged.user, labels[logged.item]] = True
        self.new_per_round = np.zeros(rounds)
        self.present_per_round = np.ones(rounds)
        self.item_clicks = np.zeros(n_items, dtype=np.int64)
        v = np.asarray(env.item_vectors, dtype=np.float64)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.unit = None if not (norms > 0).any() else np.where(norms > 0, v / np.maximum(norms, 1e-300), 0.0)
        counts = np.bincount(logged.item, minlength=n_items).astype(np.float64)
        self.item_novelty = -np.log2((counts + 1.0) / (len(logged) + n_items))
        self.diversity_sum = 0.0
        self.novelty_sum = 0.0
        self.n_slates = 0
        self.n_shown = 0
        self.ever_visited = np.zeros(n_users, bool)

    def observe(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray,
                round_idx: np.ndarray) -> None:
        self.ever_visited[users] = True
        rows, pos = np.nonzero(clicks)
        ci = items[rows, pos]
        np.add.at(self.item_clicks, ci, 1)
        self.novelty_sum += float(self.item_novelty[items].sum())
        self.n_shown += items.size
        k = items.shape[1]
        if self.unit is not None and k > 1:
            e = self.unit[items]                                     # (b, k, d)
            gram = np.einsum("bkd,bjd->bkj", e, e)
            off = (gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2)) / (k * (k - 1))
            self.diversity_sum += float((1.0 - off).sum())
        self.n_slates += len(users)
        if self.labels is None or not len(ci):
            return
        cu, cc = users[rows], self.labels[ci]
        fresh = ~self.known[cu, cc]
        if fresh.any():
            key = cu[fresh] * self.n_clusters + cc[fresh]
            _, first = np.unique(key, return_index=True)
            np.add.at(self.new_per_round, round_idx[rows[fresh][first]], 1.0)
            self.known[cu, cc] = True
        self.clicked[cu, cc] = True

    def end_batch(self, t0: int, t1: int, dyn: InterestDynamics | None) -> None:
        if dyn is not None:
            self.present_per_round[t0:t1] = self._retained(dyn, t1)

    def _retained(self, dyn: InterestDynamics | None, t: int) -> float:
        if dyn is None or not self.ever_visited.any():
            return 1.0
        return float(dyn.present(t)[self.ever_visited].mean())

    def curves(self, bins: list[np.ndarray]) -> dict[str, list[float]]:
        cum = np.cumsum(self.new_per_round)
        return {"cumulative_new_interests": [float(cum[x[-1]]) for x in bins],
                "users_retained": [float(self.present_per_round[x[-1]]) for x in bins]}

    def summary(self, visits: np.ndarray, shown: np.ndarray, dyn: InterestDynamics | None,
                min_clicks: int) -> dict[str, Any]:
        visited = visits > 0
        n_visits = int(visits.sum())
        cluster_ok = self.labels is not None
        rounds = len(self.new_per_round)
        return {
            "n_clusters": self.n_clusters,
            "distinct_clusters_clicked": float(self.clicked[visited].sum(axis=1).mean())
            if cluster_ok and visited.any() else float("nan"),
            "new_interests_per_1k_visits": float(1000.0 * self.new_per_round.sum() / n_visits)
            if cluster_ok and n_visits else float("nan"),
            "users_retained": self._retained(dyn, rounds),
            "visits_per_user": float(visits[visited].mean()) if visited.any() else float("nan"),
            "intra_list_diversity": float(self.diversity_sum / self.n_slates)
            if self.unit is not None and self.n_slates and self.n_shown > self.n_slates else float("nan"),
            "novelty": float(self.novelty_sum / self.n_shown) if self.n_shown else float("nan"),
            "discoverable_items": int((self.item_clicks >= min_clicks).sum()),
            "catalog_coverage": float(shown.mean()),
        }


def fit_base_model(env: Environment, dataset: Any, name: str, *, seed: int,
                   params: dict[str, Any] | None = None) -> Any:
    """Fit the base recommender on the environment's logged data (validation split for neural ones)."""
    from explorec.data.splits import make_split
    from explorec.models.registry import create_model

    params = dict(params or {})
    model = create_model(name, **params)
    sig = inspect.signature(type(model).__init__).parameters
    if "seed" in sig and "seed" not in params:
        model.set_params(seed=seed)
    if name in ("two-tower", "hybrid"):
        split = make_split(env.logged, "ratio", seed=seed)
        model.fit(split.train, catalog=dataset.catalog, split=split)
    else:
        model.fit(env.logged, catalog=dataset.catalog)
    return model


@dataclass
class SeedSetup:
    """What every policy of one seed shares: the environment, the fitted base model and, for
    neural-linear, the two-tower model whose embeddings it reads (None when not needed)."""

    seed: int
    env: Environment
    base: Any
    representation: Any = None
    item_clusters: np.ndarray | None = None
    dynamics: InterestDynamics | None = None


def prepare_seed(dataset: Any, *, item_vectors: np.ndarray, seed: int, model: str = "ease",
                 model_params: dict[str, Any] | None = None,
                 env_options: dict[str, Any] | None = None,
                 representation: bool = False, dynamics: DynamicsParams | None = None,
                 item_clusters: np.ndarray | None = None) -> SeedSetup:
    """Build seed ``seed``'s environment and fit its base model (and, with ``representation``,
    the two-tower model neural-linear reads when the base model is another one).

    The setup also holds the item cluster labels of the metrics (``item_clusters``, else
    k-means on the item vectors) and, with ``dynamics``, the initial
    :class:`~explorec.simulate.dynamics.InterestDynamics` over the dataset's full ratings."""
    from explorec.simulate.environment import build_environment

    env = build_environment(dataset, item_vectors=item_vectors, seed=seed, **(env_options or {}))
    base = fit_base_model(env, dataset, model, seed=seed, params=model_params)
    rep = None
    if representation:
        rep = base if model == "two-tower" else fit_base_model(
            env, dataset, "two-tower", seed=seed, params={"progress": False})
    labels = run_clusters(env, seed, item_clusters)
    dyn = None
    if dynamics is not None:
        if labels is None:  # pragma: no cover
            raise ExploRecError("dynamics need item_clusters (or scikit-learn for k-means labels)")
        dyn = InterestDynamics(env, labels, dynamics, interactions=dataset.interactions, seed=seed)
    return SeedSetup(seed=seed, env=env, base=base, representation=rep, item_clusters=labels,
                     dynamics=dyn)


def run_setup(setup: SeedSetup, name: str, params: dict[str, Any] | None = None, *, rounds: int,
              slate_size: int, batch_size: int = 100, n_candidates: int = 100, n_random: int = 20,
              n_fresh: int = 10, progress: Callable[[int], None] | None = None) -> SimulationResult:
    """One (policy, seed) run on a prepared seed: a fresh policy seeded with the setup's seed,
    so the result depends on nothing but its arguments (runs may go to any process)."""
    policy = make_policy(name, setup.env, setup.base, seed=setup.seed, params=params,
                         representation=setup.representation)
    return run_policy(setup.env, policy, setup.base, rounds=rounds, slate_size=slate_size,
                      seed=setup.seed, batch_size=batch_size, n_candidates=n_candidates,
                      n_random=n_random, n_fresh=n_fresh, progress=progress,
                      dynamics=setup.dynamics, item_clusters=setup.item_clusters)


def simulate(dataset: Any, policies: Sequence[str], *, item_vectors: np.ndarray, rounds: int,
             slate_size: int, seeds: Sequence[int], model: str = "ease",
             model_params: dict[str, Any] | None = None,
             policy_params: dict[str, dict[str, Any]] | None = None, batch_size: int = 100,
             n_candidates: int = 100, n_random: int = 20, n_fresh: int = 10,
             env_options: dict[str, Any] | None = None,
             progress: Callable[[str, int], None] | None = None,
             on_result: Callable[[SimulationResult], None] | None = None,
             client: Any = None, dynamics: DynamicsParams | None = None,
             item_clusters: np.ndarray | None = None) -> list[SimulationResult]:
    """Every policy x seed; one environment and one base model per seed, shared by the policies.

    When neural-linear runs on a base model other than two-tower, a two-tower model is also
    fit on the logged data of each seed for its embeddings.

    With a Dask ``client`` (:func:`explorec.scale.dask_client`) the seeds are prepared here
    (environments and base models fitted in this process, as without one), each seed's setup
    goes to every worker once, and the policy x seed runs fan out to the workers; results come
    back in the same order (seed by seed, policies in the given order) and equal the
    single-process ones (``seconds`` aside). ``progress`` then advances once per finished run.

    ``dynamics`` (:class:`~explorec.simulate.dynamics.DynamicsParams`) runs every policy with
    interest dynamics (default None: the static simulator); ``item_clusters`` are the item
    labels of the dynamics and the metrics (default: k-means on ``item_vectors`` per seed).
    """
    policy_params = policy_params or {}
    prepare = partial(prepare_seed, dataset, item_vectors=item_vectors, model=model,
                      model_params=model_params, env_options=env_options,
                      representation=any(uses_representation(n, policy_params.get(n)) for n in policies),
                      dynamics=dynamics,
                      item_clusters=item_clusters)
    run = partial(run_setup, rounds=rounds, slate_size=slate_size, batch_size=batch_size,
                  n_candidates=n_candidates, n_random=n_random, n_fresh=n_fresh)
    results: list[SimulationResult] = []
    if client is None:
        for seed in seeds:
            setup = prepare(seed=seed)
            for name in policies:
                res = run(setup, name, policy_params.get(name),
                          progress=(lambda n, _name=name: progress(_name, n)) if progress else None)
                results.append(res)
                if on_result:
                    on_result(res)
        return results
    from explorec import scale

    local = [prepare(seed=seed) for seed in seeds]
    setups = scale.share(local, client=client)
    jobs = [(setup, name) for setup in setups for name in policies]
    try:
        handles = scale.submit(run, [(setup, name, policy_params.get(name))
                                     for setup, name in jobs], client=client)
        for (_, name), handle in zip(jobs, handles, strict=True):
            res = scale.gather([handle], client=client)[0]
            results.append(res)
            if progress:
                progress(name, rounds)
            if on_result:
                on_result(res)
    finally:
        scale.release(local, client=client)  # the workers free them once the runs are done
    return results
