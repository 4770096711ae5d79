"""Service configuration: from arguments or the environment (never from code).

Environment variables (all optional except the artifact):

``EXPLOREC_ARTIFACT``       service artifact directory (``explorec train --output``)
``EXPLOREC_STORE``          ``sqlite:///PATH`` (default ``sqlite:///explorec-service.db``) or
                            ``redis://[:PASSWORD@]HOST:PORT/DB``
``EXPLOREC_READ_KEYS``      comma-separated API keys allowed to rank and read
``EXPLOREC_WRITE_KEYS``     comma-separated API keys allowed to write (rewards, events, items,
                            erasing users) and to read
``EXPLOREC_ADMIN_KEYS``     comma-separated API keys allowed everything, including the admin
                            routes (``/v1/admin/*``: status, hot swap)
``EXPLOREC_ARTIFACT_ROOT``  the directory hot swaps may load artifacts from (default: the one
                            holding the artifact the service starts with)
``EXPLOREC_ERASE_WAIT``     seconds ``DELETE /v1/users/{id}`` waits for the user's data to be
                            gone from every store file before answering 202 (default 5)
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
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from explorec.errors import ExploRecError
from explorec.serve.engine import EngineConfig

DEFAULT_STORE = "sqlite:///explorec-service.db"
DEFAULT_MAX_BODY = 1 << 20
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost`` or any other loopback address."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(config: ServiceConfig, host: str) -> str:
    """The start-up notice about keys and binding. Binding beyond loopback needs a key that
    may write (write or admin): without one, nobody could post rewards or erase a user, and a
    keyless server would take writes from anyone who can reach it."""
    if not is_loopback(host) and not config.can_write:
        what = "only read keys are" if config.auth_enabled else "no API keys are"
        raise ExploRecError(f"refusing to bind {host}: {what} configured. Set EXPLOREC_WRITE_KEYS "
                            "(and EXPLOREC_READ_KEYS / EXPLOREC_ADMIN_KEYS as needed), or bind "
                            "127.0.0.1")
    if config.auth_enabled:
        return (f"API keys: {len(config.read_keys)} read, {len(config.write_keys)} write, "
                f"{len(config.admin_keys)} admin (X-API-Key header)")
    return ("no API keys configured (EXPLOREC_READ_KEYS / EXPLOREC_WRITE_KEYS): binding to "
            f"loopback {host} only; every local caller may read and write")


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
    admin_keys: frozenset[str] = frozenset()
    max_body_bytes: int = DEFAULT_MAX_BODY
    engine: EngineConfig = field(default_factory=EngineConfig)
    artifact_root: str | None = None  # None: the directory holding ``artifact``
    erase_wait_s: float = 5.0

    @property
    def auth_enabled(self) -> bool:
        return bool(self.read_keys or self.write_keys or self.admin_keys)

    @property
    def can_write(self) -> bool:
        """Some key may write: the condition for binding beyond loopback."""
        return bool(self.write_keys or self.admin_keys)

    @property
    def root(self) -> Path:
        """The resolved directory hot-swapped artifacts must lie in."""
        if self.artifact_root:
            return Path(self.artifact_root).resolve()
        return Path(self.artifact).resolve().parent

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
        root = overrides.pop("artifact_root", None) or env.get("EXPLOREC_ARTIFACT_ROOT") or None
        if root is not None and not Path(str(root)).is_dir():
            raise ExploRecError(f"artifact root {root} (--artifact-root / EXPLOREC_ARTIFACT_ROOT) is "
                                "not a directory")
        erase_wait = float(num("EXPLOREC_ERASE_WAIT", 5.0, float))
        if not 0 <= erase_wait <= 3600:
            raise ExploRecError(f"EXPLOREC_ERASE_WAIT={erase_wait:g} must be between 0 and 3600 seconds")
        return cls(artifact=artifact, store=store, read_keys=_keys(env.get("EXPLOREC_READ_KEYS")),
                   write_keys=_keys(env.get("EXPLOREC_WRITE_KEYS")),
                   admin_keys=_keys(env.get("EXPLOREC_ADMIN_KEYS")),
                   max_body_bytes=int(num("EXPLOREC_MAX_BODY", DEFAULT_MAX_BODY)), engine=engine,
                   artifact_root=None if root is None else str(root), erase_wait_s=erase_wait,
                   **overrides)  # type: ignore[arg-type]
