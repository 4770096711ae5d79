"""Off-policy evaluation on the Open Bandit Dataset: one policy's logs estimate another's CTR."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from explorec.evaluate.ope import (
    ESTIMATORS,
    REWARD_MODELS,
    LoggedData,
    bts_action_distribution,
    estimate_policy_value,
)

POLICIES = ("random", "bts")


def policy_action_distribution(policy: str, campaign: str, n_actions: int, n_positions: int, *,
                               n_sim: int = 1_000_000, seed: int = 2020,
                               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(n_actions, n_positions) slot probabilities of an OBD policy (context-free)."""
    if policy == "random":
        return np.full((n_actions, n_positions), 1.0 / n_actions)
    if policy == "bts":
        from explorec.data.obd import load_bts_prior

        alpha, beta = load_bts_prior(campaign)
        return bts_action_distribution(alpha, beta, n_positions, n_sim=n_sim, seed=seed,
                                       progress=progress)
    raise ValueError(f"unknown OBD policy {policy!r}; known: {', '.join(POLICIES)}")


def evaluate_obd(campaign: str = "all", behavior: str = "random", evaluation: str = "bts", *,
                 estimators: tuple[str, ...] = ESTIMATORS, n_sim: int = 1_000_000,
                 n_bootstrap: int = 1000, seed: int = 2020, reward_model: str = "logistic",
                 progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Estimate ``evaluation``'s CTR from ``behavior``'s logs; the ground truth is the CTR of
    ``evaluation``'s own log of the same campaign."""
    from explorec.data.obd import load_obd

    if behavior == evaluation:
        raise ValueError("behavior and evaluation policies must differ")
    logs = load_obd(behavior, campaign)
    truth = load_obd(evaluation, campaign).ctr
    t = time.perf_counter()
    dist = policy_action_distribution(evaluation, campaign, logs.n_actions, logs.n_positions,
                                      n_sim=n_sim, seed=seed, progress=progress)
    dist_s = time.perf_counter() - t
    data = LoggedData(logs.action, logs.reward, logs.pscore, logs.position, logs.context)
    action_dist = np.broadcast_to(dist[None], (len(data), *dist.shape))
    if reward_model not in REWARD_MODELS:
        raise ValueError(f"unknown reward model {reward_model!r}; known: {', '.join(REWARD_MODELS)}")
    q_hat = REWARD_MODELS[reward_model]().fit(data, logs.n_actions, logs.n_positions).predict_all(
        logs.context)
    estimates = estimate_policy_value(data, action_dist, estimators=estimators, q_hat=q_hat,
                                      ground_truth=truth, n_bootstrap=n_bootstrap, seed=seed)
    return {
        "dataset": "obd", "campaign": campaign, "behavior": behavior, "evaluation": evaluation,
        "rows": len(data), "clicks": int(logs.reward.sum()), "behavior_ctr": logs.ctr,
        "ground_truth": truth, "action_dist_seconds": dist_s,
        "action_dist_simulations": n_sim if evaluation == "bts" else 0,
        "estimates": [e.to_dict() for e in estimates], "seed": seed, "reward_model": reward_model,
    }
