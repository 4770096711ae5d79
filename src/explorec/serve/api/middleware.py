"""Pure ASGI middleware: request-body limit (413) and Prometheus request metrics; the access
log's redaction of user ids and query strings."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote


class _TooLarge(Exception):
    pass


def _json_bytes(status: int, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import json

    data = json.dumps(body).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(data)).encode())]},
            {"type": "http.response.body", "body": data})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (by Content-Length or while streaming): 413."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    n = int(value)
                except ValueError:
                    n = -1
                if n < 0:
                    for m in _json_bytes(400, {"error": "invalid Content-Length header",
                                               "field": "Content-Length"}):
                        await send(m)
                    return
                if n > limit:
                    for m in _json_bytes(413, {"error": f"request body of {n} bytes exceeds the limit "
                                               f"of {limit} bytes", "field": "body"}):
                        await send(m)
                    return
                # a declared length: the server reads exactly that many bytes; count as they come
                await self._streamed(scope, receive, send, limit)
                return
        # no Content-Length (chunked): read the body here, up to the limit, and hand it on
        # whole. Raising inside the app's own read would reach it as a parse error (400)
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            body = msg.get("body", b"")
            seen += len(body)
            if seen > limit:
                for m in _json_bytes(413, {"error": f"request body exceeds the limit of {limit} "
                                           "bytes", "field": "body"}):
                    await send(m)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        given = False

        async def replay() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return whole
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                        send: Callable[[dict[str, Any]], Awaitable[None]], limit: int) -> None:
        seen = 0
        started = False

        async def limited() -> dict[str, Any]:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return msg

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooLarge:
            if not started:
                for m in _json_bytes(413, {"error": f"request body exceeds the limit of {limit} bytes",
                                           "field": "body"}):
                    await send(m)


class Metrics:
    """Prometheus counters and latency histograms per route template."""

    def __init__(self, app: Any, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.app = app
        self.requests = Counter("explorec_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("explorec_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=(.001, .0025, .005, .0075, .01, .015, .025, .05, .1, .25, .5,
                                          1.0, 2.5), registry=registry)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def capture(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.requests.labels(scope.get("method", ""), name, str(status[0])).inc()
            self.latency.labels(name).observe(time.perf_counter() - t0)


class ServiceMetrics:
    """The app's Prometheus registry: the per-route middleware's series plus service gauges."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.items = Gauge("explorec_items", "rankable items", registry=self.registry)
        self.applied = Gauge("explorec_rewards_applied", "rewards the policy learned from",
                             registry=self.registry)
        self.seq = Gauge("explorec_reward_seq", "last reward sequence applied", registry=self.registry)
        self.info = Gauge("explorec_artifact_info", "serving artifact", ["artifact", "model", "policy"],
                          registry=self.registry)
        self.rewards = Counter("explorec_rewards_total", "reward requests by outcome", ["outcome"],
                               registry=self.registry)
        # micro-batching (serve.service.MicroBatcher): requests / batches = the mean batch size
        self.batched = Gauge("explorec_batched_requests", "requests answered through micro-batches, "
                             "by kind (rank, reward)", ["kind"], registry=self.registry)
        self.batches = Gauge("explorec_batches", "micro-batches run, by kind", ["kind"],
                             registry=self.registry)
        self.fast_lane = Counter("explorec_fast_lane_requests", "requests answered by the fast "
                                 "lane (api/fastlane.py), by route", ["route"], registry=self.registry)


class RedactedAccessLog(logging.Filter):
    """uvicorn's access log without personal data: user ids in paths become a keyed hash
    (``/v1/users/~3f2a9c1d0b7e``), query strings are dropped (``?…``).

    The key is ``EXPLOREC_LOG_SALT`` (``explorec serve`` draws one at start and gives it to its
    workers, so one user's lines match within a run) or random: a hash cannot be reversed by
    trying ids without it, and lines of different runs cannot be joined.
    """

    _USER = re.compile(r"^(/v1/users/)([^/?]+)")

    def __init__(self, salt: str | None = None) -> None:
        super().__init__("uvicorn.access")
        self.key = (salt or os.environ.get("EXPLOREC_LOG_SALT") or secrets.token_hex(16)).encode()

    def redact(self, full_path: str) -> str:
        path, sep, _ = full_path.partition("?")
        m = self._USER.match(path)
        if m is not None:
            digest = hmac.new(self.key, unquote(m.group(2)).encode("utf-8", "surrogatepass"),
                              hashlib.sha256).hexdigest()[:12]
            path = f"{m.group(1)}~{digest}{path[m.end():]}"
        return path + ("?…" if sep else "")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], self.redact(args[2]), *args[3:])
        return True


def install_access_log_redaction() -> None:
    """Put :class:`RedactedAccessLog` on uvicorn's access logger (once per process)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactedAccessLog) for f in logger.filters):
        logger.addFilter(RedactedAccessLog())
