"""The HTTP face of the engine: FastAPI app, JSON API under ``/v1``, health, metrics, security.

Scopes: ``read`` keys may rank and read; ``write`` keys may also post rewards and events,
put and delete items, erase users and administer (hot swap). Keys arrive in the ``X-API-Key``
header, are compared by their SHA-256 digests and are never logged or stored. Every refused
request gets a JSON body ``{"error": ..., "field": ...}`` naming the field at fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from explorec.errors import ExploRecError
from explorec.serve.artifact import load_service_artifact
from explorec.serve.config import ServiceConfig
from explorec.serve.engine import Engine, ServiceError
from explorec.serve.stores import Interaction, Store, StoreError, open_store

log = logging.getLogger("explorec.serve")

Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
EventId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ShortStr = Annotated[str, StringConstraints(max_length=256)]
Strict = ConfigDict(extra="forbid", strict=True)
ItemPath = Annotated[str, PathParam(min_length=1, max_length=256, description="external item id")]
UserPath = Annotated[str, PathParam(min_length=1, max_length=256, description="external user id")]


# ------------------------------------------------------------------ schemas
class Context(BaseModel):
    """User context: a numeric feature vector for contextual policies, plus logged attributes."""

    model_config = Strict
    features: list[Finite] | None = Field(None, max_length=1024)
    attributes: dict[Key, str | Finite | bool] | None = Field(None, max_length=64)


class RankRequest(BaseModel):
    model_config = Strict
    user: Id
    k: int = Field(10, ge=1, le=1000)
    candidates: list[Id] | None = Field(None, min_length=1, max_length=10_000)
    exclude: list[Id] | None = Field(None, max_length=10_000)
    context: Context | None = None
    explain: bool = Field(False, description="add each item's top contributing history items "
                                              "(computed only when asked)")


class Explanation(BaseModel):
    item: str = Field(description="a history item that contributed to this item's score")
    weight: float


class RankedItemOut(BaseModel):
    item: str
    score: float | None = Field(description="the policy's score (null when not finite)")
    propensity: float = Field(description="probability that the policy put this item at this position")
    explanation: list[Explanation]


class RankResponse(BaseModel):
    event_id: str
    items: list[RankedItemOut]
    policy: str
    artifact: str


class RewardRequest(BaseModel):
    model_config = Strict
    event_id: EventId
    item: Id | None = None
    position: int | None = Field(None, ge=0, le=999)
    reward: Finite = Field(ge=0.0, le=1.0)


class RewardResponse(BaseModel):
    event_id: str
    item: str
    position: int
    reward: float
    seq: int
    status: Literal["applied"] = "applied"


class EventIn(BaseModel):
    model_config = Strict
    user: Id
    item: Id
    type: Literal["view", "click", "rating", "purchase"]
    value: Finite | None = None
    timestamp: Finite | None = Field(None, ge=0)


class EventsRequest(BaseModel):
    model_config = Strict
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventsResponse(BaseModel):
    accepted: int
    seq: int


class ItemBody(BaseModel):
    model_config = Strict
    text: str = Field(min_length=1, max_length=20_000)
    features: dict[Key, str | Finite | bool | list[ShortStr]] | None = Field(None, max_length=256)


class ItemResponse(BaseModel):
    item: str
    created: bool
    n_items: int


class ItemOut(BaseModel):
    item: str
    text: str
    features: dict[str, Any]
    source: Literal["artifact", "api"]


class DeletedResponse(BaseModel):
    deleted: str
    erased: dict[str, int] = Field(default_factory=dict)


class ReloadRequest(BaseModel):
    model_config = Strict
    artifact: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


class ErrorOut(BaseModel):
    error: str
    field: str | None = None
    detail: list[dict[str, Any]] | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text} for code, text in (
        (401, "missing or unknown API key"), (403, "the key lacks the scope"),
        (413, "request body too large"), (422, "invalid request; `field` names the field at fault"))}


# ------------------------------------------------------------------ the service holder
class Service:
    """Holds the live engine; :meth:`reload` swaps in a new artifact without dropping requests."""

    def __init__(self, config: ServiceConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.store)
        self.artifact_path = Path(config.artifact)
        self.engine = Engine(load_service_artifact(self.artifact_path), self.store, config.engine)
        self.store.meta_set("artifact_path", str(self.artifact_path.resolve()))
        self._reload_lock = threading.Lock()
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

    def close(self) -> None:
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


# ------------------------------------------------------------------ middleware (pure ASGI)
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


# ------------------------------------------------------------------ errors
def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where = parts.pop(0)
        if not parts or (where == "body" and all(isinstance(p, int) for p in parts)):
            return "body"
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def _error(status: int, message: str, field: str | None, detail: list[dict[str, Any]] | None = None
           ) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "field": field}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = []
        for e in exc.errors():
            f = _field(e.get("loc", ()))
            msg = str(e.get("msg", "invalid"))
            if e.get("type") == "json_invalid":
                msg = f"invalid JSON: {e.get('ctx', {}).get('error', msg)}"
            elif e.get("type") == "extra_forbidden":
                msg = "unknown field (not in the schema)"
            detail.append({"field": f, "message": msg, "type": e.get("type")})
        first = detail[0] if detail else {"field": "body", "message": "invalid request"}
        return _error(422, f"{first['field']}: {first['message']}", first["field"], detail)

    @app.exception_handler(ServiceError)
    async def refused(_: Request, exc: ServiceError) -> JSONResponse:
        msg = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return _error(exc.status, msg, exc.field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), None)

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        log.error("store error: %s", exc)
        return _error(503, f"store unavailable: {exc}", None)


# ------------------------------------------------------------------ the app
def create_app(config: ServiceConfig, *, store: Store | None = None) -> FastAPI:
    """Build the app (loads the artifact and opens the store now)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

    service = Service(config, store)
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
    app.state.service = service
    registry = CollectorRegistry()
    g_items = Gauge("explorec_items", "rankable items", registry=registry)
    g_applied = Gauge("explorec_rewards_applied", "rewards the policy learned from", registry=registry)
    g_seq = Gauge("explorec_reward_seq", "last reward sequence applied", registry=registry)
    g_info = Gauge("explorec_artifact_info", "serving artifact", ["artifact", "model", "policy"],
                   registry=registry)
    from prometheus_client import Counter

    c_rewards = Counter("explorec_rewards_total", "reward requests by outcome", ["outcome"],
                        registry=registry)
    _install_errors(app)

    header = APIKeyHeader(name="X-API-Key", auto_error=False,
                          description="read or write API key (EXPLOREC_READ_KEYS / EXPLOREC_WRITE_KEYS)")

    def scope_check(needed: str) -> Callable[[str | None], Awaitable[None]]:
        async def check(key: str | None = Security(header)) -> None:
            if not config.auth_enabled:
                return
            if not key:
                raise ServiceError("missing API key: send it in the X-API-Key header", "X-API-Key", 401)
            digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
            if any(hmac.compare_digest(digest, k) for k in config.write_keys):
                return
            if any(hmac.compare_digest(digest, k) for k in config.read_keys):
                if needed == "write":
                    raise ServiceError("this API key is read-only; this endpoint needs a write key",
                                       "X-API-Key", 403)
                return
            raise ServiceError("unknown API key", "X-API-Key", 401)

        return check

    read = [Depends(scope_check("read"))]
    write = [Depends(scope_check("write"))]

    slate_log = SlateLog(service.store)

    def _rank_response(r: Any) -> JSONResponse:
        # already the response model's shape: skip re-validating it (the hot path)
        return JSONResponse({"event_id": r.event_id, "policy": r.policy, "artifact": r.artifact,
                             "items": [{"item": i.item, "score": i.score, "propensity": i.propensity,
                                        "explanation": i.explanation} for i in r.items]})

    @app.post("/v1/rank", response_model=RankResponse, dependencies=read, responses=_ERRORS,
              tags=["rank"], summary="Rank items for a user; the slate is logged with propensities")
    async def rank(body: RankRequest) -> JSONResponse:
        # store reads (the heads, the user's history) run in a worker thread, never on the
        # event loop; the slate itself is short in-memory work (a worker thread would make it
        # fight the loop for the GIL); the durable log write is group-committed with the
        # other slates of the moment (SlateLog)
        eng = service.engine
        ctx = body.context
        h = await run_in_threadpool(eng.read_for_rank, body.user)
        r, event = eng.compute_rank(
            h, body.user, body.k, candidates=body.candidates, exclude=body.exclude,
            features=ctx.features if ctx else None,
            context={"attributes": ctx.attributes} if ctx and ctx.attributes else None,
            explain=body.explain)
        await slate_log.write(event)
        return _rank_response(r)

    @app.get("/v1/users/{user_id}/recommendations", response_model=RankResponse, dependencies=read,
             responses=_ERRORS, tags=["rank"], summary="Top-k for a user (logged like /v1/rank)")
    async def recommendations(user_id: UserPath,
                              k: Annotated[int, Query(ge=1, le=1000)] = 10) -> JSONResponse:
        eng = service.engine
        h = await run_in_threadpool(eng.read_for_rank, user_id)
        r, event = eng.compute_rank(h, user_id, k)
        await slate_log.write(event)
        return _rank_response(r)

    @app.post("/v1/reward", response_model=RewardResponse, dependencies=write, tags=["learn"],
              responses={**_ERRORS, 404: {"model": ErrorOut, "description": "unknown event_id"},
                         409: {"model": ErrorOut, "description": "reward already applied"},
                         410: {"model": ErrorOut, "description": "past the reward window"}},
              summary="Reward one shown item; the policy learns from it before this returns")
    def reward(body: RewardRequest) -> dict[str, Any]:
        try:
            rec = service.engine.reward(body.event_id, body.reward, item=body.item, position=body.position)
        except ServiceError as e:
            c_rewards.labels({404: "unknown", 409: "duplicate", 410: "late"}.get(e.status, "invalid")).inc()
            raise
        c_rewards.labels("applied").inc()
        return {"event_id": rec.event_id, "item": rec.item, "position": rec.position,
                "reward": rec.reward, "seq": rec.seq}

    @app.post("/v1/events", response_model=EventsResponse, dependencies=write, responses=_ERRORS,
              tags=["learn"], summary="Batched interactions; they join the users' histories now")
    def events(body: EventsRequest) -> dict[str, Any]:
        now = time.time()
        rows = [Interaction(e.user, e.item, e.type, e.value, e.timestamp if e.timestamp is not None else now)
                for e in body.events]
        seq = service.engine.add_events(rows)
        return {"accepted": len(rows), "seq": seq}

    @app.put("/v1/items/{item_id}", response_model=ItemResponse, dependencies=write, responses=_ERRORS,
             tags=["items"], summary="Add or re-text an item; rankable when this returns")
    def put_item(item_id: ItemPath, body: ItemBody) -> dict[str, Any]:
        eng = service.engine
        created, _ = eng.put_item(item_id, body.text, dict(body.features or {}))
        return {"item": item_id, "created": created, "n_items": eng.n_live_items()}

    @app.get("/v1/items/{item_id}", response_model=ItemOut, dependencies=read,
             responses={**_ERRORS, 404: {"model": ErrorOut, "description": "unknown item"}},
             tags=["items"], summary="An item's text and features")
    def get_item(item_id: ItemPath) -> dict[str, Any]:
        eng = service.engine
        if not eng.is_live(item_id):
            raise ServiceError(f"unknown item {item_id!r}", "item_id", 404)
        rec = service.store.get_item(item_id)
        if rec is not None and not rec.deleted and rec.text:
            return {"item": item_id, "text": rec.text, "features": rec.features, "source": "api"}
        i = eng.index[item_id]
        feats = {c: v[i] for c, v in eng.art.catalog.items()} if i < eng.n_model else {}
        return {"item": item_id, "text": eng.art.texts[i] if i < eng.n_model else "", "features": feats,
                "source": "artifact"}

    @app.delete("/v1/items/{item_id}", response_model=DeletedResponse, dependencies=write,
                responses={**_ERRORS, 404: {"model": ErrorOut, "description": "unknown item"}},
                tags=["items"], summary="Delete an item: never ranked again")
    def delete_item(item_id: ItemPath) -> dict[str, Any]:
        service.engine.delete_item(item_id)
        return {"deleted": item_id}

    @app.delete("/v1/users/{user_id}", response_model=DeletedResponse, dependencies=write,
                responses=_ERRORS, tags=["users"],
                summary="Forget a user: events, rewards, history and learned state are erased")
    def delete_user(user_id: UserPath) -> dict[str, Any]:
        return {"deleted": user_id, "erased": service.engine.delete_user(user_id)}

    @app.get("/v1/admin/status", dependencies=write, responses=_ERRORS, tags=["admin"],
             summary="Serving artifact, policy state digest, store counts")
    def admin_status() -> dict[str, Any]:
        return {**service.engine.status(), "store": service.store.describe(),
                "counts": service.store.counts(), "reloads": service.reloads}

    @app.post("/v1/admin/reload", dependencies=write, tags=["admin"],
              responses={**_ERRORS, 400: {"model": ErrorOut, "description": "artifact cannot be loaded"}},
              summary="Hot swap: load an artifact (default: re-read the current path) and swap it in")
    def admin_reload(body: ReloadRequest) -> dict[str, Any]:
        try:
            return service.reload(body.artifact)
        except (ExploRecError, OSError) as e:
            raise ServiceError(f"cannot load artifact: {e}", "artifact", 400) from e

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - service.started, 3)}

    @app.get("/readyz", tags=["ops"], summary="Readiness: artifact loaded and store reachable",
             responses={503: {"model": ErrorOut, "description": "store unreachable"}})
    def readyz() -> Any:
        try:
            service.store.ping()
        except StoreError as e:
            return _error(503, f"store unavailable: {e}", None)
        eng = service.engine
        return {"ready": True, "artifact": eng.art.artifact_id, "policy": eng.art.policy_name,
                "items": eng.n_live_items()}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        eng = service.engine
        g_items.set(eng.n_live_items())
        g_applied.set(eng.applied.n)
        g_seq.set(eng.reward_seq)
        g_info.clear()
        g_info.labels(eng.art.artifact_id, str(eng.art.manifest.get("model")), eng.art.policy_name).set(1)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Metrics, registry=registry)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory explorec.serve.app:create_app_from_env`` (workers)."""
    return create_app(ServiceConfig.from_env())
