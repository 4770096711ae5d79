"""Acceptance on the real ML-100K, RecBole's default protocol, seed 2020.

RecBole 1.2.1 on the same protocol: EASE NDCG@10 0.3295 / Recall@10 0.2805, ItemKNN 0.2834,
Pop 0.1033 (see docs/evaluation.md for why our popularity baseline scores higher).

RecBole's figures come from one split of its own. Over six of our split seeds (2020-2025)
EASE gives NDCG@10 0.3247 ± 0.0074 and Recall@10 0.2743 ± 0.0060 (seed 2020: 0.3192 /
0.2686), so the floors below are our mean minus two split-to-split standard deviations.
"""

from __future__ import annotations

import numpy as np
import pytest

from explorec.evaluate import evaluate_model
from explorec.models import create_model

METRICS = ("ndcg", "recall", "hit", "mrr", "precision")


@pytest.fixture(scope="module")
def fitted(ml100k_ratio_split):
    return {name: create_model(name).fit(ml100k_ratio_split.train)
            for name in ("random", "pop", "itemknn", "userknn", "ease")}


def _test_metrics(model, split):
    return evaluate_model(model, split, ks=(10, 20), metrics=METRICS).metrics


def test_split_matches_recbole_protocol(ml100k_ratio_split):
    sp = ml100k_ratio_split
    assert (len(sp.train), len(sp.valid), len(sp.test)) == (80808, 9596, 9596)
    assert len(sp.test.active_users) == 943


def test_ease_reaches_recbole(fitted, ml100k_ratio_split):
    m = _test_metrics(fitted["ease"], ml100k_ratio_split)
    assert m["ndcg@10"] >= 0.31
    assert m["recall@10"] >= 0.26


def test_itemknn_reaches_recbole(fitted, ml100k_ratio_split):
    assert _test_metrics(fitted["itemknn"], ml100k_ratio_split)["ndcg@10"] >= 0.28


def test_itemknn_plain_cosine_matches_recbole_configuration(ml100k_ratio_split):
    """RecBole's ItemKNN (k=100, shrink=0, plain cosine) lands near its 0.2834."""
    model = create_model("itemknn", alpha=0.5, user_weighting="none").fit(
        ml100k_ratio_split.train)
    ndcg = _test_metrics(model, ml100k_ratio_split)["ndcg@10"]
    assert 0.26 <= ndcg <= 0.30


def test_popularity_range(fitted, ml100k_ratio_split):
    """True item-count popularity. RecBole's Pop (0.1033) counts sampled negatives and
    de-duplicates counts within a batch; an exact count ranks higher (docs/evaluation.md)."""
    ndcg = _test_metrics(fitted["pop"], ml100k_ratio_split)["ndcg@10"]
    assert 0.12 <= ndcg <= 0.17


def test_ordering_and_random_floor(fitted, ml100k_ratio_split):
    nd = {n: _test_metrics(m, ml100k_ratio_split)["ndcg@10"] for n, m in fitted.items()}
    assert nd["random"] < 0.02
    assert nd["random"] < nd["pop"] < nd["userknn"] < nd["ease"]
    assert nd["pop"] < nd["itemknn"] < nd["ease"]


def test_evaluation_is_reproducible(ml100k):
    from explorec.data import make_split

    a = make_split(ml100k.interactions, "ratio", seed=2020)
    b = make_split(ml100k.interactions, "ratio", seed=2020)
    ma = _test_metrics(create_model("ease").fit(a.train), a)
    mb = _test_metrics(create_model("ease").fit(b.train), b)
    assert ma == mb


def test_cold_item_protocol_random_baseline(ml100k):
    """Ranking only the 336 cold items: random Recall@20 is about 20/336."""
    from explorec.data import make_split

    sp = make_split(ml100k.interactions, "cold-items", seed=2020)
    assert len(sp.test_candidates) == 336
    m = evaluate_model(create_model("random").fit(sp.train), sp, ks=(20,),
                       metrics=("recall",)).metrics
    assert abs(m["recall@20"] - 20 / 336) < 0.015
    # Never-trained items get no signal from collaborative models: EASE scores them all alike
    ease = create_model("ease").fit(sp.train)
    scores = ease.score(np.arange(50))[:, sp.test_candidates]
    assert np.ptp(scores) == 0


def test_loo_and_temporal_protocols_run(ml100k):
    from explorec.data import make_split

    scores = {}
    for name in ("loo", "temporal"):
        sp = make_split(ml100k.interactions, name, seed=2020)
        for model in ("pop", "ease"):
            scores[name, model] = evaluate_model(
                create_model(model).fit(sp.train), sp, ks=(10,), metrics=("hit",)
            ).metrics["hit@10"]
    # Leave-last-out: every test user has a history, so collaborative filtering wins.
    assert scores["loo", "ease"] > scores["loo", "pop"]
    # Global temporal: 97 of the 166 test users arrive after the cut with no history, so
    # popularity is the better exploit for them (the cold-user case later issues address).
    assert scores["temporal", "pop"] > scores["temporal", "ease"]
