"""``/v1/items/{id}``: add or re-text an item (rankable when the answer arrives), read, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from explorec.serve.api.deps import READ, WRITE, ServiceDep
from explorec.serve.api.schemas import (
    ERRORS,
    DeletedResponse,
    ErrorOut,
    ItemBody,
    ItemOut,
    ItemPath,
    ItemResponse,
)
from explorec.serve.errors import ServiceError

router = APIRouter(tags=["items"])
_UNKNOWN = {**ERRORS, 404: {"model": ErrorOut, "description": "unknown item"}}


@router.put("/v1/items/{item_id}", response_model=ItemResponse, dependencies=WRITE, responses=ERRORS,
            summary="Add or re-text an item; rankable when this returns")
def put_item(item_id: ItemPath, body: ItemBody, service: ServiceDep) -> dict[str, Any]:
    eng = service.engine
    created, _ = eng.put_item(item_id, body.text, dict(body.features or {}))
    return {"item": item_id, "created": created, "n_items": eng.n_live_items()}


@router.get("/v1/items/{item_id}", response_model=ItemOut, dependencies=READ, responses=_UNKNOWN,
            summary="An item's text and features")
def get_item(item_id: ItemPath, service: ServiceDep) -> dict[str, Any]:
    eng = service.engine
    if not eng.is_live(item_id):
        raise ServiceError(f"unknown item {item_id!r}", "item_id", 404)
    rec = service.store.get_item(item_id)
    if rec is not None and not rec.deleted and rec.text:
        return {"item": item_id, "text": rec.text, "features": rec.features, "source": "api"}
    i = eng.index[item_id]
    feats = {c: v[i] for c, v in eng.art.catalog.items()} if i < eng.n_model else {}
    return {"item": item_id, "text": eng.art.texts[i] if i < eng.n_model else "", "features": feats,
            "source": "artifact"}


@router.delete("/v1/items/{item_id}", response_model=DeletedResponse, dependencies=WRITE,
               responses=_UNKNOWN, summary="Delete an item: never ranked again")
def delete_item(item_id: ItemPath, service: ServiceDep) -> dict[str, Any]:
    service.engine.delete_item(item_id)
    return {"deleted": item_id}
