"""Online service: rank/reward HTTP API, state stores (SQLite embedded, Redis shared), artifacts.

* :mod:`explorec.serve.artifact` — train and package a model, item vectors, catalog and policy;
* :mod:`explorec.serve.stores` — the :class:`Store` protocol, :class:`SQLiteStore`, :class:`RedisStore`;
* :mod:`explorec.serve.engine` — rank, learn from rewards, add items, erase users;
* :mod:`explorec.serve.app` — the FastAPI app (``/v1``, ``/healthz``, ``/readyz``, ``/metrics``);
* :mod:`explorec.serve.server` — the uvicorn runner.

The web stack (fastapi, uvicorn, redis, prometheus-client) is the ``serve`` extra and is
imported only by ``app`` and ``server``.
"""

from explorec.serve.stores import RedisStore, SQLiteStore, Store, StoreError, open_store

__all__ = ["RedisStore", "SQLiteStore", "Store", "StoreError", "open_store"]
