"""Connection limits the ASGI app cannot enforce: it only sees a request once its head is in.

:class:`GuardedHttpProtocol` is uvicorn's httptools protocol with three more limits, read
from the environment once per process (``explorec serve`` sets them for every worker):

``EXPLOREC_MAX_HEADER_BYTES``  largest request head (request line + headers) in bytes
                               (default 64 KiB): larger ones get ``431`` and the connection
                               is closed
``EXPLOREC_HEADER_TIMEOUT``    seconds a client may take to send a request head, counted
                               from its first byte or from the connection's opening
                               (default 10): then ``408`` and close (slow-header clients)
``EXPLOREC_BODY_TIMEOUT``      seconds a client may take to send a request body after its
                               head (default 30): then ``408`` and close

Idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive`` and the number
of connections a worker holds by its ``limit_concurrency`` (``EXPLOREC_MAX_CONNECTIONS``, see
:func:`explorec.serve.server.run`). Behind a reverse proxy (nginx, Envoy) set the proxy's own
limits too; these keep a directly exposed worker safe.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from explorec.errors import ExploRecError


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000

    ENV: ClassVar[dict[str, str]] = {
        "max_header_bytes": "EXPLOREC_MAX_HEADER_BYTES", "header_timeout_s": "EXPLOREC_HEADER_TIMEOUT",
        "body_timeout_s": "EXPLOREC_BODY_TIMEOUT", "max_connections": "EXPLOREC_MAX_CONNECTIONS"}

    @classmethod
    def from_env(cls, env: Any = None) -> ConnectionLimits:
        env = os.environ if env is None else env
        vals: dict[str, Any] = {}
        for name, var in cls.ENV.items():
            raw = env.get(var)
            if raw in (None, ""):
                continue
            kind = int if name in ("max_header_bytes", "max_connections") else float
            try:
                v = kind(raw)
            except ValueError as e:
                raise ExploRecError(f"environment variable {var}={raw!r} is not a number") from e
            if v <= 0:
                raise ExploRecError(f"environment variable {var}={raw!r} must be > 0")
            vals[name] = v
        return cls(**vals)

    def to_env(self) -> dict[str, str]:
        return {var: str(getattr(self, name)) for name, var in self.ENV.items()}


_LIMITS: ConnectionLimits | None = None


def limits() -> ConnectionLimits:
    global _LIMITS
    if _LIMITS is None:
        _LIMITS = ConnectionLimits.from_env()
    return _LIMITS


def _reply(status: bytes, message: str) -> bytes:
    import json

    body = json.dumps({"error": message, "field": None}).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class GuardedHttpProtocol(HttpToolsProtocol):
    """httptools protocol + request-head size limit and head/body read timeouts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits()
        self._head_open = True  # reading a request head (or waiting for one)
        self._head_bytes = 0
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    # -- timers
    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        lim = self._limits
        secs = lim.header_timeout_s if what == "head" else lim.body_timeout_s
        self.logger.warning("closing a connection: request %s not received within %.0f s", what, secs)
        self.transport.write(_reply(b"408 Request Timeout",
                                    f"request {what} not received within {secs:g} s"))
        self.transport.close()

    # -- protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            if self._timer is None:  # first byte of a keep-alive connection's next request
                self._arm(self._limits.header_timeout_s, "head")
            # count only this chunk's bytes up to the head's end (a body may follow in the
            # same chunk); the last 3 bytes of the previous chunk catch a split terminator
            buf = self._tail + data
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                self._head_bytes += max(end + 4 - len(self._tail), 0)
                self._tail = b""
            else:
                self._head_bytes += len(data)
                self._tail = buf[-3:]
            if self._head_bytes > self._limits.max_header_bytes:
                self._disarm()
                self.logger.warning("closing a connection: request head over %d bytes",
                                    self._limits.max_header_bytes)
                self.transport.write(_reply(
                    b"431 Request Header Fields Too Large",
                    f"request head over {self._limits.max_header_bytes} bytes"))
                self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._head_bytes = 0
        self._tail = b""
        self._disarm()
        super().on_headers_complete()
        if self.parser is not None and not self.transport.is_closing():
            self._arm(self._limits.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        self._head_open = True  # the next bytes are the next request's head
        self._head_bytes = 0
        self._tail = b""
