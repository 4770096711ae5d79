"""The simulator on real ML-100K with real MiniLM item vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from explorec.cli.main import app
from explorec.errors import ExploRecError
from explorec.simulate import build_environment, fit_base_model, make_policy, run_policy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def item_vectors(ml100k):  # type: ignore[no-untyped-def]
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items

    return encode_items(ml100k.interactions.items, ml100k.catalog, get_encoder("minilm"))


@pytest.fixture(scope="module")
def env(ml100k, item_vectors):  # type: ignore[no-untyped-def]
    return build_environment(ml100k, item_vectors=item_vectors, seed=2020)


@pytest.fixture(scope="module")
def base(env, ml100k):  # type: ignore[no-untyped-def]
    return fit_base_model(env, ml100k, "ease", seed=2020)


def test_environment_is_calibrated_and_hides_new_users_and_items(env, ml100k) -> None:  # type: ignore[no-untyped-def]
    assert env.p_true.shape == (943, 1682)
    assert abs(env.p_true.mean() - 0.02) < 0.002
    assert abs(env.calibration["top5_ctr"] - 0.3) < 0.01
    assert len(env.new_users) == 94 and len(env.new_items) == 168
    logged = env.logged
    assert not np.isin(logged.user, env.new_users).any()
    assert not np.isin(logged.item, env.new_items).any()
    assert 0.35 * len(ml100k.interactions) < len(logged) < 0.5 * len(ml100k.interactions)
    # truth follows the real ratings: rated-5 pairs are far likelier clicks than unrated ones
    inter = ml100k.interactions
    five = env.p_true[inter.user[inter.rating == 5], inter.item[inter.rating == 5]].mean()
    assert five > 5 * env.p_true.mean()


def test_schedule_respects_entry_rounds(env) -> None:  # type: ignore[no-untyped-def]
    users, entry, release = env.schedule(5000, 2020)
    rounds = np.arange(5000)
    assert (entry[users] <= rounds).all()
    entered = env.new_users[entry[env.new_users] < 5000]
    assert (users[entry[entered]] == entered).all()  # served at sign-up
    warm_items = np.setdiff1d(np.arange(1682), env.new_items)
    assert (release[env.new_items] < 2500).all() and (release[warm_items] == 0).all()
    # warm arrivals follow activity
    warm = users[~np.isin(users, env.new_users)]
    counts = np.bincount(warm, minlength=943)
    top = np.argsort(-env.activity)[:20]
    assert counts[top].mean() > 3 * counts[counts > 0].mean() / 2


def test_runs_are_reproducible_and_lints_explores_more_than_greedy(env, base) -> None:  # type: ignore[no-untyped-def]
    runs = {}
    for name in ("greedy", "lints"):
        runs[name] = run_policy(env, make_policy(name, env, base, seed=2020), base, rounds=3000,
                                slate_size=5, seed=2020)
    again = run_policy(env, make_policy("lints", env, base, seed=2020), base, rounds=3000,
                       slate_size=5, seed=2020)
    a, b = runs["lints"].to_dict(), again.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    g, lt = runs["greedy"], runs["lints"]
    assert lt.coverage > g.coverage
    assert 0 < g.cumulative_regret and 0 < lt.cumulative_regret
    assert 0.02 < g.ctr < g.oracle_ctr
    assert len(g.curves["ctr"]) == 100 and g.curves["round"][-1] == 3000


def test_bad_settings_are_named(env, base, ml100k) -> None:  # type: ignore[no-untyped-def]
    policy = make_policy("greedy", env, base, seed=1)
    with pytest.raises(ExploRecError, match="slate_size 200 exceeds n_candidates 100"):
        run_policy(env, policy, base, rounds=10, slate_size=200, seed=1)
    with pytest.raises(ExploRecError, match="target_ctr"):
        build_environment(ml100k, item_vectors=env.item_vectors, target_ctr=0.5)


def test_cli_simulate_writes_json_and_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim.json"
    png = tmp_path / "sim.png"
    res = CliRunner().invoke(app, ["simulate", "--dataset", "ml-100k", "--policies", "greedy,egreedy,ts",
                                   "--rounds", "1500", "--slate-size", "3", "--seeds", "2", "--seed", "7",
                                   "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert len(data["results"]) == 6
    keys = {"policy", "seed", "rounds", "cumulative_reward", "cumulative_regret", "coverage",
            "new_user_first_click_rounds", "new_item_first_click_rounds"}
    for r in data["results"]:
        assert keys <= set(r) and r["rounds"] == 1500 and r["seed"] in (7, 8)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "greedy" in res.output and "coverage" in res.output


def test_cli_simulate_rejects_unknown_policy() -> None:
    res = CliRunner().invoke(app, ["simulate", "--policies", "greedy,bogus", "--rounds", "10"])
    assert res.exit_code != 0
    assert "bogus" in res.output


def test_neural_linear_uses_two_tower_embeddings_on_any_base(env, base, ml100k) -> None:  # type: ignore[no-untyped-def]
    rep = fit_base_model(env, ml100k, "two-tower", seed=2020,
                         params={"epochs": 2, "progress": False})
    policy = make_policy("neural-linear", env, base, seed=2020, representation=rep)
    assert policy.features.n_features == rep.item_vectors_.shape[1] + 2
    res = run_policy(env, policy, base, rounds=1000, slate_size=5, seed=2020)
    assert res.cumulative_reward > 0 and policy.linear.n == 5000
