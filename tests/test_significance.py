"""Significance of model differences: the figures equal scipy.stats' and a hand Holm
correction; the bootstrap is seeded; evaluate's JSON carries the block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from explorec.evaluate.significance import (
    bootstrap_ci,
    bootstrap_means,
    compare,
    holm,
    noise_lines,
    paired_tests,
    primary_metric,
    within_noise,
)

# a fixed example: 12 users, three models' per-user NDCG-like values
BEST = np.array([0.61, 0.35, 0.80, 0.12, 0.55, 0.47, 0.93, 0.28, 0.66, 0.40, 0.71, 0.52])
CLOSE = np.array([0.58, 0.36, 0.74, 0.10, 0.57, 0.41, 0.90, 0.22, 0.64, 0.41, 0.65, 0.49])
FAR = np.array([0.20, 0.31, 0.45, 0.05, 0.30, 0.22, 0.60, 0.10, 0.35, 0.38, 0.40, 0.25])


def test_paired_tests_equal_scipy():
    for other in (CLOSE, FAR):
        r = paired_tests(other, BEST)
        t = stats.ttest_rel(other, BEST)
        w = stats.wilcoxon(other, BEST)
        assert r.n == 12
        assert r.mean_diff == pytest.approx(float(np.mean(other - BEST)), abs=1e-15)
        assert (r.t, r.p_t) == (pytest.approx(t.statistic, rel=1e-12), pytest.approx(t.pvalue, rel=1e-12))
        assert (r.w, r.p_wilcoxon) == (pytest.approx(w.statistic), pytest.approx(w.pvalue, rel=1e-12))


def test_holm_by_hand():
    # m = 3: sorted 0.01, 0.02, 0.04 -> 0.03, max(0.03, 0.04) = 0.04, max(0.04, 0.04) = 0.04
    assert holm([0.04, 0.01, 0.02]).tolist() == pytest.approx([0.04, 0.03, 0.04])
    # capped at 1 and monotone; NaN is not part of the family (m = 2 here)
    out = holm([0.6, float("nan"), 0.3])
    assert out[0] == pytest.approx(0.6) and np.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm([0.7, 0.9]).tolist() == pytest.approx([1.0, 1.0])


def test_compare_matches_scipy_and_holm_on_the_fixed_example():
    per_user = {"close": {"ndcg@10": CLOSE}, "best": {"ndcg@10": BEST}, "far": {"ndcg@10": FAR}}
    out = compare(per_user)
    assert out["reference"] == "best" and out["reference_rule"] == "best by ndcg@10"
    assert out["primary"] == "ndcg@10" and out["n_users"] == 12 and out["note"] is None
    p_t = {m: stats.ttest_rel(v, BEST).pvalue for m, v in (("close", CLOSE), ("far", FAR))}
    p_w = {m: stats.wilcoxon(v, BEST).pvalue for m, v in (("close", CLOSE), ("far", FAR))}
    # Holm by hand over the two models compared
    for p, key in ((p_t, "p_t_holm"), (p_w, "p_wilcoxon_holm")):
        lo, hi = sorted(p, key=p.get)
        adj = {lo: min(1.0, 2 * p[lo])}
        adj[hi] = max(adj[lo], min(1.0, p[hi]))
        for m in ("close", "far"):
            assert out["models"][m]["ndcg@10"][key] == pytest.approx(adj[m], rel=1e-12)
    for m, v in (("close", CLOSE), ("far", FAR)):
        s = out["models"][m]["ndcg@10"]
        assert s["p_t"] == pytest.approx(p_t[m], rel=1e-12)
        assert s["diff"] == pytest.approx(float(np.mean(v - BEST)))
        assert s["diff_ci_low"] < s["diff"] < s["diff_ci_high"]
        assert (s["diff_ci_low"], s["diff_ci_high"]) == pytest.approx(bootstrap_ci(v - BEST))
    ref = out["models"]["best"]["ndcg@10"]
    assert "diff" not in ref and ref["ci_low"] < ref["mean"] < ref["ci_high"]
    # a named baseline instead of the best
    assert compare(per_user, reference="far")["models"]["best"]["ndcg@10"]["diff"] > 0
    with pytest.raises(ValueError, match="baseline 'nope'"):
        compare(per_user, reference="nope")


def test_bootstrap_is_seeded_and_covers_the_true_difference():
    rng = np.random.default_rng(7)
    n = 2000
    base = rng.normal(0.30, 0.2, n)
    other = base + 0.02 + rng.normal(0.0, 0.1, n)  # true mean difference 0.02
    d = other - base
    a = bootstrap_ci(d, seed=2020)
    assert a == bootstrap_ci(d, seed=2020)  # same seed, same interval
    assert a != bootstrap_ci(d, seed=2021)
    assert a[0] < 0.02 < a[1]
    # close to the normal-theory interval of a mean
    se = d.std(ddof=1) / np.sqrt(n)
    assert a[0] == pytest.approx(d.mean() - 1.96 * se, abs=se * 0.3)
    assert a[1] == pytest.approx(d.mean() + 1.96 * se, abs=se * 0.3)
    # a column's resamples do not depend on what it is batched with (up to BLAS rounding)
    both = bootstrap_means(np.column_stack([d, base]), seed=2020)
    np.testing.assert_allclose(both[:, 0], bootstrap_means(d, seed=2020), rtol=1e-12, atol=1e-15)
    assert both.shape == (1000, 2)


def test_edge_cases_identical_nan_one_model_few_users():
    v = np.array([0.1, 0.5, 0.0, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy warning spam
        r = paired_tests(v, v.copy())
        out = compare({"a": {"ndcg@10": v}, "b": {"ndcg@10": v.copy()}})
    assert (r.t, r.p_t, r.p_wilcoxon, r.note) == (0.0, 1.0, 1.0, "identical values")
    s = out["models"]["b"]["ndcg@10"]
    assert (s["diff"], s["diff_ci_low"], s["diff_ci_high"], s["p_t_holm"]) == (0.0, 0.0, 0.0, 1.0)
    # NaN values drop their user's pair (AUC of a user with no negative item)
    a = np.array([0.5, np.nan, 0.7, 0.9, 0.2])
    b = np.array([0.4, 0.3, np.nan, 0.5, 0.1])
    r = paired_tests(a, b)
    assert r.n == 3 and r.p_t == pytest.approx(stats.ttest_rel([0.5, 0.9, 0.2], [0.4, 0.5, 0.1]).pvalue)
    assert json.dumps(compare({"a": {"auc": a}, "b": {"auc": b}}), allow_nan=False)
    # one model: its own interval, no comparison
    one = compare({"ease": {"ndcg@10": BEST}})
    assert one["note"] == "one model only: no comparison"
    assert set(one["models"]["ease"]["ndcg@10"]) == {"mean", "ci_low", "ci_high"}
    # fewer than 2 users: no test, figures are None (JSON null), no error
    few = compare({"a": {"ndcg@10": np.array([0.3])}, "b": {"ndcg@10": np.array([0.1])}})
    assert few["note"] == "1 user(s) in common: no test"
    assert few["models"]["b"]["ndcg@10"]["ci_low"] is None
    assert np.isnan(paired_tests([0.3], [0.1]).p_t)
    # users given: pairs are formed on the users both have, whatever the order
    out = compare({"a": {"hit@10": np.array([1.0, 0.0, 1.0])}, "b": {"hit@10": np.array([0.0, 1.0])}},
                  users={"a": np.array([3, 5, 9]), "b": np.array([9, 3])})
    assert out["n_users"] == 2 and out["models"]["b"]["hit@10"]["diff"] == pytest.approx(-0.5)


def test_primary_metric_follows_the_leaderboard():
    assert primary_metric(["auc", "recall@10", "ndcg@10"]) == "ndcg@10"
    assert primary_metric(["ndcg@20", "recall@20"]) == "ndcg@20"
    assert primary_metric(["zeta@5", "beta@5"]) == "beta@5"


def test_within_noise_over_seeds():
    same = within_noise([0.31, 0.32, 0.30], [0.31, 0.32, 0.30])
    assert same.within is True and same.p == 1.0
    noisy = within_noise([0.310, 0.325, 0.301], [0.312, 0.318, 0.306])
    assert noisy.within is True and noisy.p == pytest.approx(
        stats.ttest_rel([0.310, 0.325, 0.301], [0.312, 0.318, 0.306]).pvalue)
    clear = within_noise([0.30, 0.31, 0.32, 0.33], [0.10, 0.12, 0.11, 0.13])
    assert clear.within is False and "beyond noise (paired t over 4 seeds" in clear.describe()
    welch = within_noise([1.0, 2.0, 3.0], [1.5, 2.5], paired=False)
    assert welch.test == "Welch t" and welch.p == pytest.approx(
        stats.ttest_ind([1.0, 2.0, 3.0], [1.5, 2.5], equal_var=False).pvalue)
    assert within_noise([0.3], [0.2]).within is None
    lines = noise_lines({"lints": [110.0, 120.0, 115.0], "greedy": [100.0, 108.0, 104.0],
                         "ts": [112.0, 115.0, 116.0]}, what="clicks", digits=1)
    assert lines[0].startswith("- clicks: best lints (115.0)")
    assert "greedy: -11.0, beyond noise (paired t over 3 seeds" in lines[1]
    assert "ts: -0.7, within noise" in lines[2]
    assert "one seed" in noise_lines({"a": [1.0], "b": [2.0]}, what="clicks")[0]


def test_evaluate_json_has_the_significance_block(tmp_path: Path, ml100k):
    out = tmp_path / "ev.json"
    md = tmp_path / "ev.md"
    proc = subprocess.run([sys.executable, "-m", "explorec.cli.main", "evaluate", "--dataset",
                           "ml-100k", "--models", "pop,itemknn", "--k", "10", "--json", str(out),
                           "--markdown", str(md)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Δ vs best" in proc.stdout and "p (Holm)" in proc.stdout
    assert "ndcg@10: each model against itemknn (best by ndcg@10)" in proc.stdout
    report = json.loads(out.read_text())
    sig = report["significance"]
    assert sig["reference"] == "itemknn" and sig["primary"] == "ndcg@10"
    assert sig["n_users"] == 943 and sig["seed"] == 2020 and sig["resamples"] == 1000
    pop, knn = report["results"]
    s = pop["significance"]["ndcg@10"]
    assert s["mean"] == pytest.approx(pop["metrics"]["ndcg@10"], rel=1e-12)
    assert s["diff"] == pytest.approx(pop["metrics"]["ndcg@10"] - knn["metrics"]["ndcg@10"])
    assert s["diff_ci_low"] < s["diff"] < s["diff_ci_high"] < 0
    assert s["p_t_holm"] < 1e-6 and s["p_wilcoxon_holm"] < 1e-6
    # one comparison: Holm leaves p as it is
    assert s["p_t_holm"] == s["p_t"]
    # every per-user metric has a block; list metrics (coverage) have none
    assert {"auc", "ild@10", "recall@10", "hit@10"} <= set(s) | set(pop["significance"])
    assert "itemcoverage@10" not in pop["significance"]
    assert "## Significance of ndcg@10 against itemknn" in md.read_text()
