"""Request and response models of the JSON API (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from explorec.ids import MAX_ID_LENGTH, check_id, check_text

# One id rule for bodies and paths (explorec.ids, the rule files follow too): 1-256 characters,
# no control characters or lone surrogates, no surrounding whitespace.
_ID_DOC = (f"external id: 1-{MAX_ID_LENGTH} characters, no control characters (U+0000-U+001F, "
           "U+007F-U+009F), no lone surrogates, no leading or trailing whitespace")
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(check_id),
               Field(description=_ID_DOC)]
EventId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, AfterValidator(check_text)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(check_text)]
ShortStr = Annotated[str, StringConstraints(max_length=256), AfterValidator(check_text)]
Strict = ConfigDict(extra="forbid", strict=True)
ItemPath = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH, description=_ID_DOC),
                     AfterValidator(check_id)]
UserPath = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH, description=_ID_DOC),
                     AfterValidator(check_id)]


def _integral(v: Any) -> Any:
    """JSON Schema counts 214.0 as an integer: accept a float with no fractional part."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


Count = Annotated[int, BeforeValidator(_integral)]


# ------------------------------------------------------------------ schemas
class Context(BaseModel):
    """User context: a numeric feature vector for contextual policies, plus logged attributes."""

    model_config = Strict
    features: list[Finite] | None = Field(None, max_length=1024)
    attributes: dict[Key, Text | Finite | bool] | None = Field(None, max_length=64)


class RankRequest(BaseModel):
    model_config = Strict
    user: Id
    k: Count = Field(10, ge=1, le=1000, description="slate length (an integer; 10.0 counts as 10)")
    candidates: list[Id] | None = Field(None, min_length=1, max_length=10_000)
    exclude: list[Id] | None = Field(None, max_length=10_000)
    context: Context | None = None
    explain: bool = Field(False, description="add each item's top contributing history items "
                                              "(computed only when asked)")


class Explanation(BaseModel):
    item: str = Field(description="a history item that contributed to this item's score")
    weight: float


class RankedItemOut(BaseModel):
    item: str
    score: float | None = Field(description="the policy's score (null when not finite)")
    propensity: float = Field(description="probability that the policy put this item at this position")
    explanation: list[Explanation]


class RankResponse(BaseModel):
    event_id: str
    items: list[RankedItemOut]
    policy: str
    artifact: str


class RewardRequest(BaseModel):
    model_config = Strict
    event_id: EventId
    item: Id | None = None
    position: Count | None = Field(None, ge=0, le=999)
    reward: Finite = Field(ge=0.0, le=1.0)


class RewardResponse(BaseModel):
    event_id: str
    item: str
    position: int
    reward: float
    seq: int
    status: Literal["applied"] = "applied"


class EventIn(BaseModel):
    model_config = Strict
    user: Id
    item: Id
    type: Literal["view", "click", "rating", "purchase"]
    value: Finite | None = None
    timestamp: Finite | None = Field(None, ge=0)


class EventsRequest(BaseModel):
    model_config = Strict
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventsResponse(BaseModel):
    accepted: int
    seq: int


class ItemBody(BaseModel):
    model_config = Strict
    text: Text = Field(min_length=1, max_length=20_000)
    features: dict[Key, Text | Finite | bool | list[ShortStr]] | None = Field(None, max_length=256)


class ItemResponse(BaseModel):
    item: str
    created: bool
    n_items: int


class ItemOut(BaseModel):
    item: str
    text: str
    features: dict[str, Any]
    source: Literal["artifact", "api"]


class DeletedResponse(BaseModel):
    deleted: str


class UserDeletedResponse(BaseModel):
    deleted: str
    erased: dict[str, int] = Field(default_factory=dict, description="records deleted, by kind")
    epoch: int = Field(description="this erasure's number (GET status_url for its state)")
    status: Literal["erased", "pending"] = Field(
        description="erased: gone from every file the store writes (answer 200); pending: deleted "
                    "and no longer served, still being purged from the files (answer 202)")
    status_url: str


class ErasureStatus(BaseModel):
    epoch: int
    status: Literal["erased", "pending"]
    purged_epoch: int = Field(description="every erasure up to this one is gone from the files")
    last_error: str | None = None


class ReloadRequest(BaseModel):
    model_config = Strict
    artifact: Annotated[str, StringConstraints(min_length=1, max_length=4096),
                        AfterValidator(check_text)] | None = None


class ErrorOut(BaseModel):
    error: str
    field: str | None = None
    detail: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text} for code, text in (
        (401, "missing or unknown API key"), (403, "the key lacks the scope"),
        (413, "request body too large"), (422, "invalid request; `field` names the field at fault"))}
