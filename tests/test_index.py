"""Nearest-neighbour indexes: exact search is the reference, HNSW recall is measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.data.synthetic import generate
from explorec.errors import ArtifactError, ExploRecError
from explorec.index import (
    ExactIndex,
    HNSWIndex,
    build_index,
    load_index,
    recall_at_k,
    recommend_from_index,
)
from explorec.models.registry import create_model


@pytest.fixture(scope="module")
def fitted():
    ds = generate(n_users=2000, n_items=3000, n_interactions=60_000)
    return create_model("ials", iterations=5).fit(ds.interactions)


def test_exact_index_matches_full_scoring(fitted):
    U, V = fitted.factor_vectors()
    users = np.arange(0, fitted.n_users, 7)
    ids, scores = recommend_from_index(ExactIndex(V), U[users], 20,
                                       exclude=fitted.user_items_[users])
    ref_ids, ref_scores = fitted.recommend(users, 20)
    assert np.array_equal(ids, ref_ids)
    assert np.allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)


def test_hnsw_recall_is_measured_against_exact(fitted):
    U, V = fitted.factor_vectors()
    q = U[:300]
    exact, _ = ExactIndex(V).search(q, 100)
    approx, scores = HNSWIndex(V, ef_search=200).search(q, 100)
    assert approx.shape == exact.shape and np.all(np.diff(scores, axis=1) <= 1e-6)
    assert recall_at_k(approx, exact) >= 0.95


def test_bpr_vectors_score_like_the_model():
    ds = generate(n_users=500, n_items=400, n_interactions=8000)
    m = create_model("bpr", epochs=2, progress=False).fit(ds.interactions)
    U, V = m.factor_vectors()
    users = np.arange(50)
    assert np.allclose(U[users] @ V.T, m.score(users), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_save_load_roundtrip_and_tamper_check(tmp_path, fitted, kind):
    _, V = fitted.factor_vectors()
    index = build_index(V, kind)
    path = index.save(tmp_path / kind)
    manifest = json.loads((path / "index.json").read_text())
    assert manifest["kind"] == kind and all(len(d) == 64 for d in manifest["files"].values())
    again = load_index(path)
    q = V[:5]
    assert np.array_equal(again.search(q, 10)[0], index.search(q, 10)[0])
    name = next(iter(manifest["files"]))
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte
    (path / name).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_index(path)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ExploRecError, match="non-empty"):
        ExactIndex(np.zeros((0, 4)))
    with pytest.raises(ExploRecError, match="NaN"):
        ExactIndex(np.array([[np.nan, 1.0]]))
    with pytest.raises(ExploRecError, match="3 dimensions, the index 2"):
        ExactIndex(np.eye(2)).search(np.ones((1, 3)), 1)
    with pytest.raises(ExploRecError, match="unknown index kind"):
        build_index(np.eye(2), "lsh")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ExactIndex(np.eye(2)).search(np.ones((1, 2)), 0)


def test_auto_picks_exact_below_the_threshold():
    assert build_index(np.eye(8), "auto").kind == "exact"


# ------------------------------------------------------------------ models with an index
@pytest.fixture(scope="module")
def ials_model():
    from explorec.data.synthetic import generate
    from explorec.models.ials import IALS

    data = generate(n_users=1500, n_items=3000, n_interactions=40_000, seed=5).interactions
    return IALS(factors=16, iterations=6).fit(data)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_model_recommends_through_an_ann_index(ials_model, kind: str) -> None:
    users = np.arange(400)
    exact_items, _ = ials_model.recommend(users, 50)
    ials_model.build_index(kind, **({"nprobe": 48} if kind == "ivf" else {}))
    try:
        items, scores = ials_model.recommend(users, 50)
        assert items.shape == exact_items.shape
        seen = ials_model.user_items_[users]
        assert not seen.multiply(sp.csr_matrix((np.ones(items.size), (np.repeat(users, 50),
                                  items.ravel())), shape=seen.shape)).nnz  # nothing seen
        assert recall_at_k(items, exact_items) >= 0.95
        assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
        sim, _ = ials_model.similar_items(np.arange(50), 10)
        assert (sim != np.arange(50)[:, None]).all()
    finally:
        ials_model.drop_index()


def test_index_travels_inside_the_artifact(ials_model, tmp_path) -> None:
    import json

    from explorec.models.base import BaseRecommender

    ials_model.build_index("ivf", nprobe=16)
    try:
        want = ials_model.recommend(np.arange(100), 20)
        ials_model.save(tmp_path / "m")
    finally:
        ials_model.drop_index()
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "ivf" and "sha256" in json.dumps(manifest["arrays"]["index_bytes"])
    back = BaseRecommender.load(tmp_path / "m")
    assert back.index_ is not None and back.index_.kind == "ivf"
    got = back.recommend(np.arange(100), 20)
    np.testing.assert_array_equal(got[0], want[0])
    # a tampered index is refused by the artifact's checksum
    blob = next((tmp_path / "m").glob("index_bytes*"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"sha256|checksum"):
        BaseRecommender.load(tmp_path / "m")


def test_auto_index_is_exact_below_the_threshold_and_models_without_vectors(ials_model) -> None:
    assert ials_model.build_index("auto") is None and ials_model.index_ is None
    pop = create_model("pop").fit(generate(n_users=200, n_items=300, n_interactions=3000,
                                           seed=1).interactions)
    assert pop.build_index("auto") is None
    with pytest.raises(ExploRecError, match="no item vectors"):
        pop.build_index("ivf")


def test_ivf_and_hnswlib_round_trip(tmp_path) -> None:
    V = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    kinds = ["ivf"] + (["hnswlib"] if _has("hnswlib") else [])
    for kind in kinds:
        index = build_index(V, kind)
        q = V[:20]
        want = index.search(q, 10)
        back = load_index(index.save(tmp_path / kind))
        np.testing.assert_array_equal(back.search(q, 10)[0], want[0])
        from explorec.index import index_from_bytes

        again = index_from_bytes(index.meta(), index.to_bytes())
        np.testing.assert_array_equal(again.search(q, 10)[0], want[0])
        exact = ExactIndex(V).search(q, 10)[0]
        assert recall_at_k(want[0], exact) >= 0.9


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_recommend_cli_through_an_index_matches_exact_closely(tmp_path) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from explorec.cli.main import app

    base = ["--dataset", "synthetic", "--dataset-option", "n_users=600", "--dataset-option",
            "n_items=3000", "--dataset-option", "n_interactions=20000"]
    art = tmp_path / "ials"
    res = CliRunner().invoke(app, ["recommend", *base, "--model", "ials", "--param",
                                   "ials.iterations=4", "--k", "20", "-o",
                                   str(tmp_path / "exact.parquet"), "--save-model", str(art)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["recommend", "--artifact", str(art), "--k", "20", "--index",
                                   "hnsw", "-o", str(tmp_path / "ann.parquet"), "--chunk-users",
                                   "250"])
    assert res.exit_code == 0, res.output
    assert "hnsw index" in res.output
    exact, approx = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in ("exact", "ann"))
    assert len(approx) == len(exact) == 600 * 20
    a = approx.groupby("user")["item"].apply(set)
    e = exact.groupby("user")["item"].apply(set)
    assert np.mean([len(a[u] & e[u]) / 20 for u in e.index]) >= 0.95
    res = CliRunner().invoke(app, ["recommend", "--artifact", str(art), "--index", "lsh",
                                   "-o", str(tmp_path / "x.csv")])
    assert res.exit_code != 0 and "--index 'lsh'" in res.output
