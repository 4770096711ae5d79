"""``/v1/admin``: the serving artifact and its state, and the hot swap."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from explorec.errors import ExploRecError
from explorec.serve.api.deps import WRITE, ServiceDep
from explorec.serve.api.schemas import ERRORS, ErrorOut, ReloadRequest
from explorec.serve.errors import ServiceError

router = APIRouter(tags=["admin"])


@router.get("/v1/admin/status", dependencies=WRITE, responses=ERRORS,
            summary="Serving artifact, policy state digest, store counts")
def admin_status(service: ServiceDep) -> dict[str, Any]:
    return {**service.engine.status(), "store": service.store.describe(),
            "counts": service.store.counts(), "reloads": service.reloads}


@router.post("/v1/admin/reload", dependencies=WRITE,
             responses={**ERRORS, 400: {"model": ErrorOut, "description": "artifact cannot be loaded"}},
             summary="Hot swap: load an artifact (default: re-read the current path) and swap it in")
def admin_reload(body: ReloadRequest, service: ServiceDep) -> dict[str, Any]:
    try:
        return service.reload(body.artifact)
    except (ExploRecError, OSError) as e:
        raise ServiceError(f"cannot load artifact: {e}", "artifact", 400) from e
