"""Typed dependencies: the live :class:`Service` and its parts from ``app.state``, API-key scopes.

Keys arrive in the ``X-API-Key`` header and are compared by their SHA-256 digests (in constant
time). Scopes, each including the ones before it: ``read`` keys may rank and read; ``write``
keys may also post rewards and events, put and delete items and erase users; ``admin`` keys
may also use ``/v1/admin/*`` (status, hot swap). With no keys configured at all the service
answers loopback callers only, and each of them may do everything.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from explorec.serve.config import is_loopback
from explorec.serve.errors import ServiceError
from explorec.serve.service import RankBatcher, RewardBatcher, Service

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False,
                       description="read, write or admin API key (EXPLOREC_READ_KEYS / "
                                   "EXPLOREC_WRITE_KEYS / EXPLOREC_ADMIN_KEYS)")


# async on purpose: FastAPI runs a plain-function dependency in its thread pool (a thread hop
# per dependency per request); these only read app.state
async def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def get_ranker(request: Request) -> RankBatcher:
    return request.app.state.ranker  # type: ignore[no-any-return]


async def get_rewarder(request: Request) -> RewardBatcher:
    return request.app.state.rewarder  # type: ignore[no-any-return]


async def get_metrics(request: Request) -> Any:
    return request.app.state.metrics


ServiceDep = Annotated[Service, Depends(get_service)]
RankerDep = Annotated[RankBatcher, Depends(get_ranker)]
RewarderDep = Annotated[RewardBatcher, Depends(get_rewarder)]
MetricsDep = Annotated[Any, Depends(get_metrics)]


SCOPES = ("read", "write", "admin")


def scope_of(service: Service, key: str | None) -> str | None:
    """The key's scope (``read``, ``write`` or ``admin``), None for an unknown key; every
    list is compared in full, so the time taken does not tell which list a key is in."""
    config = service.config
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest() if key else ""
    found = None
    for scope, keys in (("read", config.read_keys), ("write", config.write_keys),
                        ("admin", config.admin_keys)):
        if any([hmac.compare_digest(digest, k) for k in keys]):
            found = scope
    return found


def _check(request: Request, key: str | None, needed: str) -> None:
    authorize(request.app.state.service, key, request.client.host if request.client else "",
              needed)


def authorize(service: Service, key: str | None, host: str, needed: str) -> None:
    """Refuse (:class:`ServiceError` 401/403) a caller whose ``key`` lacks the ``needed`` scope;
    ``host`` is the caller's address (keyless services answer loopback callers only)."""
    if not service.config.auth_enabled:
        if not is_loopback(host):  # however the app was started, keyless means loopback only
            raise ServiceError("no API keys are configured: only loopback callers are answered",
                               "X-API-Key", 403)
        return
    if not key:
        raise ServiceError("missing API key: send it in the X-API-Key header", "X-API-Key", 401)
    have = scope_of(service, key)
    if have is None:
        raise ServiceError("unknown API key", "X-API-Key", 401)
    if SCOPES.index(have) < SCOPES.index(needed):
        article = "an" if needed == "admin" else "a"
        raise ServiceError(f"this API key has the {have} scope; this endpoint needs {article} "
                           f"{needed} key", "X-API-Key", 403)


async def read_scope(request: Request, key: Annotated[str | None, Security(API_KEY)] = None) -> None:
    _check(request, key, "read")


async def write_scope(request: Request, key: Annotated[str | None, Security(API_KEY)] = None) -> None:
    _check(request, key, "write")


async def admin_scope(request: Request, key: Annotated[str | None, Security(API_KEY)] = None) -> None:
    _check(request, key, "admin")


READ = [Depends(read_scope)]
WRITE = [Depends(write_scope)]
ADMIN = [Depends(admin_scope)]
