"""One listening socket per worker process (``SO_REUSEPORT``), so that connections are spread
over the workers by the kernel instead of by whichever worker wakes first.

With uvicorn's default, every worker accepts on one shared socket, and a worker that wakes
accepts every connection pending at that moment: 16 keep-alive connections opened together
were measured split 16/0, 14/2, 12/4 and 11/5 between two workers. With long-lived
connections at a steady rate, the worker holding most of them is the bottleneck while the
other idles (at 1,000 ranks/s the 16/0 split had p99 425 ms, a 11/5 split 94 ms). A group of
``SO_REUSEPORT`` sockets bound to the same address is balanced by the kernel per connection
(a hash of the addresses).

:class:`WorkerSockets` is the list of sockets uvicorn's supervisor hands to each worker it
starts; in a worker, iterating it claims one socket (an ``flock`` on ``lock_dir/worker-N``,
released when the process dies, so a restarted worker takes over its predecessor's socket) and
yields that one only. A worker that finds every socket claimed (a rolling restart starts the
new worker before the old one leaves, or more workers were added) serves all of them: still
correct, no longer balanced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: the claim's lock file, kept open for the life of the worker process
_HELD: list[Any] = []


def reuseport_available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def bind_group(host: str, port: int, n: int) -> list[socket.socket]:
    """``n`` inheritable TCP sockets bound to ``(host, port)`` with ``SO_REUSEPORT`` (port 0:
    the first one's port for all)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_STREAM)
            out.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, port))
            port = s.getsockname()[1]
            s.set_inheritable(True)
    except OSError:
        for s in out:
            s.close()
        raise
    return out


class WorkerSockets(list):  # type: ignore[type-arg]
    """The supervisor's socket list; in a worker, iteration yields the socket it claimed."""

    def __init__(self, sockets: list[socket.socket], lock_dir: str | Path) -> None:
        super().__init__(sockets)
        self.lock_dir = str(lock_dir)
        self.claimed: int | None = None

    def claim(self) -> int | None:
        """This process's socket index (claimed once), or None when every one is taken."""
        if self.claimed is None:
            for i in range(len(self)):
                f = open(os.path.join(self.lock_dir, f"worker-{i}.lock"), "a")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    continue
                _HELD.append(f)
                self.claimed = i
                break
        return self.claimed

    def __iter__(self) -> Iterator[socket.socket]:
        i = self.claim()
        if i is None:
            return super().__iter__()
        return iter([list.__getitem__(self, i)])

    def __reduce_ex__(self, protocol: Any) -> Any:  # a fresh claim in every worker
        return (_rebuild, (list(super().__iter__()), self.lock_dir))

    def close(self) -> None:
        for s in super().__iter__():
            with contextlib.suppress(OSError):
                s.close()


def _rebuild(sockets: list[socket.socket], lock_dir: str) -> WorkerSockets:
    return WorkerSockets(sockets, lock_dir)
