"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from explorec.serve.api.deps import MetricsDep, RankerDep, RewarderDep, ServiceDep
from explorec.serve.api.errors import error_response
from explorec.serve.api.schemas import ErrorOut
from explorec.serve.stores import StoreError

router = APIRouter(tags=["ops"])


@router.api_route("/healthz", methods=["GET", "HEAD"], summary="Liveness")
def healthz(service: ServiceDep) -> dict[str, Any]:
    return {"status": "ok", "uptime_s": round(time.time() - service.started, 3)}


@router.api_route("/readyz", methods=["GET", "HEAD"],
                  summary="Readiness: artifact loaded and store reachable",
                  responses={503: {"model": ErrorOut, "description": "store unreachable (Retry-After)"}})
def readyz(service: ServiceDep) -> Any:
    try:
        service.store.ping()
    except StoreError as e:
        return error_response(503, f"store unavailable: {e}", None)
    eng = service.engine
    return {"ready": True, "artifact": eng.art.artifact_id, "policy": eng.art.policy_name,
            "items": eng.n_live_items()}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(service: ServiceDep, m: MetricsDep, ranker: RankerDep, rewarder: RewarderDep) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    for kind, b in (("rank", ranker), ("reward", rewarder)):
        m.batched.labels(kind).set(b.items)
        m.batches.labels(kind).set(b.batches)
    eng = service.engine
    m.items.set(eng.n_live_items())
    m.applied.set(eng.applied.n)
    m.seq.set(eng.reward_seq)
    m.info.clear()
    m.info.labels(eng.art.artifact_id, str(eng.art.manifest.get("model")), eng.art.policy_name).set(1)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
