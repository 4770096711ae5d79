"""Run metadata recorded next to every result (a leaf module: any layer may import it)."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def environment() -> dict[str, Any]:
    """Machine facts recorded next to every result so that figures can be reproduced."""
    import numpy as np

    from explorec import __version__

    return {
        "explorec": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
