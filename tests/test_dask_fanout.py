"""Dask fan-outs: evaluate, simulate and tune on a 2-worker LocalCluster give the
single-process results; errors raised on workers come back as themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from explorec import scale
from explorec.cli.main import app
from explorec.errors import DataError, ExploRecError

DATA = ["--dataset", "synthetic", "--dataset-option", "n_users=300", "--dataset-option",
        "n_items=200", "--dataset-option", "n_interactions=6000"]


@pytest.fixture(scope="module")
def client():
    with scale.dask_client("processes", n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def address(client) -> str:
    """The cluster's address: the commands connect to it as to any running cluster."""
    return client.scheduler.address


def invoke(args: list[str]) -> None:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output


def without(d: object, keys: set[str]) -> object:
    """``d`` with the timing (and invocation) fields removed at every depth."""
    if isinstance(d, dict):
        return {k: without(v, keys) for k, v in d.items() if k not in keys}
    if isinstance(d, list):
        return [without(v, keys) for v in d]
    return d


def test_evaluate_cli_output_identical(address, tmp_path: Path):
    base = ["evaluate", *DATA, "--models", "pop,itemknn,ease"]
    invoke([*base, "--json", str(tmp_path / "a.json"), "--markdown", str(tmp_path / "a.md")])
    invoke([*base, "--scheduler", address, "--json", str(tmp_path / "b.json"), "--markdown",
            str(tmp_path / "b.md")])
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    timing = {"fit_seconds", "eval_seconds", "command"}
    assert without(a, timing) == without(b, timing)
    assert [r["metrics"] for r in a["results"]] == [r["metrics"] for r in b["results"]]

    def table(name: str) -> list[str]:  # the last column is the fit time
        return [line.rsplit("|", 2)[0] for line in (tmp_path / name).read_text().splitlines()]

    assert table("a.md") == table("b.md")


def test_simulate_cli_identical(address, tmp_path: Path):
    base = ["simulate", *DATA, "--policies", "greedy,egreedy,ts,linucb", "--rounds", "300",
            "--seeds", "2", "--model", "pop", "--encoder", "tfidf", "--batch-size", "50"]
    invoke([*base, "--json", str(tmp_path / "a.json")])
    invoke([*base, "--scheduler", address, "--json", str(tmp_path / "b.json")])
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert [(r["policy"], r["seed"]) for r in b["results"]] == [
        (p, s) for s in (2020, 2021) for p in ("greedy", "egreedy", "ts", "linucb")]
    timing = {"seconds", "seconds_std", "command", "environment"}
    assert without(a["results"], timing) == without(b["results"], timing)
    assert without(a["summary"], timing) == without(b["summary"], timing)


def test_tune_cli_identical_for_the_same_batch(address, tmp_path: Path):
    base = ["tune", "--model", "rp3beta", *DATA, "--trials", "6"]
    invoke([*base, "--batch", "2", "--json", str(tmp_path / "a.json")])
    invoke([*base, "--scheduler", address, "--json", str(tmp_path / "b.json")])  # 2 workers
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["batch"] == b["batch"] == 2 and b["trials"] == 6
    timing = {"fit_seconds", "command", "environment"}
    assert without(a, timing) == without(b, timing)
    assert a["history"][0]["trial"] == 0 and a["best_value"] >= a["default_value"]


def test_tune_batch_one_is_the_sequential_search():
    """``batch=1`` (ask one, tell one) proposes what ``study.optimize`` proposes."""
    import optuna

    from explorec.data import make_split
    from explorec.data.synthetic import generate
    from explorec.evaluate.tuning import SEARCH_SPACES, run_trial, tune_model

    ds = generate(n_users=200, n_items=120, n_interactions=3000, seed=5)
    split = make_split(ds.interactions, "ratio", seed=2020)
    result = tune_model("ease", split, trials=12, seed=7, batch=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=7))
    study.enqueue_trial(result["history"][0]["params"])
    study.optimize(lambda t: run_trial("ease", {**SEARCH_SPACES["ease"](t), **result["fixed"]},
                                       split)["value"], n_trials=12)
    assert [t.params for t in study.trials] == [h["params"] for h in result["history"]]
    assert [t.value for t in study.trials] == [h["valid_ndcg@10"] for h in result["history"]]


def _bad_rows(n: int) -> int:
    if n == 2:
        raise DataError("no ratings", source="events.csv", row=n)
    return n


class _Opaque(Exception):
    def __init__(self, a: int, b: int) -> None:  # cannot be rebuilt from its args
        super().__init__(f"opaque {a + b}")


def _opaque(n: int) -> int:
    raise _Opaque(n, 1)


def test_worker_errors_come_back_as_themselves(client):
    from explorec.data import make_split
    from explorec.data.synthetic import generate
    from explorec.evaluate.tuning import tune_model

    with pytest.raises(DataError, match=r"file events\.csv, row 2: no ratings") as got:
        scale.fan_out(_bad_rows, [1, 2, 3], client=client)
    assert got.value.source == "events.csv" and got.value.row == 2
    with pytest.raises(ExploRecError, match="_Opaque on a Dask worker: opaque 2"):
        scale.fan_out(_opaque, [1], client=client)
    split = make_split(generate(n_users=100, n_items=60, n_interactions=1500, seed=1).interactions,
                       "ratio", seed=2020)
    with pytest.raises(ValueError, match=r"rp3beta\.k must be >= 1, got 0"):
        tune_model("rp3beta", split, trials=2, batch=2, fixed={"k": 0}, client=client)
    logs = [m for lines in client.get_worker_logs().values() for _, m in lines]
    assert not any("Compute Failed" in m for m in logs)  # no worker traceback either


def test_objects_go_to_the_workers_once(client):
    a, b = {"model": 1}, [2, 3]
    first = scale.share([a, b], client=client)
    assert scale.share([b, a], client=client) == first[::-1]  # the same futures, not re-sent
    assert scale.gather(scale.submit(lambda x, y: (x, y), [(first[0], first[1])], client=client),
                        client=client) == [(a, b)]
    scale.release([a], client=client)
    assert scale.share([a], client=client)[0].key != first[0].key
    assert scale.share([a, b]) == [a, b] and scale.n_workers(client) == 2 and scale.n_workers() == 1


def test_bad_scheduler_fails_before_any_work(tmp_path: Path):
    for cmd in (["evaluate", *DATA, "--models", "pop"],
                ["simulate", *DATA, "--policies", "greedy", "--rounds", "10"],
                ["tune", "--model", "ease", *DATA, "--trials", "1"]):
        res = CliRunner().invoke(app, [*cmd, "--scheduler", "nowhere", "--json",
                                       str(tmp_path / "x.json")])
        assert res.exit_code == 2 and "--scheduler 'nowhere'" in res.output, res.output
        assert not (tmp_path / "x.json").exists()


def _die(n: int) -> int:
    import os

    os._exit(1)


def test_a_dead_worker_is_one_clear_error():
    import dask

    # its own cluster (its workers restart), giving up at the first death
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            scale.dask_client("processes", n_workers=2) as c:
        with pytest.raises(ExploRecError, match="a Dask worker died while running a task"):
            scale.fan_out(_die, [1], client=c)
