"""Memory budgets: what a job needs, what the machine has, and a clear refusal between them.

Every model estimates the peak memory of its fit from the problem's size before it starts
(:meth:`explorec.models.base.BaseRecommender.fit_memory`); :func:`check_memory` compares the
estimate with the memory this process may still use and raises :class:`MemoryLimitError` — one
line that names the job, the estimate and an alternative — instead of letting the kernel or a
failed allocation deep inside BLAS kill the process.

The budget is the smallest of: the memory the kernel reports available (``MemAvailable``), the
room left under the process's cgroup limit, and a user limit (``memory_limit=`` on ``fit``, the
CLI's ``--memory-limit`` or the ``EXPLOREC_MEMORY_LIMIT`` environment variable).

>>> parse_size("1.5GB")
1500000000
>>> parse_size("512MiB")
536870912
>>> format_bytes(9_600_000_000)
'9.6 GB'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from explorec.errors import ExploRecError

ENV_LIMIT = "EXPLOREC_MEMORY_LIMIT"

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


class MemoryLimitError(ExploRecError, MemoryError):
    """A job's estimated memory exceeds what this process may use."""


def parse_size(value: str | int | float, what: str = "memory limit") -> int:
    """Bytes from ``"8GB"``, ``"512MiB"``, ``"2e9"`` or a number of bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ExploRecError(f"{what} must be positive, got {value!r}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ExploRecError(f"{what}: cannot read {value!r} as a size; use e.g. 8GB, 512MiB or "
                            "a number of bytes")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ExploRecError(f"{what} must be positive, got {value!r}")
    return n


def format_bytes(n: float) -> str:
    """Decimal units with two or three significant digits (``9.6 GB``, ``840 MB``)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            v = n / size
            return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup v2 (or v1) memory limit, if it has one."""
    candidates = []
    try:
        rel = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in rel:
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0":  # cgroup v2
            base = Path("/sys/fs/cgroup") / parts[2].lstrip("/")
            candidates.append((base / "memory.max", base / "memory.current"))
    candidates.append((Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")))
    candidates.append((Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                       Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")))
    for limit_file, usage_file in candidates:
        try:
            raw = limit_file.read_text().strip()
            if raw == "max":
                continue
            limit = int(raw)
            if limit >= 2**60:  # v1's "no limit"
                continue
            return max(0, limit - int(usage_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def _rlimit_room() -> int | None:
    """Address space left under ``ulimit -v`` (RLIMIT_AS), if one is set."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (ImportError, OSError, ValueError):
        return None
    return None


def available_bytes(limit: str | int | float | None = None) -> tuple[int | None, str]:
    """(bytes this process may still allocate, where that figure comes from: a phrase with
    ``{}`` for the size).

    ``limit`` (or ``EXPLOREC_MEMORY_LIMIT``) caps it; ``None`` when nothing is known.
    """
    found: list[tuple[int, str]] = []
    if limit is None and os.environ.get(ENV_LIMIT):
        origin = os.environ.get(ENV_LIMIT + "_FROM") or ENV_LIMIT
        found.append((parse_size(os.environ[ENV_LIMIT], ENV_LIMIT), f"the {{}} limit set by {origin}"))
    elif limit is not None:
        found.append((parse_size(limit), "the {} memory_limit"))
    avail = _meminfo_available()
    if avail is not None:
        found.append((avail, "the {} available on this machine"))
    room = _cgroup_room()
    if room is not None:
        found.append((room, "the {} left under the cgroup limit"))
    room = _rlimit_room()
    if room is not None:
        found.append((room, "the {} left under ulimit -v"))
    if not found:
        return None, "unknown"
    return min(found)


def check_memory(what: str, need: int, *, alternative: str = "",
                 limit: str | int | float | None = None) -> None:
    """Raise :class:`MemoryLimitError` when ``need`` bytes exceed the budget.

    ``what`` names the job ("ease needs ~9.6 GB for 50,000 items"), ``alternative`` what to
    do instead.
    """
    have, source = available_bytes(limit)
    if have is None or need <= have:
        return
    tail = f"; {alternative}" if alternative else ""
    raise MemoryLimitError(f"{what}: more than {source.format(format_bytes(have))}{tail}")
