"""Off-policy evaluation of a candidate policy on the service's own log.

Every served slate is in the store with its candidate set, the user's history position, the
shown items' candidate positions and their per-position propensities; every reward is keyed
by (event, position). One row per shown slot (as in Open Bandit Pipeline): the logged
propensity ``pi_b(a | x, p)``, the reward (0 when none was posted) and the candidate policy's
marginal probability ``pi_e(a | x, p)`` of putting the same item at the same position, computed
by re-ranking the logged request with ``keep_distribution=True``.

Only what those numbers identify is estimated: Replay, IPS and SNIPS (the direct-method family
needs a reward model over all candidates, which the log of a recommender does not support
well). Both policies must share the catalog: events whose candidates the artifact does not
know are skipped and counted.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np

from explorec.serve.artifact import ServiceArtifact
from explorec.serve.stores import RankEvent, Store

LOG_ESTIMATORS = ("replay", "ipw", "snipw")


def evaluate_log(store: Store, art: ServiceArtifact, policy: str, *,
                 policy_params: dict[str, Any] | None = None,
                 estimators: tuple[str, ...] = LOG_ESTIMATORS, n_bootstrap: int = 1000,
                 seed: int = 2020, batch: int = 256) -> dict[str, Any]:
    """Estimate ``policy``'s value (mean reward per shown slot) from the store's log."""
    from explorec.evaluate.ope import LoggedData, estimate_policy_value
    from explorec.explore import Requests, create_policy
    from explorec.serve.engine import Engine

    bad = [e for e in estimators if e not in LOG_ESTIMATORS]
    if bad:
        raise ValueError(f"estimators {bad} need a reward model; on a service log use "
                         f"{', '.join(LOG_ESTIMATORS)}")
    t0 = time.perf_counter()
    eng = Engine(art, None)
    eng.store = store
    eng._apply_items(store.items_since(0), grow_policy=False)
    pol = create_policy(policy, **(policy_params or {}))
    pol.seed = seed
    pol.rng = np.random.default_rng(seed)
    pol.prepare(art.model, n_items=eng.n_items, item_vectors=eng.vectors.astype(np.float64))
    rewards: dict[tuple[str, int], float] = {}
    last = 0
    while True:
        recs = store.rewards_since(last, 10_000)
        if not recs:
            break
        for r in recs:
            rewards[(r.event_id, r.position)] = r.reward
        last = recs[-1].seq
    by_k: dict[int, list[RankEvent]] = defaultdict(list)
    n_events = skipped = 0
    for ev in store.iter_events():
        n_events += 1
        if ev.items:
            by_k[len(ev.items)].append(ev)
    pi_e: list[np.ndarray] = []
    pscore: list[np.ndarray] = []
    reward: list[np.ndarray] = []
    position: list[np.ndarray] = []
    for k, events in sorted(by_k.items()):
        for s in range(0, len(events), batch):
            part = []
            for ev in events[s:s + batch]:
                served = eng._reconstruct(ev)
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
            import scipy.sparse as sp

            hist = sp.csr_matrix((np.ones(len(hr), np.float32), (hr, hc)), shape=(b, eng.n_items))
            ctx = None
            feats = [sv.context for _, sv in part]
            if all(f is not None for f in feats) and len({f.shape[1] for f in feats}) == 1:  # type: ignore[union-attr]
                ctx = np.vstack(feats)  # type: ignore[arg-type]
            users = np.asarray([sv.user_key for _, sv in part])
            sb = pol.rank_batch(Requests(cand, hist, users, base, ctx, valid), k, keep_distribution=True)
            assert sb.distribution is not None
            for n, (ev, _) in enumerate(part):
                logged = np.asarray(ev.positions, np.int64)
                pi_e.append(sb.distribution[n, logged, np.arange(k)])
                pscore.append(np.clip(np.asarray(ev.propensities, np.float64), 1e-6, 1.0))
                reward.append(np.asarray([rewards.get((ev.event_id, j), 0.0) for j in range(k)]))
                position.append(np.arange(k))
    if not pi_e:
        return {"store": store.describe(), "artifact": art.artifact_id, "policy": policy,
                "events": n_events, "skipped_events": skipped, "rows": 0, "estimates": [],
                "logged_value": None, "seconds": time.perf_counter() - t0}
    pe = np.concatenate(pi_e)
    data = LoggedData(action=np.zeros(len(pe), np.int64), reward=np.concatenate(reward),
                      pscore=np.concatenate(pscore))
    # two actions per row: "the logged item at the logged position" and "anything else"
    dist = np.stack([pe, 1.0 - pe], axis=1)[:, :, None]
    est = estimate_policy_value(data, dist, estimators=estimators, n_bootstrap=n_bootstrap, seed=seed)
    return {"store": store.describe(), "artifact": art.artifact_id, "logging_policy": art.policy_name,
            "policy": policy, "policy_params": policy_params or {}, "events": n_events,
            "skipped_events": skipped, "rows": len(pe), "rewarded_rows": int((data.reward > 0).sum()),
            "logged_value": float(data.reward.mean()), "mean_pi_e": float(pe.mean()),
            "estimates": [e.to_dict() for e in est], "seconds": time.perf_counter() - t0}
