"""One store test suite, run against the embedded SQLite store and a real redis-server."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from explorec.serve.stores import (
    Interaction,
    RankEvent,
    RedisStore,
    Snapshot,
    SQLiteStore,
    StoreError,
    open_store,
    redact_url,
)


def event(user: str = "u1", items: tuple[str, ...] = ("a", "b", "c"), ts: float = 1.0,
          eid: str | None = None) -> RankEvent:
    return RankEvent(eid or uuid.uuid4().hex, user, ts, "art", "egreedy", list(items), [0, 1, 2],
                     [0.9, 0.5, 0.1], [3.0, 2.0, None], [*items, "z"], 0, {"features": [1.0, 2.0]})


def test_events_round_trip(store):
    evs = [event(ts=float(t)) for t in (3, 1, 2)]
    for e in evs:
        store.log_rank(e)
    assert store.get_event(evs[0].event_id) == evs[0]
    assert store.get_event(uuid.uuid4().hex) is None
    got = store.get_events([e.event_id for e in evs] + ["missing"])
    assert set(got) == {e.event_id for e in evs}
    assert [e.ts for e in store.iter_events(batch=2)] == [1.0, 2.0, 3.0]


def test_event_record_is_json_and_refuses_non_finite_numbers():
    e = event(user="ü-ser", items=("é", "b", "c"))
    text = e.to_json()
    assert json.loads(text)["user"] == "ü-ser" and RankEvent.from_json(text) == e
    assert RankEvent.from_json(text.encode()) == e
    for field, bad in [("propensities", [0.9, float("nan"), 0.1]), ("scores", [1.0, None, float("inf")]),
                       ("ts", float("-inf"))]:
        with pytest.raises(ValueError, match=rf"{field}(\[\d\])? is not a finite number"):
            dataclasses.replace(e, **{field: bad}).to_json()
    with pytest.raises(ValueError, match=r"context.features\[1\]"):
        dataclasses.replace(e, context={"features": [1.0, float("nan")]}).to_json()
    with pytest.raises(StoreError, match="corrupt event record"):
        RankEvent.from_json('{"event_id": "x"')


def test_reward_recorded_at_most_once(store):
    e = event()
    store.log_rank(e)
    first = store.add_reward(e, 1, 1.0, 10.0)
    assert first.status == "recorded" and first.record.item == "b" and first.record.seq >= 1
    again = store.add_reward(e, 1, 0.0, 11.0)
    assert again.status == "duplicate" and again.record.reward == 1.0
    assert store.add_reward(event(), 0, 1.0, 1.0).status == "unknown_event"
    zero = store.add_reward(e, 2, 0.0, 12.0)
    assert zero.status == "recorded" and zero.record.seq > first.record.seq
    assert [r.position for r in store.rewards_for_event(e.event_id)] == [1, 2]
    since = store.rewards_since(0)
    assert [r.seq for r in since] == sorted(r.seq for r in since)
    assert store.rewards_since(first.record.seq) == [zero.record]
    # a positive reward joins the history in the same write; a zero reward does not
    items, seq = store.history("u1")
    assert items == ["b"] and seq > 0
    assert store.heads().rewards_seq == zero.record.seq


def test_concurrent_rewards_each_recorded_once(store):
    evs = [event(user=f"u{i}") for i in range(20)]
    for e in evs:
        store.log_rank(e)
    jobs = [(e, p) for e in evs for p in range(3)] * 3  # every reward sent three times

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda j: store.add_reward(j[0], j[1], 1.0, 1.0).status, jobs))
    assert results.count("recorded") == 60 and results.count("duplicate") == 120
    seqs = [r.seq for r in store.rewards_since(0)]
    assert len(seqs) == 60 and len(set(seqs)) == 60 and seqs == sorted(seqs)


def test_interactions_and_history(store):
    rows = [Interaction("u", i, "view", None, float(t)) for t, i in enumerate(["a", "b", "a", "c"])]
    last = store.add_interactions(rows)
    items, seq = store.history("u")
    assert items == ["a", "b", "c"] and seq == last
    early, _ = store.history("u", upto_seq=last - 2)
    assert early == ["a", "b"]
    assert store.history("u", limit=2)[0] == ["b", "c"]
    assert store.history("nobody") == ([], 0)
    store.add_interactions([Interaction("v", "x", "rating", 4.0, 9.0)])
    got = list(store.iter_interactions())
    assert [(r.user, r.item) for r in got] == [("u", "a"), ("u", "b"), ("u", "a"), ("u", "c"), ("v", "x")]
    assert got[-1].kind == "rating" and got[-1].value == 4.0


def test_items_put_delete_order(store):
    v = np.arange(4, dtype=np.float32)
    a = store.put_item("a", "text a", {"year": 2000}, "space1", v, 1.0)
    b = store.put_item("b", "text b", {}, "space1", None, 2.0)
    assert (a.order, b.order) == (0, 1) and b.seq > a.seq
    a2 = store.put_item("a", "new text", {"year": 2001}, "space1", v * 2, 3.0)
    assert a2.order == 0 and a2.seq > b.seq
    got = store.get_item("a")
    assert got.text == "new text" and got.features == {"year": 2001} and not got.deleted
    np.testing.assert_array_equal(got.vector, v * 2)
    deleted = store.delete_item("b", 4.0)
    assert deleted.deleted and deleted.order == 1
    assert store.delete_item("b", 5.0) is None  # already deleted
    tomb = store.delete_item("artifact-item", 6.0)  # an item the store never saw: a tombstone
    assert tomb.deleted and tomb.order == 2
    changes = store.items_since(a.seq)
    assert [r.item for r in changes] == ["a", "b", "artifact-item"]
    assert store.heads().items_seq == tomb.seq
    back = store.put_item("b", "again", {}, "space1", None, 7.0)
    assert back.order == 1 and not store.get_item("b").deleted


def test_delete_user_erases_everything(store):
    keep, gone = "keeper", f"forget-{uuid.uuid4().hex[:6]}"
    e1, e2 = event(user=gone), event(user=keep)
    for e in (e1, e2):
        store.log_rank(e)
        store.add_reward(e, 0, 1.0, 1.0)
    store.add_interactions([Interaction(gone, "q", "click", None, 1.0), Interaction(keep, "q", "view")])
    store.save_snapshot(Snapshot("art", store.heads().epoch, 2, 3, 2, {"x": np.ones(2)}))
    assert store.user_trace(gone) > 0
    epoch = store.heads().epoch
    counts = store.delete_user(gone)
    assert counts == {"events": 1, "rewards": 1, "interactions": 2}  # click + the reward's history row
    assert store.user_trace(gone) == 0
    assert store.get_event(e1.event_id) is None and store.rewards_for_event(e1.event_id) == []
    assert store.history(gone) == ([], 0)
    assert store.heads().epoch == epoch + 1
    assert store.load_snapshot("art") is None  # learned state may hold the user: dropped
    assert store.get_event(e2.event_id) is not None and store.history(keep)[0] == ["a", "q"]
    assert [r.user for r in store.rewards_since(0)] == [keep]
    assert store.delete_user(gone) == {"events": 0, "rewards": 0, "interactions": 0}


def test_snapshots_and_meta(store):
    arrays = {"A": np.eye(3), "n": np.array([7]), "ids": np.array(["x", "y"])}
    epoch = store.heads().epoch
    store.save_snapshot(Snapshot("art1", epoch, 5, 10, 4, arrays))
    snap = store.load_snapshot("art1")
    assert (snap.seq, snap.n_items, snap.n_applied, snap.epoch) == (5, 10, 4, epoch)
    for k, v in arrays.items():
        np.testing.assert_array_equal(snap.arrays[k], v)
    store.save_snapshot(Snapshot("art1", epoch + 7, 9, 10, 8, arrays))  # stale epoch: refused
    assert store.load_snapshot("art1").seq == 5
    assert store.load_snapshot("other") is None
    assert store.meta_setnx("k", "1") == "1" and store.meta_setnx("k", "2") == "1"
    store.meta_set("k", "3")
    assert store.meta_get("k") == "3" and store.meta_get("none") is None
    store.ping()
    assert set(store.counts()) == {"events", "rewards", "interactions", "items"}


def test_heads_and_histories_read_together(store):
    e = event(user="hh")
    store.log_rank(e)
    store.add_reward(e, 1, 1.0, 2.0)
    store.add_interactions([Interaction("hh", "c", "click", ts=3.0), Interaction("zz", "a", "view")])
    heads, hists = store.heads_and_histories(["hh", "zz", "nobody"], limit=5)
    assert heads == store.heads() and heads.rewards_seq > 0
    assert hists == store.histories(["hh", "zz", "nobody"], limit=5)
    assert hists[0][0] == ["b", "c"] and hists[2] == ([], 0)
    assert store.heads_and_histories([])[1] == []
    # each user up to a sequence of their own
    upto = [hists[0][1] - 1, None, 5]
    assert store.histories(["hh", "zz", "nobody"], limit=5, upto=upto) == [
        store.history(u, upto_seq=s, limit=5) for u, s in zip(["hh", "zz", "nobody"], upto, strict=True)]
    assert store.histories(["hh"], upto=[hists[0][1] - 1])[0][0] == ["b"]
    with pytest.raises(ValueError, match="2 upto bounds for 1 users"):
        store.histories(["hh"], upto=[1, 2])


def test_sqlite_durability_settings_and_erasure_on_disk(tmp_path):
    s = SQLiteStore(tmp_path / "d.db")
    c = s._r()
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._w.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    secret = f"secret-user-{uuid.uuid4().hex}"
    e = event(user=secret)
    s.log_rank(e)
    s.add_reward(e, 0, 1.0, 1.0)
    s.add_interactions([Interaction(secret, "a", "click")])
    s.delete_user(secret)
    s.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("d.db"))
    assert secret.encode() not in on_disk  # secure_delete + WAL truncated: no bytes left


def test_sqlite_group_commit_survives_failing_write(tmp_path):
    s = SQLiteStore(tmp_path / "g.db")
    e = event()
    s.log_rank(e)
    errors = []

    def dup() -> None:
        try:
            s.log_rank(e)  # primary key violation inside a shared transaction
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=dup) for _ in range(4)]
    threads += [threading.Thread(target=lambda: s.log_rank(event())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4 and s.counts()["events"] == 9
    s.close()


def test_sqlite_writers_take_turns_through_the_lock_file(tmp_path):
    """Processes sharing the file queue on ``<db>-lock`` (the kernel wakes the next at once)
    instead of polling through SQLite's busy handler; the turn is given back at the commit."""
    s = SQLiteStore(tmp_path / "t.db")
    lock = tmp_path / "t.db-lock"
    assert lock in s.files() and lock.exists()
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another worker's turn
        done = threading.Event()
        t = threading.Thread(target=lambda: (s.log_rank(event()), done.set()))
        t.start()
        assert not done.wait(0.3)  # waiting for the turn: no error, nothing written yet
        assert s.counts()["events"] == 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert done.wait(10)
        t.join()
        assert s.counts()["events"] == 1
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the writer gave its turn back
        # a turn held too long (a writer stopped mid-transaction) is a clear error, not a hang
        s.turn_timeout_s = 0.2
        with pytest.raises(StoreError, match="held the writers' turn"):
            s.log_rank(event())
        fcntl.flock(fd, fcntl.LOCK_UN)
        s.log_rank(event())  # and the store works again once the turn is free
        assert s.counts()["events"] == 2
    finally:
        os.close(fd)
        s.close()


def test_redis_pipelined_scripts_survive_a_flushed_script_cache(redis_server):
    """Batches send bare EVALSHAs (no SCRIPT EXISTS round trip each); a server without the
    scripts (restarted, flushed) gets them loaded and the batch again, written once."""
    import redis

    s = RedisStore(redis_server.url, prefix=f"noscript-{uuid.uuid4().hex[:8]}")
    admin = redis.Redis.from_url(redis_server.url)
    try:
        s.add_interactions([Interaction("u1", "a", "click", 1.0, 1.0)])
        admin.script_flush()
        evs = [event("u1"), event("u2")]
        s.log_ranks(evs)
        assert [s.get_event(e.event_id) for e in evs] == evs
        admin.script_flush()
        heads, hists = s.heads_and_histories(["u1", "u2"])
        assert [h[0] for h in hists] == [["a"], []] and heads.rewards_seq == 0
        admin.script_flush()
        got = s.add_rewards([(evs[0], 0, 1.0, 2.0), (evs[1], 1, 0.0, 2.0)])
        assert [r.status for r in got] == ["recorded", "recorded"]
        assert len(s.rewards_for_event(evs[0].event_id)) == 1 and s.heads().rewards_seq == 2
    finally:
        admin.close()
        s.close()


def test_redis_runs_with_fsync_always(redis_server):
    s = RedisStore(redis_server.url, prefix="dur")
    d = s.durability()
    assert d["appendonly"] == "yes" and d["appendfsync"] == "always"
    s.close()


def test_open_store_urls(tmp_path, redis_server):
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(s, SQLiteStore) and s.path == tmp_path / "x.db"
    s.close()
    r = open_store(redis_server.url)
    assert isinstance(r, RedisStore)
    r.ping()
    r.close()
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="no database path"):
        open_store("sqlite://")
    assert redact_url("redis://:hunter2@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("sqlite:///a.db") == "sqlite:///a.db"
    with pytest.raises(StoreError):
        RedisStore(f"redis://127.0.0.1:{redis_server.port + 1}/0", socket_timeout=0.5).ping()
