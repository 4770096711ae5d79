"""Off-policy estimators: synthetic logs with a known true value, and the real OBD sample."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from explorec.evaluate.ope import (
    ESTIMATORS,
    LoggedData,
    LogisticRewardModel,
    bts_action_distribution,
    estimate_policy_value,
)


def _synthetic(seed: int, n: int = 4000, n_actions: int = 5):
    """Contexts in two groups; reward prob depends on (group, action); a softmax logger."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n)
    context = np.eye(2)[group]
    p_click = np.array([[0.1, 0.3, 0.2, 0.05, 0.4], [0.5, 0.1, 0.2, 0.3, 0.05]])
    logits = np.array([[1.0, 0.2, 0.0, 0.5, -0.5], [0.0, 0.8, 0.3, -0.2, 0.4]])
    pi_b = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pi_e_rows = np.array([[0.05, 0.15, 0.1, 0.05, 0.65], [0.7, 0.05, 0.1, 0.1, 0.05]])
    probs_b = pi_b[group]
    action = (np.cumsum(probs_b, 1) < rng.random(n)[:, None]).sum(1)
    reward = (rng.random(n) < p_click[group, action]).astype(float)
    data = LoggedData(action, reward, probs_b[np.arange(n), action], None, context)
    # the policy's value on these contexts (the quantity the estimators target)
    truth = float((pi_e_rows[group] * p_click[group]).sum(1).mean())
    return data, pi_e_rows[group], p_click[group], truth


def test_ipw_and_dr_are_unbiased_within_their_ci():
    covered = {"ipw": 0, "dr": 0, "snipw": 0}
    errors = {"ipw": [], "dr": []}
    runs = 12
    for seed in range(runs):
        data, pi_e, _, truth = _synthetic(seed)
        q = LogisticRewardModel().fit(data, 5, 1).predict_all(data.context)
        est = {e.estimator: e for e in estimate_policy_value(
            data, pi_e, q_hat=q, estimators=("ipw", "snipw", "dr"), n_bootstrap=300, seed=seed)}
        for name in covered:
            covered[name] += est[name].ci_low <= truth <= est[name].ci_high
        for name in errors:
            errors[name].append(est[name].estimate - truth)
    for name in covered:
        assert covered[name] >= runs - 3, (name, covered)  # 95% CIs: rare misses only
    for name, errs in errors.items():
        # mean error over seeds is small relative to its standard error: no systematic bias
        assert abs(np.mean(errs)) < 3 * np.std(errs) / np.sqrt(runs) + 1e-3, (name, errs)


def test_dm_is_biased_when_its_model_is_misspecified():
    data, pi_e, _, truth = _synthetic(0, n=20000)
    # a model blind to the context cannot express the group x action interaction
    blind = LoggedData(data.action, data.reward, data.pscore, None, np.zeros((len(data), 0)))
    q = LogisticRewardModel().fit(blind, 5, 1).predict_all(np.zeros((len(data), 0)))
    est = {e.estimator: e for e in estimate_policy_value(
        blind, pi_e, q_hat=q, estimators=("dm", "dr"), n_bootstrap=200)}
    assert not est["dm"].ci_low <= truth <= est["dm"].ci_high
    assert abs(est["dm"].estimate - truth) > 0.1
    # DR's importance-weighted correction repairs it (the error is sampling noise only)
    assert abs(est["dr"].estimate - truth) < 0.03


def test_replay_on_uniform_logs_is_unbiased():
    rng = np.random.default_rng(1)
    n, k = 50000, 4
    action = rng.integers(0, k, n)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    reward = (rng.random(n) < p[action]).astype(float)
    data = LoggedData(action, reward, np.full(n, 1 / k))
    pi_e = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
    (est,) = estimate_policy_value(data, pi_e, estimators=("replay",), n_bootstrap=200)
    assert est.ci_low <= 0.4 <= est.ci_high


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="row 1: propensity"):
        LoggedData(np.array([0, 1]), np.array([0.0, 1.0]), np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="reward has 1 rows"):
        LoggedData(np.array([0, 1]), np.array([0.0]), np.array([0.5, 0.5]))


def test_bts_action_distribution_is_a_distribution_matching_frequencies():
    alpha, beta = np.array([5.0, 1.0, 2.0, 8.0]), np.array([5.0, 9.0, 2.0, 2.0])
    dist = bts_action_distribution(alpha, beta, 2, n_sim=200_000, seed=3)
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    # empirical check with a plain loop over a few thousand draws
    rng = np.random.default_rng(11)
    counts = np.zeros((4, 2))
    for _ in range(5000):
        theta = rng.beta(alpha, beta)
        order = np.argsort(-theta)
        counts[order[0], 0] += 1
        counts[order[1], 1] += 1
    np.testing.assert_allclose(dist, counts / 5000, atol=0.02)


def test_obd_ipw_matches_open_bandit_pipeline():
    """IPW of BTS from the random logs (campaign all): OBP 0.5.7 gives 0.00457."""
    from explorec.evaluate.obd import evaluate_obd

    report = evaluate_obd("all", "random", "bts", estimators=("ipw", "snipw"), n_sim=200_000,
                          n_bootstrap=100)
    ipw = next(e for e in report["estimates"] if e["estimator"] == "ipw")
    assert abs(ipw["estimate"] - 0.00457) / 0.00457 < 0.02
    assert report["ground_truth"] == pytest.approx(0.0042)
    assert report["rows"] == 10000


def test_cli_ope_json(tmp_path):
    out = tmp_path / "ope.json"
    proc = subprocess.run(
        [sys.executable, "-m", "explorec.cli.main", "ope", "--dataset", "obd", "--campaign", "all",
         "--behavior", "random", "--evaluation", "bts", "--n-sim", "100000", "--bootstrap", "100",
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["ground_truth"] == pytest.approx(0.0042)
    names = [e["estimator"] for e in report["estimates"]]
    assert names == list(ESTIMATORS)
    for e in report["estimates"]:
        assert set(e) == {"estimator", "estimate", "ci_low", "ci_high", "relative_error"}
        assert e["ci_low"] <= e["estimate"] <= e["ci_high"] or e["estimator"] == "replay"
    assert report["reverse"]["evaluation"] == "random"
    assert report["reverse"]["ground_truth"] == pytest.approx(0.0038)


def test_per_position_estimates_are_unbiased_on_slate_logs():
    """Two slots, a uniform logger: IPW per position covers each slot's true value."""
    from explorec.evaluate.ope import estimate_by_position

    rng = np.random.default_rng(11)
    n, n_actions = 6000, 4
    p_click = np.array([[0.30, 0.10, 0.20, 0.05], [0.15, 0.05, 0.10, 0.02]]).T  # (action, position)
    position = rng.integers(0, 2, n)
    action = rng.integers(0, n_actions, n)
    reward = (rng.random(n) < p_click[action, position]).astype(float)
    data = LoggedData(action, reward, np.full(n, 1 / n_actions), position, np.zeros((n, 1)))
    pi_e = np.zeros((n, n_actions, 2))
    pi_e[:, 0, 0] = 1.0  # slot 0: the best item
    pi_e[:, 2, 1] = 1.0  # slot 1: the runner-up
    est = estimate_by_position(data, pi_e, estimators=("ipw", "snipw"), n_bootstrap=300)
    truth = {0: 0.30, 1: 0.10}
    for p, estimates in est.items():
        for e in estimates:
            assert e.ci_low <= truth[p] <= e.ci_high, (p, e)


def test_gradient_boosting_reward_model_fixes_dm_misspecification():
    from explorec.evaluate.ope import GradientBoostingRewardModel

    data, pi_e, _, truth = _synthetic(5, n=6000)
    errors = {}
    for name, model in (("logistic", LogisticRewardModel()), ("gbdt", GradientBoostingRewardModel())):
        q = model.fit(data, 5, 1).predict_all(data.context)
        dm = estimate_policy_value(data, pi_e, estimators=("dm",), q_hat=q, n_bootstrap=50)[0]
        errors[name] = abs(dm.estimate - truth)
    assert errors["gbdt"] < errors["logistic"] / 2
