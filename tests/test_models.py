"""Recommender specifics: registry errors, corrupt artifacts, parameters, seeds, EASE's closed
form, torch-free classic models, declared capabilities. The protocol itself (fit, score,
recommend, similar_items, save/load) is checked for every registered model by
tests/test_conformance.py."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.data.synthetic import generate
from explorec.errors import ArtifactError, ChecksumError, UnknownNameError
from explorec.models import BaseRecommender, create_model
from explorec.models.base import NotFittedError


@pytest.fixture(scope="module")
def small():
    return generate(n_users=120, n_items=80, n_interactions=2500, seed=7).interactions


def test_registry_errors_name_the_problem():
    with pytest.raises(UnknownNameError, match="known"):
        create_model("nope")
    with pytest.raises(ValueError, match="ease"):
        create_model("ease", bogus=1)


def test_corrupt_artifact_is_rejected(small, tmp_path):
    path = create_model("ease").fit(small).save(tmp_path / "ease")
    f = path / "weights_.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="weights_"):
        BaseRecommender.load(path)
    with pytest.raises(ArtifactError, match="no manifest"):
        BaseRecommender.load(tmp_path / "missing")


def test_not_fitted_and_bad_user(small):
    with pytest.raises(NotFittedError):
        create_model("ease").score(np.array([0]))
    model = create_model("pop").fit(small)
    with pytest.raises(Exception, match="out of range"):
        model.score(np.array([10_000]))


def test_params_are_sklearn_style():
    m = create_model("itemknn", k=7)
    assert m.get_params()["k"] == 7
    m.set_params(shrink=3.0)
    assert m.shrink == 3.0
    with pytest.raises(ValueError, match="no parameter"):
        m.set_params(zzz=1)


def test_random_is_seeded(small):
    a = create_model("random", seed=1).fit(small).score(np.arange(5))
    b = create_model("random", seed=1).fit(small).score(np.arange(5))
    c = create_model("random", seed=2).fit(small).score(np.arange(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0 <= a.min() and a.max() < 1


def test_ease_matches_closed_form(small):
    X = small.matrix().toarray().astype(np.float64)
    reg = 10.0
    G = X.T @ X + reg * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = np.eye(X.shape[1]) - P / np.diag(P)
    np.fill_diagonal(B, 0)
    model = create_model("ease", reg=reg).fit(small)
    np.testing.assert_allclose(model.weights_, B, atol=1e-5)


def test_classic_models_do_not_import_torch():
    """`import explorec` and the classic models work without torch (it is the `deep` extra)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import explorec, explorec.data, explorec.evaluate, explorec.cli.main\n"
        "from explorec.data.synthetic import generate\n"
        "from explorec.models import create_model, model_names\n"
        "inter = generate(n_users=30, n_items=20, n_interactions=200).interactions\n"
        "for n in ['random', 'pop', 'itemknn', 'userknn', 'ease']:\n"
        "    create_model(n).fit(inter).recommend([0], k=3)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bpr_large_tables_train_with_sparse_gradients(monkeypatch):
    """Above SPARSE_EMBEDDING_ROWS the embedding tables get sparse gradients (SparseAdam, a
    step touches only the batch's rows); the model still learns (beats popularity's random
    order: NDCG well above random) and the loss falls."""
    from explorec.data import make_split
    from explorec.data.synthetic import generate
    from explorec.evaluate import evaluate_model
    from explorec.models import bpr as bpr_module
    from explorec.models.registry import create_model

    monkeypatch.setattr(bpr_module, "SPARSE_EMBEDDING_ROWS", 10)
    data = generate(n_users=400, n_items=300, n_interactions=12_000, seed=9).interactions
    split = make_split(data, "ratio", seed=2020)
    m = create_model("bpr", epochs=4, progress=False).fit(split.train)
    assert m.net_.user.sparse and m.net_.item.sparse
    losses = [h["loss"] for h in m.train_result_.history]
    assert losses[-1] < losses[0]
    rand = evaluate_model(create_model("random").fit(split.train), split, ks=(10,),
                          metrics=("ndcg",)).metrics["ndcg@10"]
    got = evaluate_model(m, split, ks=(10,), metrics=("ndcg",)).metrics["ndcg@10"]
    assert got > 2 * rand


def test_history_scoring_is_a_declared_capability():
    """``scores_history`` is set on every model class from what it implements; the error for
    a model without it lists the registered models that have it (built, not hand-kept)."""
    from explorec.errors import ExploRecError
    from explorec.models.registry import history_scoring_models, model_class, model_names

    for name in model_names():
        assert isinstance(model_class(name).scores_history, bool), name
    able = history_scoring_models()
    assert {"pop", "ease", "itemknn", "content", "two-tower", "ials", "sasrec"} <= set(able)
    assert "userknn" not in able and "bpr" not in able
    data = generate(n_users=60, n_items=40, n_interactions=600, seed=2).interactions
    m = create_model("userknn").fit(data)
    assert not m.can_score_history()
    with pytest.raises(ExploRecError, match="use " + ", ".join(able)):
        m.score_history(m.user_items_[:1])
    assert create_model("ease").fit(data).can_score_history()


# ------------------------------------------------------------------ validation passed to fit
@pytest.fixture(scope="module")
def tiny_split():
    from explorec.data import make_split

    ds = generate(n_users=60, n_items=45, n_interactions=900, seed=5)
    return ds, make_split(ds.interactions, "ratio", seed=2020)


def test_fit_validate_callable_drives_early_stopping(tiny_split):
    """``fit(..., validate=f)``: the training loop scores each epoch with ``f(model)`` (the
    model itself, as trained so far), stops after ``patience`` epochs without progress and
    keeps the best epoch; ``f`` takes the place of the split's own validation NDCG@10."""
    _, split = tiny_split
    for with_split in (True, False):
        scripted = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
        seen = []

        def validate(model, scripted=scripted, seen=seen):
            seen.append(model)
            return next(scripted)

        m = create_model("bpr", epochs=6, patience=2, progress=False)
        m.fit(split.train, split=split if with_split else None, validate=validate)
        res = m.train_result_
        assert [h["valid_ndcg@10"] for h in res.history] == [0.1, 0.3, 0.2, 0.25]
        assert res.epochs_run == 4 and res.best_epoch == 2 and res.best_metric == 0.3
        assert all(s is m for s in seen) and len(seen) == 4


def test_fit_validate_must_be_callable(tiny_split):
    _, split = tiny_split
    with pytest.raises(TypeError, match="validate must be a callable"):
        create_model("ease").fit(split.train, validate=0.5)


def test_wrappers_pass_validate_to_the_models_inside(tiny_split):
    """gan-augment validates its CFGAN and its base model with ``validate``; a hybrid its
    parts (its blend weight is still chosen on the split's validation NDCG@10)."""
    ds, split = tiny_split
    names = []

    def validate(model):
        names.append(model.name)
        return 0.5

    quick = {"epochs": 2, "progress": False}
    create_model("gan-augment", base="bpr", base_params=quick, cfgan_params=quick).fit(
        split.train, split=split, validate=validate)
    assert set(names) == {"cfgan", "bpr"}
    names.clear()
    h = create_model("hybrid", cf="bpr", cf_params=quick, text_params={"encoder": "tfidf"})
    h.fit(split.train, catalog=ds.catalog, split=split, validate=validate)
    assert set(names) == {"bpr"} and set(h.validation_) == {f"{w:g}" for w in h.weights}


def test_models_validate_without_the_evaluation_layer():
    """Early stopping on a split (the default validator) and a hybrid's blend weight never
    import explorec.evaluate: the models sit below it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from explorec.data import make_split\n"
        "from explorec.data.synthetic import generate\n"
        "from explorec.models import create_model\n"
        "ds = generate(n_users=40, n_items=30, n_interactions=500, seed=1)\n"
        "split = make_split(ds.interactions, 'ratio', seed=2020)\n"
        "m = create_model('bpr', epochs=2, progress=False).fit(split.train, split=split)\n"
        "assert 0 < m.train_result_.best_metric <= 1, m.train_result_\n"
        "h = create_model('hybrid', text_params={'encoder': 'tfidf'})\n"
        "h.fit(split.train, catalog=ds.catalog, split=split)\n"
        "assert h.validation_\n"
        "print(sorted(n for n in sys.modules if n.startswith('explorec.evaluate')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
