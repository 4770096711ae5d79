"""Nearest-neighbour indexes: exact search is the reference, HNSW recall is measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
