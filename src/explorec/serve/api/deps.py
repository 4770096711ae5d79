"""Typed dependencies: the live :class:`Service` and its parts from ``app.state``, API-key scopes.

Keys arrive in the ``X-API-Key`` header and are compared by their SHA-256 digests; ``read``
keys may rank and read, ``write`` keys may also post rewards and events, put and delete items,
erase users and administer.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from explorec.serve.errors import ServiceError
from explorec.serve.service import Service, SlateLog

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                       description="read or write API key (EXPLOREC_READ_KEYS / EXPLOREC_WRITE_KEYS)")


# async on purpose: FastAPI runs a plain-function dependency in its thread pool (a thread hop
# per dependency per request); these only read app.state
async def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def get_slate_log(request: Request) -> SlateLog:
    return request.app.state.slate_log  # type: ignore[no-any-return]


async def get_metrics(request: Request) -> Any:
    return request.app.state.metrics


ServiceDep = Annotated[Service, Depends(get_service)]
SlateLogDep = Annotated[SlateLog, Depends(get_slate_log)]
MetricsDep = Annotated[Any, Depends(get_metrics)]


def _check(service: Service, key: str | None, needed: str) -> None:
    config = service.config
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


async def read_scope(request: Request, key: Annotated[str | None, Security(API_KEY)] = None) -> None:
    _check(request.app.state.service, key, "read")


async def write_scope(request: Request, key: Annotated[str | None, Security(API_KEY)] = None) -> None:
    _check(request.app.state.service, key, "write")


READ = [Depends(read_scope)]
WRITE = [Depends(write_scope)]
