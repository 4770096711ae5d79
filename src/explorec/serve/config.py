"""Service configuration: from arguments or the environment (never from code).

Environment variables (all optional except the artifact):

``EXPLOREC_ARTIFACT``       service artifact directory (``explorec train --output``)
``EXPLOREC_STORE``          ``sqlite:///PATH`` (default ``sqlite:///explorec-service.db``) or
                            ``redis://[:PASSWORD@]HOST:PORT/DB``
``EXPLOREC_READ_KEYS``      comma-separated API keys allowed to rank and read
``EXPLOREC_WRITE_KEYS``     comma-separated API keys allowed to write (rewards, events, items,
                            users, admin) and to read
``EXPLOREC_MAX_BODY``       largest accepted request body in bytes (default 1 MiB)
``EXPLOREC_REWARD_WINDOW``  seconds after a rank during which its rewards are accepted
``EXPLOREC_POOL_SIZE``      candidates handed to the policy when a request names none
``EXPLOREC_SNAPSHOT_EVERY`` rewards between policy-state snapshots
``EXPLOREC_SCAN_MAX_ITEMS`` catalogs above this size (and without an ANN index) take their
                            candidates from a popular pool instead of ranking every item
``EXPLOREC_POPULAR_POOL``   the size of that pool (the most popular training items)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from explorec.errors import ExploRecError
from explorec.serve.engine import EngineConfig

DEFAULT_STORE = "sqlite:///explorec-service.db"
DEFAULT_MAX_BODY = 1 << 20
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _keys(value: str | None) -> frozenset[str]:
    """SHA-256 digests of the comma-separated keys: the plain keys are not kept in memory."""
    keys = [k.strip() for k in (value or "").split(",") if k.strip()]
    return frozenset(hashlib.sha256(k.encode()).hexdigest() for k in keys)


@dataclass(frozen=True)
class ServiceConfig:
    artifact: str
    store: str = DEFAULT_STORE
    read_keys: frozenset[str] = frozenset()  # sha256 hex digests
    write_keys: frozenset[str] = frozenset()
    max_body_bytes: int = DEFAULT_MAX_BODY
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.read_keys or self.write_keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServiceConfig:
        env = os.environ if env is None else env
        artifact = str(overrides.pop("artifact", None) or env.get("EXPLOREC_ARTIFACT", ""))
        if not artifact:
            raise ExploRecError("no artifact: pass --artifact DIR or set EXPLOREC_ARTIFACT")
        store = str(overrides.pop("store", None) or env.get("EXPLOREC_STORE") or DEFAULT_STORE)

        def num(name: str, default: float, kind: type = int) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError as e:
                raise ExploRecError(f"environment variable {name}={raw!r} is not a number") from e

        defaults = EngineConfig()
        engine = EngineConfig(
            pool_size=int(num("EXPLOREC_POOL_SIZE", defaults.pool_size)),
            reward_window_s=float(num("EXPLOREC_REWARD_WINDOW", defaults.reward_window_s, float)),
            snapshot_every=int(num("EXPLOREC_SNAPSHOT_EVERY", defaults.snapshot_every)),
            scan_max_items=int(num("EXPLOREC_SCAN_MAX_ITEMS", defaults.scan_max_items)),
            popular_pool=int(num("EXPLOREC_POPULAR_POOL", defaults.popular_pool)))
        return cls(artifact=artifact, store=store, read_keys=_keys(env.get("EXPLOREC_READ_KEYS")),
                   write_keys=_keys(env.get("EXPLOREC_WRITE_KEYS")),
                   max_body_bytes=int(num("EXPLOREC_MAX_BODY", DEFAULT_MAX_BODY)), engine=engine,
                   **overrides)  # type: ignore[arg-type]
