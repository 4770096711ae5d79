"""The :class:`Store` protocol, :class:`StoreError`, :func:`open_store` and the helpers the
stores share (array and vector blobs, store URLs)."""

from __future__ import annotations

import functools
import inspect
import io
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from explorec.errors import ExploRecError
from explorec.serve.stores.queries import LogQueries

if TYPE_CHECKING:  # the records import StoreError from here
    from explorec.serve.stores.records import (
        Heads,
        Interaction,
        ItemRecord,
        RankEvent,
        RewardRecord,
        RewardResult,
        Snapshot,
    )


class StoreError(ExploRecError):
    """A store that cannot be opened or reached, or a stored record that is corrupt."""


T = TypeVar("T", bound=type)


def translate_errors(*errors: type[BaseException]) -> Callable[[T], T]:
    """Class decorator: every public method (generators too) turns ``errors`` (the driver's
    connection and I/O errors) into :class:`StoreError`, naming the store, so that an outage
    reaches the service as one error it maps to 503 and never as a driver traceback."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(self: Any, *a: Any, **kw: Any) -> Any:
                try:
                    yield from fn(self, *a, **kw)
                except errors as e:
                    raise StoreError(f"store {self.describe()}: {type(e).__name__}: {e}") from e
            return gen

        @functools.wraps(fn)
        def call(self: Any, *a: Any, **kw: Any) -> Any:
            try:
                return fn(self, *a, **kw)
            except errors as e:
                raise StoreError(f"store {self.describe()}: {type(e).__name__}: {e}") from e
        return call

    def decorate(cls: T) -> T:
        for name, fn in list(vars(cls).items()):
            if not name.startswith("_") and inspect.isfunction(fn) and name != "describe":
                setattr(cls, name, wrap(fn))
        return cls

    return decorate


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


def upto_bounds(users: Sequence[str], upto: Sequence[int | None] | None) -> list[int | None]:
    """``histories``' per-user bounds, checked: one per user (None: no bound)."""
    if upto is None:
        return [None] * len(users)
    bounds = list(upto)
    if len(bounds) != len(users):
        raise ValueError(f"histories: {len(bounds)} upto bounds for {len(users)} users")
    return bounds


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
class Store(LogQueries, Protocol):
    """Durable service state. Every write method returns after the write is durable; the
    read-only aggregate queries of :class:`LogQueries` (the dashboard's) come with it."""

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
    def add_rewards(self, rewards: Sequence[tuple[RankEvent, int, float, float]]
                    ) -> list[RewardResult]:
        """:meth:`add_reward` for several ``(event, position, reward, ts)``, in one durable
        write (one round trip where the store can); results in the same order."""
        ...
    def rewards_since(self, seq: int, limit: int = 10_000) -> list[RewardRecord]: ...
    def rewards_for_event(self, event_id: str) -> list[RewardRecord]: ...

    # interactions / histories
    def add_interactions(self, rows: Sequence[Interaction]) -> int: ...
    def history(self, user: str, upto_seq: int | None = None, limit: int | None = None
                ) -> tuple[list[str], int]: ...
    def histories(self, users: Sequence[str], limit: int | None = None,
                  upto: Sequence[int | None] | None = None) -> list[tuple[list[str], int]]:
        """:meth:`history` of each user (one snapshot, one round trip where the store can);
        ``upto``: each user's ``upto_seq`` (the same length as ``users``)."""
        ...
    def heads_and_histories(self, users: Sequence[str], limit: int | None = None
                            ) -> tuple[Heads, list[tuple[list[str], int]]]:
        """:meth:`heads` and :meth:`histories` together: what a batch of ranks reads (one
        snapshot, one round trip where the store can)."""
        ...
    def iter_interactions(self) -> Iterator[Interaction]: ...

    # items
    def put_item(self, item: str, text: str, features: dict[str, Any], space: str,
                 vector: np.ndarray | None, ts: float) -> ItemRecord: ...
    def delete_item(self, item: str, ts: float) -> ItemRecord | None: ...
    def get_item(self, item: str) -> ItemRecord | None: ...
    def items_since(self, seq: int) -> list[ItemRecord]: ...

    # users, state, bookkeeping
    def delete_user(self, user: str) -> dict[str, int]:
        """Delete the user's records and bump the erase epoch, atomically and durably. Their
        bytes may stay in the store's files until :meth:`purge` returns."""
        ...
    def purge(self, timeout: float = 1.0) -> int | None:
        """Remove what erasures deleted from every file the store writes; the erase epoch now
        purged, or None when blocked longer than ``timeout`` seconds (call again)."""
        ...
    def erase_status(self) -> tuple[int, int]:
        """(erase epoch, purged epoch)."""
        ...
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
        from explorec.serve.stores.sqlite import SQLiteStore

        return SQLiteStore(path, **options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from explorec.serve.stores.redis import RedisStore

        return RedisStore(url, **options)
    raise StoreError(f"unknown store URL {redact_url(url)!r}: use sqlite:///PATH or "
                     "redis://HOST:PORT/DB")
