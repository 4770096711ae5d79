"""The read-only aggregate queries (:mod:`~explorec.serve.stores.queries`) on the SQLite store.

Aggregation runs in SQL (SQLite's JSON functions read the slate records) on the store's
per-thread read-only connection, each query inside one read transaction (one snapshot). The
windows are bounded by the indexes: slates by ``events(ts)``, rewards by their ``seq`` (the
newest ``max_rewards`` rows, then filtered by time), histories by ``interactions(user, seq)``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
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

# bucket of a timestamp column (``:since``, ``:bucket``, ``:nb`` bound by name)
# (the CAST truncates: the same as floor here, the query keeps ts >= since)
_BUCKET = "min(max(CAST(({col} - :since) / :bucket AS INTEGER), 0), :nb - 1)"
# the newest slates of the window
_EVENTS = "SELECT ts, user, body FROM events WHERE ts >= :since ORDER BY ts DESC LIMIT :lim"
# the newest rewards (by seq), then the window
_REWARDS = ("SELECT item, reward, ts FROM (SELECT item, reward, ts FROM rewards ORDER BY seq DESC "
            "LIMIT :limr) WHERE ts >= :since")


@translate_errors(sqlite3.Error, OSError)
class SQLiteQueries:
    """Mixed into :class:`~explorec.serve.stores.sqlite.SQLiteStore` (uses its ``_r()``)."""

    if TYPE_CHECKING:
        def _r(self) -> sqlite3.Connection: ...  # the store's per-thread read-only connection

    @contextlib.contextmanager
    def _read_tx(self) -> Iterator[sqlite3.Connection]:
        c = self._r()
        own = not c.in_transaction
        if own:
            c.execute("BEGIN")
        try:
            yield c
        finally:
            if own:
                c.execute("COMMIT")

    def log_totals(self) -> dict[str, int]:
        with self._read_tx() as c:
            out = {t: int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                   for t in ("events", "rewards", "interactions", "items")}
            out["users"] = int(c.execute("SELECT count(*) FROM (SELECT DISTINCT user FROM interactions)"
                                         ).fetchone()[0])
        return out

    def log_summary(self, since: float, bucket_s: float, n_buckets: int, *,
                    max_events: int = MAX_EVENTS, max_rewards: int = MAX_REWARDS) -> LogSummary:
        check_window(since, bucket_s, n_buckets)
        out = LogSummary.empty(since, bucket_s, n_buckets)
        args: dict[str, Any] = {"since": since, "bucket": bucket_s, "nb": n_buckets,
                                "lim": int(max_events), "limr": int(max_rewards), "bins": PROPENSITY_BINS}
        hist = ("CASE WHEN p.value >= 1.0 THEN :bins ELSE "
                "min(max(CAST(p.value * :bins AS INTEGER), 0), :bins - 1) END")
        # one pass over the slate records (each parsed once), then the small rows, four ways
        query = (
            f"WITH ev AS MATERIALIZED (SELECT {_BUCKET.format(col='ts')} AS b, user, "
            "json_extract(body, '$.propensities', '$.artifact', '$.policy') AS x "
            "FROM events WHERE ts >= :since ORDER BY ts DESC LIMIT :lim) "
            f"SELECT 'slots', b, {hist}, count(*) FROM ev, json_each(ev.x, '$[0]') AS p GROUP BY 2, 3 "
            "UNION ALL SELECT 'slates', b, NULL, count(*) FROM ev GROUP BY 2 "
            "UNION ALL SELECT 'users', NULL, NULL, count(DISTINCT user) FROM ev "
            "UNION ALL SELECT 'policy', json_extract(x, '$[1]') || '/' || json_extract(x, '$[2]'), NULL, "
            "count(*) FROM ev GROUP BY 2")
        with self._read_tx() as c:
            for what, key, h, n in c.execute(query, args):
                if what == "slots":
                    out.slots[key] += int(n)
                    out.propensity_hist[h] += int(n)
                    if h < PROPENSITY_BINS:
                        out.explored[key] += int(n)
                elif what == "slates":
                    out.slates[key] = int(n)
                elif what == "users":
                    out.users = int(n)
                else:
                    out.policies[str(key)] = int(n)
            out.truncated_events = c.execute(
                "SELECT 1 FROM events WHERE ts >= :since ORDER BY ts DESC LIMIT 1 OFFSET :lim",
                args).fetchone() is not None
            b_rw = _BUCKET.format(col="ts")
            for b, n, pos, s in c.execute(
                    f"SELECT {b_rw}, count(*), sum(reward > 0), sum(reward) FROM ({_REWARDS}) GROUP BY 1",
                    args):
                out.rewards[b], out.positives[b], out.reward_sum[b] = int(n), int(pos), float(s)
            n_new, oldest = c.execute("SELECT count(*), min(ts) FROM (SELECT ts FROM rewards ORDER BY "
                                      "seq DESC LIMIT :limr)", args).fetchone()
            out.truncated_rewards = bool(
                n_new >= max_rewards and oldest is not None and oldest >= since
                and c.execute("SELECT 1 FROM rewards ORDER BY seq DESC LIMIT 1 OFFSET :limr",
                              args).fetchone() is not None)
        return out

    def item_activity(self, items: Sequence[str], since: float, bucket_s: float, n_buckets: int, *,
                      max_events: int = MAX_EVENTS, max_rewards: int = MAX_REWARDS
                      ) -> dict[str, ItemActivity]:
        out = empty_activity(items, since, bucket_s, n_buckets)
        wanted = list(out)
        if not wanted:
            return out
        args: dict[str, Any] = {"since": since, "bucket": bucket_s, "nb": n_buckets,
                                "lim": int(max_events), "limr": int(max_rewards)}
        names = {f"i{n}": i for n, i in enumerate(wanted)}
        args.update(names)
        # the JSON token of each id as the slate record holds it: a cheap text filter first
        args.update({f"q{n}": json.dumps(i) for n, i in enumerate(wanted)})
        inlist = ", ".join(f":{k}" for k in names)
        prefilter = " OR ".join(f"instr(ev.body, :q{n}) > 0" for n in range(len(wanted)))
        b_ev = _BUCKET.format(col="ev.ts")
        with self._read_tx() as c:
            for item, b, n, first in c.execute(
                    f"WITH ev AS ({_EVENTS}) SELECT j.value, {b_ev}, count(*), min(ev.ts) FROM ev, "
                    f"json_each(ev.body, '$.items') AS j WHERE ({prefilter}) AND j.value IN ({inlist}) "
                    "GROUP BY 1, 2", args):
                a = out[item]
                a.impressions[b] += int(n)
                a.first_shown = float(first) if a.first_shown is None else min(a.first_shown, float(first))
            b_rw = _BUCKET.format(col="ts")
            for item, b, n, pos, first in c.execute(
                    f"SELECT item, {b_rw}, count(*), sum(reward > 0), min(CASE WHEN reward > 0 THEN ts END) "
                    f"FROM ({_REWARDS}) WHERE item IN ({inlist}) GROUP BY 1, 2", args):
                a = out[item]
                a.rewards[b] += int(n)
                a.clicks[b] += int(pos)
                if first is not None:
                    a.first_click = float(first) if a.first_click is None else min(a.first_click,
                                                                                   float(first))
        return out

    def recent_events(self, limit: int, *, user: str | None = None) -> list[RankEvent]:
        if user is None:
            rows = self._r().execute("SELECT body FROM events ORDER BY ts DESC, event_id DESC LIMIT ?",
                                     (int(limit),)).fetchall()
        else:
            rows = self._r().execute("SELECT body FROM events WHERE user = ? ORDER BY ts DESC, "
                                     "event_id DESC LIMIT ?", (user, int(limit))).fetchall()
        return [RankEvent.from_json(r[0]) for r in rows]

    def rewards_for_events(self, event_ids: Sequence[str]) -> list[RewardRecord]:
        ids = list(dict.fromkeys(event_ids))
        out: list[RewardRecord] = []
        c = self._r()
        for s in range(0, len(ids), 500):
            part = ids[s:s + 500]
            out += [RewardRecord(*r) for r in c.execute(
                "SELECT seq, event_id, position, item, reward, user, ts FROM rewards WHERE event_id IN "
                f"({','.join('?' * len(part))})", part)]
        return sorted(out, key=lambda r: r.seq)

    def user_interactions(self, user: str, limit: int) -> list[Interaction]:
        rows = self._r().execute("SELECT user, item, kind, value, ts, seq FROM interactions WHERE user = ? "
                                 "ORDER BY seq DESC LIMIT ?", (user, int(limit))).fetchall()
        return [Interaction(*r) for r in reversed(rows)]

    def find_users(self, prefix: str, limit: int) -> list[str]:
        # a range on the (user, seq) index: every id that starts with the prefix sorts in it
        rows = self._r().execute(
            "SELECT DISTINCT user FROM interactions WHERE user >= ? AND user < ? ORDER BY user LIMIT ?",
            (prefix, prefix + "\U0010ffff", int(limit))).fetchall()
        return [r[0] for r in rows]

    def recent_items(self, limit: int) -> list[ItemRecord]:
        rows = self._r().execute("SELECT item, text, features, deleted, seq, ord, space, ts FROM items "
                                 "WHERE deleted = 0 ORDER BY seq DESC LIMIT ?", (int(limit),)).fetchall()
        return [ItemRecord(i, t, json.loads(f), bool(d), int(s), int(o), sp, None, float(ts))
                for i, t, f, d, s, o, sp, ts in rows]
