"""Interest taxonomy and novel-interest prediction on real data (ML-100K, TF-IDF item vectors
for speed; the benchmark uses MiniLM)."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

from explorec.errors import ExploRecError
from explorec.interests import (
    CooccurrenceTable,
    InterestTaxonomy,
    PopularNovel,
    TextBilinear,
    novel_transitions,
    novelty_metrics,
    taxonomy_from_dataset,
)
from explorec.interests import taxonomy as taxonomy_module


@pytest.fixture(scope="module")
def tax(ml100k):
    return taxonomy_from_dataset(ml100k, encoder="tfidf", n_fine=40, n_coarse=8)


@pytest.fixture(scope="module")
def transitions(ml100k, tax):
    return novel_transitions(ml100k.interactions, tax.fine)


def test_docstring_examples_run():
    result = doctest.testmod(taxonomy_module)
    assert result.attempted > 0 and result.failed == 0


def test_taxonomy_is_a_two_level_partition_with_descriptions(tax, ml100k):
    n = ml100k.interactions.n_items
    assert tax.fine.shape == (n,) and tax.fine.min() == 0 and tax.fine.max() == tax.n_fine - 1
    assert tax.n_fine == 40 and tax.n_coarse == 8
    assert (tax.sizes() > 0).all()  # no empty interest
    assert tax.coarse.shape == (n,) and set(np.unique(tax.coarse_of_fine)) == set(range(8))
    assert all(len(kw) > 0 for kw in tax.fine_keywords) and all(len(t) == 3 for t in tax.fine_titles)
    assert "genres" not in {w for kw in tax.fine_keywords for w in kw}  # template words are no interest
    assert tax.fine_embeddings.shape[0] == 40
    np.testing.assert_allclose(np.linalg.norm(tax.fine_embeddings, axis=1), 1.0, rtol=1e-5)
    prof = tax.profile(np.array([0, 1, 2, 2]))
    assert prof.shape == (40,) and prof.sum() == pytest.approx(1.0)
    # seeded: the same taxonomy again
    again = taxonomy_from_dataset(ml100k, encoder="tfidf", n_fine=40, n_coarse=8)
    np.testing.assert_array_equal(again.fine, tax.fine)


def test_sizes_are_chosen_by_a_measured_criterion(ml100k):
    sub = ml100k.interactions
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items, item_texts
    from explorec.interests import build_taxonomy

    texts = item_texts(sub.items, ml100k.catalog)[:400]
    vecs = encode_items(sub.items, ml100k.catalog, get_encoder("tfidf"))[:400]
    t = build_taxonomy([str(i) for i in range(400)], vecs, texts)
    sel = t.selection
    assert set(sel) == {"criterion", "fine", "coarse"}
    assert t.n_fine == max(map(int, sel["fine"]), key=lambda k: (sel["fine"][str(k)], -k))


def test_taxonomy_saves_and_loads_with_checksums(tax, tmp_path):
    path = tax.save(tmp_path / "tax")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "explorec-interests"
    assert all("sha256" in e or "parts" in e for e in manifest["arrays"].values())
    back = InterestTaxonomy.load(path)
    np.testing.assert_array_equal(back.fine, tax.fine)
    np.testing.assert_array_equal(back.item_ids, tax.item_ids)
    assert back.fine_keywords == tax.fine_keywords and back.selection == tax.selection
    (path / "fine.npy").write_bytes((path / "fine.npy").read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(ExploRecError, match=r"sha256|checksum"):
        InterestTaxonomy.load(path)


def test_novel_transitions_are_first_visits_after_the_history(transitions, tax):
    t = transitions
    assert len(t) > 10_000 and t.test.sum() == len(np.unique(t.user))  # one held out per user
    seen = t.seen.toarray()
    assert not seen[np.arange(len(t)), t.target].any()  # the target is new to the user
    rec = t.recent
    ok = rec >= 0
    assert seen[np.nonzero(ok)[0], rec[ok]].all()  # recent interests were engaged
    assert (seen.sum(axis=1) >= 1).all()
    items = t.recent_items  # the user's last items before the transition, most recent last
    assert items.shape == (len(t), 10) and (items[:, -1] >= 0).all()
    assert seen[np.nonzero(items >= 0)[0], tax.fine[items[items >= 0]]].all()
    for u in np.unique(t.user)[:20]:  # the held-out one is the user's last
        idx = np.flatnonzero(t.user == u)
        assert t.test[idx[-1]] and not t.test[idx[:-1]].any()


def test_constant_scores_score_like_random(transitions):
    test = transitions.subset(transitions.test)
    flat = novelty_metrics(np.zeros((len(test), test.n_clusters)), test)
    n_unseen = test.n_clusters - np.asarray(test.seen.sum(axis=1)).ravel()
    expected = float(np.mean(np.minimum(5, n_unseen) / n_unseen))
    assert flat["hit@5"] == pytest.approx(expected, abs=0.05)


def test_predictors_beat_the_popular_novel_interest(transitions, tax):
    train, test = transitions.subset(~transitions.test), transitions.subset(transitions.test)
    hit = {}
    for p in (PopularNovel(), CooccurrenceTable(), TextBilinear(epochs=25, with_table=True)):
        p.fit(train, tax)
        s = p.scores(test)
        assert s.shape == (len(test), tax.n_fine) and np.isfinite(s).all()
        hit[p.name] = novelty_metrics(s, test)["hit@5"]
    assert hit["cooccurrence"] > hit["popular-novel"]
    assert hit["text-bilinear+table"] > hit["popular-novel"]


def test_cli_build_show_evaluate(tmp_path):
    from typer.testing import CliRunner

    from explorec.cli.main import app

    r = CliRunner()
    res = r.invoke(app, ["interests", "build", "--dataset", "ml-100k", "--encoder", "tfidf", "--fine", "30",
                         "--coarse", "6", "--output", str(tmp_path / "tax"), "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "30 fine interests in 6 coarse ones" in res.output
    res = r.invoke(app, ["interests", "show", str(tmp_path / "tax"), "--json", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "t.json").read_text())["clusters"]) == 30
    res = r.invoke(app, ["interests", "evaluate", "--dataset", "ml-100k", "--taxonomy", str(tmp_path / "tax"),
                         "--predictors", "popular-novel,cooccurrence", "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "e.json").read_text())
    assert [row["predictor"] for row in out["results"]] == ["popular-novel", "cooccurrence"]
    assert out["results"][1]["hit_vs_table"] == 1.0
    res = r.invoke(app, ["interests", "evaluate", "--dataset", "ml-100k", "--taxonomy", str(tmp_path / "tax"),
                         "--predictors", "oracle"])
    assert res.exit_code != 0 and "unknown predictor 'oracle'" in res.output
