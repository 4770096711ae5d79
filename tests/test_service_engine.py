"""The serving engine in process: restart = snapshot + replay, erasure rebuilds, items overlay,
hot-swap bookkeeping, OPE on the log. Small synthetic artifacts (seconds to train)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from explorec.data.synthetic import generate
from explorec.serve.artifact import load_service_artifact, train_artifact
from explorec.serve.engine import Conflict, Engine, EngineConfig, NotFound, ServiceError
from explorec.serve.procs import RedisServer
from explorec.serve.stores import Interaction, RedisStore, SQLiteStore


@pytest.fixture(scope="module")
def small_data():
    return generate(n_users=200, n_items=150, n_interactions=3000, seed=7)


@pytest.fixture(scope="module")
def linucb_art(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("art") / "linucb"
    train_artifact(out, dataset=small_data, model="ease", policy="linucb", encoder="tfidf", vector_dim=16)
    return load_service_artifact(out)


@pytest.fixture(scope="module")
def egreedy_art(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("art") / "egreedy"
    train_artifact(out, dataset=small_data, model="ease", policy="egreedy", encoder="tfidf", vector_dim=16,
                   policy_params={"epsilon": 0.3})
    return load_service_artifact(out)


@pytest.fixture(scope="module")
def interest_art(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("art") / "interest-ts"
    train_artifact(out, dataset=small_data, model="ease", policy="interest-ts", encoder="tfidf",
                   vector_dim=16, policy_params={"budget": 0.4, "n_clusters": 6})
    return load_service_artifact(out)


@pytest.fixture(params=["linucb", "interest-ts"])
def learning_art(request):
    """A policy with shared state (linucb) and one with per-user state (interest-ts)."""
    return request.getfixturevalue("linucb_art" if request.param == "linucb" else "interest_art")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv.url
    srv.stop()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    opened = []
    prefix = f"e{uuid.uuid4().hex[:8]}"

    def make():
        if request.param == "sqlite":
            s = SQLiteStore(tmp_path / "s.db")
        else:
            s = RedisStore(request.getfixturevalue("redis_url"), prefix=prefix)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def same_state(a: dict, b: dict) -> bool:
    """Equal policy states, up to float rounding (replayed rewards may be batched differently)."""
    return set(a) == set(b) and all(np.shape(a[k]) == np.shape(b[k])
                                    and np.allclose(a[k], b[k], rtol=1e-9, atol=1e-12) for k in a)


def play(eng: Engine, users: list[str], rounds: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        out = eng.rank(users[r % len(users)], 5)
        pos = int(rng.integers(len(out.items)))
        eng.reward(out.event_id, float(rng.random() < 0.5), position=pos)


def test_restart_resumes_exactly(learning_art, make_store):
    cfg = EngineConfig(snapshot_every=4)
    a = Engine(learning_art, make_store(), cfg)
    a.put_item("fresh-1", "space robot heist", {})
    play(a, ["u1", "u2", "new-user"], 11)
    # a second engine on the same store (a restart, or another process) ends in the same state
    b = Engine(learning_art, make_store(), cfg)
    assert b.applied.n == a.applied.n == 11 and b.reward_seq == a.reward_seq
    assert same_state(b.policy.get_state(), a.policy.get_state())
    assert b.ids == a.ids and b.index["fresh-1"] == learning_art.n_items
    # and without any snapshot: the artifact's state + the whole log, replayed
    c = Engine(learning_art, make_store(), EngineConfig(snapshot_every=10**9))
    assert same_state(c.policy.get_state(), a.policy.get_state())


def test_processes_see_each_others_rewards(linucb_art, make_store):
    from explorec.serve.engine import RankCall, RewardCall

    a, b = Engine(linucb_art, make_store()), Engine(linucb_art, make_store())
    out = a.rank("u3", 4)
    b.reward(out.event_id, 1.0, position=1)
    with pytest.raises(Conflict):
        a.reward(out.event_id, 0.0, position=1)
    a.sync()
    assert a.applied.n == b.applied.n == 1
    assert same_state(a.policy.get_state(), b.policy.get_state())
    # several slates served by b after logged interactions: a recomputes what each saw
    # (histories up to each slate's sequence, in one read) and learns as b did
    a.add_events([Interaction("u4", "i1", "click"), Interaction("new-9", "i2", "click")])
    served = b.serve_ranks([RankCall(u, 4) for u in ("u4", "new-9", "u5")])
    b.add_events([Interaction("u4", "i3", "click")])  # after the slate: not part of what it saw
    got = a.rewards([RewardCall(ev.event_id, 1.0, None, n % 4) for n, (_, ev) in enumerate(served)])
    assert all(not isinstance(g, Exception) for g in got)
    assert [ev.history_seq > 0 for _, ev in served] == [True, True, False]
    b.sync()
    assert a.applied.n == b.applied.n == 4
    assert same_state(a.policy.get_state(), b.policy.get_state())


def test_erasing_a_user_rebuilds_state_without_them(learning_art, make_store):
    a = Engine(learning_art, make_store())
    play(a, ["keep-1", "keep-2"], 6, seed=1)
    kept = a.policy.get_state()
    play(a, ["gone"], 4, seed=2)
    assert not same_state(a.policy.get_state(), kept)
    counts = a.delete_user("gone")
    assert counts["events"] == 4 and counts["rewards"] == 4
    assert a.applied.n == 6 and same_state(a.policy.get_state(), kept)  # as if never here
    assert a.store.user_trace("gone") == 0


def test_items_overlay_and_errors(linucb_art, make_store):
    a = Engine(linucb_art, make_store())
    created, idx = a.put_item("n1", "dragon wizard quest kingdom", {"k": 1})
    assert created and idx == linucb_art.n_items and a.policy.n_items == a.n_items
    assert not a.put_item("n1", "dragon wizard quest kingdom again", {})[0]
    out = a.rank("u5", 3, candidates=["n1", "i1", "i2"])
    assert "n1" in [i.item for i in out.items]
    a.delete_item("n1")
    with pytest.raises(ServiceError) as e:
        a.rank("u5", 3, candidates=["n1"])
    assert e.value.field == "candidates[0]"
    with pytest.raises(NotFound):
        a.delete_item("n1")
    with pytest.raises(ServiceError) as e:
        a.add_events([Interaction("u5", "i1", "view"), Interaction("u5", "nope", "view")])
    assert e.value.field == "events[1].item"
    with pytest.raises(NotFound):
        a.reward(uuid.uuid4().hex, 1.0, position=0)


def test_hot_swap_bookkeeping(linucb_art, egreedy_art, make_store):
    a = Engine(linucb_art, make_store())
    play(a, ["u1"], 3)
    b = Engine(egreedy_art, make_store())  # the new artifact starts at the log's current end
    assert b.base_seq == 3 and b.applied.n == 0
    out = b.rank("u1", 3)
    b.reward(out.event_id, 1.0, position=0)
    assert b.applied.n == 1
    a.sync()  # the old one would learn it too (same catalog)
    assert a.applied.n == 4


def test_ope_on_log_recovers_the_logging_policy_value(egreedy_art, tmp_path):
    from explorec.serve.ope_log import evaluate_log

    store = SQLiteStore(tmp_path / "ope.db")
    eng = Engine(egreedy_art, store)
    rng = np.random.default_rng(3)
    for n in range(60):
        out = eng.rank(f"u{n % 20}", 4)
        for pos, it in enumerate(out.items):
            if rng.random() < 0.3 + 0.1 * pos:
                eng.reward(out.event_id, 1.0, item=it.item)
    # the same policy evaluated on its own log: every weight is 1, IPS = the logged mean
    same = evaluate_log(store, egreedy_art, "egreedy", policy_params={"epsilon": 0.3}, n_bootstrap=50)
    ipw = {e["estimator"]: e for e in same["estimates"]}["ipw"]
    assert same["rows"] == 240 and same["skipped_events"] == 0
    assert ipw["estimate"] == pytest.approx(same["logged_value"], abs=1e-9)
    other = evaluate_log(store, egreedy_art, "greedy", n_bootstrap=50)
    assert other["rows"] == 240 and np.isfinite(other["estimates"][0]["estimate"])
    with pytest.raises(ValueError, match="reward model"):
        evaluate_log(store, egreedy_art, "greedy", estimators=("dm",))
    store.close()


def test_retrain_from_log_warm_starts(linucb_art, tmp_path):
    from explorec.serve.retrain import retrain_from_log

    store = SQLiteStore(tmp_path / "r.db")
    a = Engine(linucb_art, store)
    a.put_item("added-1", "music band tour stage", {})
    play(a, ["u1", "brand-new"], 8)
    a.add_events([Interaction("brand-new", "added-1", "click", None, 1.0)])
    out = retrain_from_log(store, tmp_path / "new", base=linucb_art.path)
    new = load_service_artifact(out)
    assert "added-1" in new.item_ids and "brand-new" in list(new.model.users_.ids)
    assert new.manifest["replayed_rewards"] == 8
    assert new.manifest["n_interactions"] > linucb_art.manifest["n_interactions"]
    store.close()


def test_service_ties_carry_no_information(tmp_path, small_data):
    """Equal scores are ordered per user by seeded tie keys: with a model that knows nothing
    of any item (popularity over an all-new catalog) every user sees a different slate, and
    the first slot spreads over the catalog instead of always showing the lowest id."""
    import pandas as pd

    from explorec.data import Interactions

    # one interaction per item: every item's popularity is 1, so greedy ranks ties only
    items = list(small_data.interactions.items.ids)
    flat = Interactions.from_frame(pd.DataFrame({"user": "u0", "item": items}),
                                   rating_col=None, timestamp_col=None)
    ds = type(small_data)(name="flat", interactions=flat, catalog=small_data.catalog)
    out = tmp_path / "flat"
    train_artifact(out, dataset=ds, model="pop", policy="greedy", encoder="tfidf", vector_dim=8)
    eng = Engine(load_service_artifact(out), store=None)
    firsts = [eng.rank(f"new-user-{n}", k=3).items[0].item for n in range(300)]
    counts = pd.Series(firsts).value_counts()
    assert len(counts) > 0.6 * len(items) and counts.iloc[0] <= 8
    # the same user gets the same slate (seeded), a new user a stable one too
    assert [i.item for i in eng.rank("new-user-5", k=3).items] == \
        [i.item for i in eng.rank("new-user-5", k=3).items]


def test_ann_index_names_the_candidate_pool(tmp_path):
    """A factor model's index generates the pool (no catalog scoring) with the same base
    scores as exact scoring, and the pool is what exact top-pool would be (recall)."""
    from explorec.serve.stores import SQLiteStore

    data = generate(n_users=300, n_items=2000, n_interactions=12_000, seed=3)
    out = tmp_path / "ials"
    train_artifact(out, dataset=data, model="ials", policy="greedy", encoder="tfidf", vector_dim=16,
                   model_params={"factors": 16, "iterations": 4})
    art = load_service_artifact(out)
    store = SQLiteStore(tmp_path / "s.db")
    eng = Engine(art, store, EngineConfig(pool_size=100))
    store.add_interactions([Interaction("u7", f"i{i}", "view") for i in (3, 50, 700)])
    exact = eng.rank("u7", 10, explain=False)
    assert art.model.build_index("hnsw") is not None
    calls = []
    orig = eng.base_scores
    eng.base_scores = lambda *a, **kw: calls.append(1) or orig(*a, **kw)  # type: ignore[method-assign]
    ann = eng.rank("u7", 10, explain=False)
    assert not calls  # the pool came from the index
    got = [i.item for i in ann.items]
    want = [i.item for i in exact.items]
    assert len(set(got) & set(want)) >= 9 and not {"i3", "i50", "i700"} & set(got)
    for a in ann.items:
        match = [e for e in exact.items if e.item == a.item]
        if match:
            assert abs(match[0].score - a.score) < 1e-4
    store.close()


def test_large_catalogs_draw_candidates_from_the_popular_pool(linucb_art):
    from explorec.ranking import topk

    cfg = EngineConfig(scan_max_items=50, popular_pool=60, pool_size=20)
    eng = Engine(linucb_art, None, cfg)
    train = linucb_art.model.training_history().tocsr()
    counts = np.bincount(train.indices, minlength=linucb_art.n_items).astype(float)
    popular = {linucb_art.item_ids[i] for i in topk(counts[None, :], 60, rows=np.array([0]))[0]}
    u = 3
    seen = {linucb_art.item_ids[i] for i in train.indices[train.indptr[u]:train.indptr[u + 1]]}
    user = str(linucb_art.model.user_ids()[u])
    _, ev = eng.prepare_rank(user, 5)
    assert len(ev.candidates) == 20
    assert set(ev.candidates) <= popular - seen  # from the pool, never a seen item
    _, full = Engine(linucb_art, None).prepare_rank(user, 5)
    assert not set(full.candidates) <= popular  # the scan path ranks the whole catalog


def test_large_catalog_ranks_have_the_model_score_only_the_popular_pool(linucb_art):
    """With a popular pool the model scores the pool's columns alone (score_history(items=))
    and every slate is the one scoring the whole catalog gives; a request naming its
    candidates, or items added since training, take the whole-catalog path."""
    from explorec.serve.engine import RankCall

    class WholeCatalog(Engine):
        def _pool_only(self, preps):  # the reference: always score every item
            return False

    cfg = EngineConfig(scan_max_items=50, popular_pool=60, pool_size=20)
    eng, ref = Engine(linucb_art, None, cfg), WholeCatalog(linucb_art, None, cfg)
    asked = []
    model = eng.model
    orig = model.score_history

    def spy(X, items=None):
        asked.append(items)
        return orig(X, items)

    model.score_history = spy  # type: ignore[method-assign]
    try:
        users = [str(u) for u in linucb_art.model.user_ids()[:6]] + ["never-seen"]
        calls = [RankCall(u, 5, explain=False) for u in users]
        calls.append(RankCall(users[0], 3, exclude=["i1", "i2"], explain=False))
        hists = [([], 0)] * len(calls)
        got = eng.compute_ranks(hists, calls)
        assert len(asked) == 1 and asked[0] is not None and len(asked[0]) == 60
        want = ref.compute_ranks(hists, calls)  # the same model: asked again, for every item
        assert len(asked) == 2 and asked[1] is None
        for g, w in zip(got, want, strict=True):
            (gr, ge), (wr, we) = g, w
            assert ge.candidates == we.candidates and ge.items == we.items
            assert ge.propensities == pytest.approx(we.propensities)
            assert [i.score for i in gr.items] == pytest.approx([i.score for i in wr.items])
        asked.clear()
        eng.compute_ranks([([], 0)], [RankCall(users[1], 3, candidates=["i1", "i2", "i3"])])
        assert asked == [None]
    finally:
        del model.score_history


@pytest.mark.parametrize("pool", ["scan", "popular"])
def test_a_batch_of_ranks_equals_the_ranks_one_by_one(linucb_art, make_store, pool):
    """compute_ranks (the service's micro-batches) gives each request the slate it gets alone,
    with its own error in its place; histories come from one batched store read. Candidates
    from a scan of the whole catalog or (large catalogs) the best of the popular pool, each
    partitioned once for the batch."""
    from explorec.serve.engine import RankCall

    cfg = (EngineConfig(pool_size=40) if pool == "scan"
           else EngineConfig(pool_size=40, scan_max_items=50, popular_pool=120))
    a = Engine(linucb_art, make_store(), cfg)
    a.put_item("fresh-1", "space robot heist", {})
    play(a, ["u1", "u2", "new-user"], 7, seed=3)
    calls = [RankCall("u1", 5), RankCall("new-user", 5), RankCall("u2", 3),
             RankCall("u3", 5, candidates=["i1", "nope"]),  # an unknown candidate: its own error
             RankCall("u4", 4, candidates=["i1", "i2", "i3", "i5", "fresh-1"]),
             RankCall("u5", 5, exclude=["i1", "i2"], explain=True),
             RankCall("u6", 5, features=[1.0, 2.0]),  # linucb takes no context: its own error
             RankCall("never-seen", 5)]
    users = [c.user for c in calls]
    hists = a.read_for_ranks(users)
    assert hists == [a.store.history(u, limit=a.config.max_history) for u in users]
    assert hists[0][0] and not hists[-1][0]
    batch = a.compute_ranks(hists, calls)
    assert isinstance(batch[3], ServiceError) and batch[3].field == "candidates[1]"
    assert isinstance(batch[6], ServiceError) and batch[6].field == "context.features"
    for call, h, got in zip(calls, hists, batch, strict=True):
        if isinstance(got, Exception):
            continue
        alone, ev = a.compute_rank(h, call.user, call.k, candidates=call.candidates,
                                   exclude=call.exclude, features=call.features,
                                   explain=call.explain)
        r, ev_b = got
        assert [(i.item, i.score, i.propensity, i.explanation) for i in r.items] == \
            [(i.item, i.score, i.propensity, i.explanation) for i in alone.items]
        assert ev_b.candidates == ev.candidates and ev_b.history_seq == ev.history_seq
        assert r.event_id != alone.event_id
    # the batch's slates are remembered for their rewards
    r0, ev0 = batch[0]
    a.commit_rank(ev0)
    a.reward(r0.event_id, 1.0, position=0)
    assert a.applied.n == 8
