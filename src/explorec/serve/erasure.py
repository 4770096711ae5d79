"""Erasure that always erases: after ``DELETE /v1/users/{id}`` deleted a user's records, a
background thread purges the store's files (:meth:`Store.purge`) until it succeeds, and the
answer says whether that already happened.

Each erasure bumps the store's *erase epoch*; :meth:`Store.purge` makes every erasure up to
the current epoch physical and records it as the *purged epoch*. An erasure with epoch ``E``
is complete once the purged epoch reaches ``E`` -- a fact of the store, so any worker (or a
worker started after a crash) answers ``GET /v1/erasures/{E}`` the same, and a service that
finds ``purged < epoch`` at start resumes purging.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from explorec.serve.stores import Store, StoreError

log = logging.getLogger("explorec.serve")


class Eraser:
    """Purges the store's files in the background until every requested erasure is physical.

    ``retry_s`` bounds the wait between two blocked tries (it doubles from 50 ms up to it).
    """

    def __init__(self, store: Store, *, retry_s: float = 2.0, try_s: float = 1.0) -> None:
        self.store = store
        self.retry_s = retry_s
        self.try_s = try_s
        self._cond = threading.Condition()
        self._wanted = 0
        self._purged = 0
        self._last_error: str | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def resume(self) -> None:
        """At start: purge erasures that a previous process acknowledged but did not purge."""
        epoch, purged = self.store.erase_status()
        with self._cond:
            self._purged = max(self._purged, purged)
        if purged < epoch:
            log.warning("erasures up to epoch %d are not yet purged from the store files "
                        "(purged %d): purging now", epoch, purged)
            self.request(epoch)

    def request(self, epoch: int) -> None:
        """Make erasure ``epoch`` (and every earlier one) physical, in the background."""
        with self._cond:
            self._wanted = max(self._wanted, epoch)
            self._start()

    def wait(self, epoch: int, timeout: float) -> bool:
        """True once erasure ``epoch`` is purged (this process saw it), within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._purged < epoch:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(left)
            return True

    def status(self, epoch: int) -> dict[str, Any]:
        """What the store says about erasure ``epoch`` (any process may ask)."""
        current, purged = self.store.erase_status()
        if epoch < 1 or epoch > current:
            raise KeyError(epoch)
        out: dict[str, Any] = {"epoch": epoch, "status": "erased" if purged >= epoch else "pending",
                               "purged_epoch": purged}
        with self._cond:
            if purged < epoch:
                if self._wanted < epoch and not self._closed:
                    self._wanted = max(self._wanted, current)  # e.g. its worker died: take it over
                    self._start()
                if self._last_error:
                    out["last_error"] = self._last_error
        return out

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, daemon=True, name="eraser")
            self._thread.start()
        self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                while self._purged >= self._wanted and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            try:
                done = self.store.purge(self.try_s)
            except StoreError as e:
                done = None
                with self._cond:
                    self._last_error = str(e)
                log.error("erasure purge failed (will retry): %s", e)
            if done is not None:
                with self._cond:
                    self._purged = max(self._purged, done)
                    self._last_error = None
                    self._cond.notify_all()
                backoff = 0.05
                continue
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(backoff)
            backoff = min(self.retry_s, backoff * 2)
