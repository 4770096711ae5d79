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

from explorec.serve.stores.base import (
    Store,
    StoreError,
    arrays_from_bytes,
    arrays_to_bytes,
    open_store,
    redact_url,
    sqlite_path,
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
from explorec.serve.stores.redis import RedisStore
from explorec.serve.stores.sqlite import SQLiteStore

__all__ = [
    "Heads",
    "Interaction",
    "ItemRecord",
    "RankEvent",
    "RedisStore",
    "RewardRecord",
    "RewardResult",
    "SQLiteStore",
    "Snapshot",
    "Store",
    "StoreError",
    "arrays_from_bytes",
    "arrays_to_bytes",
    "open_store",
    "redact_url",
    "sqlite_path",
]
