"""The read-only aggregate queries (:mod:`~explorec.serve.stores.queries`) on the Redis store.

The ids of the window's slates (``evts``, scored by time) or of the newest rewards (``rws``,
scored by sequence) are read first; then Lua scripts aggregate the records themselves in
chunks of :data:`CHUNK` (each script runs for milliseconds, so the server is never held up),
and only the aggregates travel. A slate record is decoded only up to its candidate list
(``,"candidates":`` cannot occur inside a JSON string, whose quotes are escaped). Scripts
only read: nothing is written, and the AOF sees nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from explorec.serve.stores.base import translate_errors
from explorec.serve.stores.queries import (
    MAX_EVENTS,
    MAX_REWARDS,
    PROPENSITY_BINS,
    ItemActivity,
    LogSummary,
    check_window,
    empty_activity,
)
from explorec.serve.stores.records import Interaction, ItemRecord, RankEvent, RewardRecord

CHUNK = 500

_LUA_HEAD = r"""
local P = ARGV[1]
local since, bucket, nb = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local floor = math.floor
local function bucket_of(ts)
  local b = floor((ts - since) / bucket)
  if b < 0 then b = 0 end
  if b > nb - 1 then b = nb - 1 end
  return b + 1
end
local function slate(id)
  local body = redis.call('GET', P .. ':ev:' .. id)
  if not body then return nil end
  local cut = string.find(body, ',"candidates":', 1, true)
  if cut then body = string.sub(body, 1, cut - 1) .. '}' end
  return cjson.decode(body)
end
local function zeros(n)
  local t = {}
  for i = 1, n do t[i] = 0 end
  return t
end
"""

# ARGV: prefix, since, bucket, nb, bins, event ids...
# -> slates[nb], slots[nb], explored[nb], hist[bins + 1], n_users, users..., n_policies,
#    (policy, count)...
_LUA_SLATES = _LUA_HEAD + r"""
local bins = tonumber(ARGV[5])
local slates, slots, explored, hist = zeros(nb), zeros(nb), zeros(nb), zeros(bins + 1)
local seen, users, pols, porder = {}, {}, {}, {}
for i = 6, #ARGV do
  local ev = slate(ARGV[i])
  if ev and ev.ts >= since then
    local b = bucket_of(ev.ts)
    slates[b] = slates[b] + 1
    for _, p in ipairs(ev.propensities) do
      local h = bins
      if p < 1.0 then
        h = floor(p * bins)
        if h < 0 then h = 0 end
        if h > bins - 1 then h = bins - 1 end
        explored[b] = explored[b] + 1
      end
      slots[b] = slots[b] + 1
      hist[h + 1] = hist[h + 1] + 1
    end
    if not seen[ev.user] then
      seen[ev.user] = true
      users[#users + 1] = ev.user
    end
    local key = tostring(ev.artifact) .. '/' .. tostring(ev.policy)
    if not pols[key] then
      pols[key] = 0
      porder[#porder + 1] = key
    end
    pols[key] = pols[key] + 1
  end
end
local out = {}
for _, t in ipairs({slates, slots, explored, hist}) do
  for _, v in ipairs(t) do out[#out + 1] = v end
end
out[#out + 1] = #users
for _, u in ipairs(users) do out[#out + 1] = u end
out[#out + 1] = #porder
for _, k in ipairs(porder) do
  out[#out + 1] = k
  out[#out + 1] = pols[k]
end
return out
"""

# ARGV: prefix, since, bucket, nb, n_items, items..., event ids...
# -> per item: impressions[nb], first shown ('' if never)
_LUA_SHOWN = _LUA_HEAD + r"""
local n = tonumber(ARGV[5])
local want, imp, first = {}, {}, {}
for j = 1, n do
  want[ARGV[5 + j]] = j
  imp[j] = zeros(nb)
end
for i = 6 + n, #ARGV do
  local ev = slate(ARGV[i])
  if ev and ev.ts >= since then
    local b = bucket_of(ev.ts)
    for _, it in ipairs(ev.items) do
      local j = want[it]
      if j then
        imp[j][b] = imp[j][b] + 1
        if first[j] == nil or ev.ts < first[j] then first[j] = ev.ts end
      end
    end
  end
end
local out = {}
for j = 1, n do
  for _, v in ipairs(imp[j]) do out[#out + 1] = v end
  out[#out + 1] = first[j] and string.format('%.17g', first[j]) or ''
end
return out
"""

# ARGV: prefix, since, bucket, nb, n_items (0: every reward together), items..., reward members...
# -> per key: rewards[nb], positives[nb], sums[nb] (strings), first positive ('' if none);
#    then the oldest time seen ('' if none)
_LUA_REWARDS = _LUA_HEAD + r"""
local n = tonumber(ARGV[5])
local keys, want = math.max(n, 1), {}
for j = 1, n do want[ARGV[5 + j]] = j end
local cnt, pos, sum, first = {}, {}, {}, {}
for j = 1, keys do
  cnt[j], pos[j], sum[j] = zeros(nb), zeros(nb), zeros(nb)
end
local oldest = nil
for i = 6 + n, #ARGV do
  local m = ARGV[i]
  local body = redis.call('HGET', P .. ':rw:' .. m, 'body')
  if body then
    local r = cjson.decode(body)
    if oldest == nil or r.ts < oldest then oldest = r.ts end
    local j = 1
    if n > 0 then j = want[r.item] end
    if j and r.ts >= since then
      local b = bucket_of(r.ts)
      cnt[j][b] = cnt[j][b] + 1
      sum[j][b] = sum[j][b] + r.reward
      if r.reward > 0 then
        pos[j][b] = pos[j][b] + 1
        if first[j] == nil or r.ts < first[j] then first[j] = r.ts end
      end
    end
  end
end
local out = {}
for j = 1, keys do
  for _, v in ipairs(cnt[j]) do out[#out + 1] = v end
  for _, v in ipairs(pos[j]) do out[#out + 1] = v end
  for _, v in ipairs(sum[j]) do out[#out + 1] = string.format('%.17g', v) end
  out[#out + 1] = first[j] and string.format('%.17g', first[j]) or ''
end
out[#out + 1] = oldest and string.format('%.17g', oldest) or ''
return out
"""


def _glob_escape(s: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


try:
    from redis import RedisError as _RedisError
except ImportError:  # pragma: no cover - serve extra missing: RedisStore() says so
    _RedisError = OSError  # type: ignore[assignment,misc]


@translate_errors(_RedisError, OSError)
class RedisQueries:
    """Mixed into :class:`~explorec.serve.stores.redis.RedisStore` (uses its client and keys);
    driver errors become :class:`StoreError`, as in the store."""

    if TYPE_CHECKING:
        _r: Any
        prefix: str

        def _k(self, *parts: str) -> str: ...
        def _rewards(self, members: Sequence[bytes]) -> list[RewardRecord]: ...
        def _parse_history(self, raw: Sequence[bytes], user: str) -> list[Interaction]: ...
        def get_events(self, event_ids: Sequence[str]) -> dict[str, RankEvent]: ...

    def _script(self, name: str, src: str) -> Any:
        cache = self.__dict__.setdefault("_query_scripts", {})
        if name not in cache:
            cache[name] = self._r.register_script(src)
        return cache[name]

    def _window_events(self, since: float, max_events: int) -> tuple[list[str], bool]:
        ids = self._r.zrevrangebyscore(self._k("evts"), "+inf", repr(float(since)), start=0,
                                       num=int(max_events) + 1)
        return [_s(i) for i in ids[:max_events]], len(ids) > max_events

    def _newest_rewards(self, max_rewards: int) -> tuple[list[str], bool]:
        members = self._r.zrevrange(self._k("rws"), 0, int(max_rewards))
        return [_s(m) for m in members[:max_rewards]], len(members) > max_rewards

    def _reward_chunks(self, members: list[str], items: list[str], since: float, bucket_s: float,
                       n_buckets: int) -> tuple[list[list[Any]], float | None]:
        """Per key (every reward together, or each item): [counts, positives, sums, first]."""
        keys = max(len(items), 1)
        acc: list[list[Any]] = [[[0] * n_buckets, [0] * n_buckets, [0.0] * n_buckets, None]
                                for _ in range(keys)]
        oldest: float | None = None
        script = self._script("rewards", _LUA_REWARDS)
        for s in range(0, len(members), CHUNK):
            res = script(args=[self.prefix, repr(float(since)), repr(float(bucket_s)), n_buckets,
                               len(items), *items, *members[s:s + CHUNK]])
            at = 0
            for j in range(keys):
                a = acc[j]
                for part in range(3):
                    vals = res[at:at + n_buckets]
                    at += n_buckets
                    for b, v in enumerate(vals):
                        a[part][b] += float(_s(v)) if part == 2 else int(v)
                first = _s(res[at])
                at += 1
                if first:
                    a[3] = float(first) if a[3] is None else min(a[3], float(first))
            old = _s(res[at])
            if old:
                oldest = float(old) if oldest is None else min(oldest, float(old))
        return acc, oldest

    # ------------------------------------------------------------------ the queries
    def log_totals(self) -> dict[str, int]:
        pipe = self._r.pipeline(transaction=False)
        pipe.zcard(self._k("evts"))
        pipe.zcard(self._k("rws"))
        pipe.zcard(self._k("its"))
        pipe.scard(self._k("users"))
        events, rewards, items, users = pipe.execute()
        n_in = 0
        batch: list[str] = []
        for u in self._r.sscan_iter(self._k("users"), count=1000):
            batch.append(_s(u))
            if len(batch) == 1000:
                n_in += self._lengths(batch)
                batch = []
        n_in += self._lengths(batch)
        return {"events": int(events), "rewards": int(rewards), "interactions": n_in,
                "items": int(items), "users": int(users)}

    def _lengths(self, users: list[str]) -> int:
        if not users:
            return 0
        pipe = self._r.pipeline(transaction=False)
        for u in users:
            pipe.llen(self._k("u", u, "h"))
        return sum(int(n) for n in pipe.execute())

    def log_summary(self, since: float, bucket_s: float, n_buckets: int, *,
                    max_events: int = MAX_EVENTS, max_rewards: int = MAX_REWARDS) -> LogSummary:
        check_window(since, bucket_s, n_buckets)
        out = LogSummary.empty(since, bucket_s, n_buckets)
        ids, out.truncated_events = self._window_events(since, max_events)
        script = self._script("slates", _LUA_SLATES)
        users: set[str] = set()
        nb, nh = n_buckets, PROPENSITY_BINS + 1
        for s in range(0, len(ids), CHUNK):
            res = script(args=[self.prefix, repr(float(since)), repr(float(bucket_s)), nb,
                               PROPENSITY_BINS, *ids[s:s + CHUNK]])
            for b in range(nb):
                out.slates[b] += int(res[b])
                out.slots[b] += int(res[nb + b])
                out.explored[b] += int(res[2 * nb + b])
            for h in range(nh):
                out.propensity_hist[h] += int(res[3 * nb + h])
            at = 3 * nb + nh
            n_users = int(res[at])
            users.update(_s(u) for u in res[at + 1:at + 1 + n_users])
            at += 1 + n_users
            for p in range(int(res[at])):
                key = _s(res[at + 1 + 2 * p])
                out.policies[key] = out.policies.get(key, 0) + int(res[at + 2 + 2 * p])
        out.users = len(users)
        members, more = self._newest_rewards(max_rewards)
        (acc,), oldest = self._reward_chunks(members, [], since, bucket_s, nb)
        out.rewards, out.positives, out.reward_sum = acc[0], acc[1], acc[2]
        out.truncated_rewards = bool(more and oldest is not None and oldest >= since)
        return out

    def item_activity(self, items: Sequence[str], since: float, bucket_s: float, n_buckets: int, *,
                      max_events: int = MAX_EVENTS, max_rewards: int = MAX_REWARDS
                      ) -> dict[str, ItemActivity]:
        out = empty_activity(items, since, bucket_s, n_buckets)
        wanted = list(out)
        if not wanted:
            return out
        ids, _ = self._window_events(since, max_events)
        script = self._script("shown", _LUA_SHOWN)
        nb = n_buckets
        for s in range(0, len(ids), CHUNK):
            res = script(args=[self.prefix, repr(float(since)), repr(float(bucket_s)), nb, len(wanted),
                               *wanted, *ids[s:s + CHUNK]])
            for j, item in enumerate(wanted):
                a = out[item]
                base = j * (nb + 1)
                for b in range(nb):
                    a.impressions[b] += int(res[base + b])
                first = _s(res[base + nb])
                if first:
                    a.first_shown = float(first) if a.first_shown is None else min(a.first_shown,
                                                                                  float(first))
        members, _ = self._newest_rewards(max_rewards)
        acc, _ = self._reward_chunks(members, wanted, since, bucket_s, nb)
        for item, (cnt, pos, _sums, first) in zip(wanted, acc, strict=True):
            a = out[item]
            a.rewards, a.clicks, a.first_click = cnt, pos, first
        return out

    def recent_events(self, limit: int, *, user: str | None = None) -> list[RankEvent]:
        if limit <= 0:
            return []
        if user is None:
            ids = [_s(i) for i in self._r.zrevrange(self._k("evts"), 0, int(limit) - 1)]
        else:
            mine = [_s(i) for i in self._r.smembers(self._k("u", user, "ev"))]
            if not mine:
                return []
            scores = self._r.zmscore(self._k("evts"), mine)
            pairs = sorted(((float(sc), i) for i, sc in zip(mine, scores, strict=True) if sc is not None),
                           reverse=True)
            ids = [i for _, i in pairs[:limit]]
        got = self.get_events(ids)
        return [got[i] for i in ids if i in got]

    def rewards_for_events(self, event_ids: Sequence[str]) -> list[RewardRecord]:
        ids = list(dict.fromkeys(event_ids))
        members: list[bytes] = []
        for s in range(0, len(ids), 500):
            part = ids[s:s + 500]
            pipe = self._r.pipeline(transaction=False)
            for eid in part:
                pipe.smembers(self._k("ev", eid, "rw"))
            for eid, poss in zip(part, pipe.execute(), strict=True):
                members += [f"{eid}:{int(p)}".encode() for p in poss]
        return sorted(self._rewards(members), key=lambda r: r.seq)

    def user_interactions(self, user: str, limit: int) -> list[Interaction]:
        if limit <= 0:
            return []
        return self._parse_history(self._r.lrange(self._k("u", user, "h"), -int(limit), -1), user)

    def find_users(self, prefix: str, limit: int, *, max_scan: int = 200_000) -> list[str]:
        """Exact id first, then a bounded ``SSCAN`` of the users with a history (a store
        with more than ``max_scan`` users may miss some prefix matches)."""
        found: set[str] = set()
        key = self._k("users")
        if prefix and self._r.sismember(key, prefix):
            found.add(prefix)
        scanned, cursor = 0, 0
        while True:
            cursor, batch = self._r.sscan(key, cursor, match=_glob_escape(prefix) + "*", count=1000)
            found.update(_s(u) for u in batch)
            scanned += 1000
            if cursor == 0 or scanned >= max_scan:
                break
        return sorted(found)[:limit]

    def recent_items(self, limit: int) -> list[ItemRecord]:
        out: list[ItemRecord] = []
        start, page = 0, max(4 * int(limit), 50)
        while len(out) < limit:
            names = [_s(n) for n in self._r.zrevrange(self._k("its"), start, start + page - 1)]
            if not names:
                break
            pipe = self._r.pipeline(transaction=False)
            for n in names:
                pipe.hmget(self._k("it", n), "body", "deleted", "seq", "ord", "space")
            for n, (body, deleted, seq, ord_, space) in zip(names, pipe.execute(), strict=True):
                if body is None or _s(deleted or b"0") == "1":
                    continue
                d = json.loads(body)
                out.append(ItemRecord(n, d["text"], d["features"], False, int(seq), int(ord_),
                                      _s(space or b""), None, float(d.get("ts", 0.0))))
                if len(out) >= limit:
                    break
            start += page
        return out
