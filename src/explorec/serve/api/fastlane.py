"""The hot routes' fast lane: ``POST /v1/rank`` and ``POST /v1/reward`` without the framework's
per-request machinery, answering exactly as their declared routes do.

Under load about half of a rank's CPU went to the web stack (py-spy with ``--gil`` of a live
worker, ML-100K: routing, dependency solving, the exception and exit-stack middleware, the
request wrappers) against a third to the ranking itself. The routes stay declared in
``api/routes/`` (OpenAPI, validation, errors); this ASGI middleware sits inside the
body-limit and metrics middleware and takes a request of a lane only on the path where the
answer is certain to be the route's own:

* a JSON body (``Content-Type: application/json``, a ``Content-Length``), a key with the
  lane's scope (:func:`explorec.serve.api.deps.authorize`, the routes' own check), and a body
  the route's schema accepts (``orjson.loads`` then ``model_validate``: what FastAPI does with
  ``json.loads``; a body orjson refuses, such as a ``NaN`` literal, goes to the route);
* then the route's own coroutine (``serve_rank`` / ``serve_reward``), and its errors through
  the app's own error mapping (:func:`service_error_response`, :func:`store_error_response`).

Anything else (a missing or wrong key, invalid JSON, a schema error, another content type)
goes on to the declared route with the body replayed, so every refusal is the framework's.
``EXPLOREC_FAST_LANE=0`` turns the lane off (the tests compare both).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from explorec.serve.api.deps import authorize
from explorec.serve.api.errors import service_error_response, store_error_response
from explorec.serve.api.responses import FastJSON
from explorec.serve.errors import ServiceError
from explorec.serve.stores import StoreError

log = logging.getLogger("explorec.serve")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Lane:
    """One route's fast lane: its body schema, the key scope it needs, and its work
    ``handle(app_state, body) -> JSON-ready dict`` (the route's own coroutine)."""

    model: type[BaseModel]
    scope: str
    handle: Callable[[Any, Any], Awaitable[dict[str, Any]]]


def hot_lanes() -> dict[tuple[str, str], Lane]:
    """The lanes of ``POST /v1/rank`` and ``POST /v1/reward``."""
    from explorec.serve.api.routes.learn import serve_reward
    from explorec.serve.api.routes.rank import serve_rank
    from explorec.serve.api.schemas import RankRequest, RewardRequest

    return {
        ("POST", "/v1/rank"): Lane(RankRequest, "read",
                                   lambda st, b: serve_rank(b, st.ranker)),
        ("POST", "/v1/reward"): Lane(RewardRequest, "write",
                                     lambda st, b: serve_reward(b, st.rewarder, st.metrics)),
    }


class FastLane:
    """ASGI middleware: requests of ``lanes`` on their fast path, the rest to ``app``."""

    def __init__(self, app: Any, lanes: dict[tuple[str, str], Lane]) -> None:
        self.app = app
        self.lanes = lanes
        # what the metrics middleware reads of a matched route (its path template)
        self._routes = {k: LaneRoute(k[1], frozenset({k[0]})) for k in lanes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lanes.get((scope.get("method", ""), scope.get("path", ""))) \
            if scope["type"] == "http" else None
        if lane is None:
            await self.app(scope, receive, send)
            return
        key = ctype = None
        has_length = False
        for name, value in scope["headers"]:
            if name == b"x-api-key" and key is None:
                key = value.decode("latin-1")
            elif name == b"content-type" and ctype is None:
                ctype = value
            elif name == b"content-length":
                has_length = True
        state = scope["app"].state
        if not has_length or ctype is None or ctype.split(b";")[0].strip().lower() != b"application/json":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            authorize(state.service, key, client[0] if client else "", lane.scope)
        except ServiceError:  # the route refuses it, in its own words
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            body = lane.model.model_validate(orjson.loads(raw))
        except (ValueError, ValidationError):  # invalid JSON or schema: the route's 422
            await self.app(scope, _replay(raw, receive), send)
            return
        scope["route"] = route = self._routes[(scope["method"], scope["path"])]
        state.metrics.fast_lane.labels(route.path).inc()
        try:
            response = FastJSON(await lane.handle(state, body))
        except ServiceError as e:
            response = service_error_response(e)
        except StoreError as e:
            response = store_error_response(e)
        await response(scope, receive, send)


@dataclass(frozen=True)
class LaneRoute:
    """``scope["route"]`` of a request the fast lane answered (a lane's path is its template)."""

    path: str
    methods: frozenset[str]


def _replay(raw: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the client sends next."""
    given = False

    async def replay() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay
