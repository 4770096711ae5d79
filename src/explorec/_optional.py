"""Optional dependencies, imported when first needed, with the install line when missing."""

from __future__ import annotations

import importlib
from typing import Any


def require(module: str, why: str, install: str) -> Any:
    """``import module``, or an ImportError saying what needs it and how to install it.

    >>> require("json", "tests", "nothing").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{why} needs {module}: {install}") from e
