"""OPE on the service's log: the log reconstructed once and evaluated for several policies, the
doubly robust estimator with its cross-fitted position-based click model, tie keys as served."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.data.synthetic import generate
from explorec.serve.artifact import load_service_artifact, train_artifact
from explorec.serve.engine import Engine
from explorec.serve.ope_log import PositionItemModel, collect_log, evaluate_log, evaluate_slots
from explorec.serve.stores import SQLiteStore


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    data = generate(n_users=150, n_items=100, n_interactions=2500, seed=3)
    out = {}
    for name, params in (("greedy", {}), ("egreedy", {"epsilon": 0.3})):
        path = tmp_path_factory.mktemp("art") / name
        train_artifact(path, dataset=data, model="ease", policy=name, encoder="tfidf", vector_dim=8,
                       policy_params=params)
        out[name] = load_service_artifact(path)
    return out


def _play(eng: Engine, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for e in range(n):
        out = eng.rank(f"cold-{e % 25}", 4)  # cold users: ties broken by their policy keys
        for pos, it in enumerate(out.items):
            if rng.random() < 0.45 - 0.1 * pos:
                eng.reward(out.event_id, 1.0, item=it.item)


def test_the_logging_policy_on_its_own_log_recovers_the_logged_value(arts, tmp_path):
    store = SQLiteStore(tmp_path / "g.db")
    _play(Engine(arts["greedy"], store), 80)
    slots = collect_log(store, arts["greedy"])
    assert slots.n_events == 80 and slots.skipped == 0 and slots.n_rows == 320
    logged = slots.logged_estimate(200)
    r = evaluate_slots(slots, "greedy", n_bootstrap=200)
    est = {e["estimator"]: e["estimate"] for e in r["estimates"]}
    # deterministic and identical: every weight is 1 and DR's model terms cancel exactly
    assert r["mean_pi_e"] == pytest.approx(1.0)
    assert est["ipw"] == pytest.approx(logged["estimate"]) == pytest.approx(r["logged_value"])
    assert est["dr"] == pytest.approx(logged["estimate"]) and est["snipw"] == pytest.approx(est["ipw"])
    # a different policy on the same reconstruction: the log is read once
    other = evaluate_slots(slots, "egreedy", policy_params={"epsilon": 0.5}, n_bootstrap=200)
    assert other["rows"] == 320 and other["mean_pi_e"] < 1
    store.close()


def test_dr_on_a_stochastic_log_stays_near_the_logged_value(arts, tmp_path):
    store = SQLiteStore(tmp_path / "e.db")
    _play(Engine(arts["egreedy"], store), 120, seed=2)
    out = evaluate_log(store, arts["egreedy"], "egreedy", policy_params={"epsilon": 0.3}, n_bootstrap=300)
    est = {e["estimator"]: e for e in out["estimates"]}
    assert set(est) == {"replay", "ipw", "snipw", "dr"}
    assert est["ipw"]["estimate"] == pytest.approx(out["logged_value"])  # weights 1
    # on-policy, DR = logged mean + a zero-mean correction: well inside the CI
    assert est["dr"]["ci_low"] <= out["logged_value"] <= est["dr"]["ci_high"]
    assert abs(est["dr"]["estimate"] - out["logged_value"]) < 0.03
    with pytest.raises(ValueError, match="reward model"):
        evaluate_log(store, arts["egreedy"], "greedy", estimators=("dm",))
    store.close()


def test_the_click_model_recovers_position_and_item_effects():
    rng = np.random.default_rng(0)
    n = 60_000
    pos = rng.integers(0, 3, n)
    item = rng.integers(0, 5, n)
    ctr, attract = np.array([0.4, 0.2, 0.1]), np.array([0.5, 1.0, 1.0, 1.5, 2.0])
    reward = (rng.random(n) < ctr[pos] * attract[item] / attract.mean()).astype(float)
    rows = {"reward": reward, "position": pos, "item": item, "fold": rng.integers(0, 2, n)}
    m = PositionItemModel.fit(rows, n_items=5)
    q = m.predict(np.zeros(5, np.int64), np.arange(5), np.zeros(5, np.int64))
    assert q == pytest.approx(ctr[0] * attract / attract.mean(), rel=0.1)
    # each fold is predicted by the other half's model, and positions beyond the fit get the mean
    assert not np.allclose(m.ctr[0], m.ctr[1], rtol=0, atol=0)
    assert m.predict(np.array([0]), np.array([1]), np.array([7]))[0] == pytest.approx(
        min(1.0, reward.mean() * m.attract[0, 1]))
