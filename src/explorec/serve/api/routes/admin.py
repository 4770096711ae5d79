"""``/v1/admin``: the serving artifact and its state, and the hot swap (admin scope).

A hot swap loads only artifacts inside the artifact root (``--artifact-root``), and a refusal
says only "not a valid artifact": which paths exist, and why one failed to load, go to the
server's log, not to the caller."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from explorec.errors import ExploRecError
from explorec.serve.api.deps import ADMIN, ServiceDep
from explorec.serve.api.schemas import ERRORS, ErrorOut, ReloadRequest
from explorec.serve.errors import ServiceError

router = APIRouter(tags=["admin"])
log = logging.getLogger("explorec.serve")


@router.get("/v1/admin/status", dependencies=ADMIN, responses=ERRORS,
            summary="Serving artifact, policy state digest, store counts")
def admin_status(service: ServiceDep) -> dict[str, Any]:
    return {**service.engine.status(), "store": service.store.describe(),
            "counts": service.store.counts(), "reloads": service.reloads}


@router.post("/v1/admin/reload", dependencies=ADMIN,
             responses={**ERRORS, 400: {"model": ErrorOut, "description": "artifact cannot be loaded"}},
             summary="Hot swap: load an artifact (default: re-read the current path) and swap it in")
def admin_reload(body: ReloadRequest, service: ServiceDep) -> dict[str, Any]:
    try:
        return service.reload(body.artifact)
    except (ExploRecError, OSError, ValueError) as e:
        log.warning("hot swap refused for %r: %s", body.artifact, e)
        raise ServiceError("not a valid artifact", "artifact", 400) from None
