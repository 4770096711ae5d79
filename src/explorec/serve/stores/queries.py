"""Read-only aggregate queries over the service's log, for the dashboard (and anyone reading it).

Part of the :class:`~explorec.serve.stores.base.Store` protocol, implemented by both stores
(:mod:`~explorec.serve.stores.sqlite_queries`, :mod:`~explorec.serve.stores.redis_queries`).
Every query aggregates inside the store (SQL with SQLite's JSON functions; Lua scripts over
chunks of a few hundred records on Redis, so the server is never blocked for long) and is
bounded: a time window (``since``) and at most ``max_events`` slates and ``max_rewards``
rewards, the newest ones; a result says when a bound cut it short. Nothing here writes.

Time buckets: a record at time ``ts`` (seconds since the epoch) falls in bucket
``floor((ts - since) / bucket_s)``, clamped to ``[0, n_buckets - 1]`` (a clock slightly ahead
lands in the last bucket); records before ``since`` are not counted. A slot *explored* when its
logged propensity is below 1 (the policy could have shown something else there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from explorec.serve.stores.records import Interaction, ItemRecord, RankEvent, RewardRecord

#: propensity histogram: ``PROPENSITY_BINS`` equal bins over [0, 1) and one more for exactly 1
PROPENSITY_BINS = 10
#: default bounds of one aggregate query
MAX_EVENTS = 20_000
MAX_REWARDS = 50_000


def bucket_of(ts: float, since: float, bucket_s: float, n_buckets: int) -> int:
    """The bucket of a record at ``ts`` (the rule every store implements)."""
    return min(max(math.floor((ts - since) / bucket_s), 0), n_buckets - 1)


def propensity_bin(p: float) -> int:
    """The histogram bin of a propensity: ``PROPENSITY_BINS`` for exactly 1 (not explored)."""
    if p >= 1.0:
        return PROPENSITY_BINS
    return min(max(math.floor(p * PROPENSITY_BINS), 0), PROPENSITY_BINS - 1)


@dataclass
class LogSummary:
    """The log of a time window: slates and their slots by the slate's time, rewards by the
    reward's time, per bucket; the propensity histogram of every shown slot."""

    since: float
    bucket_s: float
    n_buckets: int
    slates: list[int]
    slots: list[int]
    explored: list[int]
    rewards: list[int]
    positives: list[int]  # rewards > 0
    reward_sum: list[float]
    propensity_hist: list[int]  # PROPENSITY_BINS + 1 counts
    users: int  # distinct users served in the window (of the slates counted)
    policies: dict[str, int] = field(default_factory=dict)  # slates by "artifact/policy"
    truncated_events: bool = False  # more slates in the window than max_events
    truncated_rewards: bool = False  # the newest max_rewards rewards do not reach back to since

    @classmethod
    def empty(cls, since: float, bucket_s: float, n_buckets: int) -> LogSummary:
        z = [0] * n_buckets
        return cls(since, bucket_s, n_buckets, list(z), list(z), list(z), list(z), list(z),
                   [0.0] * n_buckets, [0] * (PROPENSITY_BINS + 1), 0)


@dataclass
class ItemActivity:
    """One item in a time window: slates that showed it and its rewards, per bucket."""

    item: str
    impressions: list[int]
    rewards: list[int]
    clicks: list[int]  # rewards > 0
    first_shown: float | None = None  # in the window (and the bounds)
    first_click: float | None = None

    @classmethod
    def empty(cls, item: str, n_buckets: int) -> ItemActivity:
        return cls(item, [0] * n_buckets, [0] * n_buckets, [0] * n_buckets)


def check_window(since: float, bucket_s: float, n_buckets: int) -> None:
    if not (math.isfinite(since) and math.isfinite(bucket_s) and bucket_s > 0 and n_buckets >= 1):
        raise ValueError(f"bad window: since={since!r}, bucket_s={bucket_s!r}, n_buckets={n_buckets!r}")


MAX_ACTIVITY_ITEMS = 100


def empty_activity(items: Sequence[str], since: float, bucket_s: float, n_buckets: int
                   ) -> dict[str, ItemActivity]:
    """The zero :class:`ItemActivity` of each distinct item asked for (the first
    ``MAX_ACTIVITY_ITEMS``), after checking the window: where every store's
    ``item_activity`` starts."""
    check_window(since, bucket_s, n_buckets)
    wanted = list(dict.fromkeys(items))[:MAX_ACTIVITY_ITEMS]
    return {i: ItemActivity.empty(i, n_buckets) for i in wanted}


class LogQueries(Protocol):
    """The read-only aggregate queries every store answers (see the module's docstring)."""

    def log_totals(self) -> dict[str, int]:
        """Whole-store counts: ``events`` (slates), ``rewards``, ``interactions``, ``items``
        (put or deleted through the API), ``users`` (distinct users with a history)."""
        ...

    def log_summary(self, since: float, bucket_s: float, n_buckets: int, *,
                    max_events: int = MAX_EVENTS, max_rewards: int = MAX_REWARDS) -> LogSummary: ...

    def item_activity(self, items: Sequence[str], since: float, bucket_s: float, n_buckets: int, *,
                      max_events: int = MAX_EVENTS, max_rewards: int = MAX_REWARDS
                      ) -> dict[str, ItemActivity]:
        """Per item (at most 100): impressions (slates that showed it), rewards and clicks."""
        ...

    def recent_events(self, limit: int, *, user: str | None = None) -> list[RankEvent]:
        """The newest ``limit`` slates (of one user, if given), newest first."""
        ...

    def rewards_for_events(self, event_ids: Sequence[str]) -> list[RewardRecord]: ...

    def user_interactions(self, user: str, limit: int) -> list[Interaction]:
        """The user's newest ``limit`` history records (with kind and time), oldest first."""
        ...

    def find_users(self, prefix: str, limit: int) -> list[str]:
        """Users with a history whose id starts with ``prefix``, sorted (at most ``limit``)."""
        ...

    def recent_items(self, limit: int) -> list[ItemRecord]:
        """The live API items most recently put (added or re-texted), newest first; without
        their vectors."""
        ...
