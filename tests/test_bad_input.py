"""Bad input gets one clear line naming what is at fault, never a traceback or a silent wrong
result (issue 12, points 8-11), and the library's edges (k, short lists, empty histories,
adding items, ids, files)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from explorec.cli.main import app
from explorec.data import Interactions, ItemCatalog, load_dataset
from explorec.errors import DataError, ExploRecError
from explorec.models import create_model
from explorec.ranking import ShortListWarning


def cli(*args: str, code: int = 2) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == code, res.output
    if code == 2:
        assert "Traceback" not in res.output, res.output
    text = re.sub(r"[│╭╮╰╯─]", " ", res.output)  # rich draws error panels and wraps lines
    return " ".join(text.split())


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def small_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = {(int(u), int(i)) for u, i in zip(rng.integers(0, 30, 400), rng.integers(0, 40, 400),
                                             strict=True)}
    df = pd.DataFrame(sorted(rows), columns=["cust", "prod"])
    df["stars"] = rng.integers(1, 6, len(df))
    df["when"] = 1_600_000_000 + np.arange(len(df)) * 60
    path = tmp_path / "log.csv"
    df.to_csv(path, index=False)
    return path


COLS = "user=cust,item=prod,rating=stars,timestamp=when"


# ------------------------------------------------------------------ 8. the command line
def test_split_that_leaves_no_test_users(tmp_path):
    path = write(tmp_path / "two.csv", "user,item,timestamp\n" + "".join(
        f"u{u},i{i},{u * 10 + i}\n" for u in range(20) for i in range(2)))
    out = cli("evaluate", "--dataset", str(path), "--split", "loo", "--models", "pop")
    assert "leaves no test users" in out and "'loo'" in out


@pytest.mark.parametrize(("param", "expect"), [
    ("ease.reg=abc", "ease.reg must be a number, got 'abc'"),
    ("itemknn.k=abc", "itemknn.k must be an integer, got 'abc'"),
    ("two-tower.epochs=-1", "two-tower.epochs must be >= 1, got -1"),
    ("ease.reg=-5", "ease.reg must be > 0, got -5"),
    ("ease.nope=1", "ease has no parameter 'nope'"),
])
def test_bad_model_parameters_are_named(param, expect):
    model = param.split(".")[0]
    assert expect in cli("evaluate", "--models", model, "--param", param)
    assert expect in cli("recommend", "--model", model, "--param", param, "--output", "x.csv")


def test_param_for_a_model_not_run_is_refused_everywhere():
    assert "itemknn" in cli("evaluate", "--models", "pop", "--param", "itemknn.k=5")
    assert "itemknn" in cli("recommend", "--model", "pop", "--param", "itemknn.k=5",
                            "--output", "x.csv")


def test_output_that_is_a_directory(tmp_path):
    assert "--json" in cli("evaluate", "--models", "pop", "--json", str(tmp_path))
    out = cli("recommend", "--model", "pop", "--output", str(tmp_path))
    assert "--output" in out and "directory" in out
    assert "unknown format '.txt'" in cli("recommend", "--output", str(tmp_path / "r.txt"))


def test_missing_file_says_file_not_found(tmp_path):
    missing = tmp_path / "missing.csv"
    out = cli("evaluate", "--dataset", str(missing), "--models", "pop")
    assert "file not found" in out and "missing.csv" in out and "unknown dataset" not in out
    assert "unknown dataset 'nosuchname'" in cli("evaluate", "--dataset", "nosuchname")


def test_unknown_encoder_is_named_without_a_download(small_csv):
    out = cli("embed", "--dataset", str(small_csv), "--columns", COLS, "--encoder", "nope",
              "--output", "vecs")
    assert "unknown encoder 'nope'" in out and "huggingface" not in out.lower()


@pytest.mark.parametrize("command", [["evaluate"], ["recommend", "--output", "x.csv"],
                                     ["train", "--output", "a"], ["simulate"], ["ope"],
                                     ["tune", "--model", "pop"], ["split", "export", "-o", "d"]])
def test_negative_seed_names_the_flag(command):
    assert "--seed" in cli(*command, "--seed", "-5")


def test_reading_a_missing_service_log_creates_nothing(tmp_path):
    db = tmp_path / "never.db"
    out = cli("ope", "--log", f"sqlite:///{db}", "--policy", "greedy")
    assert "no such SQLite file" in out and not db.exists()
    out = cli("retrain", "--from-log", f"sqlite:///{db}", "--output", str(tmp_path / "new"))
    assert "--from-log" in out and not db.exists()


def test_failed_serve_leaves_no_database(tmp_path):
    db = tmp_path / "svc.db"
    out = cli("serve", "--artifact", str(tmp_path / "no-artifact"), "--store", f"sqlite:///{db}")
    assert "no-artifact" in out
    assert not list(tmp_path.glob("svc.db*"))


def test_train_checks_policy_and_its_parameters_before_fitting(small_csv, tmp_path):
    out = cli("train", "--dataset", str(small_csv), "--columns", COLS, "--policy", "nope",
              "--output", str(tmp_path / "a"))
    assert "unknown policy 'nope'" in out and "fit" not in out
    out = cli("train", "--dataset", str(small_csv), "--columns", COLS, "--policy", "egreedy",
              "--policy-param", "epsilon=2", "--output", str(tmp_path / "a"))
    assert "epsilon" in out and "fit" not in out


def test_models_that_need_item_text_name_items(small_csv, tmp_path):
    out = cli("evaluate", "--dataset", str(small_csv), "--columns", COLS, "--models", "content")
    assert "--items" in out and "item text" in out
    out = cli("train", "--dataset", str(small_csv), "--columns", COLS, "--policy", "linucb",
              "--output", str(tmp_path / "a"))
    assert "--items" in out and "linucb" in out
    # a policy that does not read item text trains without a catalog (and encodes no ids)
    cli("train", "--dataset", str(small_csv), "--columns", COLS, "--policy", "egreedy",
        "--output", str(tmp_path / "b"), code=0)
    from explorec.serve.artifact import load_service_artifact

    art = load_service_artifact(tmp_path / "b")
    assert not np.asarray(art.item_vectors).any()
    assert not any(art.texts)


def test_loading_options_on_the_command_line(tmp_path):
    path = write(tmp_path / "d.csv", "user,item,rating,timestamp\n"
                 "a,x,1,1\na,x,4,2\na,y,5,3\nb,x,2,4\nb,y,3,5\nc,z,5,6\n")
    assert "duplicate (user, item)" in cli("data", "info", str(path))
    out = cli("data", "info", str(path), "--duplicates", "last", "--json", code=0)
    assert '"interactions": 5' in out
    out = cli("data", "info", str(path), "--duplicates", "sum", "--min-rating", "5", "--json",
              code=0)
    assert '"interactions": 3' in out  # a,x summed to 5; a,y; c,z
    out = cli("data", "info", str(path), "--duplicates", "first", "--k-core", "2", "--json",
              code=0)
    assert '"users": 2' in out and '"items": 2' in out
    assert "--duplicates" in cli("data", "info", str(path), "--duplicates", "most")


def test_inter_file_reads_its_sibling_item_and_user_files(tmp_path):
    write(tmp_path / "shop.inter", "user_id:token\titem_id:token\trating:float\n"
          "1\t10\t5\n1\t11\t3\n2\t10\t4\n")
    write(tmp_path / "shop.item", "item_id:token\tname:token_seq\tprice:float\n"
          "10\tred shoe\t9.5\n11\tblue hat\t3\n")
    write(tmp_path / "shop.user", "user_id:token\tage:float\n1\t30\n2\t40\n")
    ds = load_dataset(str(tmp_path / "shop.inter"))
    assert ds.catalog is not None and ds.users is not None
    assert ds.catalog.texts(ds.interactions.items) == ["red shoe. 9.5", "blue hat. 3.0"]
    assert ds.columns == {"user": "user_id", "item": "item_id"}


# ------------------------------------------------------------------ 9. library edges
@pytest.fixture(scope="module")
def fitted(ml100k):
    return {n: create_model(n).fit(ml100k.interactions, catalog=ml100k.catalog)
            for n in ("pop", "ease", "itemknn", "content")}


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_is_a_clear_value_error(fitted, k):
    m = fitted["ease"]
    for call in (lambda: m.recommend(np.array([0]), k=k),
                 lambda: m.recommend_for_history(["50"], k=k),
                 lambda: m.similar_items(np.array([0]), k=k)):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            call()


def test_fewer_eligible_items_than_k_gives_shorter_lists(fitted, ml100k):
    m = fitted["ease"]
    n = m.n_items
    with pytest.warns(ShortListWarning, match="1 of 1 rows"):
        items, scores = m.recommend(np.array([0]), k=n + 5)
    seen = set(ml100k.interactions.matrix()[0].indices)
    valid = items[0] >= 0
    assert valid.sum() == n - len(seen) and not set(items[0][valid]) & seen
    assert np.isneginf(scores[0][~valid]).all() and (items[0][~valid] == -1).all()
    got, _ = m.recommend_for_history(list(ml100k.interactions.items.ids[:-3]), k=10)
    assert len(got) == 3  # only three items left
    with pytest.warns(ShortListWarning):
        top, _ = m.similar_items(np.array([0]), k=n + 5)
    assert (top[0] >= 0).sum() == n - 1


@pytest.mark.parametrize("name", ["pop", "ease", "itemknn", "content"])
def test_empty_history_gets_the_most_popular_items(fitted, name):
    items, scores = fitted[name].recommend_for_history([], k=3)
    assert list(items) == ["50", "258", "100"]  # ML-100K's most rated
    assert list(scores) == [583.0, 509.0, 508.0]


def test_add_items_rejects_empty_text_and_duplicate_ids(fitted):
    m = create_model("content", encoder="tfidf")
    ds = load_dataset("ml-100k")
    m.fit(ds.interactions, catalog=ds.catalog)
    with pytest.raises(ExploRecError, match=r"texts\[1\].*empty"):
        m.add_items(["n1", "n2"], ["A film.", "  "])
    with pytest.raises(ExploRecError, match=r"texts\[0\].*missing"):
        m.add_items(["n1"], [None])
    with pytest.raises(ExploRecError, match=r"item_ids\[1\].*twice"):
        m.add_items(["n1", "n1"], ["A film.", "Another film."])
    assert m.n_items == ds.interactions.n_items  # nothing was added


def test_catalog_covering_part_of_the_items_warns_with_the_count():
    inter = Interactions.from_frame(pd.DataFrame({"user": ["a", "a", "b"],
                                                  "item": ["x", "y", "z"]}),
                                    rating_col=None, timestamp_col=None)
    cat = ItemCatalog.from_frame(pd.DataFrame({"item": ["x"], "name": ["Ex"]}), source="c.csv")
    with pytest.warns(UserWarning, match="2 of 3 items have no row in the item catalog c.csv"):
        assert cat.texts(inter.items) == ["Ex", "", ""]


# ------------------------------------------------------------------ 10. ids and files
def test_id_length_limit_names_file_and_row(tmp_path):
    path = write(tmp_path / "long.csv", "user,item\na,x\nb," + "y" * 50_000 + "\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    assert "long.csv" in str(e.value) and "row 2" in str(e.value) and "'item'" in str(e.value)
    assert "50,000 characters" in str(e.value) and "256" in str(e.value)
    assert "--max-id-length" in cli("data", "info", str(path))
    ds = load_dataset(str(path), max_id_length=60_000)
    assert ds.interactions.n_items == 2


def test_long_ids_are_stored_compactly(tmp_path):
    long_id = "y" * 50_000
    df = pd.DataFrame({"user": [f"u{i}" for i in range(200)] + ["u0"],
                       "item": [f"i{i % 20}" for i in range(200)] + [long_id]})
    inter = Interactions.from_frame(df, rating_col=None, timestamp_col=None,
                                    max_id_length=60_000)
    m = create_model("pop").fit(inter)
    m.save(tmp_path / "m")
    size = sum(f.stat().st_size for f in (tmp_path / "m").iterdir())
    assert size < 200_000  # fixed-width unicode would take 21 x 50,000 x 4 bytes = 4.2 MB
    back = type(m).load(tmp_path / "m")
    assert back.items_.ids[-1] == long_id and list(back.items_.ids) == list(m.items_.ids)


def test_duplicate_column_names_are_an_error(tmp_path):
    path = write(tmp_path / "dup.csv", "user,item,item\n1,2,3\n")
    with pytest.raises(DataError, match="duplicate column name") as e:
        load_dataset(str(path))
    assert "'item'" in str(e.value) and "dup.csv" in str(e.value)


def test_nan_timestamp_names_its_own_row_plainly(tmp_path):
    rows = "".join(f"u{i},i{i},{1_600_000_000 + i}\n" for i in range(10))
    path = write(tmp_path / "t.csv", "user,item,timestamp\n" + rows + "u10,i10,nan\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    msg = str(e.value)
    assert "row 11" in msg and "'timestamp'" in msg and "np.float64" not in msg


# ------------------------------------------------------------------ 11. files and progress
@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o077, 0o600), (0o022, 0o644)])
def test_output_files_follow_the_umask(tmp_path, umask, mode):
    from explorec._io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode


def test_non_tty_commands_print_a_line_per_stage(small_csv, tmp_path):
    out = cli("evaluate", "--dataset", str(small_csv), "--columns", COLS, "--models", "pop,ease",
              "--k", "5", code=0)
    for stage in ("load", "split ratio", "fit pop", "fit ease", "test ease"):
        assert f"{stage}" in out and "done in" in out, stage


# ------------------------------------------------------------------ 12. self-documenting
def test_models_lists_every_default_and_explains_every_parameter():
    from explorec.models.registry import all_defaults, describe_params, model_names

    res = CliRunner().invoke(app, ["models", "--json"])
    listed = {m["name"]: m for m in json.loads(res.stdout)}
    for name in model_names():
        params = describe_params(name)
        assert listed[name]["defaults"] == json.loads(json.dumps(all_defaults(name)))
        assert [p["name"] for p in params] == list(all_defaults(name))
        assert all(p["doc"] for p in params), name
    # only pop has no parameters at all
    assert [n for n, m in listed.items() if not m["defaults"]] == ["pop"]
    one = cli("models", "itemknn", code=0)
    assert "user_weighting" in one and "neighbours kept per item" in one


def test_config_file_errors_name_the_file_and_key(tmp_path, small_csv):
    cfg = write(tmp_path / "run.yaml", f"dataset: {small_csv}\nmodles: [pop]\n")
    out = cli("evaluate", "--config", str(cfg))
    assert "run.yaml" in out and "'modles'" in out and "models" in out
    bad = write(tmp_path / "bad.yaml", "dataset: [unclosed\n")
    assert "not valid YAML" in cli("evaluate", "--config", str(bad))
    assert "file not found" in cli("evaluate", "--config", str(tmp_path / "none.yaml"))


def test_config_sections_and_flags_override_the_file(tmp_path, small_csv):
    cfg = write(tmp_path / "run.yaml", f"""\
dataset: {small_csv}
columns: {{user: cust, item: prod, rating: stars, timestamp: when}}
k: [5, 10]
evaluate:
  models: {{pop: {{}}, ease: {{reg: 100}}}}
  json: out/e.json
recommend:
  model: pop
  output: out/r.csv
""")
    cli("evaluate", "--config", str(cfg), code=0)
    report = json.loads((tmp_path / "out" / "e.json").read_text())
    assert [r["model"] for r in report["results"]] == ["pop", "ease"]
    assert report["results"][1]["params"] == {"reg": 100.0} and report["ks"] == [5, 10]
    # a flag beats the file; recommend takes its section and the largest k of the list
    cli("evaluate", "--config", str(cfg), "--models", "ease", "--k", "3", code=0)
    report = json.loads((tmp_path / "out" / "e.json").read_text())
    assert [r["model"] for r in report["results"]] == ["ease"] and report["ks"] == [3]
    cli("recommend", "--config", str(cfg), code=0)
    recs = pd.read_csv(tmp_path / "out" / "r.csv")
    assert list(recs.columns) == ["cust", "rank", "prod", "score"] and recs["rank"].max() == 10


def test_serve_that_fails_after_opening_the_store_removes_the_database(tmp_path):
    """A valid manifest whose parts are broken: the store opens, the artifact fails, and the
    database the failed start created is removed again (with its WAL files)."""
    from explorec.data.synthetic import generate
    from explorec.serve.artifact import train_artifact

    art = tmp_path / "art"
    train_artifact(art, dataset=generate(n_users=40, n_items=30, n_interactions=300, seed=1),
                   model="pop", policy="greedy", encoder="tfidf", vector_dim=4)
    vectors = next((art / "items").glob("vectors*.npy"))
    vectors.write_bytes(vectors.read_bytes()[:-8] + b"\0" * 8)  # checksum no longer matches
    out = cli("serve", "--artifact", str(art), "--store", f"sqlite:///{tmp_path / 'svc.db'}")
    assert "checksum" in out
    assert not list(tmp_path.glob("svc.db*"))
