"""``POST /v1/reward`` and ``POST /v1/events``: what the policy and the histories learn from.

Rewards are batched on the event loop (:class:`explorec.serve.service.RewardBatcher`) and
written on an I/O thread; events are a plain function that FastAPI runs in its thread pool.
Either way the store writes (durable before the answer) never block the event loop.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from explorec.serve.api.deps import WRITE, MetricsDep, RewarderDep, ServiceDep
from explorec.serve.api.schemas import (
    ERRORS,
    ErrorOut,
    EventsRequest,
    EventsResponse,
    RewardRequest,
    RewardResponse,
)
from explorec.serve.engine import RewardCall
from explorec.serve.errors import ServiceError
from explorec.serve.service import RewardBatcher
from explorec.serve.stores import Interaction

router = APIRouter(tags=["learn"])

_OUTCOME = {404: "unknown", 409: "duplicate", 410: "late"}


@router.post("/v1/reward", response_model=RewardResponse, dependencies=WRITE,
             responses={**ERRORS, 404: {"model": ErrorOut, "description": "unknown event_id"},
                        409: {"model": ErrorOut, "description": "reward already applied"},
                        410: {"model": ErrorOut, "description": "past the reward window"}},
             summary="Reward one shown item; the policy learns from it before this returns")
async def reward(body: RewardRequest, rewarder: RewarderDep, metrics: MetricsDep) -> dict[str, Any]:
    return await serve_reward(body, rewarder, metrics)


async def serve_reward(body: RewardRequest, rewarder: RewardBatcher, metrics: Any) -> dict[str, Any]:
    """``POST /v1/reward``'s work, shared by the route and the fast lane (``api/fastlane.py``):
    batched with the other rewards of the moment (one durable write, one policy update, on an
    I/O thread); the answer leaves once this reward is durable and learned."""
    try:
        rec = await rewarder.reward(RewardCall(body.event_id, body.reward, body.item, body.position))
    except ServiceError as e:
        metrics.rewards.labels(_OUTCOME.get(e.status, "invalid")).inc()
        raise
    metrics.rewards.labels("applied").inc()
    return RewardResponse(event_id=rec.event_id, item=rec.item, position=rec.position,
                          reward=rec.reward, seq=rec.seq).model_dump(mode="json")


@router.post("/v1/events", response_model=EventsResponse, dependencies=WRITE, responses=ERRORS,
             summary="Batched interactions; they join the users' histories now")
def events(body: EventsRequest, service: ServiceDep) -> dict[str, Any]:
    now = time.time()
    rows = [Interaction(e.user, e.item, e.type, e.value, e.timestamp if e.timestamp is not None else now)
            for e in body.events]
    seq = service.engine.add_events(rows)
    return {"accepted": len(rows), "seq": seq}
