"""``DELETE /v1/users/{id}``: erasure of a user's events, rewards, history and learned state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from explorec.serve.api.deps import WRITE, ServiceDep
from explorec.serve.api.schemas import ERRORS, DeletedResponse, UserPath

router = APIRouter(tags=["users"])


@router.delete("/v1/users/{user_id}", response_model=DeletedResponse, dependencies=WRITE,
               responses=ERRORS,
               summary="Forget a user: events, rewards, history and learned state are erased")
def delete_user(user_id: UserPath, service: ServiceDep) -> dict[str, Any]:
    return {"deleted": user_id, "erased": service.engine.delete_user(user_id)}
