"""The shared store on a Redis server: multi-key writes as Lua scripts, AOF durability."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from explorec._io import sha256_bytes
from explorec.serve.faults import fault
from explorec.serve.stores.base import (
    StoreError,
    _vec_bytes,
    _vec_from,
    arrays_from_bytes,
    arrays_to_bytes,
    redact_url,
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
from explorec.serve.stores.redis_queries import RedisQueries

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


# A user's history list holds ``seq|["item", kind, value, ts]`` entries in seq order. The script
# deduplicates them by the item's JSON token (json.dumps writes equal items alike) in the order of
# their first occurrence and returns the seq of the last entry and only the last ``limit`` tokens
# (0: all), so that the whole list never leaves the server. Exact: an item seen lately but first
# seen long ago still ranks by its first occurrence, which a read of the list's tail cannot know.
_LUA_HISTORY = r"""
local upto, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local match, find, sub, byte = string.match, string.find, string.sub, string.byte
local seen, order, k, last = {}, {}, 0, '0'
for _, e in ipairs(redis.call('LRANGE', ARGV[1] .. ':u:' .. ARGV[2] .. ':h', 0, -1)) do
  local seq, tok = match(e, '^(%d+)|%[("[^"\\]*")')
  if not seq then  -- an escape in the item's name, or not a string
    local bar = find(e, '|', 1, true)
    seq = sub(e, 1, bar - 1)
    local s = bar + 2
    if byte(e, s) == 34 then
      local j = s + 1
      while true do
        j = find(e, '["\\]', j)
        if byte(e, j) == 34 then break end
        j = j + 2
      end
      tok = sub(e, s, j)
    else
      tok = sub(e, s, find(e, ',', s, true) - 1)
    end
  end
  if upto == nil or tonumber(seq) <= upto then
    last = seq
    if not seen[tok] then
      seen[tok] = true
      k = k + 1
      order[k] = tok
    end
  end
end
local out = {last}
local first = 1
if limit > 0 and k > limit then first = k - limit + 1 end
for i = first, k do out[#out + 1] = order[i] end
return out
"""

try:
    from redis import RedisError as _RedisError
except ImportError:  # pragma: no cover - serve extra missing: RedisStore() says so
    _RedisError = OSError  # type: ignore[assignment,misc]


@translate_errors(_RedisError, OSError)
class RedisStore(RedisQueries):
    """Shared store on a Redis server; keys live under ``prefix`` (default ``explorec``).

    Run Redis with ``appendonly yes`` and ``appendfsync always`` for the same durability as
    the SQLite store (an acknowledged write is on disk); :meth:`durability` reports the
    server's settings and the service warns at start when they are weaker.
    """

    def __init__(self, url: str, *, prefix: str = "explorec", socket_timeout: float = 10.0) -> None:
        try:
            import redis
        except ImportError as e:  # pragma: no cover - serve extra missing
            raise StoreError("the Redis store needs the redis package: pip install 'explorec[serve]'") from e
        self.url = url
        self.prefix = prefix
        self._r = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                       socket_connect_timeout=socket_timeout, health_check_interval=30)
        self._scripts = {name: self._r.register_script(src) for name, src in (
            ("add_reward", _LUA_ADD_REWARD), ("log_rank", _LUA_LOG_RANK),
            ("add_interactions", _LUA_ADD_INTERACTIONS), ("put_item", _LUA_PUT_ITEM),
            ("delete_item", _LUA_DELETE_ITEM), ("delete_user", _LUA_DELETE_USER),
            ("save_snapshot", _LUA_SAVE_SNAPSHOT), ("history", _LUA_HISTORY))}
        self._redis_error = redis.RedisError

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return self._scripts[name](args=[self.prefix, *args])
        except self._redis_error as e:
            raise StoreError(f"Redis store {self.describe()}: {e}") from e

    def _scripts_pipelined(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                           transaction: bool = False, before: Sequence[tuple[str, ...]] = ()
                           ) -> list[Any]:
        """Plain commands ``before`` (name, *args), then ``calls`` (script name, args), in one
        round trip; their replies in order.

        The scripts go as bare ``EVALSHA`` s: redis-py's pipelined scripts cost a ``SCRIPT
        EXISTS`` round trip before every pipeline. A server that lost them (restarted without
        its script cache) answers ``NOSCRIPT`` for each, none of them runs, and the pipeline
        is sent again once they are loaded. Each script here may run twice without harm
        anyway (a slate is logged under its id, a reward applies once)."""
        from redis.exceptions import NoScriptError

        for attempt in range(2):
            pipe = self._r.pipeline(transaction=transaction)
            for name, *args in before:
                pipe.execute_command(name, *args)
            for name, args in calls:
                pipe.evalsha(self._scripts[name].sha, 0, *args)
            try:
                return pipe.execute()  # type: ignore[no-any-return]
            except NoScriptError:
                if attempt:
                    raise
                for name in {n for n, _ in calls}:
                    self._r.script_load(self._scripts[name].script)
        raise AssertionError("unreachable")  # pragma: no cover

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
            self._scripts_pipelined([("log_rank", [self.prefix, e.event_id, e.user, e.to_json(), repr(e.ts)])
                                     for e in events], transaction=True)
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
        return self.add_rewards([(event, position, reward, ts)])[0]

    def add_rewards(self, rewards: Sequence[tuple[RankEvent, int, float, float]]
                    ) -> list[RewardResult]:
        """Each reward by its own atomic script (at most once per (event, position)), the
        scripts pipelined in one round trip."""
        args = []
        for event, position, reward, ts in rewards:
            body = json.dumps({"event_id": event.event_id, "position": position,
                               "item": event.items[position], "reward": float(reward),
                               "user": event.user, "ts": ts}, allow_nan=False)
            hist = (json.dumps([event.items[position], "reward", float(reward), ts], allow_nan=False)
                    if reward > 0 else "")
            args.append([self.prefix, event.event_id, str(position), body, hist, event.user])
        fault("reward.before_write")
        if len(args) == 1:
            replies = [self._call("add_reward", *args[0][1:])]
        else:
            try:
                replies = self._scripts_pipelined([("add_reward", a) for a in args])
            except self._redis_error as e:
                raise StoreError(f"Redis store {self.describe()}: {e}") from e
        fault("reward.after_commit")
        out = []
        for (event, position, reward, ts), res in zip(rewards, replies, strict=True):
            status = int(res[0])
            if status == 0:
                out.append(RewardResult("unknown_event"))
            elif status == -1:
                recs = [r for r in self.rewards_for_event(event.event_id) if r.position == position]
                out.append(RewardResult("duplicate", recs[0] if recs else None))
            else:
                out.append(RewardResult("recorded", RewardRecord(int(res[1]), event.event_id, position,
                                                                 event.items[position], float(reward),
                                                                 event.user, ts)))
        return out

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
        """The user's distinct items in the order of their first interaction (at most the last
        ``limit`` of them) and the seq of their last interaction (both up to ``upto_seq``); the
        deduplication runs in a script on the server, only the result is sent."""
        n = limit if limit is not None and limit > 0 else 0
        res = self._call("history", user, "" if upto_seq is None else str(int(upto_seq)), str(n))
        return _history_reply(res, limit)

    def histories(self, users: Sequence[str], limit: int | None = None,
                  upto: Sequence[int | None] | None = None) -> list[tuple[list[str], int]]:
        """:meth:`history` of each user (up to ``upto[i]``): the scripts pipelined in one
        round trip."""
        n = str(limit if limit is not None and limit > 0 else 0)
        bounds = ["" if b is None else str(int(b)) for b in upto_bounds(users, upto)]
        try:
            replies = self._scripts_pipelined([("history", [self.prefix, u, b, n])
                                               for u, b in zip(users, bounds, strict=True)])
        except self._redis_error as e:
            raise StoreError(f"Redis store {self.describe()}: {e}") from e
        return [_history_reply(r, limit) for r in replies]

    def heads_and_histories(self, users: Sequence[str], limit: int | None = None
                            ) -> tuple[Heads, list[tuple[list[str], int]]]:
        """:meth:`heads` and :meth:`histories` pipelined in one round trip."""
        n = str(limit if limit is not None and limit > 0 else 0)
        try:
            replies = self._scripts_pipelined(
                [("history", [self.prefix, u, "", n]) for u in users],
                before=[("MGET", self._k("epoch"), self._k("seq", "it"), self._k("seq", "rw"))])
        except self._redis_error as e:
            raise StoreError(f"Redis store {self.describe()}: {e}") from e
        epoch, items_seq, rw = replies[0]
        return (Heads(int(epoch or 0), int(items_seq or 0), int(rw or 0)),
                [_history_reply(r, limit) for r in replies[1:]])

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
        """Delete the user's keys and records and bump the erase epoch (one Lua script). Their
        bytes leave the server's files only with :meth:`purge` (AOF rewrite, RDB save)."""
        n_ev, n_rw, n_in = (int(x) for x in self._call("delete_user", user))
        return {"events": n_ev, "rewards": n_rw, "interactions": n_in}

    def _persistence(self) -> dict[str, Any]:
        return {k: v for k, v in self._r.info("persistence").items()}

    def _wait_idle(self, flags: tuple[str, ...], deadline: float) -> dict[str, Any] | None:
        """Wait until none of ``flags`` (INFO persistence fields) is set; None past deadline."""
        while True:
            info = self._persistence()
            if not any(int(info.get(f, 0)) for f in flags):
                return info
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _rewrite(self, start: Any, counter: str, flags: tuple[str, ...], status: str,
                 deadline: float) -> bool:
        """Run one background rewrite that *starts after this call* and wait for it: one
        already running began from a snapshot that may predate the erasure, so it is waited
        for and another is started."""
        import redis

        while True:
            info = self._wait_idle(flags, deadline)
            if info is None:
                return False
            before = int(info.get(counter, 0))
            try:
                start()
            except redis.ResponseError as e:  # "already in progress": someone else's; wait again
                if "in progress" not in str(e).lower():
                    raise
                continue
            while True:
                info = self._wait_idle(flags, deadline)
                if info is None:
                    return False
                if int(info.get(counter, 0)) > before:
                    if str(info.get(status, "ok")) != "ok":
                        raise StoreError(f"Redis store {self.describe()}: the rewrite failed "
                                         f"({status}={info.get(status)}); see the Redis log")
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def purge(self, timeout: float = 1.0) -> int | None:
        """Make every erasure so far physical in the server's files: rewrite the AOF (when it
        is on) and save the RDB file (when snapshots are configured), each by a rewrite that
        starts after this call. Returns the erase epoch now purged, or None when the
        rewrites did not finish within ``timeout`` (retry)."""
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            epoch = self.heads().epoch
            info = self._persistence()
            if int(info.get("aof_enabled", 0)) and not self._rewrite(
                    self._r.bgrewriteaof, "aof_rewrites",
                    ("aof_rewrite_in_progress", "aof_rewrite_scheduled"), "aof_last_bgrewrite_status",
                    deadline):
                return None
            save = self._r.config_get("save").get("save", "")
            if (save or int(info.get("rdb_saves", 0))) and not self._rewrite(
                    self._r.bgsave, "rdb_saves", ("rdb_bgsave_in_progress",),
                    "rdb_last_bgsave_status", deadline):
                return None
            done = max(epoch, int(self._r.hget(self._k("meta"), "purged_epoch") or 0))
            self._r.hset(self._k("meta"), "purged_epoch", str(done))
        except self._redis_error as e:
            raise StoreError(f"Redis store {self.describe()}: {e}") from e
        return done

    def erase_status(self) -> tuple[int, int]:
        """(erase epoch, purged epoch): erasures up to the purged epoch are gone from the files."""
        try:
            epoch = self._r.get(self._k("epoch"))
            purged = self._r.hget(self._k("meta"), "purged_epoch")
        except self._redis_error as e:
            raise StoreError(f"Redis store {self.describe()}: {e}") from e
        return int(epoch or 0), int(purged or 0)

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
        fault("snapshot.before_write")
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


def _history_reply(res: Any, limit: int | None) -> tuple[list[str], int]:
    """(items, last seq) from the history script's reply."""
    items = [json.loads(tok) for tok in res[1:]]
    if limit is not None and limit <= 0:
        items = items[-limit:]  # the slice semantics of a non-positive limit
    return items, int(res[0])
