"""Models that read item text (content, two-tower, hybrid): fitting, artifacts, new items by text,
new users by history, explanations, and two-tower training. Small synthetic data and the TF-IDF
encoder keep them fast; the embedding cache is an empty per-module $EXPLOREC_HOME."""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from explorec.data import make_split
from explorec.data.synthetic import generate
from explorec.errors import DataError, ExploRecError
from explorec.models import BaseRecommender, create_model

TT = {"encoder": "tfidf", "epochs": 2, "batch_size": 256, "progress": False, "dim": 32, "hidden": 64}
PARAMS = {
    "content": ("content", {"encoder": "tfidf"}),
    "content-3": ("content", {"encoder": "tfidf", "n_interests": 3}),
    "two-tower": ("two-tower", TT),
    "hybrid": ("hybrid", {"cf": "ease", "text": "content", "text_params": {"encoder": "tfidf"}}),
    "ease": ("ease", {}),
    "itemknn": ("itemknn", {}),
    "pop": ("pop", {}),
    "userknn": ("userknn", {}),
}


@pytest.fixture(scope="module", autouse=True)
def _env(ml100k, tmp_path_factory):
    """An empty embedding cache for this module, and one torch thread (CPU is shared).

    Depends on ``ml100k`` so the real data is loaded from the real cache before the switch.
    """
    import torch

    from explorec.data.fetch import cache_home

    real_home = str(cache_home())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLOREC_HOME", str(tmp_path_factory.mktemp("text-models-home")))
        yield real_home
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    ds = generate(n_users=120, n_items=80, n_interactions=2500, seed=11)
    return ds, make_split(ds.interactions, "ratio", seed=2020)


@pytest.fixture(scope="module")
def fitted(data):
    """Fitted models by key, each fitted once per module on first use."""
    ds, split = data
    cache: dict[str, BaseRecommender] = {}

    def get(key: str) -> BaseRecommender:
        if key not in cache:
            name, params = PARAMS[key]
            cache[key] = create_model(name, **params).fit(split.train, catalog=ds.catalog, split=split)
        return cache[key]

    return get


def _history(split, u: int) -> np.ndarray:
    return split.train.matrix()[u].indices


# ------------------------------------------------------------------ protocol and artifacts
@pytest.mark.parametrize("key", ["content", "content-3", "two-tower", "hybrid"])
def test_fit_score_recommend_roundtrip(key, fitted, data, tmp_path):
    ds, split = data
    model = fitted(key)
    n_items = ds.interactions.n_items
    users = np.arange(15)
    scores = model.score(users)
    assert scores.shape == (15, n_items)
    assert np.isfinite(scores).all()
    assert model.score(users, items=np.array([2, 7, 9])).shape == (15, 3)
    items, vals = model.recommend(users, k=6)
    assert items.shape == vals.shape == (15, 6)
    assert np.all(np.diff(vals, axis=1) <= 1e-12)
    seen = split.train.matrix()[users].toarray().astype(bool)
    assert not np.take_along_axis(seen, items, axis=1).any()

    path = model.save(tmp_path / key)
    files = [p.name for p in path.iterdir()]
    assert "manifest.json" in files
    assert all(f.endswith(".npy") for f in files if f != "manifest.json"), files
    for f in path.glob("*.npy"):
        np.load(f, allow_pickle=False)  # no object arrays
    loaded = BaseRecommender.load(path)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.score(users), scores)
    np.testing.assert_array_equal(loaded.recommend(users, k=6)[0], items)


@pytest.mark.parametrize("key", ["content", "two-tower"])
def test_loaded_model_encodes_text_like_the_fitted_one(key, fitted, data, tmp_path):
    ds, split = data
    model = fitted(key)
    loaded = BaseRecommender.load(model.save(tmp_path / key))
    texts = ds.catalog.texts(split.train.items)[:3]
    np.testing.assert_allclose(model.encode_texts(texts), model.item_text_vectors_[:3], atol=1e-6)
    np.testing.assert_allclose(loaded.encode_texts(texts), loaded.item_text_vectors_[:3], atol=1e-6)


# ------------------------------------------------------------------ hybrid
def test_hybrid_weight_chosen_on_validation(fitted):
    model = fitted("hybrid")
    assert set(model.validation_) == {f"{w:g}" for w in model.weights}
    assert all(0.0 <= v <= 1.0 for v in model.validation_.values())
    assert model.weight_ in model.weights
    best = max(model.validation_.values())
    first_best = next(w for w in model.weights if model.validation_[f"{w:g}"] == best)
    assert model.weight_ == first_best


def test_hybrid_weight_zero_is_the_cf_ranking(data):
    ds, split = data
    users = np.arange(split.train.n_users)
    hybrid = create_model("hybrid", weight=0.0, text_params={"encoder": "tfidf"}).fit(
        split.train, catalog=ds.catalog, split=split)
    assert hybrid.weight_ == 0.0 and hybrid.validation_ == {}
    ease = create_model("ease").fit(split.train)
    np.testing.assert_array_equal(hybrid.recommend(users, k=10)[0], ease.recommend(users, k=10)[0])
    # and weight 1 is the content ranking
    pure_text = create_model("hybrid", weight=1.0, text_params={"encoder": "tfidf"}).fit(
        split.train, catalog=ds.catalog, split=split)
    content = pure_text.text_model_
    np.testing.assert_array_equal(pure_text.recommend(users, k=10)[0], content.recommend(users, k=10)[0])
    with pytest.raises(ValueError, match="text model"):
        hybrid.add_items(["x"], ["some text"])


# ------------------------------------------------------------------ new items by text
def test_content_new_item_by_text(data):
    ds, split = data
    model = create_model("content", encoder="tfidf").fit(split.train, catalog=ds.catalog, split=split)
    texts = ds.catalog.texts(split.train.items)
    n_old, u = model.n_items, 3
    before = model.score(np.arange(10))
    top = int(model.recommend(np.array([u]), k=1)[0][0, 0])

    new = model.add_items(["new-1"], [texts[top]])
    assert list(new) == [n_old]
    assert model.n_items == n_old + 1 and model.items_.ids[-1] == "new-1"
    assert model.items_.to_internal(["new-1"])[0] == n_old
    after = model.score(np.arange(10))
    assert after.shape == (10, n_old + 1)
    # other items unaffected (float32 products may differ in the last bit as the shape grows)
    np.testing.assert_allclose(after[:, :n_old], before, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(after[:, n_old], after[:, top], atol=1e-6)  # same text, same score
    recs = model.recommend(np.array([u]), k=3)[0][0]
    assert n_old in recs  # never interacted with, so rankable, and ranks with its twin

    # re-adding an existing id updates its vector instead of growing
    again = model.add_items(["new-1"], ["space alien robot galaxy future"])
    assert list(again) == [n_old] and model.n_items == n_old + 1
    np.testing.assert_array_equal(model.item_text_vectors_[n_old],
                                  model.encode_texts(["space alien robot galaxy future"])[0])
    assert not np.allclose(model.score(np.array([u]))[0, n_old], after[u, n_old])
    first_id = model.items_.ids[0]
    assert list(model.add_items([first_id], ["retitled"])) == [0] and model.n_items == n_old + 1
    with pytest.raises(ExploRecError, match="texts"):
        model.add_items(["a", "b"], ["only one"])


def test_two_tower_new_item_by_text(fitted, data):
    ds, split = data
    model = copy.deepcopy(fitted("two-tower"))
    texts = ds.catalog.texts(split.train.items)
    n_old = model.n_items
    users = np.arange(10)
    before = model.score(users)

    new = model.add_items(["new-1", "new-2"], [texts[5], texts[5]])
    assert list(new) == [n_old, n_old + 1] and model.n_items == n_old + 2
    after = model.score(users)
    assert after.shape == (10, n_old + 2) and np.isfinite(after).all()
    np.testing.assert_allclose(after[:, :n_old], before, atol=1e-6)
    np.testing.assert_allclose(after[:, n_old], after[:, n_old + 1], atol=1e-6)  # text only
    np.testing.assert_allclose(np.linalg.norm(model.item_vectors_[new], axis=1), 1.0, atol=1e-5)
    recs, vals = model.recommend(users[:1], k=model.n_items)
    assert {n_old, n_old + 1} <= set(recs[0][np.isfinite(vals[0])])  # rankable, never excluded

    old_vec = model.item_vectors_[n_old].copy()
    again = model.add_items(["new-1"], ["murder detective crime clue alibi"])
    assert list(again) == [n_old] and model.n_items == n_old + 2
    assert not np.allclose(model.item_vectors_[n_old], old_vec)
    ids, _ = model.recommend_for_history(["new-1", "new-2"], k=5)
    assert len(ids) == 5 and not {"new-1", "new-2"} & set(ids)


# ------------------------------------------------------------------ new users by history
@pytest.mark.parametrize("key", ["content", "two-tower", "ease", "itemknn", "pop"])
def test_recommend_for_history(key, fitted, data):
    _, split = data
    model = fitted(key)
    history = list(split.train.items.to_external(_history(split, 4)[:5]))
    ids, scores = model.recommend_for_history(history, k=7)
    assert len(ids) == len(scores) == 7
    assert len(set(ids)) == 7 and not set(ids) & set(history)
    assert all(i in model.items_ for i in ids)
    assert np.all(np.diff(scores) <= 1e-12) and np.isfinite(scores).all()
    if key != "content":  # content weights a known user's history by rating; a new one is unrated
        u = 4
        full = list(split.train.items.to_external(_history(split, u)))
        ids_u, _ = model.recommend_for_history(full, k=7)
        known = model.recommend(np.array([u]), k=7)[0][0]
        np.testing.assert_array_equal(ids_u, model.items_.to_external(known))
    with pytest.raises(DataError, match="no-such-item"):
        model.recommend_for_history(["no-such-item"], k=3)


def test_recommend_for_history_userknn_is_a_clear_error(fitted, data):
    _, split = data
    history = list(split.train.items.to_external(_history(split, 0)[:3]))
    with pytest.raises(ExploRecError, match=r"userknn.*without retraining"):
        fitted("userknn").recommend_for_history(history, k=5)


# ------------------------------------------------------------------ explanations
@pytest.mark.parametrize("key", ["ease", "itemknn", "content", "two-tower", "hybrid"])
def test_explain(key, fitted, data):
    _, split = data
    model = fitted(key)
    users = np.array([0, 1, 5, 9])
    items, _ = model.recommend(users, k=4)
    why = model.explain(users, items, top=3)
    assert len(why) == len(users)
    n_pairs = 0
    for row, u in enumerate(users):
        hist = set(_history(split, u).tolist())
        assert hist and len(why[row]) == 4
        for pairs in why[row]:
            assert len(pairs) <= 3
            weights = [w for _, w in pairs]
            assert weights == sorted(weights, reverse=True)
            assert all(w > 0 for w in weights)
            assert all(isinstance(h, int) and h in hist for h, _ in pairs)
            assert len({h for h, _ in pairs}) == len(pairs)
            n_pairs += len(pairs)
    assert n_pairs > 0
    if key in ("ease", "content"):  # exact additive terms: the top pair is the largest term
        u, i = int(users[0]), int(items[0, 0])
        hist = _history(split, u)
        if key == "ease":
            terms = model.weights_[hist, i]
        else:
            V = model.item_text_vectors_
            terms = V[hist] @ V[i]
        h, w = why[0][0][0]
        assert h == int(hist[np.argmax(terms)]) and w == pytest.approx(float(terms.max()), rel=1e-6)


def test_cli_recommend_explain(_env, ml100k, tmp_path):
    """Without --split, recommend fits on all the data; ``because`` is JSON: [{item, weight}]."""
    out = tmp_path / "recs.csv"
    env = {**os.environ, "EXPLOREC_HOME": _env}
    proc = subprocess.run([sys.executable, "-m", "explorec.cli.main", "recommend", "--model", "ease",
                           "--k", "3", "--users", "196", "--explain", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    inter = ml100k.interactions
    u = inter.users.to_internal(["196"])[0]
    hist = set(inter.items.to_external(inter.matrix()[u].indices))
    n_pairs = 0
    for r in rows:
        assert r["user"] == "196" and r["item"] not in hist
        pairs = json.loads(r["because"])
        assert 1 <= len(pairs) <= 3
        weights = [p["weight"] for p in pairs]
        assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
        assert all(p["item"] in hist for p in pairs), (pairs, r)
        n_pairs += len(pairs)
    assert n_pairs >= 3


# ------------------------------------------------------------------ two-tower training
def test_two_tower_is_reproducible_and_logs_history(fitted, data):
    ds, split = data
    first = fitted("two-tower")
    again = create_model("two-tower", **TT).fit(split.train, catalog=ds.catalog, split=split)
    users = np.arange(split.train.n_users)
    np.testing.assert_array_equal(again.score(users), first.score(users))
    res = first.train_result_
    assert res.epochs_run == len(res.history) <= TT["epochs"]
    assert [h["epoch"] for h in res.history] == list(range(1, res.epochs_run + 1))
    for h in res.history:
        assert 0.0 <= h["valid_ndcg@10"] <= 1.0 and np.isfinite(h["loss"])
    assert 1 <= res.best_epoch <= res.epochs_run
    ndcg = [h["valid_ndcg@10"] for h in res.history]
    assert res.best_metric == ndcg[res.best_epoch - 1]
    assert max(ndcg) <= res.best_metric + 1e-4  # later gains under min_delta do not count
    other = create_model("two-tower", **{**TT, "seed": 7}).fit(split.train, catalog=ds.catalog,
                                                                 split=split)
    assert not np.allclose(other.score(users), first.score(users))


def test_two_tower_early_stopping_restores_best():
    from explorec.evaluate.protocol import evaluate_model

    tiny = generate(n_users=40, n_items=30, n_interactions=400, seed=4)
    split = make_split(tiny.interactions, "ratio", seed=2020)
    model = create_model("two-tower", **{**TT, "epochs": 20, "patience": 1}).fit(
        split.train, catalog=tiny.catalog, split=split)
    res = model.train_result_
    assert res.epochs_run <= 20 and res.best_epoch >= 1
    ndcg = [h["valid_ndcg@10"] for h in res.history]
    assert res.best_metric == ndcg[res.best_epoch - 1]
    assert max(ndcg) <= res.best_metric + 1e-4
    if res.epochs_run < 20:  # patience 1: stopped right after the first epoch without progress
        assert res.best_epoch == res.epochs_run - 1
        assert ndcg[-1] <= res.best_metric + 1e-4
    # the best epoch's weights were restored
    valid = evaluate_model(model, split, part="valid", ks=(10,), metrics=("ndcg",)).metrics["ndcg@10"]
    assert valid == pytest.approx(res.best_metric, abs=1e-9)


def test_train_loop_stops_on_patience_and_restores_best_weights():
    import torch

    from explorec.train import TrainConfig, train

    net = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    snapshots = []

    def validate() -> float:
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
        return next(scripted)

    res = train(net, lambda epoch, rng: [(x, y)],
                lambda b: torch.nn.functional.mse_loss(net(b[0]), b[1]), validate,
                TrainConfig(epochs=6, patience=2, lr=0.1, progress=False), n_batches=1)
    assert res.epochs_run == 4  # 0.2 and 0.25 do not beat 0.3: two bad epochs
    assert res.best_epoch == 2 and res.best_metric == 0.3
    assert [h["valid_ndcg@10"] for h in res.history] == [0.1, 0.3, 0.2, 0.25]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k], rtol=0, atol=0)
    assert not torch.equal(snapshots[1]["weight"], snapshots[3]["weight"])


def test_two_tower_large_data_path_draws_histories_from_sparse_rows(monkeypatch):
    """Above a users x longest-history size, training never pads every user to the longest
    history (that ran out of memory at 2M events) and the item tower runs over a batch's
    distinct items only; the model trains the same way otherwise."""
    import scipy.sparse as sp
    import torch

    from explorec.models import two_tower

    M = sp.csr_matrix(np.array([[0, 1, 1, 1, 0, 1], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    gen = torch.Generator().manual_seed(1)
    rows = two_tower._random_rows(M, 3, gen)
    assert rows.shape == (3, 3)
    assert set(rows[0]) <= {1, 2, 3, 5} and len(set(rows[0])) == 3
    assert rows[1, 0] == 0 and rows[2].tolist() == [0, 0, 0]
    first, lengths = two_tower._padded_rows(M, keep_first=2)
    assert first[0].tolist() == [1, 2] and lengths.tolist() == [2, 1, 0]

    hist = torch.tensor([[4, 7, 7, 9], [2, 0, 5, 5]])
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    pos = torch.tensor([3, 4])
    table, hist_idx, pos_idx = two_tower._batch_table(hist, mask, pos)
    assert sorted(table.tolist()) == [2, 3, 4, 5, 7]  # 9 and 0 are only in masked slots
    assert (table[hist_idx][mask] == hist[mask]).all() and (table[pos_idx] == pos).all()

    # the shuffle is lexsort's order (rows in turn, each by its keys), from one argsort
    big = sp.random(300, 50, density=0.3, format="csr", random_state=3)
    gen, again = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    keys = torch.rand(big.nnz, generator=again).numpy()
    row = np.repeat(np.arange(300), np.diff(big.indptr))
    order = np.lexsort((keys, row))
    expect = np.zeros((300, 50), np.int64)
    rank = np.arange(big.nnz) - big.indptr[row]
    expect[row, rank] = big.indices[order]
    np.testing.assert_array_equal(two_tower._random_rows(big, 50, gen), expect)

    monkeypatch.setattr(two_tower, "_PADDED_CELLS", 10)
    monkeypatch.setattr(two_tower, "_FULL_TOWER_ITEMS", 10)
    ds = generate(n_users=120, n_items=90, n_interactions=1500, seed=4)
    m = create_model("two-tower", encoder="tfidf", epochs=1, progress=False, batch_size=128)
    m.fit(ds.interactions, catalog=ds.catalog)
    assert np.isfinite(m.score(np.arange(5))).all()


def test_two_tower_large_catalog_steps_touch_only_the_batch_rows(monkeypatch):
    """Above the full-tower catalog size the item ID tables train with sparse gradients
    (SparseAdam): a step changes only the ID rows its batch used, so a step's cost does not
    grow with the catalog; weight decay still reaches those rows (through the loss)."""
    import torch

    from explorec.models import two_tower

    monkeypatch.setattr(two_tower, "_FULL_TOWER_ITEMS", 10)
    built = []
    real = two_tower._build_module

    def spy(*a, **kw):
        net = real(*a, **kw)
        built.append((kw.get("sparse"), {k: v.detach().clone() for k, v in net.state_dict().items()}))
        return net

    monkeypatch.setattr(two_tower, "_build_module", spy)
    ds = generate(n_users=200, n_items=400, n_interactions=3000, seed=4)
    m = create_model("two-tower", encoder="tfidf", epochs=1, progress=False, batch_size=16,
                     steps_per_epoch=1, id_dropout=0.0)
    m.fit(ds.interactions, catalog=ds.catalog)
    sparse, before = built[0]
    assert sparse is True and m.net_.item_id.sparse and m.net_.id_bias.sparse
    after = m.net_.item_id.weight.detach()
    changed = (after != before["item_id.weight"]).any(1)
    # one batch of 16 targets and their histories: some rows, far from all of them
    assert 0 < int(changed.sum()) < 200
    assert torch.equal(after[~changed], before["item_id.weight"][~changed])
    assert not torch.equal(m.net_.item_mlp[0].weight, before["item_mlp.0.weight"])  # dense: Adam
    h = m.train_result_.history[0]
    assert h["steps"] == 1 and h["step_seconds"] > 0 and h["setup_seconds"] >= 0
    # the full loss scores every item each step: dense tables there
    built.clear()
    create_model("two-tower", encoder="tfidf", epochs=1, progress=False, loss="full",
                 steps_per_epoch=1).fit(ds.interactions, catalog=ds.catalog)
    assert built[0][0] is False


def test_steps_per_epoch_bounds_each_epoch():
    """``steps_per_epoch``: each epoch runs that many batches (then validates)."""
    import torch

    from explorec.train import TrainConfig, train

    net = torch.nn.Linear(2, 1)
    seen: list[int] = []

    def batches(epoch, rng):
        for i in range(10):
            yield epoch, i

    def step(batch):
        seen.append(batch[0])
        return net(torch.ones(1, 2)).sum() ** 2

    res = train(net, batches, step, lambda: -float(len(seen)),
                TrainConfig(epochs=3, patience=5, steps_per_epoch=4, progress=False), n_batches=10)
    assert res.epochs_run == 3 and seen == [0] * 4 + [1] * 4 + [2] * 4
    assert [h["steps"] for h in res.history] == [4, 4, 4]
    seen.clear()
    train(net, batches, step, lambda: 0.0, TrainConfig(epochs=1, progress=False), n_batches=10)
    assert len(seen) == 10
