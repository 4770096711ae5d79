"""The live service: the engine of the current artifact (hot-swappable) and the slate log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from explorec.errors import ExploRecError
from explorec.serve.artifact import load_service_artifact
from explorec.serve.config import ServiceConfig
from explorec.serve.engine import Engine
from explorec.serve.erasure import Eraser
from explorec.serve.stores import Store, open_store

log = logging.getLogger("explorec.serve")


class Service:
    """Holds the live engine; :meth:`reload` swaps in a new artifact without dropping requests."""

    def __init__(self, config: ServiceConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.store)
        self.artifact_path = Path(config.artifact)
        self.engine = Engine(load_service_artifact(self.artifact_path), self.store, config.engine)
        self.store.meta_set("artifact_path", str(self.artifact_path.resolve()))
        self._reload_lock = threading.Lock()
        self.eraser = Eraser(self.store)
        self.eraser.resume()
        self.started = time.time()
        self.reloads = 0
        # load the text encoder now (a sentence-transformers model takes seconds), so that the
        # first PUT /v1/items is as fast as the others
        threading.Thread(target=self._warm_encoder, daemon=True, name="encoder-warmup").start()

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
            return {"previous": old.art.artifact_id, **new.status()}

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

    def close(self) -> None:
        self.eraser.close()
        with contextlib.suppress(Exception):
            self.engine.snapshot()
        self.store.close()


class SlateLog:
    """Group commit of served slates from the event loop.

    A rank request adds its slate and waits; one writer task takes every slate pending at that
    moment, writes them in one durable store write (one thread hop, one fsync) and then
    releases all their answers. While a write is in flight the next batch gathers, so under
    load many answers share one commit, and no answer leaves before its slate is durable.
    """

    max_batch = 256

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, event: Any) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        await fut

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            try:
                await run_in_threadpool(self.store.log_ranks, [e for e, _ in batch])
            except Exception as e:  # every waiting request gets the error (503), none is lost
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
            else:
                for _, f in batch:
                    if not f.done():
                        f.set_result(None)
