"""The service's refusals: each carries its HTTP status and the request field at fault.

The engine raises them; :mod:`explorec.serve.api.errors` turns them into JSON responses.
"""

from __future__ import annotations

from explorec.errors import ExploRecError


class ServiceError(ExploRecError):
    """A request the service refuses: HTTP ``status``, the ``field`` at fault and why."""

    status = 422

    def __init__(self, message: str, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Gone(ServiceError):
    status = 410
