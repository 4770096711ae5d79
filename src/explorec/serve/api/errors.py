"""Every refused request gets ``{"error": ..., "field": ...}`` naming the field at fault."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from explorec.serve.errors import ServiceError
from explorec.serve.stores import StoreError

log = logging.getLogger("explorec.serve")


def field_of(loc: tuple[Any, ...] | list[Any]) -> str:
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


RETRY_AFTER_S = 2
"""What a 503 answer tells the client to wait (``Retry-After``) while the store is down."""


def error_response(status: int, message: str, field: str | None, detail: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "field": field}
    if detail is not None:
        body["detail"] = detail
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S), **(headers or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = []
        for e in exc.errors():
            f = field_of(e.get("loc", ()))
            msg = str(e.get("msg", "invalid"))
            if e.get("type") == "json_invalid":
                msg = f"invalid JSON: {e.get('ctx', {}).get('error', msg)}"
            elif e.get("type") == "extra_forbidden":
                msg = "unknown field (not in the schema)"
            detail.append({"field": f, "message": msg, "type": e.get("type")})
        first = detail[0] if detail else {"field": "body", "message": "invalid request"}
        return error_response(422, f"{first['field']}: {first['message']}", first["field"], detail)

    @app.exception_handler(ServiceError)
    async def refused(_: Request, exc: ServiceError) -> JSONResponse:
        return service_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body it cannot decode (not UTF-8): an invalid body, like
            # invalid JSON, is a 422 naming the body
            return error_response(422, "body: invalid JSON: the body is not UTF-8 text", "body",
                                  [{"field": "body", "message": "not UTF-8 text", "type": "json_invalid"}])
        # keeps the exception's headers: a 405 says which methods are allowed (Allow)
        return error_response(exc.status_code, str(exc.detail), None, headers=exc.headers)

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        return store_error_response(exc)


def service_error_response(exc: ServiceError) -> JSONResponse:
    """A refused request (the engine's or the API's own :class:`ServiceError`)."""
    msg = f"{exc.field}: {exc.message}" if exc.field else exc.message
    return error_response(exc.status, msg, exc.field)


def store_error_response(exc: StoreError) -> JSONResponse:
    """The store is down: 503 with ``Retry-After``."""
    log.error("store error: %s", exc)
    return error_response(503, f"store unavailable: {exc}", None)
