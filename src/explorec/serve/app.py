"""The HTTP face of the engine: the FastAPI app, assembled from :mod:`explorec.serve.api`.

Routes live in ``api/routes/`` (one module per tag) and reach the live :class:`Service`, the
slate log and the metrics through typed dependencies on ``app.state`` (``api/deps.py``);
schemas, middleware and the error mapping have their own modules. Scopes: ``read`` keys may
rank and read; ``write`` keys may also post rewards and events, put and delete items, erase
users and administer (hot swap). Every refused request gets a JSON body
``{"error": ..., "field": ...}`` naming the field at fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator

from fastapi import FastAPI

from explorec.serve.api.errors import install_errors
from explorec.serve.api.fastlane import FastLane, hot_lanes
from explorec.serve.api.middleware import (
    BodyLimit,
    Metrics,
    ServiceMetrics,
    install_access_log_redaction,
)
from explorec.serve.api.routes import ROUTERS
from explorec.serve.config import ServiceConfig, check_bind
from explorec.serve.dashboard import router as dashboard_router
from explorec.serve.service import RankBatcher, RewardBatcher, Service
from explorec.serve.stores import Store

log = logging.getLogger("explorec.serve")

__all__ = ["Service", "create_app", "create_app_from_env"]


def create_app(config: ServiceConfig, *, store: Store | None = None) -> FastAPI:
    """Build the app (loads the artifact and opens the store now)."""
    service = Service(config, store)
    install_access_log_redaction()
    if not config.auth_enabled:
        log.warning("no API keys configured (EXPLOREC_READ_KEYS / EXPLOREC_WRITE_KEYS): every caller "
                    "may read and write; serve on a loopback address only")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def on_hup() -> None:
            async def run() -> None:
                try:
                    info = await loop.run_in_executor(None, service.reload)
                    log.warning("SIGHUP: now serving artifact %s", info["artifact"])
                except Exception as e:  # keep serving the old artifact
                    log.error("SIGHUP reload failed, still serving the previous artifact: %s", e)

            loop.create_task(run())  # noqa: RUF006

        service.freeze_heap()  # the app is built: keep its objects out of collections
        hup = getattr(signal, "SIGHUP", None)
        if hup is not None and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(hup, on_hup)
        try:
            yield
        finally:
            if hup is not None:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(hup)
            service.close()

    app = FastAPI(title="explorec", version="1", lifespan=lifespan,
                  description="Rank/reward recommendation service with exploration and a durable "
                              "event log. Send API keys in the X-API-Key header.")
    metrics = ServiceMetrics()
    app.state.service = service
    app.state.ranker = RankBatcher(service)
    app.state.rewarder = RewardBatcher(service)
    app.state.metrics = metrics
    install_errors(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(dashboard_router)  # /dashboard: read-only pages over the same store
    if os.environ.get("EXPLOREC_FAST_LANE", "1") != "0":
        # rank and reward past the framework's per-request machinery, answering as their
        # routes do (api/fastlane.py); added first, so the metrics and body limit wrap it
        app.add_middleware(FastLane, lanes=hot_lanes())
    app.add_middleware(Metrics, registry=metrics.registry)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory explorec.serve.app:create_app_from_env`` (workers).

    The factory cannot see the address uvicorn binds, so it applies the bind check to
    ``EXPLOREC_BIND_HOST`` (``explorec serve`` sets it for its workers); when that is unset it
    assumes a public bind and requires a write or admin key.
    """
    config = ServiceConfig.from_env()
    check_bind(config, os.environ.get("EXPLOREC_BIND_HOST") or "0.0.0.0")
    return create_app(config)
