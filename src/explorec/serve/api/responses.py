"""The hot routes' JSON answers, encoded by orjson.

Starlette's :class:`~starlette.responses.JSONResponse` encodes with the standard library's
``json.dumps``; on a served rank that encoder (answer and slate-log record together) took about
a tenth of a worker's CPU. :class:`FastJSON` writes the same compact UTF-8 JSON
(``separators=(",", ":")``, no ASCII escaping) through orjson, and like Starlette's refuses
NaN and infinities rather than writing them: orjson would write ``null``.

>>> FastJSON({"items": [{"item": "é", "score": 0.5}]}).body
b'{"items":[{"item":"\\xc3\\xa9","score":0.5}]}'
>>> FastJSON({"score": float("nan")})
Traceback (most recent call last):
...
ValueError: Out of range float values are not JSON compliant: score
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSON(JSONResponse):
    """``JSONResponse`` with orjson's encoder (same bytes up to float spelling, same refusals)."""

    def render(self, content: Any) -> bytes:
        out = orjson.dumps(content)
        # orjson writes NaN and infinities as null: only an answer with a null can hold one
        if b"null" in out:
            bad = _not_finite(content)
            if bad is not None:
                raise ValueError(f"Out of range float values are not JSON compliant: {bad}")
        return out


def _not_finite(x: Any, path: str = "") -> str | None:
    """The path of the first NaN or infinity in ``x`` (dicts, lists, tuples), else None."""
    if isinstance(x, float):
        return None if math.isfinite(x) else (path or "value")
    if isinstance(x, dict):
        for k, v in x.items():
            bad = _not_finite(v, f"{path}.{k}" if path else str(k))
            if bad is not None:
                return bad
    elif isinstance(x, (list, tuple)):
        for n, v in enumerate(x):
            bad = _not_finite(v, f"{path}[{n}]")
            if bad is not None:
                return bad
    return None
