"""Pruned exact ranking of factor scores: the same lists as ranking every item."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec import factor_topk
from explorec.factor_topk import PruneStats, factor_top_items
from explorec.ranking import top_items


def _reference(U, V, rows, k, exclude, seed):
    scores = (U.astype(np.float64) @ V.T.astype(np.float64)).astype(np.float32)
    return top_items(scores, k, rows=rows, exclude=exclude, seed=seed, warn=False)


def _case(seed: int, *, ties: bool = False, zeros: bool = False, dense_exclude: bool = False):
    rng = np.random.default_rng(seed)
    n, m, d = 150, 1500, 12
    U = rng.standard_normal((n, d)).astype(np.float32)
    # skewed norms, as implicit-feedback factors have (popular items: long vectors)
    V = (rng.standard_normal((m, d)) * rng.pareto(1.0, (m, 1))).astype(np.float32)
    if ties:
        V[:400] = V[0]
    if zeros:
        V[400:700] = 0
        U[:10] = 0
    ex = sp.random(n, m, density=0.9990 if dense_exclude else 0.05, format="csr",
                   random_state=seed)
    ex.data[:] = 1
    rows = rng.permutation(10 ** 6)[:n]
    return U, V, rows, ex


@pytest.mark.parametrize("case", [{}, {"ties": True}, {"zeros": True},
                                  {"ties": True, "zeros": True}, {"dense_exclude": True}])
@pytest.mark.parametrize("k", [1, 20, 2000])
def test_same_lists_as_ranking_every_item(monkeypatch, case, k):
    monkeypatch.setattr(factor_topk, "FIRST_TILE", 64)  # many tiles on a small catalog
    U, V, rows, ex = _case(3, **case)
    want = _reference(U, V, rows, k, ex, seed=11)
    got = factor_top_items(U, V, rows, k, exclude=ex, seed=11, block_users=37, threads=2)
    assert got[0].shape == want[0].shape
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_prunes_skewed_catalogs_and_falls_back_on_massive_ties(monkeypatch):
    monkeypatch.setattr(factor_topk, "FIRST_TILE", 64)
    U, V, rows, ex = _case(4, zeros=True)
    stats = PruneStats()
    got = factor_top_items(U, V, rows, 10, exclude=ex, stats=stats)
    np.testing.assert_array_equal(got[0], _reference(U, V, rows, 10, ex, 2020)[0])
    assert stats.scored_fraction < 0.6
    # zero user vectors tie every item at 0: ranked by the full product instead
    assert stats.fallback_users == 10


def test_threads_blocks_and_no_exclusions_agree():
    U, V, rows, _ = _case(5)
    a = factor_top_items(U, V, rows, 30, threads=1, block_users=500)
    b = factor_top_items(U, V, rows, 30, threads=2, block_users=16)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0], _reference(U, V, rows, 30, None, 2020)[0])


def test_bad_vectors_are_named():
    U, V, rows, _ = _case(6)
    V[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        factor_top_items(U, V, rows, 5)
    V[3, 2] = 0.0
    with pytest.raises(ValueError, match="do not match"):
        factor_top_items(U[:, :3], V, rows, 5)
    with pytest.raises(ValueError, match="rows has"):
        factor_top_items(U, V[:, :], rows[:3], 5)


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_factor_models_recommend_through_it(name, monkeypatch):
    from explorec.data.synthetic import generate
    from explorec.models import create_model

    data = generate(n_users=300, n_items=400, n_interactions=6000, seed=1).interactions
    params = {"factors": 8, "epochs": 2, "progress": False} if name == "bpr" else {"factors": 8}
    m = create_model(name, **params).fit(data)
    assert m.exact_factor_scores
    users = np.arange(m.n_users)
    X = m.user_items_
    got = m.recommend(users, 15)
    want = top_items(m.score(users), 15, rows=users, exclude=X, warn=False)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # the generic path gives the same lists
    monkeypatch.setattr(factor_topk, "available", lambda: False)
    slow = m.recommend(users, 15)
    np.testing.assert_array_equal(got[0], slow[0])
