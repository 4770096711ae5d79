"""The one rule for external user and item ids, wherever they arrive: files, request bodies,
URL paths.

An id is a string of 1 to :data:`MAX_ID_LENGTH` characters (Unicode code points) with

* no control characters: C0 (``U+0000``-``U+001F``), DEL (``U+007F``) and C1
  (``U+0080``-``U+009F``): a NUL, a newline or an escape sequence never reaches a log line,
  a store key or a slate;
* no lone surrogates (``U+D800``-``U+DFFF``): every id encodes as UTF-8;
* no leading or trailing whitespace.

Normalisation: readers of files strip surrounding whitespace from each cell first (CSV
padding is common); the service refuses an id that its stripped form differs from, so that an
id means the same in a file and over HTTP. No other normalisation (case, Unicode forms) is
applied: ids are compared as given.

>>> id_problem("user-42") is None
True
>>> id_problem("x\\ny")
'contains a control character (U+000A) at position 1'
>>> id_problem(" x")
'has leading or trailing whitespace'
>>> id_problem("")
'is empty'
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 256
"""Default longest external id (characters); longer ids are refused, naming where they came
from (a file's column and row, a request's field)."""

FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Characters no id (and no other text the service stores) may contain."""

FORBIDDEN_PATTERN = r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]"
"""The same class as a pattern string for vectorised checks (``pandas.Series.str.contains``)."""


def _describe(ch: str) -> str:
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X})"
    return f"a control character (U+{code:04X})"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (a control character other than tab/newline, or a
    lone surrogate), or None. Free text (item descriptions) may hold tabs and newlines."""
    for m in FORBIDDEN.finditer(value):
        if m.group() not in "\t\n\r":
            return f"contains {_describe(m.group())} at position {m.start()}"
    return None


def id_problem(value: str, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` is not a valid id (a phrase to follow the id's name), or None."""
    if not value:
        return "is empty"
    if len(value) > max_length:
        return f"has {len(value):,} characters, more than the limit of {max_length}"
    m = FORBIDDEN.search(value)
    if m is not None:
        return f"contains {_describe(m.group())} at position {m.start()}"
    if value != value.strip():
        return "has leading or trailing whitespace"
    return None


def check_id(value: str) -> str:
    """``value`` if it is a valid id; ValueError naming the problem otherwise (for pydantic)."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"id {problem}")
    return value


def check_text(value: str) -> str:
    """``value`` if it is storable text; ValueError otherwise (for pydantic)."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"text {problem}")
    return value
