"""``DELETE /v1/users/{id}``: erasure of a user's events, rewards, history and learned state;
``GET /v1/erasures/{epoch}``: whether an erasure is gone from every file the store writes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from explorec.serve.api.deps import WRITE, ServiceDep
from explorec.serve.api.schemas import ERRORS, ErasureStatus, ErrorOut, UserDeletedResponse, UserPath
from explorec.serve.errors import NotFound

router = APIRouter(tags=["users"])


@router.delete("/v1/users/{user_id}", response_model=UserDeletedResponse, dependencies=WRITE,
               responses={**ERRORS, 202: {"model": UserDeletedResponse,
                                          "description": "deleted and no longer served; the purge "
                                                         "of the store files is still running"}},
               summary="Forget a user: events, rewards, history and learned state are erased")
def delete_user(user_id: UserPath, service: ServiceDep) -> Any:
    out = service.erase_user(user_id)
    if out["status"] == "pending":
        return JSONResponse(UserDeletedResponse(**out).model_dump(), status_code=202,
                            headers={"Location": out["status_url"]})
    return out


@router.get("/v1/erasures/{epoch}", response_model=ErasureStatus, dependencies=WRITE,
            responses={**ERRORS, 404: {"model": ErrorOut, "description": "no such erasure"}},
            summary="An erasure's state: pending until the user's data is gone from every store file")
def erasure_status(epoch: Annotated[int, PathParam(ge=1, le=2**62)], service: ServiceDep) -> dict[str, Any]:
    try:
        return service.eraser.status(epoch)
    except KeyError:
        raise NotFound(f"no erasure {epoch}", "epoch") from None
