"""The embedded store: one SQLite file (WAL, ``synchronous=FULL``, group commit)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

from explorec._io import sha256_bytes
from explorec.serve.faults import fault
from explorec.serve.stores.base import (
    StoreError,
    _vec_bytes,
    _vec_from,
    arrays_from_bytes,
    arrays_to_bytes,
    translate_errors,
    upto_bounds,
)
from explorec.serve.stores.records import (
    Heads,
    Interaction,
    ItemRecord,
    RankEvent,
    RewardRecord,
    RewardResult,
    Snapshot,
)
from explorec.serve.stores.sqlite_queries import SQLiteQueries

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    event_id TEXT PRIMARY KEY, user TEXT NOT NULL, ts REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_user ON events(user);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS rewards(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, position INTEGER NOT NULL,
    item TEXT NOT NULL, reward REAL NOT NULL, user TEXT NOT NULL, ts REAL NOT NULL,
    UNIQUE(event_id, position));
CREATE INDEX IF NOT EXISTS rewards_user ON rewards(user);
CREATE TABLE IF NOT EXISTS interactions(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, item TEXT NOT NULL,
    kind TEXT NOT NULL, value REAL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS interactions_user ON interactions(user, seq);
CREATE INDEX IF NOT EXISTS interactions_user_item ON interactions(user, item, seq);
CREATE TABLE IF NOT EXISTS items(
    item TEXT PRIMARY KEY, ord INTEGER NOT NULL UNIQUE, seq INTEGER NOT NULL, text TEXT NOT NULL,
    features TEXT NOT NULL, deleted INTEGER NOT NULL, space TEXT NOT NULL, vector BLOB,
    ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS items_seq ON items(seq);
CREATE TABLE IF NOT EXISTS snapshots(
    artifact TEXT PRIMARY KEY, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    n_items INTEGER NOT NULL, n_applied INTEGER NOT NULL, blob BLOB NOT NULL,
    sha256 TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@translate_errors(sqlite3.Error, OSError)
class SQLiteStore(SQLiteQueries):
    """Embedded store: one SQLite file in WAL mode, ``synchronous=FULL``, ``secure_delete``.

    One writer connection (serialised by a lock and ``BEGIN IMMEDIATE``, so several processes
    may share the file) and one reader connection per thread (WAL readers never block).

    Group commit: a write runs inside the open transaction (in its own savepoint); the last of
    the writers queued at that moment commits for all of them (at most ``group_max`` writes per
    commit), and each waits for the commit that holds its write before returning. Under load
    many acknowledged writes share one fsync; alone, a write commits at once.

    Processes sharing the file (``serve --workers N``) take turns at writing through an
    ``flock`` on ``<db>-lock``, held from ``BEGIN IMMEDIATE`` to the commit: the next writer
    takes a freed turn within 0.2 ms. Without it (``writer_lock = False``) a
    writer that finds the database locked is left to SQLite's busy handler, which sleeps 1, 2,
    5, 10 ... 100 ms between tries, however soon the lock is free: the long tail that
    ``benchmarks/sqlite_writers.py`` measures. Other processes (the CLI, an erasure's purge)
    still meet the busy handler, as before.
    """

    group_max = 64
    writer_lock = True  #: take turns with other processes through ``<db>-lock`` (POSIX)
    turn_timeout_s = 30.0  #: as long as SQLite's busy timeout

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._w = self._connect()
            self._w.execute("PRAGMA journal_mode=WAL")
            self._w.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open SQLite store {self.path}: {e}") from e
        self._wlock = threading.Lock()
        self._cond = threading.Condition(self._wlock)
        self._want_lock = threading.Lock()
        self._want = 0  # writers waiting for the lock
        self._in_tx = False
        self._gen = 0  # transactions begun
        self._committed = 0  # transactions committed (or rolled back: then _failed)
        self._failed: dict[int, BaseException] = {}
        self._ops = 0
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._lockfd = -1
        if fcntl is not None and self.writer_lock:
            try:
                self._lockfd = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                self._w.close()
                raise StoreError(f"cannot open the writers' lock file {self.path}-lock: {e}") from e

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA secure_delete=ON")
        c.execute("PRAGMA busy_timeout=30000")
        return c

    def _r(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._connect()
            c.execute("PRAGMA query_only=ON")
            self._local.conn = c
            self._readers.append(c)
        return c

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; returns only after its transaction committed (fsynced)."""
        if self._closed:
            raise StoreError("the store is closed")
        with self._want_lock:
            self._want += 1
        with self._cond:
            with self._want_lock:
                self._want -= 1
            c = self._w
            try:
                if not self._in_tx:
                    self._turn(True)
                    try:
                        c.execute("BEGIN IMMEDIATE")
                    except BaseException:
                        self._turn(False)
                        raise
                    self._in_tx = True
                    self._gen += 1
                    self._ops = 0
            except sqlite3.Error as e:
                raise StoreError(f"SQLite store {self.path}: {e}") from e
            gen = self._gen
            self._ops += 1
            c.execute("SAVEPOINT op")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK TO op")
                c.execute("RELEASE op")
                self._finish(gen)
                raise
            c.execute("RELEASE op")
            self._finish(gen)
            err = self._failed.get(gen)
        if err is not None:
            raise StoreError(f"SQLite store {self.path}: commit failed: {err}") from err

    def _turn(self, take: bool) -> None:
        """Take or give back this process's turn at writing. Taking polls a non-blocking
        ``flock`` every 0.02-0.2 ms (the GIL released while it sleeps), so a freed turn is
        taken within 0.2 ms; a turn held longer than ``turn_timeout_s`` (a writer
        stopped mid-transaction) is a :class:`StoreError`, as SQLite's busy timeout was."""
        if self._lockfd < 0:
            return
        if not take:
            fcntl.flock(self._lockfd, fcntl.LOCK_UN)
            return
        delay, deadline = 2e-5, time.monotonic() + self.turn_timeout_s
        while True:
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(f"SQLite store {self.path}: another process has held the "
                                     f"writers' turn ({self.path}-lock) for over "
                                     f"{self.turn_timeout_s:g} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 2e-4)

    def _finish(self, gen: int) -> None:
        """Commit now if no other writer is queued (or the group is full); else wait for it."""
        with self._want_lock:
            others = self._want
        if self._in_tx and (others == 0 or self._ops >= self.group_max):
            try:
                self._w.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self._w.execute("ROLLBACK")
                self._failed[self._gen] = e
            self._in_tx = False
            self._turn(False)
            self._committed = self._gen
            self._cond.notify_all()
            return
        while self._committed < gen:
            self._cond.wait()

    def ping(self) -> None:
        try:
            self._r().execute("SELECT 1").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.path}: {e}") from e

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._cond:
            if self._in_tx:
                with contextlib.suppress(sqlite3.Error):
                    self._w.execute("COMMIT")
                self._in_tx = False
                self._committed = self._gen
                self._cond.notify_all()
            for c in [*self._readers, self._w]:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            if self._lockfd >= 0:
                os.close(self._lockfd)  # gives the turn back too
                self._lockfd = -1

    def describe(self) -> str:
        return self.url

    # ------------------------------------------------------------- events and rewards
    def log_rank(self, event: RankEvent) -> None:
        self.log_ranks([event])

    def log_ranks(self, events: Sequence[RankEvent]) -> None:
        with self._tx() as c:
            c.executemany("INSERT INTO events(event_id, user, ts, body) VALUES (?, ?, ?, ?)",
                          [(e.event_id, e.user, e.ts, e.to_json()) for e in events])

    def get_event(self, event_id: str) -> RankEvent | None:
        row = self._r().execute("SELECT body FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else RankEvent.from_json(row[0])

    def get_events(self, event_ids: Sequence[str]) -> dict[str, RankEvent]:
        out: dict[str, RankEvent] = {}
        ids = list(dict.fromkeys(event_ids))
        for s in range(0, len(ids), 500):
            part = ids[s:s + 500]
            q = f"SELECT body FROM events WHERE event_id IN ({','.join('?' * len(part))})"
            for (body,) in self._r().execute(q, part):
                e = RankEvent.from_json(body)
                out[e.event_id] = e
        return out

    def iter_events(self, batch: int = 1000) -> Iterator[RankEvent]:
        last_ts, last_id = -math.inf, ""
        while True:
            rows = self._r().execute(
                "SELECT ts, event_id, body FROM events WHERE (ts, event_id) > (?, ?) "
                "ORDER BY ts, event_id LIMIT ?", (last_ts, last_id, batch)).fetchall()
            if not rows:
                return
            for _, _, body in rows:
                yield RankEvent.from_json(body)
            last_ts, last_id = rows[-1][0], rows[-1][1]

    def add_reward(self, event: RankEvent, position: int, reward: float, ts: float) -> RewardResult:
        return self.add_rewards([(event, position, reward, ts)])[0]

    def add_rewards(self, rewards: Sequence[tuple[RankEvent, int, float, float]]
                    ) -> list[RewardResult]:
        """Every reward in one transaction (one fsync); each applies at most once."""
        fault("reward.before_write")
        out: list[tuple[str, Any]] = []
        with self._tx() as c:
            for event, position, reward, ts in rewards:
                if c.execute("SELECT 1 FROM events WHERE event_id = ?",
                             (event.event_id,)).fetchone() is None:
                    out.append(("unknown_event", None))
                    continue
                cur = c.execute(
                    "INSERT OR IGNORE INTO rewards(event_id, position, item, reward, user, ts) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (event.event_id, position, event.items[position], float(reward), event.user, ts))
                inserted = cur.rowcount == 1
                if inserted and reward > 0:
                    c.execute("INSERT INTO interactions(user, item, kind, value, ts) VALUES (?, ?, ?, ?, ?)",
                              (event.user, event.items[position], "reward", float(reward), ts))
                row = c.execute("SELECT seq, event_id, position, item, reward, user, ts FROM rewards "
                                "WHERE event_id = ? AND position = ?", (event.event_id, position)).fetchone()
                out.append(("recorded" if inserted else "duplicate", row))
            fault("reward.in_transaction")
        fault("reward.after_commit")
        return [RewardResult(st) if row is None else RewardResult(st, RewardRecord(*row))
                for st, row in out]

    def rewards_since(self, seq: int, limit: int = 10_000) -> list[RewardRecord]:
        rows = self._r().execute(
            "SELECT seq, event_id, position, item, reward, user, ts FROM rewards WHERE seq > ? "
            "ORDER BY seq LIMIT ?", (seq, limit)).fetchall()
        return [RewardRecord(*r) for r in rows]

    def rewards_for_event(self, event_id: str) -> list[RewardRecord]:
        rows = self._r().execute(
            "SELECT seq, event_id, position, item, reward, user, ts FROM rewards WHERE event_id = ? "
            "ORDER BY position", (event_id,)).fetchall()
        return [RewardRecord(*r) for r in rows]

    # ------------------------------------------------------------- interactions
    def add_interactions(self, rows: Sequence[Interaction]) -> int:
        if not rows:
            return self.heads_interactions()
        with self._tx() as c:
            c.executemany("INSERT INTO interactions(user, item, kind, value, ts) VALUES (?, ?, ?, ?, ?)",
                          [(r.user, r.item, r.kind, r.value, r.ts) for r in rows])
            seq = c.execute("SELECT max(seq) FROM interactions").fetchone()[0]
        return int(seq or 0)

    def heads_interactions(self) -> int:
        return int(self._r().execute("SELECT coalesce(max(seq), 0) FROM interactions").fetchone()[0])

    def history(self, user: str, upto_seq: int | None = None, limit: int | None = None
                ) -> tuple[list[str], int]:
        """The user's distinct items in the order of their first interaction (at most the last
        ``limit`` of them) and the seq of their last interaction (both up to ``upto_seq``)."""
        where = "user = ?"
        args: list[Any] = [user]
        if upto_seq is not None:
            where += " AND seq <= ?"
            args.append(upto_seq)
        n = limit if limit is not None and limit > 0 else -1  # LIMIT -1: no limit
        c = self._r()
        own_tx = not c.in_transaction
        if own_tx:
            c.execute("BEGIN")  # one snapshot for both queries
        try:
            (seq,) = c.execute(f"SELECT max(seq) FROM interactions WHERE {where}", args).fetchone()
            # the index on (user, item, seq) covers the grouping: each item's first seq
            rows = c.execute(
                f"SELECT item FROM (SELECT item, min(seq) AS first FROM interactions WHERE {where} "
                "GROUP BY item ORDER BY first DESC LIMIT ?) ORDER BY first", [*args, n]).fetchall()
        finally:
            if own_tx:
                c.execute("COMMIT")
        items = [r[0] for r in rows]
        if limit is not None and limit <= 0:
            items = items[-limit:]  # the slice semantics of a non-positive limit
        return items, int(seq or 0)

    def histories(self, users: Sequence[str], limit: int | None = None,
                  upto: Sequence[int | None] | None = None) -> list[tuple[list[str], int]]:
        """:meth:`history` of each user (up to ``upto[i]``), all read in one snapshot."""
        bounds = upto_bounds(users, upto)
        c = self._r()
        own_tx = not c.in_transaction
        if own_tx:
            c.execute("BEGIN")
        try:
            return [self.history(u, upto_seq=b, limit=limit) for u, b in zip(users, bounds, strict=True)]
        finally:
            if own_tx:
                c.execute("COMMIT")

    def heads_and_histories(self, users: Sequence[str], limit: int | None = None
                            ) -> tuple[Heads, list[tuple[list[str], int]]]:
        """:meth:`heads` and :meth:`histories` in one read transaction (one snapshot)."""
        c = self._r()
        own_tx = not c.in_transaction
        if own_tx:
            c.execute("BEGIN")
        try:
            return self.heads(), self.histories(users, limit)
        finally:
            if own_tx:
                c.execute("COMMIT")

    def iter_interactions(self) -> Iterator[Interaction]:
        last = 0
        while True:
            rows = self._r().execute("SELECT user, item, kind, value, ts, seq FROM interactions "
                                     "WHERE seq > ? ORDER BY seq LIMIT 5000", (last,)).fetchall()
            if not rows:
                return
            for r in rows:
                yield Interaction(*r)
            last = rows[-1][5]

    # ------------------------------------------------------------- items
    def _next_item_seq(self, c: sqlite3.Connection) -> int:
        row = c.execute("SELECT value FROM meta WHERE key = 'items_seq'").fetchone()
        seq = int(row[0]) + 1 if row else 1
        c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('items_seq', ?)", (str(seq),))
        return seq

    _ITEM_COLS = "item, text, features, deleted, seq, ord, space, vector, ts"

    @staticmethod
    def _item(row: Sequence[Any]) -> ItemRecord:
        item, text, feats, deleted, seq, ord_, space, vec, ts = row
        return ItemRecord(item, text, json.loads(feats), bool(deleted), int(seq), int(ord_), space,
                          _vec_from(vec), float(ts))

    def put_item(self, item: str, text: str, features: dict[str, Any], space: str,
                 vector: np.ndarray | None, ts: float) -> ItemRecord:
        feats = json.dumps(features, sort_keys=True, allow_nan=False)
        with self._tx() as c:
            seq = self._next_item_seq(c)
            row = c.execute("SELECT ord FROM items WHERE item = ?", (item,)).fetchone()
            if row is None:
                ord_ = int(c.execute("SELECT coalesce(max(ord), -1) + 1 FROM items").fetchone()[0])
                c.execute(f"INSERT INTO items({self._ITEM_COLS}) "
                          "VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)",
                          (item, text, feats, seq, ord_, space, _vec_bytes(vector), ts))
            else:
                ord_ = int(row[0])
                c.execute("UPDATE items SET text = ?, features = ?, deleted = 0, seq = ?, space = ?, "
                          "vector = ?, ts = ? WHERE item = ?",
                          (text, feats, seq, space, _vec_bytes(vector), ts, item))
        return ItemRecord(item, text, features, False, seq, ord_, space, vector, ts)

    def delete_item(self, item: str, ts: float) -> ItemRecord | None:
        """Mark an item deleted (creating a tombstone for an artifact item); None if already so."""
        with self._tx() as c:
            row = c.execute(f"SELECT {self._ITEM_COLS} FROM items WHERE item = ?", (item,)).fetchone()
            if row is not None and row[3]:
                return None
            seq = self._next_item_seq(c)
            if row is None:
                ord_ = int(c.execute("SELECT coalesce(max(ord), -1) + 1 FROM items").fetchone()[0])
                c.execute(f"INSERT INTO items({self._ITEM_COLS}) VALUES (?, '', '{{}}', 1, ?, ?, '', "
                          "NULL, ?)", (item, seq, ord_, ts))
            else:
                c.execute("UPDATE items SET deleted = 1, seq = ?, ts = ? WHERE item = ?", (seq, ts, item))
            new = c.execute(f"SELECT {self._ITEM_COLS} FROM items WHERE item = ?", (item,)).fetchone()
        return self._item(new)

    def get_item(self, item: str) -> ItemRecord | None:
        row = self._r().execute(f"SELECT {self._ITEM_COLS} FROM items WHERE item = ?", (item,)).fetchone()
        return None if row is None else self._item(row)

    def items_since(self, seq: int) -> list[ItemRecord]:
        rows = self._r().execute(f"SELECT {self._ITEM_COLS} FROM items WHERE seq > ? ORDER BY seq",
                                 (seq,)).fetchall()
        return [self._item(r) for r in rows]

    # ------------------------------------------------------------- users and state
    def delete_user(self, user: str) -> dict[str, int]:
        """Delete the user's rows and bump the erase epoch (one durable transaction). Their
        bytes leave the files only with :meth:`purge`: ``secure_delete`` zeroes the freed
        pages, but the WAL still holds the older frames until a checkpoint truncates it."""
        with self._tx() as c:
            n_rw = c.execute("DELETE FROM rewards WHERE user = ?", (user,)).rowcount
            n_ev = c.execute("DELETE FROM events WHERE user = ?", (user,)).rowcount
            n_in = c.execute("DELETE FROM interactions WHERE user = ?", (user,)).rowcount
            c.execute("DELETE FROM snapshots")
            row = c.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('epoch', ?)",
                      (str(int(row[0]) + 1 if row else 1),))
        return {"events": n_ev, "rewards": n_rw, "interactions": n_in}

    def files(self) -> list[Path]:
        """Every file this store writes: the database, its WAL, the WAL index and the
        writers' lock file (empty)."""
        return [Path(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm", "-lock")]

    def purge(self, timeout: float = 1.0) -> int | None:
        """Make every erasure so far physical: checkpoint the WAL into the database (whose
        freed pages ``secure_delete`` zeroed) and truncate it to zero bytes.

        A reader holding an older snapshot (another process's long read transaction, a
        backup) blocks the truncation; each try waits at most 250 ms for it, until
        ``timeout``. Returns the erase epoch now purged, or None when still blocked (retry).
        """
        epoch = self.heads().epoch
        deadline = time.monotonic() + max(0.0, timeout)
        wal = Path(f"{self.path}-wal")
        try:
            c = sqlite3.connect(self.path, timeout=0.25, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.path}: {e}") from e
        try:
            c.execute("PRAGMA busy_timeout=250")
            while True:
                try:
                    busy = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                except sqlite3.OperationalError:  # locked by a writer of another process
                    busy = 1
                if busy == 0 and (not wal.exists() or wal.stat().st_size == 0):
                    break
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)
        finally:
            c.close()
        with self._tx() as w:
            row = w.execute("SELECT value FROM meta WHERE key = 'purged_epoch'").fetchone()
            done = max(epoch, int(row[0]) if row else 0)
            w.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('purged_epoch', ?)", (str(done),))
        return done

    def erase_status(self) -> tuple[int, int]:
        """(erase epoch, purged epoch): erasures up to the purged epoch are gone from the files."""
        row = self._r().execute("SELECT (SELECT value FROM meta WHERE key = 'epoch'), "
                                "(SELECT value FROM meta WHERE key = 'purged_epoch')").fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def user_trace(self, user: str) -> int:
        r = self._r()
        n = 0
        for table in ("events", "rewards", "interactions"):
            n += int(r.execute(f"SELECT count(*) FROM {table} WHERE user = ?", (user,)).fetchone()[0])
        needle = json.dumps(user)
        n += int(r.execute("SELECT count(*) FROM events WHERE instr(body, ?) > 0", (needle,)).fetchone()[0])
        return n

    def heads(self) -> Heads:
        row = self._r().execute(
            "SELECT (SELECT value FROM meta WHERE key = 'epoch'), "
            "(SELECT value FROM meta WHERE key = 'items_seq'), "
            "(SELECT max(seq) FROM rewards)").fetchone()
        return Heads(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))

    def save_snapshot(self, snap: Snapshot) -> None:
        blob = arrays_to_bytes(snap.arrays)
        fault("snapshot.before_write")
        with self._tx() as c:
            epoch = c.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            if int(epoch[0] if epoch else 0) != snap.epoch:
                return  # a user was erased meanwhile: this state may still hold them
            c.execute("INSERT OR REPLACE INTO snapshots(artifact, epoch, seq, n_items, n_applied, blob, "
                      "sha256, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (snap.artifact, snap.epoch, snap.seq, snap.n_items, snap.n_applied, blob,
                       sha256_bytes(blob), time.time()))
            fault("snapshot.in_transaction")

    def load_snapshot(self, artifact: str) -> Snapshot | None:
        row = self._r().execute("SELECT epoch, seq, n_items, n_applied, blob, sha256 FROM snapshots "
                                "WHERE artifact = ?", (artifact,)).fetchone()
        if row is None:
            return None
        epoch, seq, n_items, n_applied, blob, digest = row
        if sha256_bytes(blob) != digest:
            raise StoreError(f"policy snapshot for artifact {artifact} fails its sha256 check")
        return Snapshot(artifact, int(epoch), int(seq), int(n_items), int(n_applied),
                        arrays_from_bytes(blob))

    def meta_setnx(self, key: str, value: str) -> str:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))
            return str(c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def meta_get(self, key: str) -> str | None:
        row = self._r().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_set(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def counts(self) -> dict[str, int]:
        r = self._r()
        return {t: int(r.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                for t in ("events", "rewards", "interactions", "items")}
