"""Off-policy evaluation of candidate policies on the service's own log.

Every served slate is in the store with its candidate set, the user's history position, the
shown items' candidate positions and their per-position propensities; every reward is keyed
by (event, position). One row per shown slot (as in Open Bandit Pipeline): the logged
propensity ``pi_b(a | x, p)``, the reward (0 when none was posted) and the candidate policy's
marginal probability ``pi_e(a | x, p)`` of putting the same item at the same position, computed
by re-ranking the logged request with ``keep_distribution=True``.

What each logged rank saw (candidates, history, base scores) is reconstructed once
(:func:`collect_log`); any number of candidate policies are then evaluated on it
(:func:`evaluate_slots`). Estimators: Replay, IPS (``ipw``), SNIPS (``snipw``) and DR. DR's
reward model is a position-based click model fitted on the log itself, cross-fitted over two
halves of the slates (each half's rows are predicted by the model of the other half):
``q(a, p) = ctr_p * attractiveness_a``, the position's mean reward times the item's observed
over expected rewards, both shrunk towards the global mean (:class:`PositionItemModel`); its
direct term sums ``q`` over the candidate policy's whole distribution at the position. Both
policies must share the catalog: slates whose candidates the artifact does not know are
skipped and counted.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explorec.serve.artifact import ServiceArtifact
from explorec.serve.stores import RankEvent, Store

LOG_ESTIMATORS = ("replay", "ipw", "snipw", "dr")


@dataclass
class _Group:
    """Logged slates of one size ``k``, batched as the policies' requests."""

    k: int
    requests: Any  # explorec.explore.Requests
    events: list[RankEvent]


@dataclass
class LoggedSlots:
    """The shown slots of logged slates, with what each rank saw, reconstructed once."""

    engine: Any  # the artifact's Engine (no store attached)
    groups: list[_Group]
    n_events: int
    skipped: int
    rewards: dict[tuple[str, int], float]
    model: PositionItemModel | None = None
    _rows: dict[str, np.ndarray] = field(default_factory=dict)

    def rows(self) -> dict[str, np.ndarray]:
        """Per shown slot: ``reward``, ``pscore``, ``position``, ``item`` (internal id),
        ``fold`` (0/1, by slate) in the order of :attr:`groups`."""
        if not self._rows:
            reward, pscore, position, item, fold = [], [], [], [], []
            for g in self.groups:
                for n, ev in enumerate(g.events):
                    k = len(ev.items)
                    reward.append([self.rewards.get((ev.event_id, j), 0.0) for j in range(k)])
                    pscore.append(np.clip(np.asarray(ev.propensities, np.float64), 1e-6, 1.0))
                    position.append(np.arange(k))
                    item.append(g.requests.candidates[n, np.asarray(ev.positions, np.int64)])
                    fold.append(np.full(k, zlib.crc32(ev.event_id.encode()) & 1))

            def cat(xs: list[np.ndarray], dt: type) -> np.ndarray:
                return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

            self._rows = {"reward": cat(reward, np.float64), "pscore": cat(pscore, np.float64),
                          "position": cat(position, np.int64), "item": cat(item, np.int64),
                          "fold": cat(fold, np.int64)}
        return self._rows

    @property
    def n_rows(self) -> int:
        return len(self.rows()["reward"])

    def logged_estimate(self, n_bootstrap: int = 1000, seed: int = 2020) -> dict[str, Any] | None:
        """The logging policies' own value on these slots: the mean reward per shown slot, with
        a bootstrap CI (the IPS estimate of a policy evaluated on its own log: every weight 1)."""
        from explorec.evaluate.ope import LoggedData, estimate_policy_value

        r = self.rows()
        if not len(r["reward"]):
            return None
        data = LoggedData(np.zeros(len(r["reward"]), np.int64), r["reward"], r["pscore"])
        dist = np.stack([r["pscore"], 1.0 - r["pscore"]], axis=1)[:, :, None]
        (est,) = estimate_policy_value(data, dist, estimators=("ipw",), n_bootstrap=n_bootstrap, seed=seed)
        return {**est.to_dict(), "estimator": "logged"}


@dataclass
class PositionItemModel:
    """``q(a, p) = clip(ctr_p * attractiveness_a, 0, 1)``, one per fold, fitted on the other.

    ``ctr_p`` is the mean reward at position ``p`` and ``attractiveness_a`` the item's summed
    rewards over the rewards expected from its positions, each shrunk by ``prior`` pseudo-slots
    towards the global mean (positions beyond the fitted ones get the global mean)."""

    ctr: np.ndarray  # (2, n_positions)
    attract: np.ndarray  # (2, n_items)
    mean: float

    @classmethod
    def fit(cls, rows: dict[str, np.ndarray], n_items: int, prior: float = 10.0) -> PositionItemModel:
        r, pos, item, fold = rows["reward"], rows["position"], rows["item"], rows["fold"]
        n_pos = int(pos.max()) + 1 if len(pos) else 1
        mean = float(r.mean()) if len(r) else 0.0
        ctr = np.full((2, n_pos), mean)
        attract = np.ones((2, n_items))
        for f in (0, 1):
            train = fold != f  # fold f is predicted by the model of the other half
            rt, pt, it = r[train], pos[train], item[train]
            if not len(rt):
                continue
            m = float(rt.mean())
            s = np.bincount(pt, weights=rt, minlength=n_pos)
            c = np.bincount(pt, minlength=n_pos)
            ctr[f] = (s + prior * m) / (c + prior)
            expected = np.bincount(it, weights=ctr[f][pt], minlength=n_items)
            got = np.bincount(it, weights=rt, minlength=n_items)
            attract[f] = (got + prior * m) / (expected + prior * m) if m > 0 else 1.0
        return cls(ctr, attract, mean)

    def predict(self, fold: np.ndarray, items: np.ndarray, position: np.ndarray) -> np.ndarray:
        """q for items (any shape) of rows in ``fold`` at ``position`` (broadcast against items)."""
        n_pos = self.ctr.shape[1]
        p = np.minimum(position, n_pos - 1)
        c = np.where(position < n_pos, self.ctr[fold, p], self.mean)
        c = c.reshape(c.shape + (1,) * (items.ndim - c.ndim))
        f = fold.reshape(fold.shape + (1,) * (items.ndim - fold.ndim))
        return np.clip(c * self.attract[f, items], 0.0, 1.0)


def collect_log(store: Store, art: ServiceArtifact, *, events: Iterable[RankEvent] | None = None,
                batch: int = 256) -> LoggedSlots:
    """Reconstruct what each logged rank saw (default: every slate of the store; or the given
    ones, whose rewards are then read for them alone)."""
    import scipy.sparse as sp

    from explorec.explore import Requests
    from explorec.serve.engine import Engine

    eng = Engine(art, None)
    eng.store = store
    eng._apply_items(store.items_since(0), grow_policy=False)
    rewards: dict[tuple[str, int], float] = {}
    if events is None:
        source: Iterable[RankEvent] = store.iter_events()
        last = 0
        while True:
            recs = store.rewards_since(last, 10_000)
            if not recs:
                break
            for r in recs:
                rewards[(r.event_id, r.position)] = r.reward
            last = recs[-1].seq
    else:
        source = list(events)
        for r in store.rewards_for_events([e.event_id for e in source]):
            rewards[(r.event_id, r.position)] = r.reward
    by_k: dict[int, list[RankEvent]] = defaultdict(list)
    n_events = skipped = 0
    for ev in source:
        n_events += 1
        if ev.items:
            by_k[len(ev.items)].append(ev)
    groups: list[_Group] = []
    for k, evs in sorted(by_k.items()):
        for s in range(0, len(evs), batch):
            part = []
            chunk = evs[s:s + batch]
            for ev, served in zip(chunk, eng.reconstruct(chunk), strict=True):
                if served is None or len(served.cand) < k:
                    skipped += 1
                    continue
                part.append((ev, served))
            if not part:
                continue
            b = len(part)
            c = max(len(sv.cand) for _, sv in part)
            cand = np.zeros((b, c), np.int64)
            valid = np.zeros((b, c), bool)
            base = np.full((b, c), -np.inf)
            hr: list[int] = []
            hc: list[int] = []
            for n, (_, sv) in enumerate(part):
                m = len(sv.cand)
                cand[n, :m], valid[n, :m], base[n, :m] = sv.cand, True, sv.base
                hr += [n] * len(sv.hist)
                hc += list(sv.hist)
            hist = sp.csr_matrix((np.ones(len(hr), np.float32), (hr, hc)), shape=(b, eng.n_items))
            ctx = None
            feats = [sv.context for _, sv in part]
            if all(f is not None for f in feats) and len({f.shape[1] for f in feats}) == 1:  # type: ignore[union-attr]
                ctx = np.vstack(feats)  # type: ignore[arg-type]
            # the key each rank broke its ties and kept per-user state by (as the engine does)
            users = np.asarray([sv.policy_user for _, sv in part])
            groups.append(_Group(k, Requests(cand, hist, users, base, ctx, valid), [ev for ev, _ in part]))
    return LoggedSlots(eng, groups, n_events, skipped, rewards)


def prepared_policy(slots: LoggedSlots, policy: str, policy_params: dict[str, Any] | None = None,
                    seed: int = 2020) -> Any:
    """A fresh candidate policy, prepared on the artifact's model and the log's catalog."""
    from explorec.explore import create_policy

    eng = slots.engine
    pol = create_policy(policy, **(policy_params or {}))
    pol.seed = seed
    pol.rng = np.random.default_rng(seed)
    pol.prepare(eng.art.model, n_items=eng.n_items, item_vectors=eng.vectors.astype(np.float64))
    return pol


def evaluate_slots(slots: LoggedSlots, policy: str, *, policy_params: dict[str, Any] | None = None,
                   estimators: tuple[str, ...] = LOG_ESTIMATORS, n_bootstrap: int = 1000,
                   seed: int = 2020) -> dict[str, Any]:
    """Estimate ``policy``'s value (mean reward per shown slot) on reconstructed slots."""
    from explorec.evaluate.ope import LoggedData, estimate_policy_value

    bad = [e for e in estimators if e not in LOG_ESTIMATORS]
    if bad:
        raise ValueError(f"estimators {bad} are not available on a service log (they need a "
                         f"reward model over every action); use {', '.join(LOG_ESTIMATORS)} (DR's "
                         "reward model is a position-based click model fitted on the log)")
    t0 = time.perf_counter()
    eng = slots.engine
    head = {"artifact": eng.art.artifact_id, "logging_policy": eng.art.policy_name, "policy": policy,
            "policy_params": policy_params or {}, "events": slots.n_events,
            "skipped_events": slots.skipped}
    rows = slots.rows()
    if not len(rows["reward"]):
        return {**head, "rows": 0, "estimates": [], "logged_value": None,
                "seconds": time.perf_counter() - t0}
    pol = prepared_policy(slots, policy, policy_params, seed)
    want_dr = "dr" in estimators
    if want_dr and slots.model is None:
        slots.model = PositionItemModel.fit(rows, eng.n_items)
    pi_e: list[np.ndarray] = []
    dm: list[np.ndarray] = []
    at = 0
    for g in slots.groups:
        sb = pol.rank_batch(g.requests, g.k, keep_distribution=True)
        assert sb.distribution is not None
        for n, ev in enumerate(g.events):
            k = len(ev.items)
            logged = np.asarray(ev.positions, np.int64)
            pi_e.append(sb.distribution[n, logged, np.arange(k)])
            if want_dr:
                assert slots.model is not None
                fold = rows["fold"][at:at + k]
                q = slots.model.predict(fold, g.requests.candidates[n][None, :].repeat(k, 0),
                                        np.arange(k))  # (k, C)
                d = sb.distribution[n, :, :k].T * g.requests.mask[n][None, :]  # (k, C)
                dm.append((d * q).sum(axis=1))
            at += k
    pe = np.concatenate(pi_e)
    data = LoggedData(action=np.zeros(len(pe), np.int64), reward=rows["reward"], pscore=rows["pscore"])
    # two actions per row: "the logged item at the logged position" and "anything else"
    dist = np.stack([pe, 1.0 - pe], axis=1)[:, :, None]
    q_hat = None
    if want_dr:
        assert slots.model is not None
        q_logged = slots.model.predict(rows["fold"], rows["item"], rows["position"])
        dmv = np.concatenate(dm)
        rest = 1.0 - pe
        q_other = np.where(rest > 1e-12, (dmv - pe * q_logged) / np.maximum(rest, 1e-12), 0.0)
        q_hat = np.stack([q_logged, q_other], axis=1)[:, :, None]
    est = estimate_policy_value(data, dist, estimators=estimators, q_hat=q_hat,
                                n_bootstrap=n_bootstrap, seed=seed)
    return {**head, "rows": len(pe), "rewarded_rows": int((data.reward > 0).sum()),
            "logged_value": float(data.reward.mean()), "mean_pi_e": float(pe.mean()),
            "estimates": [e.to_dict() for e in est], "seconds": time.perf_counter() - t0}


def evaluate_log(store: Store, art: ServiceArtifact, policy: str, *,
                 policy_params: dict[str, Any] | None = None,
                 estimators: tuple[str, ...] = LOG_ESTIMATORS, n_bootstrap: int = 1000,
                 seed: int = 2020, batch: int = 256) -> dict[str, Any]:
    """Estimate ``policy``'s value (mean reward per shown slot) from the store's whole log."""
    bad = [e for e in estimators if e not in LOG_ESTIMATORS]
    if bad:  # before reading the log
        raise ValueError(f"estimators {bad} are not available on a service log (they need a "
                         f"reward model over every action); use {', '.join(LOG_ESTIMATORS)}")
    t0 = time.perf_counter()
    slots = collect_log(store, art, batch=batch)
    out = evaluate_slots(slots, policy, policy_params=policy_params, estimators=estimators,
                         n_bootstrap=n_bootstrap, seed=seed)
    return {"store": store.describe(), **out, "seconds": time.perf_counter() - t0}
