"""The records the stores keep: served slates, rewards, interactions, items, snapshots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from explorec.serve.stores.base import StoreError


@dataclass(frozen=True)
class RankEvent:
    """One served slate. ``positions`` index into ``candidates``; ``history_seq`` is the last
    interaction of the user that the ranking saw."""

    event_id: str
    user: str
    ts: float
    artifact: str
    policy: str
    items: list[str]
    positions: list[int]
    propensities: list[float]
    scores: list[float | None]
    candidates: list[str]
    history_seq: int = 0
    context: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The record as compact JSON (orjson: a slate's log record carries its whole candidate
        pool, and the standard encoder was a tenth of a served rank's CPU). JSON has no NaN
        or infinity: a non-finite number is refused here, never written as ``null``."""
        bad = _first_not_finite(self)
        if bad is not None:
            raise ValueError(f"event {self.event_id}: {bad} is not a finite number")
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}  # shallow: no deepcopy
        try:
            return orjson.dumps(d).decode()
        except TypeError as e:  # a value JSON cannot hold (what json.dumps refused too)
            raise ValueError(f"event {self.event_id}: {e}") from e

    @classmethod
    def from_json(cls, text: str | bytes) -> RankEvent:
        try:
            return cls(**orjson.loads(text))
        except (ValueError, TypeError) as e:  # orjson.JSONDecodeError is a ValueError
            raise StoreError(f"corrupt event record: {e}") from e


def _first_not_finite(e: RankEvent) -> str | None:
    """The first field of ``e`` holding NaN or an infinity (scores may be None), else None."""
    if not math.isfinite(e.ts):
        return "ts"
    for name, xs in (("propensities", e.propensities), ("scores", e.scores)):
        for n, x in enumerate(xs):
            if x is not None and not math.isfinite(x):
                return f"{name}[{n}]"
    feats = (e.context or {}).get("features")
    if isinstance(feats, list):
        for n, x in enumerate(feats):
            if isinstance(x, float) and not math.isfinite(x):
                return f"context.features[{n}]"
    return None


@dataclass(frozen=True)
class RewardRecord:
    seq: int
    event_id: str
    position: int
    item: str
    reward: float
    user: str
    ts: float


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    kind: str
    value: float | None = None
    ts: float = 0.0
    seq: int = 0


@dataclass(frozen=True)
class ItemRecord:
    """An item put or deleted through the API. ``order`` is its creation order (stable)."""

    item: str
    text: str
    features: dict[str, Any]
    deleted: bool
    seq: int
    order: int
    space: str = ""
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    ts: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    artifact: str
    epoch: int
    seq: int
    n_items: int
    n_applied: int
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Heads:
    """What changed last: the erase epoch, the last item change and the last reward."""

    epoch: int
    items_seq: int
    rewards_seq: int


@dataclass(frozen=True)
class RewardResult:
    status: str  # "recorded" | "duplicate" | "unknown_event"
    record: RewardRecord | None = None
