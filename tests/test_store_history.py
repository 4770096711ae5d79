"""``Store.history``: the distinct items in first-occurrence order, the last ``limit`` of them, up to
``upto_seq``; the same answer as reading the whole history, on SQLite and a real redis-server."""

from __future__ import annotations

import random
import sqlite3
import uuid

import pytest

from explorec.serve.stores import Interaction, RankEvent, RedisStore, SQLiteStore

# names that need escaping in JSON or look like the separators of the Redis entries
ODD = ["", "a|b", 'q"uote', "back\\slash", 'tail\\', '\\"', "com,ma", "[1, 2]", "null", "é",
       "\u2603 snow", "\U0001f600 emoji", "tab\there", "new\nline", " "]


def reference(store, user: str, upto_seq: int | None = None, limit: int | None = None
              ) -> tuple[list[str], int]:
    """The former implementation: every row of the user, deduplicated and sliced in Python."""
    rows = [r for r in store.iter_interactions() if r.user == user]
    if upto_seq is not None:
        rows = [r for r in rows if r.seq <= upto_seq]
    items = list(dict.fromkeys(r.item for r in rows))
    if limit is not None:
        items = items[-limit:]
    return items, rows[-1].seq if rows else 0


def fill(store, n: int = 600, seed: int = 0) -> list[int]:
    """Interleaved histories of three users with many repeats (and positive rewards); the seqs."""
    rng = random.Random(seed)
    catalog = [f"i{k}" for k in range(40)] + ODD
    seqs = []
    for _ in range(n // 50):
        rows = [Interaction(rng.choice(["u1", "u1", "u2", "u3"]), rng.choice(catalog), "click",
                            None, float(rng.random())) for _ in range(50)]
        seqs.append(store.add_interactions(rows))
    ev = RankEvent(uuid.uuid4().hex, "u1", 1.0, "art", "egreedy", ["r1", "i3", "é"], [0, 1, 2],
                   [0.5, 0.3, 0.2], [1.0, 0.5, None], ["r1", "i3", "é", "z"])
    store.log_rank(ev)
    for pos, reward in ((0, 1.0), (1, 0.0), (2, 2.0)):
        store.add_reward(ev, pos, reward, 2.0)
    seqs.append(store.add_interactions([Interaction("u1", "i0", "view")]))
    return seqs


def test_first_occurrence_order_and_limit(store):
    store.add_interactions([Interaction("u", x, "click") for x in "abacbd"])
    assert store.history("u") == (list("abcd"), 6)
    # "a" and "b" were seen again lately, but they rank by their first interaction
    assert store.history("u", limit=2) == (["c", "d"], 6)
    assert store.history("u", limit=3) == (["b", "c", "d"], 6)
    assert store.history("u", limit=10) == (list("abcd"), 6)
    assert store.history("u", upto_seq=4) == (list("abc"), 4)
    assert store.history("u", upto_seq=4, limit=1) == (["c"], 4)
    assert store.history("u", upto_seq=0, limit=1) == ([], 0)
    assert store.history("nobody", limit=5) == ([], 0)


@pytest.mark.parametrize("limit", [None, 1, 2, 7, 30, 54, 55, 1000, 0, -3])
def test_same_as_reading_everything(store, limit):
    seqs = fill(store)
    for user in ("u1", "u2", "u3", "nobody"):
        for upto in (None, 0, 1, seqs[0], seqs[3] - 7, seqs[len(seqs) // 2], seqs[-1], seqs[-1] + 100):
            got = store.history(user, upto_seq=upto, limit=limit)
            assert got == reference(store, user, upto, limit), (user, upto, limit)


def test_odd_item_names_round_trip(store):
    store.add_interactions([Interaction("u", x, "click") for x in [*ODD, *reversed(ODD)]])
    assert store.history("u") == (ODD, 2 * len(ODD))
    assert store.history("u", limit=4) == (ODD[-4:], 2 * len(ODD))


def test_long_history_with_limit(store):
    rng = random.Random(1)
    rows = [Interaction("u", f"item{rng.randrange(3000)}", "click", None, float(i)) for i in range(5000)]
    for k in range(0, len(rows), 1000):
        store.add_interactions(rows[k:k + 1000])
    for upto, limit in ((None, 1000), (2500, 1000), (None, 1), (4999, 5000)):
        assert store.history("u", upto_seq=upto, limit=limit) == reference(store, "u", upto, limit)


def test_redis_history_does_not_read_the_list(store, monkeypatch):
    if not isinstance(store, RedisStore):
        pytest.skip("Redis only")
    store.add_interactions([Interaction("u", x, "click") for x in "abacbd"])

    def whole_list(*a, **k):
        raise AssertionError("history() read the whole list")

    monkeypatch.setattr(store._r, "lrange", whole_list)
    assert store.history("u", limit=2) == (["c", "d"], 6)


def _plan(path, sql: str, args: tuple) -> str:
    c = sqlite3.connect(path)
    try:
        return " | ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + sql, args))
    finally:
        c.close()


def test_sqlite_history_uses_the_item_index(tmp_path):
    path = tmp_path / "old.db"
    s = SQLiteStore(path)
    s.add_interactions([Interaction("u", x, "click") for x in "abacbd"])
    s.close()
    # a database file from before the index: opening it adds the index
    c = sqlite3.connect(path)
    c.execute("DROP INDEX interactions_user_item")
    c.commit()
    c.close()
    s = SQLiteStore(path)
    try:
        assert s.history("u", limit=2) == (["c", "d"], 6)
        sql = ("SELECT item, min(seq) AS first FROM interactions WHERE user = ? AND seq <= ? "
               "GROUP BY item ORDER BY first DESC LIMIT ?")
        assert "COVERING INDEX interactions_user_item" in _plan(path, sql, ("u", 5, 2))
    finally:
        s.close()
