"""explorec.ranking's public pieces (exclusions, candidates, sparse and column-subset top-k,
stacked lists) against the dense top_items they must equal, and explorec.validation (the
held-out ranking evaluation and model validation share) against explorec.evaluate."""

from __future__ import annotations

import dataclasses
import doctest
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import explorec.ranking as ranking
import explorec.validation as validation
from explorec.data import make_split
from explorec.data.synthetic import generate
from explorec.models import create_model
from explorec.ranking import (
    ShortListWarning,
    candidate_mask,
    eligible_scores,
    stack_lists,
    top_items,
    top_items_sparse,
    top_of_columns,
)


@pytest.mark.parametrize("module", [ranking, validation])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ eligible_scores
def test_eligible_scores_marks_exclusions_candidates_and_nan():
    s = np.array([[1.0, np.nan, 3.0, -np.inf, np.inf], [5.0, 4.0, 3.0, 2.0, 1.0]])
    before = s.copy()
    ex = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]]))
    out = eligible_scores(s, exclude=ex, candidates=np.array([0, 1, 2, 4]))
    np.testing.assert_array_equal(s, before)  # the input is never modified
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1.0, -np.inf, -np.inf, -np.inf, np.inf],
                                        [-np.inf, 4.0, 3.0, -np.inf, 1.0]])
    # a boolean mask is the same restriction as the ids
    mask = np.array([True, True, True, False, True])
    np.testing.assert_array_equal(eligible_scores(s, exclude=ex, candidates=mask), out)


def test_eligible_scores_clip_keeps_every_allowed_item_rankable():
    s = np.array([[1.0, np.nan, -np.inf, np.inf]])
    big = np.finfo(np.float64).max
    out = eligible_scores(s, exclude=sp.csr_matrix(np.array([[1, 0, 0, 0]])), clip=True)
    np.testing.assert_array_equal(out, [[-np.inf, -big, -big, big]])


def test_eligible_scores_errors_name_the_problem():
    with pytest.raises(ValueError, match="rows"):
        eligible_scores(np.zeros(3))
    with pytest.raises(ValueError, match="2 rows for 1"):
        eligible_scores(np.zeros((1, 3)), exclude=sp.csr_matrix((2, 3)))
    with pytest.raises(ValueError, match="out of range"):
        candidate_mask(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="shape"):
        candidate_mask(np.array([True, False]), 3)


# ------------------------------------------------------------------ equal to dense top_items
def _tied_scores(rng, n, m, density):
    """Sparse-ish scores with many ties (a few distinct positive values)."""
    dense = np.where(rng.random((n, m)) < density, rng.integers(1, 4, (n, m)).astype(float), 0.0)
    return dense


@pytest.mark.parametrize(("m", "density", "path"), [
    (40, 0.5, "dense block"),  # above SPARSE_SCORES_DENSITY
    (300, 0.1, "sparse rows"),  # most rows hold their top-k among their positive scores
    (300, 0.001, "dense pass"),  # most rows reach the items scored 0
])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_items_sparse_equals_the_dense_ranking(m, density, path, k, monkeypatch):
    rng = np.random.default_rng(m + k)
    n = 60
    dense = _tied_scores(rng, n, m, density)
    dense[:5] = 0.0  # a few rows with no positive score: ranked densely whatever the path
    rows = rng.permutation(1000)[:n]
    ex = sp.csr_matrix(rng.random((n, m)) < 0.05)
    calls = []
    real = ranking.top_of_columns
    monkeypatch.setattr(ranking, "top_of_columns", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    for exclude in (None, ex):
        got = top_items_sparse(sp.csr_matrix(dense), k, rows=rows, exclude=exclude, seed=5)
        want = top_items(dense, k, rows=rows, exclude=exclude, seed=5, warn=False)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert bool(calls) == (path == "sparse rows")


@pytest.mark.parametrize("per_row", [False, True])
def test_top_of_columns_with_exclusions_equals_the_dense_ranking(per_row):
    """Columns holding every item tied at or above each row's k-th: the same lists as
    ranking every item, exclusions applied inside."""
    rng = np.random.default_rng(3)
    n, m, k = 30, 25, 4
    dense = rng.integers(0, 3, (n, m)).astype(float)
    ex = sp.csr_matrix(rng.random((n, m)) < 0.2)
    rows = np.arange(n) + 100
    want = top_items(dense, k, rows=rows, exclude=ex, seed=9, warn=False)
    if per_row:  # each row's own column order (a permutation of every item)
        cols = np.argsort(rng.random((n, m)), axis=1)
        scores = np.take_along_axis(dense, cols, axis=1)
    else:
        cols = rng.permutation(m)
        scores = dense[:, cols]
    got = top_of_columns(scores, cols, k, rows=rows, exclude=ex, seed=9)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_stack_lists_pads_and_warns_for_the_caller():
    def ranker():
        return stack_lists([(np.array([[4, 2]]), np.array([[2.0, 1.0]])),
                            (np.array([[7]]), np.array([[3.0]]))], 2, 2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items, scores = ranker()
    np.testing.assert_array_equal(items, [[4, 2], [7, -1]])
    np.testing.assert_array_equal(scores, [[2.0, 1.0], [3.0, -np.inf]])
    [w] = caught
    assert issubclass(w.category, ShortListWarning) and "1 of 2 rows" in str(w.message)
    assert w.filename == __file__  # attributed to whoever called the ranker


# ------------------------------------------------------------------ validation
@pytest.fixture(scope="module")
def splits():
    ds = generate(n_users=120, n_items=150, n_interactions=2500, seed=11)
    return (make_split(ds.interactions, "ratio", seed=3),
            make_split(ds.interactions, "cold-items", seed=4, cold_fraction=0.2))


@pytest.mark.parametrize("name", ["pop", "random", "itemknn", "ease"])
def test_split_validator_is_the_evaluation_protocols_number(name, splits):
    """The default validator of fit(split=...) (below the models) and the one the evaluate
    layer passes as fit(validate=...) give the same value, exactly."""
    from explorec.evaluate.protocol import evaluate_model, validator

    for split in splits:
        m = create_model(name).fit(split.train)
        want = evaluate_model(m, split, part="valid", ks=(10,), metrics=("ndcg",))
        assert validation.split_validator(split)(m) == want.metrics["ndcg@10"]
        assert validator(split)(m) == want.metrics["ndcg@10"]
        recall = validation.split_validator(split, metric="recall", k=5)(m)
        assert recall == evaluate_model(m, split, part="valid", ks=(5,),
                                        metrics=("recall",)).metrics["recall@5"]


def test_heldout_metric_equals_evaluate_scores_for_every_user_metric(splits):
    from explorec.evaluate.protocol import evaluate_scores

    split = splits[1]  # candidates restrict the ranking
    m = create_model("itemknn").fit(split.train)
    relevant, excluded, candidates = validation.part_matrices(split, "test")
    full = evaluate_scores(m.score, relevant, excluded, train=split.train.matrix(), ks=(3,),
                           metrics=validation.USER_METRICS, candidates=candidates, seed=8,
                           batch_size=17)
    for metric in validation.USER_METRICS:
        got = validation.heldout_metric(m.score, relevant, excluded, metric=metric, k=3,
                                        candidates=candidates, seed=8, batch_size=17)
        assert got == full.metrics[f"{metric}@3"], metric


def test_validators_are_none_without_a_validation_part(splits):
    from explorec.evaluate.protocol import validator

    split = splits[0]
    empty = dataclasses.replace(split, valid=split.valid.subset(np.zeros(0, dtype=np.int64)))
    for make in (validation.split_validator, validator):
        assert make(None) is None and make(empty) is None
    with pytest.raises(ValueError, match="per-user"):
        validation.heldout_metric(lambda u: np.zeros((len(u), 3)), sp.csr_matrix((1, 3)),
                                  sp.csr_matrix((1, 3)), metric="auc")


@pytest.mark.parametrize("levels", [None, 3, 50])
def test_top_set_is_the_set_of_topk(levels):
    """top_set has topk's members, ties across the k-th place included (few levels: many
    ties), for any k, with and without row and column ids."""
    from explorec.ranking import top_set, topk

    rng = np.random.default_rng(11)
    S = rng.random((7, 60)) if levels is None else rng.integers(0, levels, (7, 60)).astype(float)
    S[2, :5] = np.nan
    rows = np.arange(100, 107)
    cols = rng.permutation(1000)[:60]
    for k in (1, 5, 17, 59, 60, 80):
        for kw in ({}, {"rows": rows}, {"rows": rows, "cols": cols}):
            a = np.sort(top_set(S, k, **kw), axis=1)
            b = np.sort(topk(S, k, **kw), axis=1)
            assert np.array_equal(a, b), (k, kw)
