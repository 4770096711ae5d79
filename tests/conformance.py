"""Conformance machinery: the contract every registered model and policy must keep.

LensKit's per-component style: ``tests/test_conformance.py`` declares one small class per
registered name (``class TestEASE(ModelTests): name = "ease"; params = {...}``), and the
tests here run for each of them. A meta-test there fails when a registered name has no class,
so a new model or policy cannot miss the suite.

Capabilities are read from what the classes declare (``scores_history`` /
``can_score_history()``, ``exact_factor_scores``, ``factor_vectors()``, ``history_vectors()``,
the :class:`~explorec.models.base.TextItems` and
:class:`~explorec.models.base.VectorRepresentation` protocols; a policy's ``learns``,
``deterministic``, ``needs_item_text`` and ``uses_two_tower``); the few facts a class cannot
declare are class attributes of the conformance class (``additive``, ``history_is_score``).

Data: the synthetic generator's small real-shaped dataset (power-law popularity, taste
clusters, ratings, timestamps, item text), 120 users x 80 items, shared by every class.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.errors import ExploRecError

N_USERS, N_ITEMS, N_INTERACTIONS, DATA_SEED = 120, 80, 2500, 7
N_CHECK = 12  # users checked in the per-user contracts
K = 5


@functools.lru_cache(maxsize=1)
def small_data() -> tuple[Any, Any]:
    """(dataset, ratio split) shared by every conformance class (never mutated)."""
    from explorec.data import make_split
    from explorec.data.synthetic import generate

    ds = generate(n_users=N_USERS, n_items=N_ITEMS, n_interactions=N_INTERACTIONS, seed=DATA_SEED)
    return ds, make_split(ds.interactions, "ratio", seed=2020)


def _quiet_env(tmp_path_factory: Any) -> Any:
    """An empty embedding cache ($EXPLOREC_HOME) and one torch thread (the CPU is shared; on 2
    cores one thread is also the faster setting for these small nets)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is the `deep` extra
        torch = None
    threads = torch.get_num_threads() if torch is not None else 0
    if torch is not None:
        torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPLOREC_HOME", str(tmp_path_factory.mktemp("conformance-home")))
        yield
    if torch is not None:
        torch.set_num_threads(threads)


def _rows(X: sp.csr_matrix, users: np.ndarray) -> list[set[int]]:
    return [set(X[u].indices.tolist()) for u in users]


# ====================================================================== models
class ModelTests:
    """The model contract. Subclasses set ``name`` (a registry name) and ``params`` (small
    settings that keep the fit to a second or two on the shared data)."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    #: scores are an exact sum over history items: ``contributions(u, hist, i).sum() == score``
    additive: ClassVar[bool] = False
    #: scores owe nothing to the history (random, pop): every contribution is 0
    history_free: ClassVar[bool] = False
    #: ``score_history`` of a training user's row equals ``score`` of that user
    history_is_score: ClassVar[bool] = False
    #: tolerance of the score checks that go through float32 factor products or torch
    atol: ClassVar[float] = 1e-5

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _env(cls, tmp_path_factory):
        yield from _quiet_env(tmp_path_factory)

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        return small_data()

    @classmethod
    def create(cls) -> Any:
        from explorec.models import create_model

        return create_model(cls.name, **copy.deepcopy(cls.params))

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, data):
        ds, split = data
        return cls.create().fit(split.train, catalog=ds.catalog, split=split)

    @pytest.fixture(scope="class")
    @classmethod
    def users(cls, model):
        return np.arange(min(N_CHECK, model.n_users))

    # ------------------------------------------------------------------ score
    def test_score_contract(self, model, users, data):
        from explorec.models import Recommender

        assert isinstance(model, Recommender)
        assert model.name == self.name
        assert model.n_items == data[1].train.n_items
        s = model.score(users)
        assert s.shape == (len(users), model.n_items)
        assert np.issubdtype(s.dtype, np.floating), s.dtype
        assert np.isfinite(s).all()
        cols = np.array([3, 0, 7])
        np.testing.assert_array_equal(model.score(users, items=cols), s[:, cols])
        # row order is free: the same scores up to float32 rounding (a BLAS kernel may sum a
        # row in another order when the rows arrive in another order; seen on AMD EPYC)
        np.testing.assert_allclose(model.score(users[::-1]), s[::-1], rtol=1e-6,
                                   atol=1e-6 * float(np.abs(s).max()))
        with pytest.raises(ExploRecError, match="out of range"):
            model.score(np.array([model.n_users]))
        assert np.isfinite(model.fit_seconds_) and model.fit_seconds_ > 0

    # ------------------------------------------------------------------ recommend
    def test_recommend_contract(self, model, users):
        from explorec.ranking import top_items

        items, vals = model.recommend(users, k=K)
        assert items.shape == vals.shape == (len(users), K)
        assert items.dtype.kind == "i" and (items >= 0).all() and (items < model.n_items).all()
        assert np.all(np.diff(vals, axis=1) <= 1e-9)  # best first
        seen = _rows(model.training_history(), users)
        for row in range(len(users)):
            assert len(set(items[row])) == K  # no repeats
            assert not set(items[row]) & seen[row], "a training item was recommended"
        s = model.score(users)
        np.testing.assert_allclose(vals, np.take_along_axis(s, items, axis=1), rtol=1e-6,
                                   atol=1e-6)
        # every fast path (sparse scores, factor top-k, pop's global list) gives the lists of
        # the dense reference under the one tie rule
        ref, _ = top_items(s, K, rows=users, exclude=model.training_history()[users], warn=False)
        np.testing.assert_array_equal(items, ref)
        # and for the lightest users, whose short exclusion lists let the fast paths (pop's
        # global list, sparse rows with k positive scores) take over
        X = model.training_history()
        light = np.sort(np.argsort(np.diff(X.indptr), kind="stable")[:N_CHECK])
        ref, _ = top_items(model.score(light), K, rows=light, exclude=X[light], warn=False)
        np.testing.assert_array_equal(model.recommend(light, k=K)[0], ref)
        # exclude_seen=False may return training items, and lists the plain top-k
        ref_all, _ = top_items(s, K, rows=users, warn=False)
        np.testing.assert_array_equal(model.recommend(users, k=K, exclude_seen=False)[0], ref_all)
        # candidates restrict the lists
        cand = np.arange(0, model.n_items, 2)
        ci, _ = model.recommend(users, k=3, candidates=cand)
        assert np.isin(ci[ci >= 0], cand).all()

    def test_recommend_k_larger_than_catalog(self, model, users):
        from explorec.ranking import ShortListWarning

        X = model.training_history()
        with pytest.warns(ShortListWarning):
            items, vals = model.recommend(users, k=model.n_items + 10)
        unseen = [set(range(model.n_items)) - h for h in _rows(X, users)]
        assert items.shape[1] == max(len(u) for u in unseen)
        for row in range(len(users)):
            real = items[row][items[row] >= 0]
            assert len(real) == len(unseen[row]) and set(real.tolist()) == unseen[row]
            assert (items[row][len(real):] == -1).all()
            assert np.isneginf(vals[row][len(real):]).all() and np.isfinite(vals[row][:len(real)]).all()

    def make_constant(self, model: Any) -> Any:
        """A copy of the fitted model whose scores are constant, through the model's own code
        paths where it has fast ones (factor top-k, sparse scores). Classes whose ``recommend``
        bypasses ``_score`` otherwise override this (pop)."""
        from explorec.models.base import BaseRecommender

        m = copy.copy(model)  # a shallow copy: the patches below rebind, never mutate
        n_items = m.n_items
        if m.exact_factor_scores:
            U = np.ones((m.n_users, 4), np.float32)
            V = np.ones((n_items, 4), np.float32)
            m.factor_vectors = lambda: (U, V)
            m._score = lambda users: np.full((len(users), n_items), 4.0, np.float32)
            return m
        m._score = lambda users: np.zeros((len(users), n_items))
        if type(m)._sparse_scores is not BaseRecommender._sparse_scores:
            m._sparse_scores = lambda users: sp.csr_matrix((len(users), n_items))
        return m

    def test_constant_scores_rank_like_random(self, model):
        """The tie rule: equal scores are ordered by seeded per-(user, item) keys, so a model
        that knows nothing ranks in a uniformly random, user-specific order (never by id)."""
        from explorec.ranking import top_items

        const = self.make_constant(model)
        users = np.arange(const.n_users)
        items, vals = const.recommend(users, k=K)
        assert np.unique(vals).size == 1, "make_constant did not make the scores constant"
        X = const.training_history()
        ref, _ = top_items(np.zeros((len(users), const.n_items)), K, rows=users, exclude=X,
                           warn=False)
        np.testing.assert_array_equal(items, ref)
        assert len({tuple(r) for r in items}) > 0.9 * len(users)  # user-specific
        assert np.bincount(items[:, 0], minlength=const.n_items).max() <= 0.1 * len(users)
        again, _ = const.recommend(users, k=K)
        np.testing.assert_array_equal(items, again)  # seeded
        other, _ = const.recommend(users, k=K, seed=1)
        assert not np.array_equal(items, other)  # another seed, another order

    # ------------------------------------------------------------------ artifacts
    def test_save_load_round_trip(self, model, users, tmp_path, data):
        from explorec.models import BaseRecommender

        path = model.save(tmp_path / self.name)
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["kind"] == "recommender" and manifest["model"] == self.name
        assert all("sha256" in e or "parts" in e for e in manifest["arrays"].values())
        files = [p for p in path.rglob("*") if p.is_file()]
        assert all(p.name == "manifest.json" or p.suffix == ".npy" for p in files), files
        for f in files:
            if f.suffix == ".npy":
                np.load(f, allow_pickle=False)  # no pickles, no object arrays
        loaded = BaseRecommender.load(path)
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        assert list(loaded.items_.ids) == list(data[1].train.items.ids)
        assert list(loaded.users_.ids) == list(model.users_.ids)
        np.testing.assert_array_equal(loaded.score(users), model.score(users))
        np.testing.assert_array_equal(loaded.recommend(users, k=K)[0], model.recommend(users, k=K)[0])
        if model.can_score_history():
            h = model.training_history()[users]
            np.testing.assert_array_equal(loaded.score_history(h), model.score_history(h))

    # ------------------------------------------------------------------ explanations
    def test_contributions_and_explain(self, model, users):
        X = model.training_history()
        items, _ = model.recommend(users, k=K)
        s = model.score(users)
        for row, u in enumerate(users[:4]):
            hist = X[u].indices
            c = model.contributions(int(u), hist, items[row])
            assert c.shape == (K, len(hist)) and np.isfinite(c).all()
            if self.history_free:
                assert (c == 0).all()
            if self.additive:
                np.testing.assert_allclose(c.sum(axis=1), s[row, items[row]], rtol=1e-4,
                                           atol=1e-5)
        out = model.explain(users, items, top=3)
        assert len(out) == len(users)
        for row, u in enumerate(users):
            hist = set(X[u].indices.tolist())
            assert len(out[row]) == K
            for pairs in out[row]:
                assert len(pairs) <= 3
                assert all(h in hist and w > 0 for h, w in pairs)
                assert [w for _, w in pairs] == sorted((w for _, w in pairs), reverse=True)
                if self.history_free:
                    assert pairs == []

    def test_similar_items_contract(self, model):
        q = np.array([0, 1, 5])
        sim, vals = model.similar_items(q, k=4)
        assert sim.shape == vals.shape == (3, 4)
        for row, i in enumerate(q):
            assert i not in sim[row] and len(set(sim[row])) == 4
        assert np.all(np.diff(vals, axis=1) <= 1e-9)

    # ------------------------------------------------------------------ capabilities
    def test_declared_capabilities(self, model, users):
        from explorec.models.base import TextItems, VectorRepresentation, factor_scores
        from explorec.models.registry import history_scoring_models

        klass = type(model)
        assert isinstance(klass.scores_history, bool)
        able = model.can_score_history()
        assert isinstance(able, bool)
        if able:  # an instance can only do what its class declares
            assert klass.scores_history and self.name in history_scoring_models()
        h = model.training_history()[users]
        if able:
            sh = model.score_history(h)
            assert sh.shape == (len(users), model.n_items) and np.isfinite(sh).all()
            empty = model.score_history(sp.csr_matrix((2, model.n_items), dtype=np.float32))
            np.testing.assert_array_equal(empty, np.tile(model.item_popularity(), (2, 1)))
            # the columns of some items only (the service's pool of a large catalog): the same
            # values, an empty row included; an item index out of range is named
            cols = np.random.default_rng(0).choice(model.n_items, min(7, model.n_items), replace=False)
            mixed = sp.vstack([h, sp.csr_matrix((1, model.n_items), dtype=np.float32)]).tocsr()
            part = model.score_history(mixed, items=cols)
            assert part.shape == (len(users) + 1, len(cols))
            np.testing.assert_allclose(part, model.score_history(mixed)[:, cols], rtol=1e-5,
                                       atol=self.atol)
            with pytest.raises(ExploRecError, match=f"item index {model.n_items} out of range"):
                model.score_history(h, items=np.array([0, model.n_items]))
            if self.history_is_score:
                np.testing.assert_allclose(sh, model.score(users), rtol=1e-5, atol=self.atol)
            ids = list(model.item_ids()[h[0].indices[:3]])
            rec, _ = model.recommend_for_history(ids, k=K)
            assert len(rec) == K and not set(rec) & set(ids)
        else:
            assert not self.history_is_score
            with pytest.raises(ExploRecError, match="cannot score a new user's history"):
                model.score_history(h)
        fv = model.factor_vectors()
        if klass.exact_factor_scores:
            assert fv is not None, "exact_factor_scores needs factor_vectors()"
        if fv is not None:
            U, V = fv
            assert U.shape[0] == model.n_users and V.shape[0] == model.n_items
            assert U.shape[1] == V.shape[1]
            if klass.exact_factor_scores:  # bit-identical, whatever BLAS does
                V64T = np.asarray(V, np.float64).T
                np.testing.assert_array_equal(model.score(users), factor_scores(U, V64T, users))
            else:
                np.testing.assert_allclose(U[users] @ V.T, model.score(users), rtol=1e-4,
                                           atol=self.atol)
        hv = model.history_vectors(h)
        if hv is not None:
            assert fv is not None and able, "history_vectors needs factor_vectors and histories"
            np.testing.assert_allclose(hv @ fv[1].T, model.score_history(h), rtol=1e-4,
                                       atol=1e-4)
        if isinstance(model, TextItems) and model.text_item_vectors() is not None:
            tv = model.text_item_vectors()
            assert tv.shape[0] == model.n_items and np.isfinite(tv).all()
            enc, state = model.text_encoder()
            assert isinstance(enc, str) and all(isinstance(v, np.ndarray) for v in state.values())
        if isinstance(model, VectorRepresentation):
            iv, ib = model.item_representation()
            uv = model.user_vectors(model.ordered_history()[users])
            np.testing.assert_allclose(uv @ iv.T + ib[None, :], model.score(users), rtol=1e-4,
                                       atol=1e-4)

    # ------------------------------------------------------------------ serving
    def test_serve_rank_without_store(self, data, tmp_path):
        """A greedy service artifact of this model ranks like the model: a known user gets
        the top of the base scores the engine uses (its training row, through score_history
        when the model folds histories in), a new user the cold-start list."""
        from explorec.ranking import external_key, top_items
        from explorec.serve.artifact import load_service_artifact, train_artifact
        from explorec.serve.engine import Engine

        ds, _ = data
        out = train_artifact(tmp_path / "art", dataset=ds, model=self.name, policy="greedy",
                             encoder="tfidf", vector_dim=8, model_params=copy.deepcopy(self.params))
        art = load_service_artifact(out)
        m = art.model
        eng = Engine(art, None)
        u = 3
        user = str(m.user_ids()[u])
        got = eng.rank(user, k=K)
        row = m.training_history()[[u]]
        row = sp.csr_matrix((np.ones(row.nnz, np.float32), row.indices, [0, row.nnz]),
                            shape=row.shape)
        base = m.score_history(row) if m.can_score_history() else m.score(np.array([u]))
        want, _ = top_items(np.nan_to_num(np.asarray(base, np.float64)), K, rows=np.array([u]),
                            exclude=row)
        assert [i.item for i in got.items] == list(m.item_ids()[want[0]])
        assert all(i.propensity == 1.0 for i in got.items)
        hist = set(m.item_ids()[row.indices])
        assert all(e["item"] in hist for i in got.items for e in i.explanation)
        new = eng.rank("conformance-new-user", k=K)
        tie_user = (1 << 62) + external_key("conformance-new-user")
        cold = m.item_popularity() if m.can_score_history() else np.zeros(m.n_items)
        want, _ = top_items(cold[None, :], K, rows=np.array([tie_user]))
        assert [i.item for i in new.items] == list(m.item_ids()[want[0]])

    # ------------------------------------------------------------------ simulation
    def test_short_simulation(self, data):
        """The simulator runs on this model as the base (a model that cannot score new
        histories is refused with the error that says so); the same seed gives the same run."""
        from explorec.simulate import build_environment, fit_base_model, make_policy, run_policy

        ds, _ = data
        vectors = np.random.default_rng(0).normal(size=(ds.interactions.n_items, 16))
        env = build_environment(ds, item_vectors=vectors, seed=2020)
        base = fit_base_model(env, ds, self.name, seed=2020, params=copy.deepcopy(self.params))

        def run() -> Any:
            return run_policy(env, make_policy("greedy", env, base, seed=2020), base, rounds=150,
                              slate_size=3, seed=2020, batch_size=50, n_candidates=20,
                              n_random=5, n_fresh=3)

        if not base.can_score_history():
            with pytest.raises(ExploRecError, match="cannot score a new user's history"):
                run()
            return
        res = run()
        assert res.rounds == 150 and 0 <= res.ctr <= 1 and 0 < res.coverage <= 1
        assert np.isfinite(res.cumulative_reward) and res.cumulative_regret >= -1e-9
        assert run().cumulative_reward == res.cumulative_reward


# ====================================================================== policies
B, C, PK, DIM = 8, 30, 4, 16


class PolicyTests:
    """The policy contract. Subclasses set ``name`` and ``params``; ``base`` names the base
    model (registry name, parameters) the policy ranks over."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    base: ClassVar[tuple[str, dict[str, Any]]] = ("ease", {"reg": 50.0})

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _env(cls, tmp_path_factory):
        yield from _quiet_env(tmp_path_factory)

    @pytest.fixture(scope="class")
    @classmethod
    def base_model(cls):
        from explorec.models import create_model

        ds, _ = small_data()
        name, params = cls.base
        return create_model(name, **copy.deepcopy(params)).fit(ds.interactions, catalog=ds.catalog)

    @pytest.fixture(scope="class")
    @classmethod
    def vectors(cls):
        return np.random.default_rng(0).normal(size=(N_ITEMS, DIM))

    @pytest.fixture(scope="class")
    @classmethod
    def requests(cls, base_model):
        from explorec.explore import Requests

        rng = np.random.default_rng(1)
        users = np.arange(B)
        cand = np.stack([rng.choice(base_model.n_items, C, replace=False) for _ in users])
        hist = sp.csr_matrix(base_model.training_history()[users], dtype=np.float32)
        return Requests(cand, hist, users, context=rng.normal(size=(B, 2)))

    def make(self, base_model: Any, vectors: np.ndarray, n_items: int | None = None,
             **over: Any) -> Any:
        from explorec.explore import create_policy

        params = {**copy.deepcopy(self.params), **over}
        policy = create_policy(self.name, **params)
        return policy.prepare(base_model, n_items=n_items or len(vectors), item_vectors=vectors)

    @staticmethod
    def feedback(requests: Any, sb: Any, seed: int = 3) -> Any:
        from explorec.explore import Feedback

        rng = np.random.default_rng(seed)
        return Feedback(requests, sb, (rng.random(sb.items.shape) < 0.4).astype(float))

    @staticmethod
    def same(a: Any, b: Any) -> bool:
        return bool(np.array_equal(a.items, b.items) and np.allclose(a.propensities, b.propensities))

    # ------------------------------------------------------------------ ranking
    def test_rank_batch_contract(self, base_model, vectors, requests):
        from explorec.explore import Policy, Requests
        from explorec.explore.registry import policy_class

        policy = self.make(base_model, vectors)
        assert isinstance(policy, Policy) and policy.name == self.name
        assert type(policy) is policy_class(self.name)
        sb = policy.rank_batch(requests, PK, keep_distribution=True)
        for arr in (sb.items, sb.positions, sb.scores, sb.propensities):
            assert arr.shape == (B, PK)
        assert np.array_equal(sb.items, np.take_along_axis(requests.candidates, sb.positions, 1))
        assert ((sb.positions >= 0) & (sb.positions < C)).all()
        for row in range(B):
            assert len(set(sb.positions[row])) == PK  # unique positions
        assert ((sb.propensities > 0) & (sb.propensities <= 1 + 1e-12)).all()
        assert sb.distribution.shape == (B, C, PK)
        np.testing.assert_allclose(sb.distribution.sum(axis=1), 1.0)
        logged = np.take_along_axis(sb.distribution, sb.positions[:, None, :], axis=1)[:, 0, :]
        np.testing.assert_allclose(sb.propensities, logged)
        if policy.deterministic:
            assert (sb.propensities == 1.0).all()
            assert self.same(sb, policy.rank_batch(requests, PK))
        assert sb.info["policy"] == self.name
        # padding is never shown and gets no probability
        valid = np.ones((B, C), bool)
        valid[:, -6:] = False
        padded = Requests(requests.candidates, requests.history, requests.users,
                          context=requests.context, valid=valid)
        sp_ = policy.rank_batch(padded, PK, keep_distribution=True)
        assert (sp_.positions < C - 6).all()
        assert (sp_.distribution[:, -6:, :] == 0).all()
        with pytest.raises(ExploRecError, match="fewer than k"):
            policy.rank_batch(requests, C + 1)
        # the one-request path
        slate = policy.rank(0, requests.candidates[0], PK,
                            {"history": requests.history[0].indices.tolist(),
                             "features": requests.context[0].tolist()})
        assert len(slate.items) == PK and slate.propensities.shape == (PK,)
        assert set(slate.items) <= set(requests.candidates[0])

    def test_propensities_match_what_is_shown(self, base_model, vectors, requests):
        """Sampling policies: the logged distribution is the empirical frequency of what they
        show (after a little learning, so it is not trivial); deterministic ones show it."""
        policy = self.make(base_model, vectors)
        sb = policy.rank_batch(requests, PK)
        policy.update(self.feedback(requests, sb))
        n = 200 if policy.deterministic else 2000
        one = requests.take(np.zeros(n, dtype=int))
        out = policy.rank_batch(one, PK, keep_distribution=True)
        emp = np.zeros((C, PK))
        np.add.at(emp, (out.positions, np.broadcast_to(np.arange(PK), out.positions.shape)), 1.0)
        emp /= n
        expected = out.distribution.mean(axis=0)
        # binomial standard error at n=2000 is <= 0.0112; allow ~4 sigma
        assert np.abs(emp - expected).max() < 0.045
        if policy.deterministic:
            assert (out.items == out.items[0]).all()

    def test_seeded_reproducibility(self, base_model, vectors, requests):
        a = self.make(base_model, vectors, seed=5)
        b = self.make(base_model, vectors, seed=5)
        ra, rb = a.rank_batch(requests, PK), b.rank_batch(requests, PK)
        assert self.same(ra, rb)
        a.update(self.feedback(requests, ra))
        b.update(self.feedback(requests, rb))
        assert self.same(a.rank_batch(requests, PK), b.rank_batch(requests, PK))
        if not a.deterministic:  # another seed explores differently
            many = requests.take(np.arange(200) % B)
            c = self.make(base_model, vectors, seed=6)
            d = self.make(base_model, vectors, seed=5)
            assert not np.array_equal(c.rank_batch(many, PK).items, d.rank_batch(many, PK).items)

    # ------------------------------------------------------------------ state
    def test_learns_flag_and_state_round_trip(self, base_model, vectors, requests, tmp_path):
        """``learns`` (set from overriding ``update``) is honest, and what a learning policy
        learned survives get_state / set_state and the safe artifact format: a fresh copy given
        the state ranks alike, now and after the same further feedback."""
        from explorec.artifacts import load_artifact, save_artifact
        from explorec.explore.base import BasePolicy

        a = self.make(base_model, vectors, seed=5)
        assert a.learns == (type(a).update is not BasePolicy.update)
        fresh = self.make(base_model, vectors, seed=5)
        sb = a.rank_batch(requests, PK)
        fb = self.feedback(requests, sb)
        a.update(fb)
        state = a.get_state()
        assert all(isinstance(v, np.ndarray) for v in state.values())
        if not a.learns:
            assert state == {} and fresh.get_state() == {}
            a.rng, fresh.rng = np.random.default_rng(1), np.random.default_rng(1)
            assert self.same(a.rank_batch(requests, PK), fresh.rank_batch(requests, PK))
            return
        untouched = fresh.get_state()
        assert set(state) == set(untouched)
        assert any(not np.array_equal(v, untouched[k]) for k, v in state.items()), \
            "update changed nothing: the round trip would prove nothing"
        b = self.make(base_model, vectors, seed=5)
        b.set_state(state)
        if self.name != "vw":  # VW's saved model records how it was loaded: compared by ranks
            for key, value in state.items():
                assert np.array_equal(value, b.get_state()[key]), key
        _, arrays = load_artifact(save_artifact(tmp_path / "state", {"kind": "policy-state"},
                                                state))
        c = self.make(base_model, vectors, seed=5)
        c.set_state(dict(arrays))
        for p in (a, b, c):
            p.rng = np.random.default_rng(1)
        ra = a.rank_batch(requests, PK)
        assert self.same(ra, b.rank_batch(requests, PK)) and self.same(ra, c.rank_batch(requests, PK))
        for p in (a, b, c):  # subsequent learning stays in step
            p.update(self.feedback(requests, ra, seed=4))
            p.rng = np.random.default_rng(2)
        ra = a.rank_batch(requests, PK)
        assert self.same(ra, b.rank_batch(requests, PK)) and self.same(ra, c.rank_batch(requests, PK))

    # ------------------------------------------------------------------ catalog changes
    def test_add_items_start_from_the_prior(self, base_model, vectors, requests):
        """New items get exactly the state a policy prepared with them from the start has for
        them (the prior), old items keep what they learned, and the new items are rankable
        (except by policies that rank only the base model's own items: ``uses_two_tower``)."""
        from explorec.explore import Requests

        n = base_model.n_items
        new_vecs = np.random.default_rng(9).normal(size=(3, DIM))
        policy = self.make(base_model, vectors)
        sb = policy.rank_batch(requests, PK)
        policy.update(self.feedback(requests, sb))
        before = policy.get_state()
        policy.add_items(3, new_vecs)
        assert policy.n_items == n + 3
        after = policy.get_state()
        prior = self.make(base_model, np.vstack([vectors, new_vecs]), n_items=n + 3).get_state()
        for key, old in before.items():
            new = after[key]
            if self.name == "vw":
                continue  # one opaque model file; its growth is checked by ranking below
            if old.shape[:1] == (n,):  # per-item state: old rows kept, new rows the prior
                assert new.shape[0] == n + 3, key
                np.testing.assert_array_equal(new[:n], old)
                if key in policy.catalog_state:  # derived from the new items' vectors
                    assert new[n:].dtype == old.dtype and np.isfinite(new[n:]).all(), key
                    continue
                np.testing.assert_array_equal(new[n:], prior[key][n:])
            else:  # shared state (a linear model's A, b) is not touched by new items
                np.testing.assert_array_equal(new, old)
        if policy.uses_two_tower:
            old_only = requests.take(np.arange(2))
            assert policy.rank_batch(old_only, PK).items.shape == (2, PK)
            return
        cand = np.array([[n, n + 1, n + 2, 0, 1, 2]])
        req = Requests(cand, sp.csr_matrix((1, n + 3), dtype=np.float32), np.array([0]),
                       base_scores=np.zeros((1, 6)), context=np.zeros((1, 2)))
        out = policy.rank_batch(req, 3, keep_distribution=True)
        assert out.items.shape == (1, 3) and np.isin(out.items, cand).all()
        np.testing.assert_allclose(out.distribution.sum(axis=1), 1.0)

    def test_update_item_vectors(self, base_model, vectors, requests):
        """New vectors for existing items reach everything the policy derived from them: a
        policy over item vectors ranks differently afterwards (MMR exactly as one prepared on
        the new vectors), a policy that does not use them ranks exactly as before."""
        policy = self.make(base_model, vectors)
        sb = policy.rank_batch(requests, PK)
        policy.update(self.feedback(requests, sb))
        changed = np.unique(requests.candidates[:, :15])
        new = np.random.default_rng(11).normal(size=(len(changed), DIM)) * 3.0
        policy.rng = np.random.default_rng(1)
        before = policy.rank_batch(requests, PK, keep_distribution=True)
        policy.update_item_vectors(changed, new)
        policy.rng = np.random.default_rng(1)
        after = policy.rank_batch(requests, PK, keep_distribution=True)
        with pytest.raises(ExploRecError, match="item ids must be in"):
            policy.update_item_vectors(np.array([policy.n_items]), new[:1])
        uses_vectors = policy.needs_item_text and not policy.uses_two_tower
        if not uses_vectors:
            assert self.same(before, after)
            np.testing.assert_array_equal(before.distribution, after.distribution)
            return
        assert not (np.array_equal(before.distribution, after.distribution)
                    and np.array_equal(before.scores, after.scores)), \
            "update_item_vectors changed nothing the policy ranks by"
        if self.name == "mmr":
            v2 = vectors.copy()
            v2[changed] = new
            ref = self.make(base_model, v2).rank_batch(requests, PK)
            assert self.same(after, ref)

    def test_declared_needs(self, base_model, vectors):
        """What the registry says a policy needs matches what the class declares, and a
        policy that needs item vectors refuses to prepare without them."""
        from explorec.explore.registry import needs_item_vectors, needs_two_tower, policy_class

        klass = policy_class(self.name)
        assert needs_two_tower(self.name) == klass.uses_two_tower
        assert needs_item_vectors(self.name) == (klass.needs_item_text and not klass.uses_two_tower)
        if needs_item_vectors(self.name):
            from explorec.explore import create_policy

            with pytest.raises(ExploRecError, match="item_vectors"):
                create_policy(self.name, **copy.deepcopy(self.params)).prepare(base_model)


def conformance_classes(base: type, namespace: dict[str, Any]) -> list[type]:
    """The concrete conformance classes (``Test*`` subclasses of ``base``) in ``namespace``."""
    return [c for n, c in namespace.items() if isinstance(c, type) and issubclass(c, base)
            and c is not base and n.startswith("Test")]


__all__ = ["ModelTests", "PolicyTests", "conformance_classes", "small_data"]
