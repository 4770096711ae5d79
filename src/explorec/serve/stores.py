"""State stores for the service: the event log, rewards, histories, items and policy state.

Two implementations of one :class:`Store` protocol:

* :class:`SQLiteStore` (``sqlite:///PATH``), the embedded default: WAL journal with
  ``synchronous=FULL``; every write method returns only after its transaction committed
  (fsynced), so an acknowledged write survives ``kill -9`` and power loss.
* :class:`RedisStore` (``redis://HOST:PORT/DB``): shared by several server processes. Multi-key
  writes run as Lua scripts (atomic); with ``appendonly yes`` and ``appendfsync always`` Redis
  answers only after the AOF is fsynced.

What is stored:

* served slates (``events``): user, shown items, their candidate positions, propensities,
  scores, the candidate set and the user's history position, so the slate can be replayed for
  learning and off-policy evaluation;
* rewards, keyed by ``(event_id, position)`` so a reward is recorded at most once (unique
  constraint / ``SET NX`` inside a script), each with a global sequence number;
* interactions (views, clicks, ratings, purchases and positive rewards): the users' histories;
* items added or deleted through the API, with their text, features and encoded vector;
* policy-state snapshots (the arrays of ``Policy.get_state``), per artifact, plus an *epoch*
  that erasing a user bumps (every process then rebuilds its policy state without them).

API keys are never stored. Deleting a user removes their events, rewards and history and
compacts the storage (SQLite ``secure_delete`` + WAL truncation; Redis AOF rewrite), so
nothing about them remains on disk.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from explorec._io import sha256_bytes
from explorec.errors import ExploRecError


class StoreError(ExploRecError):
    """A store that cannot be opened or reached, or a stored record that is corrupt."""


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class RankEvent:
    """One served slate. ``positions`` index into ``candidates``; ``history_seq`` is the last
    interaction of the user that the ranking saw."""

    event_id: str
    user: str
    ts: float
    artifact: str
    policy: str
    items: list[str]
    positions: list[int]
    propensities: list[float]
    scores: list[float | None]
    candidates: list[str]
    history_seq: int = 0
    context: dict[str, Any] | None = None

    def to_json(self) -> str:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}  # shallow: no deepcopy
        return json.dumps(d, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> RankEvent:
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as e:
            raise StoreError(f"corrupt event record: {e}") from e


@dataclass(frozen=True)
class RewardRecord:
    seq: int
    event_id: str
    position: int
    item: str
    reward: float
    user: str
    ts: float


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    kind: str
    value: float | None = None
    ts: float = 0.0
    seq: int = 0


@dataclass(frozen=True)
class ItemRecord:
    """An item put or deleted through the API. ``order`` is its creation order (stable)."""

    item: str
    text: str
    features: dict[str, Any]
    deleted: bool
    seq: int
    order: int
    space: str = ""
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    ts: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    artifact: str
    epoch: int
    seq: int
    n_items: int
    n_applied: int
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Heads:
    """What changed last: the erase epoch, the last item change and the last reward."""

    epoch: int
    items_seq: int
    rewards_seq: int


@dataclass(frozen=True)
class RewardResult:
    status: str  # "recorded" | "duplicate" | "unknown_event"
    record: RewardRecord | None = None


# ------------------------------------------------------------------ array blobs (no pickle)
def arrays_to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def arrays_from_bytes(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _vec_bytes(v: np.ndarray | None) -> bytes | None:
    return None if v is None else np.asarray(v, dtype="<f4").tobytes()


def _vec_from(b: bytes | None) -> np.ndarray | None:
    return None if not b else np.frombuffer(b, dtype="<f4").copy()


def redact_url(url: str) -> str:
    """The store URL with any password replaced by ``***`` (safe to log)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{host}")
    return urlunsplit(parts)


# ------------------------------------------------------------------ protocol
@runtime_checkable
class Store(Protocol):
    """Durable service state. Every write method returns after the write is durable."""

    url: str

    def ping(self) -> None: ...
    def close(self) -> None: ...
    def describe(self) -> str: ...

    # served slates and rewards
    def log_rank(self, event: RankEvent) -> None: ...
    def log_ranks(self, events: Sequence[RankEvent]) -> None:
        """Several slates in one atomic, durable write."""
        ...
    def get_event(self, event_id: str) -> RankEvent | None: ...
    def get_events(self, event_ids: Sequence[str]) -> dict[str, RankEvent]: ...
    def iter_events(self, batch: int = 1000) -> Iterator[RankEvent]: ...
    def add_reward(self, event: RankEvent, position: int, reward: float, ts: float) -> RewardResult:
        """Record a reward once per (event, position); a positive reward also joins the user's
        history (kind ``reward``) in the same atomic write."""
        ...
    def rewards_since(self, seq: int, limit: int = 10_000) -> list[RewardRecord]: ...
    def rewards_for_event(self, event_id: str) -> list[RewardRecord]: ...

    # interactions / histories
    def add_interactions(self, rows: Sequence[Interaction]) -> int: ...
    def history(self, user: str, upto_seq: int | None = None, limit: int | None = None
                ) -> tuple[list[str], int]: ...
    def iter_interactions(self) -> Iterator[Interaction]: ...

    # items
    def put_item(self, item: str, text: str, features: dict[str, Any], space: str,
                 vector: np.ndarray | None, ts: float) -> ItemRecord: ...
    def delete_item(self, item: str, ts: float) -> ItemRecord | None: ...
    def get_item(self, item: str) -> ItemRecord | None: ...
    def items_since(self, seq: int) -> list[ItemRecord]: ...

    # users, state, bookkeeping
    def delete_user(self, user: str) -> dict[str, int]: ...
    def user_trace(self, user: str) -> int: ...
    def heads(self) -> Heads: ...
    def save_snapshot(self, snap: Snapshot) -> None: ...
    def load_snapshot(self, artifact: str) -> Snapshot | None: ...
    def meta_setnx(self, key: str, value: str) -> str: ...
    def meta_get(self, key: str) -> str | None: ...
    def meta_set(self, key: str, value: str) -> None: ...
    def counts(self) -> dict[str, int]: ...


def sqlite_path(url: str) -> str | None:
    """The database path of a ``sqlite://`` store URL (None for other stores)."""
    if not url.startswith("sqlite://"):
        return None
    path = url[len("sqlite://"):]
    if path.startswith("/"):
        path = path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    if not path:
        raise StoreError(f"store URL {url!r}: no database path (use sqlite:///PATH)")
    return path


def open_store(url: str, **options: Any) -> Store:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``redis://[:pw@]host:port/db``."""
    path = sqlite_path(url)
    if path is not None:
        return SQLiteStore(path, **options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, **options)
    raise StoreError(f"unknown store URL {redact_url(url)!r}: use sqlite:///PATH or "
                     "redis://HOST:PORT/DB")


# ------------------------------------------------------------------ SQLite
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


class SQLiteStore:
    """Embedded store: one SQLite file in WAL mode, ``synchronous=FULL``, ``secure_delete``.

    One writer connection (serialised by a lock and ``BEGIN IMMEDIATE``, so several processes
    may share the file) and one reader connection per thread (WAL readers never block).

    Group commit: a write runs inside the open transaction (in its own savepoint); the last of
    the writers queued at that moment commits for all of them (at most ``group_max`` writes per
    commit), and each waits for the commit that holds its write before returning. Under load
    many acknowledged writes share one fsync; alone, a write commits at once.
    """

    group_max = 64

    def __init__(self, path: str | Path, *, compact_on_erase: bool = True) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.compact_on_erase = compact_on_erase
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
                    c.execute("BEGIN IMMEDIATE")
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
        with self._tx() as c:
            if c.execute("SELECT 1 FROM events WHERE event_id = ?", (event.event_id,)).fetchone() is None:
                return RewardResult("unknown_event")
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
        rec = RewardRecord(*row)
        return RewardResult("recorded" if inserted else "duplicate", rec)

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
        q = "SELECT item, seq FROM interactions WHERE user = ?"
        args: list[Any] = [user]
        if upto_seq is not None:
            q += " AND seq <= ?"
            args.append(upto_seq)
        q += " ORDER BY seq"
        rows = self._r().execute(q, args).fetchall()
        items = list(dict.fromkeys(r[0] for r in rows))
        if limit is not None:
            items = items[-limit:]
        return items, int(rows[-1][1]) if rows else 0

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
        with self._tx() as c:
            n_rw = c.execute("DELETE FROM rewards WHERE user = ?", (user,)).rowcount
            n_ev = c.execute("DELETE FROM events WHERE user = ?", (user,)).rowcount
            n_in = c.execute("DELETE FROM interactions WHERE user = ?", (user,)).rowcount
            c.execute("DELETE FROM snapshots")
            row = c.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('epoch', ?)",
                      (str(int(row[0]) + 1 if row else 1),))
        if self.compact_on_erase:
            # secure_delete zeroed the freed pages; move them into the main file and empty the
            # WAL, whose older frames still hold the erased rows
            with contextlib.suppress(sqlite3.Error):
                c = self._connect()
                try:
                    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    c.close()
        return {"events": n_ev, "rewards": n_rw, "interactions": n_in}

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
        with self._tx() as c:
            epoch = c.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            if int(epoch[0] if epoch else 0) != snap.epoch:
                return  # a user was erased meanwhile: this state may still hold them
            c.execute("INSERT OR REPLACE INTO snapshots(artifact, epoch, seq, n_items, n_applied, blob, "
                      "sha256, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (snap.artifact, snap.epoch, snap.seq, snap.n_items, snap.n_applied, blob,
                       sha256_bytes(blob), time.time()))

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


# ------------------------------------------------------------------ Redis
_LUA_ADD_REWARD = """
local P, eid, pos = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', P .. ':ev:' .. eid) == 0 then return {0} end
local key = P .. ':rw:' .. eid .. ':' .. pos
local existing = redis.call('HGET', key, 'seq')
if existing then return {-1, existing} end
local seq = redis.call('INCR', P .. ':seq:rw')
redis.call('HSET', key, 'seq', seq, 'body', ARGV[4])
redis.call('ZADD', P .. ':rws', seq, eid .. ':' .. pos)
redis.call('SADD', P .. ':ev:' .. eid .. ':rw', pos)
if ARGV[5] ~= '' then
  local iseq = redis.call('INCR', P .. ':seq:in')
  redis.call('RPUSH', P .. ':u:' .. ARGV[6] .. ':h', iseq .. '|' .. ARGV[5])
  redis.call('SADD', P .. ':users', ARGV[6])
end
return {1, tostring(seq)}
"""

_LUA_LOG_RANK = """
local P, eid, user = ARGV[1], ARGV[2], ARGV[3]
redis.call('SET', P .. ':ev:' .. eid, ARGV[4])
redis.call('ZADD', P .. ':evts', ARGV[5], eid)
redis.call('SADD', P .. ':u:' .. user .. ':ev', eid)
return 1
"""

_LUA_ADD_INTERACTIONS = """
local P = ARGV[1]
local n = (#ARGV - 1) / 2
local seq = 0
for i = 1, n do
  local user, body = ARGV[2 * i], ARGV[2 * i + 1]
  seq = redis.call('INCR', P .. ':seq:in')
  redis.call('RPUSH', P .. ':u:' .. user .. ':h', seq .. '|' .. body)
  redis.call('SADD', P .. ':users', user)
end
return seq
"""

_LUA_PUT_ITEM = """
local P, item = ARGV[1], ARGV[2]
local key = P .. ':it:' .. item
local ord = redis.call('HGET', key, 'ord')
if not ord then ord = redis.call('INCR', P .. ':seq:itord') - 1 end
local seq = redis.call('INCR', P .. ':seq:it')
redis.call('HSET', key, 'ord', ord, 'seq', seq, 'body', ARGV[3], 'deleted', 0, 'space', ARGV[4],
           'vector', ARGV[5])
redis.call('ZADD', P .. ':its', seq, item)
return {tostring(seq), tostring(ord)}
"""

_LUA_DELETE_ITEM = """
local P, item = ARGV[1], ARGV[2]
local key = P .. ':it:' .. item
if redis.call('HGET', key, 'deleted') == '1' then return {0} end
local ord = redis.call('HGET', key, 'ord')
if not ord then
  ord = redis.call('INCR', P .. ':seq:itord') - 1
  redis.call('HSET', key, 'body', ARGV[3], 'space', '', 'vector', '')
end
local seq = redis.call('INCR', P .. ':seq:it')
redis.call('HSET', key, 'ord', ord, 'seq', seq, 'deleted', 1)
redis.call('ZADD', P .. ':its', seq, item)
return {tostring(seq), tostring(ord)}
"""

_LUA_DELETE_USER = """
local P, user = ARGV[1], ARGV[2]
local evs = redis.call('SMEMBERS', P .. ':u:' .. user .. ':ev')
local n_ev, n_rw = 0, 0
for _, eid in ipairs(evs) do
  local poss = redis.call('SMEMBERS', P .. ':ev:' .. eid .. ':rw')
  for _, pos in ipairs(poss) do
    n_rw = n_rw + redis.call('DEL', P .. ':rw:' .. eid .. ':' .. pos)
    redis.call('ZREM', P .. ':rws', eid .. ':' .. pos)
  end
  redis.call('DEL', P .. ':ev:' .. eid .. ':rw')
  n_ev = n_ev + redis.call('DEL', P .. ':ev:' .. eid)
  redis.call('ZREM', P .. ':evts', eid)
end
redis.call('DEL', P .. ':u:' .. user .. ':ev')
local n_in = redis.call('LLEN', P .. ':u:' .. user .. ':h')
redis.call('DEL', P .. ':u:' .. user .. ':h')
redis.call('SREM', P .. ':users', user)
local snaps = redis.call('SMEMBERS', P .. ':snaps')
for _, a in ipairs(snaps) do redis.call('DEL', P .. ':snap:' .. a) end
redis.call('DEL', P .. ':snaps')
redis.call('INCR', P .. ':epoch')
return {n_ev, n_rw, n_in}
"""

_LUA_SAVE_SNAPSHOT = """
local P, a, epoch = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('GET', P .. ':epoch') or '0'
if cur ~= epoch then return 0 end
redis.call('HSET', P .. ':snap:' .. a, 'meta', ARGV[4], 'blob', ARGV[5])
redis.call('SADD', P .. ':snaps', a)
return 1
"""


class RedisStore:
    """Shared store on a Redis server; keys live under ``prefix`` (default ``explorec``).

    Run Redis with ``appendonly yes`` and ``appendfsync always`` for the same durability as
    the SQLite store (an acknowledged write is on disk); :meth:`durability` reports the
    server's settings and the service warns at start when they are weaker.
    """

    def __init__(self, url: str, *, prefix: str = "explorec", compact_on_erase: bool = True,
                 socket_timeout: float = 10.0) -> None:
        try:
            import redis
        except ImportError as e:  # pragma: no cover - serve extra missing
            raise StoreError("the Redis store needs the redis package: pip install 'explorec[serve]'") from e
        self.url = url
        self.prefix = prefix
        self.compact_on_erase = compact_on_erase
        self._r = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                       socket_connect_timeout=socket_timeout, health_check_interval=30)
        self._scripts = {name: self._r.register_script(src) for name, src in (
            ("add_reward", _LUA_ADD_REWARD), ("log_rank", _LUA_LOG_RANK),
            ("add_interactions", _LUA_ADD_INTERACTIONS), ("put_item", _LUA_PUT_ITEM),
            ("delete_item", _LUA_DELETE_ITEM), ("delete_user", _LUA_DELETE_USER),
            ("save_snapshot", _LUA_SAVE_SNAPSHOT))}
        self._redis_error = redis.RedisError

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return self._scripts[name](args=[self.prefix, *args])
        except self._redis_error as e:
            raise StoreError(f"Redis store {self.describe()}: {e}") from e

    def ping(self) -> None:
        try:
            self._r.ping()
        except self._redis_error as e:
            raise StoreError(f"Redis store {self.describe()}: {e}") from e

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._r.close()

    def describe(self) -> str:
        return redact_url(self.url)

    def durability(self) -> dict[str, str]:
        """The server's ``appendonly`` / ``appendfsync`` settings."""
        try:
            cfg = self._r.config_get("append*")
        except self._redis_error:
            return {}
        return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in cfg.items()}

    # ------------------------------------------------------------- events and rewards
    def log_rank(self, event: RankEvent) -> None:
        self._call("log_rank", event.event_id, event.user, event.to_json(), repr(event.ts))

    def log_ranks(self, events: Sequence[RankEvent]) -> None:
        """One pipelined round trip; each slate's script is atomic (a slate is one write)."""
        if len(events) == 1:
            self.log_rank(events[0])
            return
        try:
            pipe = self._r.pipeline(transaction=True)
            for e in events:
                self._scripts["log_rank"](args=[self.prefix, e.event_id, e.user, e.to_json(), repr(e.ts)],
                                          client=pipe)
            pipe.execute()
        except self._redis_error as err:
            raise StoreError(f"Redis store {self.describe()}: {err}") from err

    def get_event(self, event_id: str) -> RankEvent | None:
        body = self._r.get(self._k("ev", event_id))
        return None if body is None else RankEvent.from_json(body)

    def get_events(self, event_ids: Sequence[str]) -> dict[str, RankEvent]:
        ids = list(dict.fromkeys(event_ids))
        out: dict[str, RankEvent] = {}
        for s in range(0, len(ids), 500):
            part = ids[s:s + 500]
            for body in self._r.mget([self._k("ev", i) for i in part]):
                if body is not None:
                    e = RankEvent.from_json(body)
                    out[e.event_id] = e
        return out

    def iter_events(self, batch: int = 1000) -> Iterator[RankEvent]:
        start = 0
        while True:
            ids = self._r.zrange(self._k("evts"), start, start + batch - 1)
            if not ids:
                return
            events = self.get_events([i.decode() for i in ids])
            for i in ids:
                e = events.get(i.decode())
                if e is not None:
                    yield e
            start += batch

    def add_reward(self, event: RankEvent, position: int, reward: float, ts: float) -> RewardResult:
        body = json.dumps({"event_id": event.event_id, "position": position,
                           "item": event.items[position], "reward": float(reward),
                           "user": event.user, "ts": ts}, allow_nan=False)
        hist = (json.dumps([event.items[position], "reward", float(reward), ts], allow_nan=False)
                if reward > 0 else "")
        res = self._call("add_reward", event.event_id, str(position), body, hist, event.user)
        status = int(res[0])
        if status == 0:
            return RewardResult("unknown_event")
        seq = int(res[1])
        if status == -1:
            recs = [r for r in self.rewards_for_event(event.event_id) if r.position == position]
            return RewardResult("duplicate", recs[0] if recs else None)
        return RewardResult("recorded", RewardRecord(seq, event.event_id, position,
                                                     event.items[position], float(reward),
                                                     event.user, ts))

    def _rewards(self, members: Sequence[bytes]) -> list[RewardRecord]:
        pipe = self._r.pipeline(transaction=False)
        for m in members:
            eid, _, pos = m.decode().rpartition(":")
            pipe.hmget(self._k("rw", eid, pos), "seq", "body")
        out = []
        for seq, body in pipe.execute():
            if seq is None:
                continue  # erased between the two reads
            d = json.loads(body)
            out.append(RewardRecord(int(seq), d["event_id"], int(d["position"]), d["item"],
                                    float(d["reward"]), d["user"], float(d["ts"])))
        return out

    def rewards_since(self, seq: int, limit: int = 10_000) -> list[RewardRecord]:
        members = self._r.zrangebyscore(self._k("rws"), f"({seq}", "+inf", start=0, num=limit)
        return self._rewards(members)

    def rewards_for_event(self, event_id: str) -> list[RewardRecord]:
        poss = sorted(int(p) for p in self._r.smembers(self._k("ev", event_id, "rw")))
        return self._rewards([f"{event_id}:{p}".encode() for p in poss])

    # ------------------------------------------------------------- interactions
    def add_interactions(self, rows: Sequence[Interaction]) -> int:
        args: list[str] = []
        for r in rows:
            args += [r.user, json.dumps([r.item, r.kind, r.value, r.ts], allow_nan=False)]
        if not args:
            return int(self._r.get(self._k("seq", "in")) or 0)
        return int(self._call("add_interactions", *args))

    def _parse_history(self, raw: Sequence[bytes], user: str) -> list[Interaction]:
        out = []
        for entry in raw:
            seq, _, body = entry.decode().partition("|")
            item, kind, value, ts = json.loads(body)
            out.append(Interaction(user, item, kind, value, ts, int(seq)))
        return out

    def history(self, user: str, upto_seq: int | None = None, limit: int | None = None
                ) -> tuple[list[str], int]:
        rows = self._parse_history(self._r.lrange(self._k("u", user, "h"), 0, -1), user)
        if upto_seq is not None:
            rows = [r for r in rows if r.seq <= upto_seq]
        items = list(dict.fromkeys(r.item for r in rows))
        if limit is not None:
            items = items[-limit:]
        return items, rows[-1].seq if rows else 0

    def iter_interactions(self) -> Iterator[Interaction]:
        users = sorted(u.decode() for u in self._r.smembers(self._k("users")))
        rows: list[Interaction] = []
        for u in users:
            rows += self._parse_history(self._r.lrange(self._k("u", u, "h"), 0, -1), u)
        yield from sorted(rows, key=lambda r: r.seq)

    # ------------------------------------------------------------- items
    def put_item(self, item: str, text: str, features: dict[str, Any], space: str,
                 vector: np.ndarray | None, ts: float) -> ItemRecord:
        body = json.dumps({"text": text, "features": features, "ts": ts}, sort_keys=True,
                          allow_nan=False)
        seq, ord_ = self._call("put_item", item, body, space, _vec_bytes(vector) or b"")
        return ItemRecord(item, text, features, False, int(seq), int(ord_), space, vector, ts)

    def delete_item(self, item: str, ts: float) -> ItemRecord | None:
        body = json.dumps({"text": "", "features": {}, "ts": ts})
        res = self._call("delete_item", item, body)
        if int(res[0]) == 0:
            return None
        return self.get_item(item)

    def _item(self, item: str, h: dict[bytes, bytes]) -> ItemRecord:
        d = json.loads(h[b"body"])
        return ItemRecord(item, d["text"], d["features"], h.get(b"deleted") == b"1", int(h[b"seq"]),
                          int(h[b"ord"]), h.get(b"space", b"").decode(), _vec_from(h.get(b"vector")),
                          float(d.get("ts", 0.0)))

    def get_item(self, item: str) -> ItemRecord | None:
        h = self._r.hgetall(self._k("it", item))
        return self._item(item, h) if h else None

    def items_since(self, seq: int) -> list[ItemRecord]:
        names = [n.decode() for n in self._r.zrangebyscore(self._k("its"), f"({seq}", "+inf")]
        pipe = self._r.pipeline(transaction=False)
        for n in names:
            pipe.hgetall(self._k("it", n))
        recs = [self._item(n, h) for n, h in zip(names, pipe.execute(), strict=True) if h]
        return sorted(recs, key=lambda r: r.seq)

    # ------------------------------------------------------------- users and state
    def delete_user(self, user: str) -> dict[str, int]:
        n_ev, n_rw, n_in = (int(x) for x in self._call("delete_user", user))
        if self.compact_on_erase:
            # rewrite the AOF so that the erased records are gone from disk, not just from memory
            with contextlib.suppress(self._redis_error):
                self._r.bgrewriteaof()
        return {"events": n_ev, "rewards": n_rw, "interactions": n_in}

    def user_trace(self, user: str) -> int:
        n = 0
        needle = user.encode()
        for key in self._r.scan_iter(match=f"{self.prefix}:*", count=1000):
            if needle in key.split(b":"):
                n += 1
                continue
            t = self._r.type(key)
            if t == b"string":
                vals = [self._r.get(key) or b""]
            elif t == b"hash":
                vals = list(self._r.hgetall(key).values())
            elif t == b"list":
                vals = self._r.lrange(key, 0, -1)
            elif t == b"set":
                vals = list(self._r.smembers(key))
            elif t == b"zset":
                vals = self._r.zrange(key, 0, -1)
            else:
                vals = []
            quoted = json.dumps(user).encode()
            n += sum(1 for v in vals if v == needle or quoted in v)
        return n

    def heads(self) -> Heads:
        epoch, items_seq, rw = self._r.mget(self._k("epoch"), self._k("seq", "it"), self._k("seq", "rw"))
        return Heads(int(epoch or 0), int(items_seq or 0), int(rw or 0))

    def save_snapshot(self, snap: Snapshot) -> None:
        blob = arrays_to_bytes(snap.arrays)
        meta = json.dumps({"epoch": snap.epoch, "seq": snap.seq, "n_items": snap.n_items,
                           "n_applied": snap.n_applied, "sha256": sha256_bytes(blob), "ts": time.time()})
        self._call("save_snapshot", snap.artifact, str(snap.epoch), meta, blob)

    def load_snapshot(self, artifact: str) -> Snapshot | None:
        meta, blob = self._r.hmget(self._k("snap", artifact), "meta", "blob")
        if meta is None or blob is None:
            return None
        m = json.loads(meta)
        if sha256_bytes(blob) != m["sha256"]:
            raise StoreError(f"policy snapshot for artifact {artifact} fails its sha256 check")
        return Snapshot(artifact, int(m["epoch"]), int(m["seq"]), int(m["n_items"]),
                        int(m["n_applied"]), arrays_from_bytes(blob))

    def meta_setnx(self, key: str, value: str) -> str:
        self._r.hsetnx(self._k("meta"), key, value)
        return (self._r.hget(self._k("meta"), key) or b"").decode()

    def meta_get(self, key: str) -> str | None:
        v = self._r.hget(self._k("meta"), key)
        return None if v is None else v.decode()

    def meta_set(self, key: str, value: str) -> None:
        self._r.hset(self._k("meta"), key, value)

    def counts(self) -> dict[str, int]:
        items = self._r.zcard(self._k("its"))
        n_in = 0
        for u in self._r.smembers(self._k("users")):
            n_in += int(self._r.llen(self._k("u", u.decode(), "h")))
        return {"events": int(self._r.zcard(self._k("evts"))), "rewards": int(self._r.zcard(self._k("rws"))),
                "interactions": n_in, "items": int(items)}
