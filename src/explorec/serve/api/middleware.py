"""Pure ASGI middleware: request-body limit (413) and Prometheus request metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any


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
