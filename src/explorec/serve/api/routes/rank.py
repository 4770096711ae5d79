"""``POST /v1/rank`` and ``GET /v1/users/{id}/recommendations``: slates logged with propensities."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from explorec.serve.api.deps import READ, RankerDep
from explorec.serve.api.responses import FastJSON
from explorec.serve.api.schemas import ERRORS, RankRequest, RankResponse, UserPath
from explorec.serve.engine import RankCall
from explorec.serve.service import RankBatcher

router = APIRouter(tags=["rank"])


def rank_response(r: Any) -> FastJSON:
    return FastJSON(rank_payload(r))


def rank_payload(r: Any) -> dict[str, Any]:
    # already the response model's shape: skip re-validating it (the hot path)
    return {"event_id": r.event_id, "policy": r.policy, "artifact": r.artifact,
            "items": [{"item": i.item, "score": i.score, "propensity": i.propensity,
                       "explanation": i.explanation} for i in r.items]}


async def serve_rank(body: RankRequest, ranker: RankBatcher) -> dict[str, Any]:
    """``POST /v1/rank``'s work, shared by the route and the fast lane (``api/fastlane.py``).

    The ranker batches the requests of the moment and serves the batch in one call on an I/O
    thread, never on the event loop: the store reads (heads, histories), the slates, then
    one group-committed durable write of their log records; no answer leaves before its
    slate is durable."""
    ctx = body.context
    r, _ = await ranker.rank(RankCall(
        body.user, body.k, candidates=body.candidates, exclude=body.exclude,
        features=ctx.features if ctx else None,
        context={"attributes": ctx.attributes} if ctx and ctx.attributes else None,
        explain=body.explain))
    return rank_payload(r)


@router.post("/v1/rank", response_model=RankResponse, dependencies=READ, responses=ERRORS,
             summary="Rank items for a user; the slate is logged with propensities")
async def rank(body: RankRequest, ranker: RankerDep) -> FastJSON:
    return FastJSON(await serve_rank(body, ranker))


@router.get("/v1/users/{user_id}/recommendations", response_model=RankResponse, dependencies=READ,
            responses=ERRORS, summary="Top-k for a user (logged like /v1/rank)")
async def recommendations(user_id: UserPath, ranker: RankerDep,
                          k: Annotated[int, Query(ge=1, le=1000)] = 10) -> FastJSON:
    r, _ = await ranker.rank(RankCall(user_id, k))
    return rank_response(r)
