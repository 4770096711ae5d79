"""Dask: the same jobs on a real 2-worker LocalCluster give the single-process results."""

from __future__ import annotations

import numpy as np
import pytest

from explorec import scale
from explorec.data import load_dataset, make_split
from explorec.errors import ExploRecError
from explorec.evaluate import evaluate_model
from explorec.models.registry import create_model


@pytest.fixture(scope="module")
def client():
    with scale.dask_client("processes", n_workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def fitted():
    ds = load_dataset("ml-100k")
    split = make_split(ds.interactions, "ratio", seed=2020)
    return split, create_model("ease").fit(split.train), create_model("pop").fit(split.train)


def test_cluster_has_two_workers(client):
    assert len(client.scheduler_info()["workers"]) == 2


def test_workers_start_with_the_malloc_settings(client):
    """Both glibc thresholds reach the workers (Dask's trim threshold alone makes every large
    array a fresh mmap: docs/scale.md), beside Dask's own one-BLAS-thread setting."""
    import os

    def env() -> dict:
        return {k: os.environ.get(k) for k in (*scale.WORKER_MALLOC, "OMP_NUM_THREADS")}

    want = {k: str(v) for k, v in scale.WORKER_MALLOC.items()}
    for got in client.run(env).values():
        assert {k: got[k] for k in want} == want and got["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("which", [1, 2])
def test_batch_recommend_identical(client, fitted, which):
    model = fitted[which]
    users = np.arange(model.n_users)
    single = model.recommend(users, 20)
    for n_parts in (2, 7):
        items, scores = scale.recommend(model, users, 20, client=client, n_parts=n_parts)
        assert np.array_equal(items, single[0]) and np.array_equal(scores, single[1])


def test_evaluation_identical(client, fitted):
    split, ease, _ = fitted
    single = evaluate_model(ease, split)
    dist = scale.evaluate(ease, split, client=client, n_parts=5)
    assert dist.metrics == single.metrics  # exactly: per-user values summed in user order
    assert np.array_equal(dist.users, single.users)


def test_fan_out_keeps_order(client):
    assert scale.fan_out(lambda s: s * s, [3, 1, 2], client=client) == [9, 1, 4]
    assert scale.fan_out(lambda s: s + 1, [1, 2]) == [2, 3]


def test_single_process_default_and_bad_scheduler(fitted):
    with scale.dask_client(None) as c:
        assert c is None
    with pytest.raises(ExploRecError, match="--scheduler 'nowhere'"):
        with scale.dask_client("nowhere"):
            pass
    sizes = [len(p) for p in scale.partitions(np.arange(10), 3)]
    assert sum(sizes) == 10 and max(sizes) - min(sizes) <= 1
    # pieces start at multiples of the scoring block: workers compute the same blocks
    parts = scale.partitions(np.arange(20_000), 8, align=2048)
    assert all(p[0] % 2048 == 0 for p in parts) and sum(map(len, parts)) == 20_000


def test_cli_recommend_on_a_local_cluster_writes_the_same_file(tmp_path):
    from typer.testing import CliRunner

    from explorec.cli.main import app

    base = ["recommend", "--model", "pop", "--k", "5", "--chunk-users", "400"]
    assert CliRunner().invoke(app, [*base, "-o", str(tmp_path / "a.csv")]).exit_code == 0
    res = CliRunner().invoke(app, [*base, "--scheduler", "processes", "-o", str(tmp_path / "b.csv")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    res = CliRunner().invoke(app, [*base, "--scheduler", "nowhere", "-o", str(tmp_path / "c.csv")])
    assert res.exit_code != 0 and "--scheduler 'nowhere'" in res.output
    assert not (tmp_path / "c.csv").exists()
