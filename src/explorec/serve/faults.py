"""Fault injection for crash tests: ``EXPLOREC_FAULT=POINT[:N]`` kills the process with
SIGKILL the N-th time (default 1st) it reaches ``POINT`` -- no shutdown, no flush, like a
power cut of the process. Unset (always, outside tests), :func:`fault` is one comparison.

The points on the reward path, in order:

``reward.before_write``      the reward is validated; nothing is written yet
``reward.in_transaction``    SQLite: the reward and its history row are inserted, not committed
``reward.after_commit``      the store acknowledged the write (fsynced); the policy has not
                             learned from it; the client has no answer
``reward.after_apply``       the policy learned from it; the client has no answer
``snapshot.in_transaction``  SQLite: a policy-state snapshot is written, not committed
``snapshot.before_write``    a snapshot is taken in memory, not written (both stores)

``tests/test_service_faults.py`` cuts the service at each of them and checks the exactly-once
invariant after a restart.
"""

from __future__ import annotations

import os
import signal

POINTS = ("reward.before_write", "reward.in_transaction", "reward.after_commit", "reward.after_apply",
          "snapshot.in_transaction", "snapshot.before_write")

_spec = os.environ.get("EXPLOREC_FAULT", "")
_point, _, _n = _spec.partition(":")
if _point and _point not in POINTS:
    raise ValueError(f"EXPLOREC_FAULT={_spec!r}: unknown point {_point!r}; one of {', '.join(POINTS)}")
_left = int(_n) if _n else 1


def fault(point: str) -> None:
    """SIGKILL this process here if ``EXPLOREC_FAULT`` names ``point`` (on its N-th visit)."""
    global _left
    if point != _point:
        return
    _left -= 1
    if _left <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
