"""A user's own files through the command line only, from flags and from a config file.

ML-100K's ratings renamed to ``customer,product,ts,stars`` (rows shuffled) and an items file
``sku,name,description`` with free text (``examples/own-data/make_files.py``): ``evaluate``
(ease and two-tower on cold items), ``train`` + ``serve`` + one rank, ``recommend`` to
Parquet with the input's column names. ``examples/ml-100k.yaml`` runs too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from explorec.serve.procs import ServiceProcess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXE = [sys.executable, "-m", "explorec.cli.main"]
COLUMNS = "user=customer,item=product,rating=stars,timestamp=ts"
TEMPLATE = "{name}. {description}"


def run(*args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=600, cwd=cwd)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def own(tmp_path_factory, ml100k):
    """The example folder with its two data files written."""
    d = tmp_path_factory.mktemp("own") / "own-data"
    shutil.copytree(REPO / "examples" / "own-data", d)
    subprocess.run([sys.executable, str(d / "make_files.py"), str(d)], check=True,
                   capture_output=True)
    return d


def start(*args: str) -> subprocess.Popen:
    """A command started in the background; :func:`finish` waits for it."""
    return subprocess.Popen([*EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out


def _flags(own: Path) -> list[str]:
    return ["--dataset", str(own / "ratings.csv"), "--columns", COLUMNS,
            "--items", str(own / "items.csv"), "--item-columns", "item=sku",
            "--template", TEMPLATE]


def _results(path: Path) -> dict[str, dict[str, float]]:
    return {r["model"]: r["metrics"] for r in json.loads(path.read_text())["results"]}


def test_evaluate_cold_items_from_flags_and_from_config(own, tmp_path):
    flags = tmp_path / "flags.json"
    # the same run from the example config, alongside (two-tower trains on one core each)
    config = start("evaluate", "--config", str(own / "run.yaml"))
    run("evaluate", *_flags(own), "--split", "cold-items", "--models", "random,ease,two-tower",
        "--param", "two-tower.epochs=2", "--k", "10,20", "--metrics", "ndcg,recall,hit",
        "--seed", "2020", "--json", str(flags))
    finish(config)
    res = _results(flags)
    # ease never saw the cold items: it scores them all the same, so it is no better than random
    assert abs(res["ease"]["ndcg@20"] - res["random"]["ndcg@20"]) < 0.02
    # two-tower reads the free-text descriptions and ranks the cold items far better
    assert res["two-tower"]["recall@20"] > 2 * res["random"]["recall@20"]
    assert res["two-tower"]["ndcg@20"] > 0.2
    # the run from the example config: identical numbers
    assert _results(own / "out" / "cold_items.json") == res


def test_recommend_to_parquet_with_the_inputs_column_names(own, tmp_path):
    out = tmp_path / "recs.parquet"
    run("recommend", *_flags(own), "--model", "ease", "--k", "10", "--explain",
        "--with-item-columns", "name", "--output", str(out))
    df = pd.read_parquet(out)
    assert list(df.columns) == ["customer", "rank", "product", "score", "because", "name"]
    assert len(df) == 943 * 10 and df["customer"].nunique() == 943
    # nothing a customer rated comes back
    ratings = pd.read_csv(own / "ratings.csv", dtype=str)
    seen = set(zip(ratings["customer"], ratings["product"], strict=True))
    assert not any((c, p) in seen for c, p in zip(df["customer"], df["product"], strict=True))
    # explanations are lists of {item, weight}; names come from the items file
    first = df.iloc[0]
    assert {"item", "weight"} <= set(first["because"][0])
    names = pd.read_csv(own / "items.csv", dtype=str).set_index("sku")["name"]
    assert (df["name"] == names.reindex(df["product"]).to_numpy()).all()
    # the config gives the same lists
    run("recommend", "--config", str(own / "run.yaml"))
    cfg = pd.read_parquet(own / "out" / "recommendations.parquet")
    pd.testing.assert_frame_equal(cfg[["customer", "rank", "product", "score"]],
                                  df[["customer", "rank", "product", "score"]])


def test_train_serve_rank_from_flags_and_config(own, tmp_path):
    art = tmp_path / "artifact"
    # TF-IDF item vectors keep the test fast; the config's own encoder is MiniLM (the default)
    run("train", *_flags(own), "--model", "ease", "--policy", "linucb", "--encoder", "tfidf",
        "--output", str(art))
    run("train", "--config", str(own / "run.yaml"), "--encoder", "tfidf")
    products = set(pd.read_csv(own / "items.csv", dtype=str)["sku"])
    rated = set(pd.read_csv(own / "ratings.csv", dtype=str).query("customer == '196'")["product"])
    for a in (art, own / "out" / "artifact"):
        manifest = json.loads((a / "manifest.json").read_text())
        assert manifest["columns"] == {"user": "customer", "item": "product"}
        srv = ServiceProcess(a, f"sqlite:///{tmp_path / (a.name + '.db')}", tmp_path / "srv",
                             cli=True).start()
        try:
            r = httpx.post(srv.url + "/v1/rank", json={"user": "196", "k": 3}, timeout=30)
            assert r.status_code == 200, r.text
            items = [x["item"] for x in r.json()["items"]]
            assert len(items) == 3 and set(items) <= products and not set(items) & rated
        finally:
            srv.stop()


def test_registered_dataset_example_config(tmp_path):
    cfg = tmp_path / "ml-100k.yaml"
    shutil.copy(REPO / "examples" / "ml-100k.yaml", cfg)
    run("evaluate", "--config", str(cfg))
    res = _results(tmp_path / "out" / "ml-100k.json")
    assert set(res) == {"pop", "itemknn", "ease"}
    assert res["ease"]["ndcg@10"] > res["itemknn"]["ndcg@10"] > res["pop"]["ndcg@10"]
    assert (tmp_path / "out" / "ml-100k.md").exists()
