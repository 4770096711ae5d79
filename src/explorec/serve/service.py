"""The live service: the engine of the current artifact (hot-swappable) and its micro-batchers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from explorec.errors import ExploRecError
from explorec.serve.artifact import load_service_artifact
from explorec.serve.config import ServiceConfig
from explorec.serve.engine import Engine, RankCall, RankResult, RewardCall, single_threaded_blas
from explorec.serve.erasure import Eraser
from explorec.serve.stores import RankEvent, RewardRecord, Store, open_store

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("explorec.serve")


class Service:
    """Holds the live engine; :meth:`reload` swaps in a new artifact without dropping requests."""

    def __init__(self, config: ServiceConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.store)
        self.artifact_path = Path(config.artifact)
        self.engine = Engine(load_service_artifact(self.artifact_path), self.store, config.engine)
        single_threaded_blas()  # again: the artifact may have loaded more BLAS/OpenMP libraries
        self.store.meta_set("artifact_path", str(self.artifact_path.resolve()))
        self._reload_lock = threading.Lock()
        self.eraser = Eraser(self.store)
        self.eraser.resume()
        self.started = time.time()
        self.reloads = 0
        # store I/O of the hot path (history reads, slate-log commits) runs on these threads,
        # never on the event loop; a few are enough: each call carries a whole batch
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="explorec-store")
        # load the text encoder now (a sentence-transformers model takes seconds), so that the
        # first PUT /v1/items is as fast as the others
        threading.Thread(target=self._warm_encoder, daemon=True, name="encoder-warmup").start()

    @staticmethod
    def freeze_heap() -> None:
        """Move every object alive now (the artifact, the model, the id maps: over a hundred
        thousand tracked objects) out of the cyclic collector's reach (``gc.freeze``): without
        it each full collection walks them all while every request of the worker waits.
        Called once the app is up and after each hot swap; objects created later are collected
        as usual, the youngest after 5,000 allocations instead of 700 (a request allocates
        thousands of short-lived objects, so the default collected dozens of times a second)."""
        gc.unfreeze()  # what was frozen before (a swapped-out engine) may be garbage now
        gc.collect()
        gc.freeze()
        gc.set_threshold(5000, 20, 20)

    def _warm_encoder(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.encode(["warm up"])

    def reload(self, artifact: str | Path | None = None) -> dict[str, Any]:
        """Load ``artifact`` (default: the current path, re-read) and swap it in atomically.

        Requests already running finish on the engine they started with; new requests get the
        new one. A failed load leaves the running engine untouched.
        """
        with self._reload_lock:
            path = Path(artifact) if artifact is not None else self.artifact_path
            if artifact is not None:
                self.check_in_root(path)
            old = self.engine
            new = Engine(load_service_artifact(path), self.store, self.config.engine)
            with contextlib.suppress(ExploRecError):
                old.snapshot()
            self.engine = new
            self.artifact_path = path
            self.store.meta_set("artifact_path", str(path.resolve()))
            self.reloads += 1
            log.info("swapped artifact %s -> %s (%s)", old.art.artifact_id, new.art.artifact_id, path)
            previous = old.art.artifact_id
            del old
            self.freeze_heap()  # the new engine's objects; the old one's can now be collected
            return {"previous": previous, **new.status()}

    def erase_user(self, user: str) -> dict[str, Any]:
        """Delete the user (records, history, learned state) now, then wait up to
        ``erase_wait_s`` for their bytes to leave every store file; ``status`` says which."""
        counts = self.engine.delete_user(user)
        epoch = self.store.erase_status()[0]
        self.eraser.request(epoch)
        done = self.eraser.wait(epoch, self.config.erase_wait_s)
        return {"deleted": user, "erased": counts, "epoch": epoch,
                "status": "erased" if done else "pending", "status_url": f"/v1/erasures/{epoch}"}

    def check_in_root(self, path: Path) -> None:
        """Refuse an artifact outside the configured root (symlinks resolved first)."""
        root = self.config.root
        try:
            resolved = path.resolve(strict=False)
        except (OSError, RuntimeError) as e:
            raise ExploRecError(f"artifact path {path} cannot be resolved: {e}") from e
        if not resolved.is_relative_to(root):
            raise ExploRecError(f"artifact {resolved} is outside the artifact root {root}")

    async def run_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the store-I/O threads, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    def close(self) -> None:
        self.io.shutdown(wait=True)
        self.eraser.close()
        with contextlib.suppress(Exception):
            self.engine.snapshot()
        self.store.close()


class MicroBatcher(Generic[T, R]):
    """Batching of requests on the event loop (group commit, generalised).

    A request adds its item and waits; one task takes every item pending at that moment,
    hands them to ``process`` (a coroutine function: list of items -> list of results or
    exceptions, in order) and releases their answers. While a batch is in ``process`` the next
    one gathers: at one request in flight nothing waits for anything, under load the fixed
    cost of a call (a thread hop, an fsync, a model call) is shared by the batch. A batch's
    answers are sent before the next batch starts. Each request gets its own result or its own
    error; an error of the whole call reaches every request of the batch.
    """

    def __init__(self, process: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
                 max_batch: int = 64) -> None:
        self.process = process
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            try:
                outs = await self.process([x for x, _ in batch])
            except Exception as e:  # every waiting request gets the error (503 or 500)
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, f), o in zip(batch, outs, strict=True):
                if f.done():  # a client that went away
                    continue
                if isinstance(o, BaseException):
                    f.set_exception(o)
                else:
                    f.set_result(o)
            # let the answers just released leave before the next batch starts: its call on
            # an I/O thread takes the GIL, and the loop would send them only between its
            # bytecodes (measured: paced p50 and p99 a few tenths of a ms to 2 ms lower)
            await asyncio.sleep(0)


class RankBatcher(MicroBatcher[RankCall, tuple[RankResult, RankEvent]]):
    """Rank requests in micro-batches, each batch in one call on an I/O thread
    (:meth:`Engine.serve_ranks`): the store reads (heads, histories), the slates (one
    base-model scoring, one policy call per group) and the durable, group-committed log of the
    slates. No answer leaves before its slate is durable.

    One thread hop per batch: a hop (a thread woken, the GIL handed over and back, the loop
    woken) costs about as much CPU as ranking one request of a batch, and the earlier split
    (reads on a thread, slates on the loop, the log on a thread again through a second
    batcher) paid it twice (docs/service.md, Load). The slates are computed while the loop
    waits for the batch anyway; the loop takes the GIL back whenever the thread waits on the
    store."""

    def __init__(self, service: Service) -> None:
        super().__init__(self._ranks)
        self.service = service

    async def rank(self, call: RankCall) -> tuple[RankResult, RankEvent]:
        return await self.submit(call)

    async def _ranks(self, calls: list[RankCall]) -> list[Any]:
        eng = self.service.engine  # one engine per batch, even across a hot swap
        return await self.service.run_io(eng.serve_ranks, calls)  # type: ignore[no-any-return]


class RewardBatcher(MicroBatcher[RewardCall, RewardRecord]):
    """Rewards in micro-batches: checked, written in one durable store write and learned in
    one policy update (:meth:`Engine.rewards`), on an I/O thread; each answer leaves after its
    reward is durable and applied."""

    def __init__(self, service: Service) -> None:
        super().__init__(self._rewards)
        self.service = service

    async def reward(self, call: RewardCall) -> RewardRecord:
        return await self.submit(call)

    async def _rewards(self, calls: list[RewardCall]) -> list[Any]:
        return await self.service.run_io(self.service.engine.rewards, calls)  # type: ignore[no-any-return]
