"""Run the service with uvicorn: ``explorec serve`` or ``python -m explorec.serve``.

Without API keys the server refuses any address but loopback and says so at start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from explorec.errors import ExploRecError
from explorec.serve.config import ServiceConfig, check_bind, is_loopback
from explorec.serve.stores import redact_url

log = logging.getLogger("explorec.serve")

__all__ = ["check_bind", "is_loopback", "main", "run"]


def run(config: ServiceConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        log_level: str = "info", access_log: bool = False) -> None:
    """Serve until interrupted. ``workers > 1`` starts processes that share the store."""
    import uvicorn

    from explorec.artifacts import read_manifest
    from explorec.serve.guard import ConnectionLimits

    notice = check_bind(config, host)
    lim = ConnectionLimits.from_env()  # bad values fail here, before anything starts
    os.environ.update(lim.to_env())  # the workers' protocols read them
    guard = {"http": "explorec.serve.guard:GuardedHttpProtocol", "limit_concurrency": lim.max_connections,
             "timeout_keep_alive": 5}
    read_manifest(config.artifact)  # a missing or foreign artifact fails before the store opens
    from explorec.serve.engine import single_threaded_blas

    single_threaded_blas()
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"explorec serve: {notice}", file=sys.stderr, flush=True)
    print(f"explorec serve: request heads <= {lim.max_header_bytes} bytes within "
          f"{lim.header_timeout_s:g} s, bodies within {lim.body_timeout_s:g} s, <= "
          f"{lim.max_connections} connections per worker", file=sys.stderr, flush=True)
    print(f"explorec serve: artifact {config.artifact}, store {redact_url(config.store)}, "
          f"http://{host}:{port} (OpenAPI at /docs)", file=sys.stderr, flush=True)
    os.environ["EXPLOREC_BIND_HOST"] = host  # the factory's bind check reads it
    os.environ.setdefault("EXPLOREC_LOG_SALT", secrets.token_hex(16))  # one per run, all workers
    if workers > 1:
        # workers re-create the app from the environment (keys stay in the environment only)
        if config.artifact_root:
            os.environ["EXPLOREC_ARTIFACT_ROOT"] = config.artifact_root
        os.environ["EXPLOREC_ERASE_WAIT"] = str(config.erase_wait_s)
        os.environ["EXPLOREC_ARTIFACT"] = str(config.artifact)
        os.environ["EXPLOREC_STORE"] = config.store
        os.environ["EXPLOREC_MAX_BODY"] = str(config.max_body_bytes)
        os.environ["EXPLOREC_POOL_SIZE"] = str(config.engine.pool_size)
        os.environ["EXPLOREC_REWARD_WINDOW"] = str(config.engine.reward_window_s)
        os.environ["EXPLOREC_SNAPSHOT_EVERY"] = str(config.engine.snapshot_every)
        os.environ["EXPLOREC_SCAN_MAX_ITEMS"] = str(config.engine.scan_max_items)
        os.environ["EXPLOREC_POPULAR_POOL"] = str(config.engine.popular_pool)
        uvicorn.run("explorec.serve.app:create_app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level=log_level, access_log=access_log, **guard)
        return
    from explorec.serve.app import create_app

    with _removed_on_failure(config.store):
        app = create_app(config)
    _warn_weak_redis(app)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log,
                timeout_graceful_shutdown=30, **guard)


@contextlib.contextmanager
def _removed_on_failure(store_url: str) -> Iterator[None]:
    """A SQLite database that a failed start created is removed again (with its WAL and lock files),
    so a typo in --artifact leaves nothing behind."""
    from explorec.serve.stores import sqlite_path

    path = sqlite_path(store_url)
    files = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm", "-lock")] if path else []
    existed = {f for f in files if f.exists()}
    try:
        yield
    except BaseException:
        for f in files:
            if f not in existed:
                f.unlink(missing_ok=True)
        raise


def _warn_weak_redis(app: object) -> None:
    store = app.state.service.store  # type: ignore[attr-defined]
    durability = getattr(store, "durability", None)
    if durability is None:
        return
    cfg = durability()
    if cfg.get("appendonly") != "yes" or cfg.get("appendfsync") != "always":
        print("explorec serve: warning: Redis runs with appendonly="
              f"{cfg.get('appendonly')!r}, appendfsync={cfg.get('appendfsync')!r}; acknowledged "
              "writes survive a Redis crash only with appendonly yes + appendfsync always",
              file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    p = argparse.ArgumentParser(prog="python -m explorec.serve", description=__doc__)
    p.add_argument("--artifact", default=None, help="service artifact (or EXPLOREC_ARTIFACT)")
    p.add_argument("--store", default=None, help="sqlite:///PATH or redis://HOST:PORT/DB "
                                                 "(or EXPLOREC_STORE)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="warning")
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--artifact-root", default=None,
                   help="directory hot swaps may load from (or EXPLOREC_ARTIFACT_ROOT)")
    a = p.parse_args(argv)
    try:
        config = ServiceConfig.from_env(artifact=a.artifact, store=a.store, artifact_root=a.artifact_root)
        run(config, host=a.host, port=a.port, workers=a.workers, log_level=a.log_level,
            access_log=a.access_log)
    except ExploRecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
