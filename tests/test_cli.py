"""The `explorec` command line, run as a real subprocess like a user would."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "explorec.cli.main"]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_version_and_help():
    assert "explorec 0.1.0" in run("--version").stdout
    top = run("--help").stdout
    for cmd in ("data", "split", "evaluate", "recommend", "models"):
        assert cmd in top
    for sub in (("data", "list"), ("data", "fetch"), ("data", "info"), ("split", "export"),
                ("evaluate",), ("recommend",), ("models",)):
        assert "--help" in run(*sub, "--help").stdout


def test_data_list_and_info_json(ml100k):
    listing = json.loads(run("data", "list", "--json").stdout)
    assert {d["name"] for d in listing} >= {"ml-100k", "obd", "synthetic"}
    info = json.loads(run("data", "info", "ml-100k", "--json").stdout)
    assert (info["users"], info["items"], info["interactions"]) == (943, 1682, 100000)
    obd = json.loads(run("data", "info", "obd", "--json").stdout)
    assert obd["impressions"] == 60000 and obd["items"] == 80 and "users" not in obd
    assert obd["logs"]["random/all"]["clicks"] == 38


def test_unknown_dataset_is_a_clear_error():
    proc = run("data", "info", "ml-1b", ok=False)
    assert proc.returncode == 2
    assert "unknown dataset 'ml-1b'" in proc.stderr and "ml-100k" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_json_shape(tmp_path: Path, ml100k):
    out = tmp_path / "out.json"
    md = tmp_path / "out.md"
    t0 = time.perf_counter()
    run("evaluate", "--dataset", "ml-100k", "--split", "ratio", "--models", "pop,ease",
        "--k", "10,20", "--seed", "2020", "--json", str(out), "--markdown", str(md))
    wall = time.perf_counter() - t0
    report = json.loads(out.read_text())
    assert report["dataset"] == "ml-100k" and report["split"] == "ratio"
    assert report["seed"] == 2020
    assert [r["model"] for r in report["results"]] == ["pop", "ease"]
    ease = report["results"][1]
    assert ease["params"] == {"reg": 250.0}
    # the measured fit: a real duration (EASE inverts a 1,682 x 1,682 Gram matrix, which takes
    # well over a millisecond), inside the wall time of the whole command
    fit_s = ease["fit_seconds"]
    assert isinstance(fit_s, float) and math.isfinite(fit_s)
    assert 1e-3 < fit_s < wall, (fit_s, wall)
    for key in ("recall@10", "ndcg@10", "ndcg@20", "mrr@10", "map@10", "hit@10",
                "precision@10", "f1@10", "auc", "itemcoverage@10", "gini@10", "novelty@10",
                "ild@10"):
        assert key in ease["metrics"], key
        assert key in ease["valid_metrics"], key
    assert ease["metrics"]["ndcg@10"] >= 0.31
    assert "| ease |" in md.read_text()


def test_evaluate_rejects_bad_options():
    proc = run("evaluate", "--models", "ease,nope", ok=False)
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr
    proc = run("evaluate", "--models", "ease", "--k", "ten", ok=False)
    assert proc.returncode == 2 and "--k" in (proc.stderr + proc.stdout)
    proc = run("evaluate", "--models", "ease", "--split", "sideways", ok=False)
    assert proc.returncode == 2 and "unknown split 'sideways'" in proc.stderr


def test_evaluate_param_override_and_cold_split(tmp_path: Path, ml100k):
    out = tmp_path / "cold.json"
    run("evaluate", "--split", "cold-items", "--models", "random,ease", "--k", "20",
        "--param", "ease.reg=100", "--metrics", "recall,ndcg", "--json", str(out))
    report = json.loads(out.read_text())
    assert report["split"] == "cold-items"
    assert report["split_info"]["test_candidates"] == 336
    assert report["results"][1]["params"]["reg"] == 100
    assert set(report["results"][0]["metrics"]) == {"recall@20", "ndcg@20"}


def test_recommend_writes_csv(tmp_path: Path, ml100k):
    out = tmp_path / "recs.csv"
    run("recommend", "--dataset", "ml-100k", "--model", "ease", "--k", "10",
        "--output", str(out), "--save-model", str(tmp_path / "model"))
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["user", "rank", "item", "score"]
    assert len(rows) == 943 * 10
    assert (tmp_path / "model" / "manifest.json").exists()
    one = tmp_path / "one.csv"
    run("recommend", "--model", "pop", "--k", "3", "--users", "196", "--output", str(one))
    rows = list(csv.DictReader(one.open()))
    assert [r["user"] for r in rows] == ["196"] * 3
    # a user the model never saw gets the cold-start list, and a note names them
    proc = run("recommend", "--model", "ease", "--users", "no-such-user", "--output", str(one))
    assert "'no-such-user'" in proc.stderr and "most popular" in proc.stderr
    rows = list(csv.DictReader(one.open()))
    assert [r["item"] for r in rows[:3]] == ["50", "258", "100"]  # ML-100K's most rated


def test_split_export(tmp_path: Path, ml100k):
    run("split", "export", "--dataset", "ml-100k", "--split", "ratio", "--seed", "2020",
        "--output", str(tmp_path))
    for part in ("train", "valid", "test"):
        assert (tmp_path / f"{part}.csv").exists()
        # a neutral name: RecBole 1.2.1 ignores data_path for a dataset named ml-100k
        assert (tmp_path / f"ml-100k-ratio-2020.{part}.inter").exists()
    header = (tmp_path / "ml-100k-ratio-2020.train.inter").read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    meta = json.loads((tmp_path / "split.json").read_text())
    assert meta["seed"] == 2020 and meta["train"] == 80808


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_evaluate_users_own_file(tmp_path: Path, fmt: str):
    from explorec.data.synthetic import generate

    frame = generate(n_users=60, n_items=50, n_interactions=1200, seed=3).interactions.to_frame()
    frame = frame.rename(columns={"user": "uid", "item": "movie"})
    path = tmp_path / f"mine.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    out = tmp_path / "r.json"
    run("evaluate", "--dataset", str(path), "--columns", "user=uid,item=movie",
        "--models", "pop,ease", "--k", "5", "--json", str(out))
    assert json.loads(out.read_text())["dataset"] == "mine"
    proc = run("evaluate", "--dataset", str(path), "--columns", "user=userId,item=movie",
               "--models", "pop", ok=False)
    assert proc.returncode == 2 and "userId" in proc.stderr and str(path) in proc.stderr
