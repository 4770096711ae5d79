"""Top-K metrics and the full-ranking protocol.

Three layers of checks:

* hand-computed values for every metric on tiny inputs (expected numbers are literals);
* a deliberately naive reference (plain loops over users and ranks, Python ``sorted``)
  compared with the vectorised implementation end to end through ``evaluate_scores`` on
  seeded random data;
* the candidate restriction (cold-item protocol), error paths and a hypothesis property test.

Conventions are RecBole's (see ``explorec.evaluate.metrics``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import explorec.validation as validation
from explorec.evaluate.metrics import (
    ALL_METRICS,
    USER_METRICS,
    auc_from_scores,
    check_metrics,
    gini_index,
    intra_list_diversity,
    item_coverage,
    normalized_item_vectors,
    novelty,
    user_metrics,
)
from explorec.evaluate.protocol import evaluate_scores
from explorec.ranking import tie_keys
from explorec.ranking import topk as topk_from_scores

TIGHT = {"rtol": 1e-12, "atol": 1e-12}
INV_LOG2_3 = 1.0 / math.log2(3)  # discount of rank 2: 1/log2(2+1) = 0.6309297535714575


# =========================================================== 1. hand-computed per-user values
# Four users, lists of length 3 (column j = rank j+1):
#   u0: hits [1, 0, 1], 4 relevant items
#   u1: hits [0, 1, 0], 1 relevant item
#   u2: hits [0, 0, 0], 2 relevant items
#   u3: hits [1, 1, 0], 2 relevant items
HITS = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
N_POS = np.array([4, 1, 2, 2])

# Expected values by hand, {metric: {k: [u0, u1, u2, u3]}}.
EXPECTED = {
    # precision@k = hits in top-k / k
    "precision": {
        1: [1.0, 0.0, 0.0, 1.0],
        2: [0.5, 0.5, 0.0, 1.0],
        3: [2 / 3, 1 / 3, 0.0, 2 / 3],
    },
    # recall@k = hits in top-k / n_relevant
    "recall": {
        1: [0.25, 0.0, 0.0, 0.5],
        2: [0.25, 1.0, 0.0, 1.0],
        3: [0.5, 1.0, 0.0, 1.0],
    },
    # f1 = 2PR/(P+R):
    #   u0@1: 2*1*.25/1.25 = .4    u0@2: 2*.5*.25/.75 = 1/3   u0@3: 2*(2/3)(1/2)/(7/6) = 4/7
    #   u1@2: 2*.5*1/1.5 = 2/3     u1@3: 2*(1/3)/(4/3) = 1/2
    #   u3@1: 2*1*.5/1.5 = 2/3     u3@2: 1                     u3@3: 2*(2/3)/(5/3) = 4/5
    "f1": {
        1: [0.4, 0.0, 0.0, 2 / 3],
        2: [1 / 3, 2 / 3, 0.0, 1.0],
        3: [4 / 7, 0.5, 0.0, 0.8],
    },
    # ndcg@k: DCG = sum of 1/log2(rank+1) over hits; IDCG over min(n_relevant, k) ranks.
    #   u0@1: 1/1                    u0@2: 1/(1 + d2)             u0@3: (1 + .5)/(1 + d2 + .5)
    #   u1@2: d2/1 (ideal 1 rank)    u1@3: d2/1
    #   u3@1: 1/1                    u3@2: (1 + d2)/(1 + d2) = 1  u3@3: 1 (ideal 2 ranks)
    # with d2 = 1/log2(3) and 1/log2(4) = .5
    "ndcg": {
        1: [1.0, 0.0, 0.0, 1.0],
        2: [1 / (1 + INV_LOG2_3), INV_LOG2_3, 0.0, 1.0],
        3: [1.5 / (1.5 + INV_LOG2_3), INV_LOG2_3, 0.0, 1.0],
    },
    # mrr@k = 1/rank of the first hit within k
    "mrr": {
        1: [1.0, 0.0, 0.0, 1.0],
        2: [1.0, 0.5, 0.0, 1.0],
        3: [1.0, 0.5, 0.0, 1.0],
    },
    # map@k = sum over hit ranks i<=k of precision@i, / min(n_relevant, k)
    #   u0@1: 1/1   u0@2: 1/2   u0@3: (1/1 + 2/3)/3 = 5/9
    #   u1@2: (1/2)/1            u3@2: (1 + 1)/2 = 1   u3@3: (1 + 1)/2 = 1
    "map": {
        1: [1.0, 0.0, 0.0, 1.0],
        2: [0.5, 0.5, 0.0, 1.0],
        3: [5 / 9, 0.5, 0.0, 1.0],
    },
    "hit": {
        1: [1.0, 0.0, 0.0, 1.0],
        2: [1.0, 1.0, 0.0, 1.0],
        3: [1.0, 1.0, 0.0, 1.0],
    },
}


@pytest.mark.parametrize("metric", USER_METRICS)
def test_user_metrics_hand_computed(metric):
    out = user_metrics(HITS, N_POS, (1, 2, 3), (metric,))
    assert set(out) == {f"{metric}@1", f"{metric}@2", f"{metric}@3"}
    for k, expected in EXPECTED[metric].items():
        np.testing.assert_allclose(out[f"{metric}@{k}"], expected, **TIGHT, err_msg=f"{metric}@{k}")


def test_user_metrics_literal_values():
    # the same numbers written out as decimals, to guard the formulas in EXPECTED themselves
    out = user_metrics(HITS, N_POS, (3,))
    assert out["ndcg@3"][0] == pytest.approx(1.5 / 2.1309297535714575, abs=1e-12)  # 0.70391...
    assert out["ndcg@3"][1] == pytest.approx(0.6309297535714575, abs=1e-12)
    assert out["map@3"][0] == pytest.approx(0.5555555555555556, abs=1e-12)
    assert out["f1@3"][0] == pytest.approx(0.5714285714285714, abs=1e-12)


def test_user_metrics_zero_relevant_gives_zeros():
    out = user_metrics(np.zeros((1, 3), dtype=bool), np.array([0]), (1, 3))
    for name, v in out.items():
        assert v.tolist() == [0.0], name


def test_user_metrics_k_longer_than_list():
    with pytest.raises(ValueError, match="k=4"):
        user_metrics(HITS, N_POS, (4,))


def test_auc_hand_computed():
    scores = np.array([
        # candidates 0..3 (item 4 is not a candidate); relevant 0, 2 (and 4, ignored)
        # pairs (pos, neg): (0,1)=1 (0,3)=1 (2,1)=1 (2,3)=tie=.5 -> 3.5/4 = .875
        [0.9, 0.1, 0.5, 0.5, -np.inf],
        # every candidate relevant -> no negatives -> NaN
        [0.3, 0.2, 0.1, -np.inf, -np.inf],
        # nothing relevant -> NaN
        [0.3, 0.2, 0.1, 0.0, 0.0],
        # relevant item ranked last among 4 candidates -> 0; the -inf item is not a negative
        [0.4, 0.3, 0.2, 0.1, -np.inf],
        # all tied -> .5
        [1.0, 1.0, 1.0, 1.0, 1.0],
    ])
    relevant = np.array([
        [1, 0, 1, 0, 1],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [1, 0, 0, 0, 0],
    ], dtype=bool)
    auc = auc_from_scores(scores, relevant)
    np.testing.assert_allclose(auc, [0.875, np.nan, np.nan, 0.0, 0.5], **TIGHT)


def test_item_coverage_hand_computed():
    # items {0, 1, 2} of 5 candidates appear -> 3/5
    assert item_coverage(np.array([[0, 1], [1, 2]]), 5) == pytest.approx(0.6, abs=1e-12)


@pytest.mark.parametrize(("topk", "expected"), [
    # counts over 4 items [2, 1, 1, 0] -> sorted [0, 1, 1, 2]; (2i-n-1) = [-3, -1, 1, 3]
    # sum = 0 - 1 + 1 + 6 = 6; / (n * total) = 6 / (4 * 4) = .375
    ([[0, 1], [0, 2]], 0.375),
    # one item only: sorted [0, 0, 0, 2] -> 3*2 / (4*2) = .75 = (n-1)/n
    ([[0], [0]], 0.75),
    # equal exposure: [1, 1, 1, 1] -> (-3 - 1 + 1 + 3) / 16 = 0
    ([[0, 1], [2, 3]], 0.0),
])
def test_gini_hand_computed(topk, expected):
    assert gini_index(np.array(topk), 4) == pytest.approx(expected, abs=1e-12)


def test_novelty_hand_computed():
    # 3 training users; item 0 seen by all 3 -> -log2(4/4) = 0, item 1 by none -> -log2(1/4) = 2
    # mean over all list entries [0, 1, 1, 1]: (0 + 2 + 2 + 2)/4 = 1.5
    pop = np.array([3, 0])
    assert novelty(np.array([[0, 1], [1, 1]]), pop, 3) == pytest.approx(1.5, abs=1e-12)
    assert novelty(np.array([[0, 1]]), pop, 3) == pytest.approx(1.0, abs=1e-12)


def _ild_train() -> sp.csr_matrix:
    # 3 users x 4 items. Item columns: i0 = (1,1,0), i1 = (1,1,0), i2 = (0,0,1), i3 = (1,0,1)
    # cos(i0,i1) = 1, cos(i0,i2) = 0, cos(i1,i2) = 0, cos(i0,i3) = 1/(sqrt2 sqrt2) = .5
    return sp.csr_matrix(np.array([
        [1, 1, 0, 1],
        [1, 1, 0, 0],
        [0, 0, 1, 1],
    ], dtype=np.float64))


def test_normalized_item_vectors_unit_rows():
    vec = normalized_item_vectors(_ild_train())
    assert vec.shape == (4, 3)
    dense = vec.toarray()
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1.0, **TIGHT)
    np.testing.assert_allclose(dense[3], [1 / math.sqrt(2), 0, 1 / math.sqrt(2)], **TIGHT)


def test_normalized_item_vectors_unseen_item_is_zero():
    train = sp.csr_matrix(np.array([[1, 0], [1, 0]], dtype=np.float64))
    dense = normalized_item_vectors(train).toarray()
    np.testing.assert_allclose(dense, [[1 / math.sqrt(2), 1 / math.sqrt(2)], [0, 0]], **TIGHT)


def test_intra_list_diversity_hand_computed():
    vec = normalized_item_vectors(_ild_train())
    two = np.array([
        [0, 1],  # 1 - 1 = 0
        [0, 2],  # 1 - 0 = 1
        [0, 3],  # 1 - .5 = .5
    ])
    np.testing.assert_allclose(intra_list_diversity(two, vec), [0.0, 1.0, 0.5], **TIGHT)
    # [0, 1, 2]: 1 - (1 + 0 + 0)/3 = 2/3
    three = np.array([[0, 1, 2]])
    np.testing.assert_allclose(intra_list_diversity(three, vec), [2 / 3], **TIGHT)
    # dense item vectors give the same values
    np.testing.assert_allclose(intra_list_diversity(two, vec.toarray()), [0.0, 1.0, 0.5], **TIGHT)
    # a one-item list has no pairs: the library reports 0
    np.testing.assert_allclose(intra_list_diversity(np.array([[0], [2]]), vec), [0.0, 0.0])


def test_topk_from_scores_order():
    scores = np.array([[0.1, 0.9, 0.5, -np.inf, 0.7], [5.0, 4.0, 3.0, 2.0, 1.0]])
    np.testing.assert_array_equal(topk_from_scores(scores, 3), [[1, 4, 2], [0, 1, 2]])
    # k beyond the number of items is clipped
    assert topk_from_scores(scores, 9).shape == (2, 5)


def test_evaluate_scores_hand_computed():
    # 3 users x 6 items; one score row for everyone: item i scores 6 - i (item 0 best)
    # user 0: relevant {1, 4}, excluded {0}  -> ranking 1,2,3,4,5 -> hits@3 [1,0,0]
    # user 1: nothing relevant              -> not evaluated
    # user 2: relevant {5}, excluded {}     -> ranking 0,1,2,3,4,5 -> hits@3 [0,0,0]
    relevant = sp.csr_matrix(np.array([
        [0, 1, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 1],
    ]))
    excluded = sp.csr_matrix(np.array([
        [1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]))
    train = excluded.copy()
    scores = np.tile(np.arange(6, 0, -1, dtype=np.float64), (3, 1))
    res = evaluate_scores(lambda u: scores[u], relevant, excluded, train=train, ks=(3,),
                          metrics=("recall", "ndcg", "auc", "itemcoverage", "gini"))
    np.testing.assert_array_equal(res.users, [0, 2])
    # recall: u0 1/2, u2 0 -> mean .25
    assert res.metrics["recall@3"] == pytest.approx(0.25, abs=1e-12)
    # ndcg: u0 1/(1 + d2) (two ideal ranks), u2 0
    assert res.metrics["ndcg@3"] == pytest.approx(0.5 / (1 + INV_LOG2_3), abs=1e-12)
    # auc: u0 candidates 1..5, pos {1, 4}: 1 beats 2,3,5 (3); 4 beats 5 (1) -> 4/6
    #      u2 candidates 0..5, pos {5} ranked last -> 0;  mean (2/3 + 0)/2 = 1/3
    np.testing.assert_allclose(res.per_user["auc"], [2 / 3, 0.0], **TIGHT)
    assert res.metrics["auc"] == pytest.approx(1 / 3, abs=1e-12)
    # lists {1,2,3} and {0,1,2} -> 4 of 6 items covered
    assert res.metrics["itemcoverage@3"] == pytest.approx(4 / 6, abs=1e-12)
    # counts [1,2,2,1,0,0] sorted [0,0,1,1,2,2], (2i-7) = [-5,-3,-1,1,3,5]
    # sum = 0 + 0 - 1 + 1 + 6 + 10 = 16, / (6 * 6) = 4/9
    assert res.metrics["gini@3"] == pytest.approx(4 / 9, abs=1e-12)
    # keys come out in the order the metrics were asked for
    assert list(res.metrics) == ["recall@3", "ndcg@3", "auc", "itemcoverage@3", "gini@3"]


# ====================================================================== 2. naive reference
def _tie(user, item, seed=2020):
    return int(tie_keys(np.array(user), np.array(item), seed))


def _naive_ranking(score_row, available, user=0):
    """Available items sorted by score descending, ties by the user's tie key of the item."""
    return sorted(available, key=lambda i: (-score_row[i], _tie(user, i)))


def _naive_user_metrics(ranking, rel_set, k):
    n_rel = len(rel_set)
    hits = [1 if ranking[r] in rel_set else 0 for r in range(k)]
    n_hits = sum(hits)
    precision = n_hits / k
    recall = n_hits / n_rel if n_rel else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    dcg = 0.0
    for r in range(1, k + 1):
        if hits[r - 1]:
            dcg += 1.0 / math.log2(r + 1)
    idcg = 0.0
    for r in range(1, min(n_rel, k) + 1):
        idcg += 1.0 / math.log2(r + 1)
    ndcg = dcg / idcg if idcg > 0 else 0.0
    mrr = 0.0
    for r in range(1, k + 1):
        if hits[r - 1]:
            mrr = 1.0 / r
            break
    ap = 0.0
    seen = 0
    for r in range(1, k + 1):
        if hits[r - 1]:
            seen += 1
            ap += seen / r
    map_ = ap / min(n_rel, k) if min(n_rel, k) > 0 else 0.0
    hit = 1.0 if n_hits > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "ndcg": ndcg, "mrr": mrr,
            "map": map_, "hit": hit}


def _naive_auc(score_row, available, rel_set):
    pos = [i for i in available if i in rel_set]
    neg = [i for i in available if i not in rel_set]
    if not pos or not neg:
        return float("nan")
    total = 0.0
    for p in pos:
        for q in neg:
            if score_row[p] > score_row[q]:
                total += 1.0
            elif score_row[p] == score_row[q]:
                total += 0.5
    return total / (len(pos) * len(neg))


def _naive_cosine(train_dense, a, b):
    n_users = len(train_dense)
    dot = sum(train_dense[u][a] * train_dense[u][b] for u in range(n_users))
    na = math.sqrt(sum(train_dense[u][a] ** 2 for u in range(n_users)))
    nb = math.sqrt(sum(train_dense[u][b] ** 2 for u in range(n_users)))
    if na == 0 or nb == 0:
        return 0.0  # an item nobody trained on has a zero vector
    return dot / (na * nb)


def naive_evaluate(scores, relevant, excluded, train, ks, candidates=None):
    """Plain-loop reference for ``evaluate_scores`` (all metrics)."""
    scores = scores.tolist()
    rel_rows = relevant.toarray().tolist()
    exc_rows = excluded.toarray().tolist()
    train_dense = train.toarray().tolist()
    n_users, n_items = relevant.shape
    cand = set(range(n_items)) if candidates is None else {int(i) for i in candidates}
    kmax = max(ks)

    # users with at least one relevant item among the candidates
    users = [u for u in range(n_users) if any(rel_rows[u][i] for i in cand)]
    per_user = {}
    lists = []
    for u in users:
        available = [i for i in range(n_items) if i in cand and not exc_rows[u][i]]
        assert len(available) >= kmax, "test data must leave every user kmax candidates"
        rel_set = {i for i in available if rel_rows[u][i]}
        ranking = _naive_ranking(scores[u], available, u)
        lists.append(ranking[:kmax])
        for k in ks:
            for name, v in _naive_user_metrics(ranking, rel_set, k).items():
                per_user.setdefault(f"{name}@{k}", []).append(v)
            if k < 2:
                ild = 0.0  # the library's convention for lists without pairs
            else:
                sims = []
                for a in range(k):
                    for b in range(a + 1, k):
                        sims.append(_naive_cosine(train_dense, ranking[a], ranking[b]))
                ild = 1.0 - sum(sims) / len(sims)
            per_user.setdefault(f"ild@{k}", []).append(ild)
        per_user.setdefault("auc", []).append(_naive_auc(scores[u], available, rel_set))

    means = {}
    for name, vals in per_user.items():
        finite = [v for v in vals if not math.isnan(v)]
        means[name] = sum(finite) / len(finite)

    n_train_users = len(train_dense)
    popularity = [sum(1 for u in range(n_train_users) if train_dense[u][i] != 0)
                  for i in range(n_items)]
    cand_sorted = sorted(cand)
    for k in ks:
        recommended = [i for lst in lists for i in lst[:k]]
        means[f"itemcoverage@{k}"] = len(set(recommended)) / len(cand)
        counts = sorted(recommended.count(i) for i in cand_sorted)
        n = len(counts)
        total = sum(counts)
        means[f"gini@{k}"] = sum((2 * (j + 1) - n - 1) * c for j, c in enumerate(counts)) / (
            n * total)
        info = [-math.log2((popularity[i] + 1) / (n_train_users + 1)) for i in recommended]
        means[f"novelty@{k}"] = sum(info) / len(info)
    return means, {k: np.array(v) for k, v in per_user.items()}, np.array(users)


def _random_problem(seed, n_users=50, n_items=40, integer_scores=False):
    rng = np.random.default_rng(seed)
    if integer_scores:
        scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float64)
    else:
        scores = rng.standard_normal((n_users, n_items))
    rel = rng.random((n_users, n_items)) < 0.12
    rel[rng.random(n_users) < 0.15] = False  # some users have nothing relevant
    exc = (rng.random((n_users, n_items)) < 0.2) & ~rel  # exclusions never hide a test item
    # training matrix with non-binary values (ratings), some items unseen in training
    train = np.where(rng.random((60, n_items)) < 0.15, rng.integers(1, 6, (60, n_items)), 0)
    train[:, rng.choice(n_items, 3, replace=False)] = 0
    return (scores, sp.csr_matrix(rel.astype(np.float64)), sp.csr_matrix(exc.astype(np.float64)),
            sp.csr_matrix(train.astype(np.float64)))


def _score_fn(scores):
    calls = []

    def fn(users):
        calls.append(np.asarray(users).copy())
        return scores[users]

    fn.calls = calls
    return fn


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [7, 1024])
@pytest.mark.parametrize("with_candidates", [False, True])
def test_evaluate_scores_matches_naive_reference(seed, batch_size, with_candidates):
    scores, rel, exc, train = _random_problem(seed)
    ks = (1, 5, 10)
    candidates = None
    if with_candidates:
        candidates = np.sort(np.random.default_rng(seed + 100).choice(40, 25, replace=False))
    fn = _score_fn(scores)
    res = evaluate_scores(fn, rel, exc, train=train, ks=ks, metrics=ALL_METRICS,
                          candidates=candidates, batch_size=batch_size)
    want, want_per_user, want_users = naive_evaluate(scores, rel, exc, train, ks, candidates)

    np.testing.assert_array_equal(res.users, want_users)
    # every user with a relevant item was scored exactly once, in batches of batch_size
    np.testing.assert_array_equal(np.concatenate(fn.calls), want_users)
    assert max(len(c) for c in fn.calls) <= batch_size
    assert set(res.metrics) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(res.metrics[name], value, **TIGHT, err_msg=name)
    assert set(res.per_user) == set(want_per_user)
    for name, values in want_per_user.items():
        np.testing.assert_allclose(res.per_user[name], values, **TIGHT, err_msg=name)


def test_evaluate_scores_batching_does_not_change_results():
    scores, rel, exc, train = _random_problem(3)
    a = evaluate_scores(lambda u: scores[u], rel, exc, train=train, ks=(5, 10), batch_size=3)
    b = evaluate_scores(lambda u: scores[u], rel, exc, train=train, ks=(5, 10), batch_size=1000)
    assert a.metrics.keys() == b.metrics.keys()
    for name in a.metrics:
        np.testing.assert_allclose(a.metrics[name], b.metrics[name], **TIGHT, err_msg=name)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("with_candidates", [False, True])
def test_auc_with_ties_matches_naive_reference(seed, with_candidates):
    # integer scores in {0..3}: many ties, which AUC counts as half
    scores, rel, exc, train = _random_problem(seed, integer_scores=True)
    candidates = np.arange(0, 40, 2) if with_candidates else None
    res = evaluate_scores(lambda u: scores[u], rel, exc, train=train, ks=(1,),
                          metrics=("auc",), candidates=candidates)
    cand = set(range(40)) if candidates is None else set(candidates.tolist())
    rel_d, exc_d = rel.toarray(), exc.toarray()
    want = []
    for u in res.users:
        available = [i for i in range(40) if i in cand and not exc_d[u, i]]
        rel_set = {i for i in available if rel_d[u, i]}
        want.append(_naive_auc(scores[u].tolist(), available, rel_set))
    np.testing.assert_allclose(res.per_user["auc"], want, **TIGHT)
    np.testing.assert_allclose(res.metrics["auc"], np.nanmean(want), **TIGHT)


def test_auc_from_scores_matches_naive_on_random_ties():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 3, size=(30, 12)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.2] = -np.inf  # non-candidates
    relevant = rng.random(scores.shape) < 0.3
    got = auc_from_scores(scores, relevant)
    for u in range(30):
        available = [i for i in range(12) if np.isfinite(scores[u, i])]
        rel_set = {i for i in available if relevant[u, i]}
        np.testing.assert_allclose(got[u], _naive_auc(scores[u].tolist(), available, rel_set),
                                   **TIGHT, err_msg=f"user {u}")


def test_topk_from_scores_matches_sorted_on_continuous_scores():
    rng = np.random.default_rng(11)
    scores = rng.standard_normal((40, 30))
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    got = topk_from_scores(scores, 8)
    for u in range(40):
        finite = [i for i in range(30) if np.isfinite(scores[u, i])]
        if len(finite) >= 8:
            assert got[u].tolist() == _naive_ranking(scores[u].tolist(), finite, u)[:8]


def test_topk_ties_follow_seeded_keys_not_index():
    # ties are ordered by tie_keys(row, item, seed), never by the item's index
    scores = np.array([[1.0, 0.0] + [1.0] * 38])
    tied = [0, *range(2, 40)]
    expect = sorted(tied, key=lambda i: _tie(0, i))[:5]
    assert topk_from_scores(scores, 5).tolist() == [expect]
    assert topk_from_scores(scores, 5).tolist() != [[0, 2, 3, 4, 5]]
    # a different seed or a different row gives a different order
    assert topk_from_scores(scores, 5, seed=1).tolist() != [expect]
    assert topk_from_scores(scores, 5, rows=np.array([7])).tolist() != [expect]
    # constant scores: the first position is uniform over the items across rows
    first = topk_from_scores(np.zeros((20000, 10)), 1).ravel()
    counts = np.bincount(first, minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200


# ============================================================ 3. candidate restriction
def _spy_topk(monkeypatch):
    """Every top-k list the protocol ranks (its batches are ranked in explorec.validation)."""
    lists = []
    real = validation.topk

    def spy(scores, k, **kw):
        out = real(scores, k, **kw)
        lists.append(out)
        return out

    monkeypatch.setattr(validation, "topk", spy)
    return lists


def test_candidates_restrict_lists_and_relevance(monkeypatch):
    n_users, n_items = 4, 10
    candidates = np.array([2, 5, 7, 8])
    # non-candidates score highest: they would fill every list if they leaked in
    base = np.array([9.0, 8.5, 1.0, 9.5, 9.9, 3.0, 8.0, 4.0, 2.0, 7.0])
    scores = np.tile(base, (n_users, 1))
    rel = np.zeros((n_users, n_items))
    rel[0, [7, 0, 3]] = 1  # one relevant candidate (7); 0 and 3 are outside the candidates
    rel[1, [7, 5]] = 1     # both candidates: the top-2 among candidates is [7, 5]
    rel[2, [8, 4]] = 1     # candidate 8 (ranked 3rd among candidates) and non-candidate 4
    # user 3 has nothing relevant
    lists = _spy_topk(monkeypatch)
    res = evaluate_scores(lambda u: scores[u], sp.csr_matrix(rel), sp.csr_matrix((n_users, 10)),
                          train=sp.csr_matrix(np.ones((3, n_items))), ks=(2,),
                          metrics=("recall", "precision", "auc", "itemcoverage", "gini"),
                          candidates=candidates)
    topk = np.concatenate(lists)
    assert np.isin(topk, candidates).all()
    # candidate ranking by score: 7 (4.0), 5 (3.0), 8 (2.0), 2 (1.0)
    np.testing.assert_array_equal(topk, [[7, 5]] * 3)
    np.testing.assert_array_equal(res.users, [0, 1, 2])
    # relevant non-candidates do not count: recall u0 = 1/1, u1 = 2/2, u2 = 0/1
    np.testing.assert_allclose(res.per_user["recall@2"], [1.0, 1.0, 0.0], **TIGHT)
    np.testing.assert_allclose(res.per_user["precision@2"], [0.5, 1.0, 0.0], **TIGHT)
    # auc among the 4 candidates only: u0 pos {7} beats 5, 8, 2 -> 1;
    # u1 pos {7, 5} both beat {8, 2} -> 1; u2 pos {8} beats only 2 -> 1/3
    np.testing.assert_allclose(res.per_user["auc"], [1.0, 1.0, 1 / 3], **TIGHT)
    # coverage over candidates: {7, 5} of 4 candidates
    assert res.metrics["itemcoverage@2"] == pytest.approx(0.5, abs=1e-12)
    # gini over the 4 candidates: counts sorted [0, 0, 3, 3], (2i-5) = [-3,-1,1,3]
    # -> (3 + 9)/(4 * 6) = .5
    assert res.metrics["gini@2"] == pytest.approx(0.5, abs=1e-12)


def test_candidates_random_lists_stay_inside(monkeypatch):
    scores, rel, exc, train = _random_problem(5)
    candidates = np.sort(np.random.default_rng(5).choice(40, 20, replace=False))
    lists = _spy_topk(monkeypatch)
    res = evaluate_scores(lambda u: scores[u], rel, exc, train=train, ks=(1, 5, 10),
                          candidates=candidates, batch_size=16)
    topk = np.concatenate(lists)
    assert topk.shape == (len(res.users), 10)
    assert np.isin(topk, candidates).all()
    # and never an excluded item
    exc_d = exc.toarray().astype(bool)
    assert not np.take_along_axis(exc_d[res.users], topk, axis=1).any()
    assert 0 < res.metrics["itemcoverage@10"] <= 1


def test_candidates_with_per_user_exclusions_below_k():
    rel = sp.csr_matrix(np.array([[0, 0, 1, 1, 0, 0]], dtype=np.float64))
    exc = sp.csr_matrix(np.array([[0, 0, 0, 0, 1, 0]], dtype=np.float64))
    scores = np.arange(6, dtype=np.float64)[None, :]
    res = evaluate_scores(lambda u: scores[u], rel, exc, train=sp.csr_matrix(np.ones((1, 6))),
                          ks=(3,), metrics=("recall", "itemcoverage", "gini"),
                          candidates=np.array([2, 3, 4]))
    assert res.metrics["itemcoverage@3"] <= 1.0


def test_user_without_relevant_candidates_is_not_averaged():
    scores = np.tile(np.arange(6, 0, -1, dtype=np.float64), (2, 1))
    rel = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0],    # relevant candidate 2
                                  [1, 0, 0, 0, 0, 0]],   # only relevant item is not a candidate
                                 dtype=np.float64))
    res = evaluate_scores(lambda u: scores[u], rel, sp.csr_matrix((2, 6)),
                          train=sp.csr_matrix(np.ones((2, 6))), ks=(2,),
                          metrics=("recall", "auc"), candidates=np.array([2, 3, 4, 5]))
    assert res.metrics["auc"] == 1.0  # user 1 is dropped from AUC
    assert res.metrics["recall@2"] == 1.0  # ... but counted as 0 here: 0.5


# ======================================================================== 4. errors
def test_unknown_metric_named_in_error():
    with pytest.raises(ValueError, match="bogus"):
        check_metrics(("recall", "bogus"))
    scores, rel, exc, train = _random_problem(0)
    with pytest.raises(ValueError, match="bogus"):
        evaluate_scores(lambda u: scores[u], rel, exc, train=train, ks=(5,),
                        metrics=("recall", "bogus"))


def test_check_metrics_accepts_known():
    assert check_metrics(list(ALL_METRICS)) == ALL_METRICS


def test_k_larger_than_item_count():
    scores, rel, exc, train = _random_problem(0)
    with pytest.raises(ValueError, match=r"k=41"):
        evaluate_scores(lambda u: scores[u], rel, exc, train=train, ks=(5, 41))


def test_k_larger_than_candidate_count():
    scores, rel, exc, train = _random_problem(0)
    candidates = np.arange(5)
    with pytest.raises(ValueError, match=r"k=6 .*\(5\)"):
        evaluate_scores(lambda u: scores[u], rel, exc, train=train, ks=(6,),
                        candidates=candidates)
    # exactly the candidate count is fine
    evaluate_scores(lambda u: scores[u], rel, sp.csr_matrix(rel.shape), train=train, ks=(5,),
                    candidates=candidates, metrics=("recall",))


def test_wrong_score_shape():
    scores, rel, exc, train = _random_problem(0)
    with pytest.raises(ValueError, match="shape"):
        evaluate_scores(lambda u: scores[u][:, :-1], rel, exc, train=train, ks=(5,))


# ============================================================= 5. hypothesis properties
@st.composite
def _hits_problem(draw):
    n_users = draw(st.integers(1, 6))
    kmax = draw(st.integers(1, 8))
    flat = draw(st.lists(st.booleans(), min_size=n_users * kmax, max_size=n_users * kmax))
    hits = np.array(flat, dtype=bool).reshape(n_users, kmax)
    extra = draw(st.lists(st.integers(0, 5), min_size=n_users, max_size=n_users))
    n_pos = hits.sum(axis=1) + np.array(extra)
    ks = tuple(sorted(set(draw(st.lists(st.integers(1, kmax), min_size=1, max_size=3)))))
    return hits, n_pos, ks


@settings(max_examples=100, deadline=None)
@given(_hits_problem())
def test_user_metrics_in_unit_interval(problem):
    hits, n_pos, ks = problem
    out = user_metrics(hits, n_pos, ks)
    for name, v in out.items():
        assert v.shape == (len(hits),)
        assert np.all((v >= 0) & (v <= 1 + 1e-12)), (name, v)
    # ndcg / recall / map can only be zero when nothing was hit
    for k in ks:
        no_hit = ~hits[:, :k].any(axis=1)
        for m in ("ndcg", "recall", "map", "mrr", "hit"):
            assert np.all((out[f"{m}@{k}"] > 0) == ~no_hit), (m, k)


@settings(max_examples=100, deadline=None)
@given(n_users=st.integers(1, 5), kmax=st.integers(1, 8), data=st.data())
def test_ndcg_is_one_when_relevant_items_are_ranked_first(n_users, kmax, data):
    n_pos = np.array(data.draw(st.lists(st.integers(1, 12), min_size=n_users,
                                        max_size=n_users)))
    # the first min(n_pos, kmax) ranks are hits, the rest are misses
    hits = np.arange(kmax)[None, :] < np.minimum(n_pos, kmax)[:, None]
    ks = tuple(range(1, kmax + 1))
    out = user_metrics(hits, n_pos, ks, ("ndcg", "map", "mrr", "hit"))
    for k in ks:
        np.testing.assert_allclose(out[f"ndcg@{k}"], 1.0, **TIGHT)
        np.testing.assert_allclose(out[f"map@{k}"], 1.0, **TIGHT)
        np.testing.assert_allclose(out[f"mrr@{k}"], 1.0, **TIGHT)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_items=st.integers(3, 15), k=st.integers(1, 3))
def test_list_metrics_in_range(seed, n_items, k):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((8, n_items))
    rel = sp.csr_matrix((rng.random((8, n_items)) < 0.4).astype(np.float64))
    train = sp.csr_matrix((rng.random((10, n_items)) < 0.4).astype(np.float64))
    if rel.nnz == 0:
        return
    res = evaluate_scores(lambda u: scores[u], rel, sp.csr_matrix(rel.shape), train=train,
                          ks=(k,))
    for name, v in res.metrics.items():
        if name.startswith("novelty"):
            # -log2((pop+1)/(n_users+1)) lies in [0, log2(n_users+1)]
            assert 0 <= v <= math.log2(11) + 1e-12
        else:
            assert -1e-12 <= v <= 1 + 1e-12, (name, v)
