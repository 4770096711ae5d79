"""One router per tag; :data:`ROUTERS` in the order the OpenAPI document lists them."""

from __future__ import annotations

from explorec.serve.api.routes import admin, items, learn, ops, rank, users

ROUTERS = [rank.router, learn.router, items.router, users.router, admin.router, ops.router]
