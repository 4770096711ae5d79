"""Security and privacy of the service, on real server processes, a real SQLite file and a
real redis-server: erasure that waits out the two races that used to leave a user's bytes on
disk, access logs without ids, the admin scope and the artifact root, the bind check (the CLI
and the uvicorn factory), one id rule for paths and bodies, outages answered 503 + Retry-After,
and the protocol details (chunked 413, Allow, HEAD, non-UTF-8 bodies, context features).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from explorec.data.synthetic import generate
from explorec.serve.artifact import train_artifact
from explorec.serve.procs import RedisServer, ServiceProcess, free_port

READ = "sec-read-" + "r" * 20
WRITE = "sec-write-" + "w" * 20
ADMIN = "sec-admin-" + "a" * 20
KEYS = {"EXPLOREC_READ_KEYS": READ, "EXPLOREC_WRITE_KEYS": WRITE, "EXPLOREC_ADMIN_KEYS": ADMIN}
H_READ, H_WRITE, H_ADMIN = ({"X-API-Key": k} for k in (READ, WRITE, ADMIN))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("security")


@pytest.fixture(scope="module")
def artifact(work):
    art = work / "arts" / "art"
    train_artifact(art, dataset=generate(n_users=120, n_items=90, n_interactions=2000, seed=5),
                   model="pop", policy="linucb", encoder="tfidf", vector_dim=8)
    return art


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EXPLOREC_") or k == "EXPLOREC_HOME"}


def _history(c: httpx.Client, user: str, headers: dict[str, str] | None = None) -> None:
    """Give ``user`` slates, rewards and events in the store."""
    for _ in range(3):
        r = c.post("/v1/rank", json={"user": user, "k": 3, "context": {"attributes": {"note": user}}},
                   headers=headers)
        assert r.status_code == 200, r.text
        assert c.post("/v1/reward", json={"event_id": r.json()["event_id"], "position": 0, "reward": 1},
                      headers=headers).status_code == 200
    assert c.post("/v1/events", json={"events": [{"user": user, "item": "i1", "type": "click"}]},
                  headers=headers).status_code == 200


def _occurrences(files: list[Path], needle: bytes) -> int:
    return sum(f.read_bytes().count(needle) for f in files if f.is_file())


def _wait_erased(c: httpx.Client, url: str, timeout: float = 60.0,
                 headers: dict[str, str] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(url, headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] == "erased" or time.monotonic() > deadline:
            return r.json()
        time.sleep(0.1)


# ------------------------------------------------------------------ erasure: the SQLite reader race
@pytest.fixture(scope="module")
def sqlite_srv(artifact, work):
    srv = ServiceProcess(artifact, f"sqlite:///{work / 'erase.db'}", work / "erase",
                         env={"EXPLOREC_ERASE_WAIT": "1"}, access_log=True).start()
    yield srv
    srv.stop()


READER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN")
c.execute("SELECT count(*) FROM events").fetchone()  # a read snapshot, held
print("reading", flush=True)
sys.stdin.read()  # until the test closes our stdin
c.execute("COMMIT")
"""


def test_sqlite_erasure_waits_out_a_reader_and_then_leaves_no_byte(sqlite_srv, work):
    db = work / "erase.db"
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    user = f"sqlite-reader-race-{uuid.uuid4().hex}"
    with httpx.Client(base_url=sqlite_srv.url, timeout=60) as c:
        _history(c, user)
        assert _occurrences(files, user.encode()) > 0
        reader = subprocess.Popen([sys.executable, "-c", READER, str(db)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
            t0 = time.monotonic()
            r = c.delete(f"/v1/users/{user}")
            took = time.monotonic() - t0
            # the delete is done and acknowledged at once; the purge is blocked by the reader
            assert r.status_code == 202, r.text
            body = r.json()
            assert body["status"] == "pending" and r.headers["location"] == body["status_url"]
            assert body["erased"] == {"events": 3, "rewards": 3, "interactions": 4}
            assert took < 10, took  # EXPLOREC_ERASE_WAIT=1, not SQLite's 30 s busy timeout
            time.sleep(1.0)
            assert c.get(body["status_url"]).json()["status"] == "pending"  # still blocked
            assert _occurrences([Path(f"{db}-wal")], user.encode()) > 0  # the race is real
        finally:
            assert reader.stdin is not None
            reader.stdin.close()
            reader.wait(30)
        done = _wait_erased(c, body["status_url"])
        assert done["status"] == "erased" and done["purged_epoch"] >= body["epoch"], done
    assert _occurrences(files, user.encode()) == 0  # not in the database, the WAL or its index
    assert c.get  # the client closed cleanly


def test_sqlite_erasure_without_a_race_answers_200_erased(sqlite_srv, work):
    user = f"sqlite-plain-{uuid.uuid4().hex}"
    db = work / "erase.db"
    with httpx.Client(base_url=sqlite_srv.url, timeout=60) as c:
        _history(c, user)
        r = c.delete(f"/v1/users/{user}")
        assert r.status_code == 200 and r.json()["status"] == "erased", r.text
        assert c.get(r.json()["status_url"]).json()["status"] == "erased"
        assert c.get("/v1/erasures/999999").status_code == 404
    assert _occurrences([db, Path(f"{db}-wal"), Path(f"{db}-shm")], user.encode()) == 0


def test_access_log_records_no_user_ids_or_query_strings(sqlite_srv):
    user = f"logged-{uuid.uuid4().hex}"
    start = len(sqlite_srv.log())
    with httpx.Client(base_url=sqlite_srv.url, timeout=60) as c:
        assert c.get(f"/v1/users/{user}/recommendations", params={"k": 3}).status_code == 200
        assert c.get("/healthz", params={"token": "secret-query-value"}).status_code == 200
        assert c.delete(f"/v1/users/{user}").status_code in (200, 202)
    deadline = time.monotonic() + 10
    while "DELETE /v1/users/~" not in sqlite_srv.log()[start:] and time.monotonic() < deadline:
        time.sleep(0.1)
    log = sqlite_srv.log()[start:]
    assert "GET /v1/users/~" in log and "DELETE /v1/users/~" in log  # the lines are there ...
    assert user not in log and "secret-query-value" not in log  # ... without the id or the query
    # one user's lines carry one pseudonym (so a run's log can still be read)
    pseud = {line.split("/v1/users/~")[1][:12] for line in log.splitlines() if "/v1/users/~" in line}
    assert len(pseud) == 1


# ------------------------------------------------------------------ erasure: the Redis rewrite race
@pytest.fixture(scope="module")
def redis_pair(artifact, work):
    rs = RedisServer(work / "redis").start()
    srv = ServiceProcess(artifact, rs.url, work / "redis-app", env={"EXPLOREC_ERASE_WAIT": "0.5"}).start()
    yield rs, srv
    srv.stop()
    rs.stop()


def test_redis_erasure_waits_for_a_running_rewrite_and_starts_its_own(redis_pair):
    import redis

    rs, srv = redis_pair
    r = redis.Redis.from_url(rs.url)
    user = f"redis-rewrite-race-{uuid.uuid4().hex}"
    files = lambda: [p for p in rs.directory.rglob("*") if p.is_file() and p.suffix != ".log"]  # noqa: E731
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        _history(c, user)
        r.bgrewriteaof()  # the user's records are in this rewrite's base file
        deadline = time.monotonic() + 10
        while int(r.info("persistence")["aof_rewrite_in_progress"]) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        # slow every later rewrite down, so that one is still running when the delete arrives
        r.config_set("rdb-key-save-delay", "20000")  # 20 ms a key
        r.bgrewriteaof() if int(r.info("persistence")["aof_rewrite_in_progress"]) == 0 else None
        while int(r.info("persistence")["aof_rewrite_in_progress"]) == 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        r.bgrewriteaof()  # a slow one, started before the delete: its snapshot holds the user
        assert int(r.info("persistence")["aof_rewrite_in_progress"]) == 1
        out = c.delete(f"/v1/users/{user}")
        assert out.status_code == 202, out.text  # the purge waits for that rewrite, then its own
        r.config_set("rdb-key-save-delay", "0")
        done = _wait_erased(c, out.json()["status_url"])
        assert done["status"] == "erased", done
    time.sleep(0.2)
    assert _occurrences(files(), user.encode()) == 0  # not in the base, the incr files or an RDB
    r.close()


# ------------------------------------------------------------------ scopes, artifact root, bind
@pytest.fixture(scope="module")
def keyed(artifact, work):
    srv = ServiceProcess(artifact, f"sqlite:///{work / 'keyed.db'}", work / "keyed", env=KEYS).start()
    yield srv
    srv.stop()


def test_admin_routes_need_the_admin_scope(keyed):
    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        for path, method in (("/v1/admin/status", "get"), ("/v1/admin/reload", "post")):
            kw = {"json": {}} if method == "post" else {}
            assert c.request(method, path, **kw).status_code == 401
            for h in (H_READ, H_WRITE):
                r = c.request(method, path, headers=h, **kw)
                assert r.status_code == 403 and "admin key" in r.json()["error"], r.text
        assert c.get("/v1/admin/status", headers=H_ADMIN).status_code == 200
        # an admin key may do what a write key may
        assert c.put("/v1/items/admin-item", json={"text": "x"}, headers=H_ADMIN).status_code == 200
        assert c.put("/v1/items/write-item", json={"text": "y"}, headers=H_WRITE).status_code == 200
        assert c.put("/v1/items/read-item", json={"text": "z"}, headers=H_READ).status_code == 403


def test_hot_swap_only_from_the_artifact_root_and_says_nothing_about_paths(keyed, artifact, work):
    outside = work / "elsewhere"
    outside.mkdir(exist_ok=True)
    import shutil

    shutil.copytree(artifact, outside / "art", dirs_exist_ok=True)  # a valid artifact, outside
    link = artifact.parent / "link-out"
    if not link.exists():
        link.symlink_to(outside / "art")
    with httpx.Client(base_url=keyed.url, timeout=120) as c:
        answers = []
        for path in (str(outside / "art"), str(link), "/etc", "/nonexistent/xyz",
                     str(artifact.parent / "missing"), str(artifact.parent / ".." / "elsewhere" / "art")):
            r = c.post("/v1/admin/reload", json={"artifact": path}, headers=H_ADMIN)
            answers.append((r.status_code, r.json()))
        assert all(a == (400, {"error": "artifact: not a valid artifact", "field": "artifact"})
                   for a in answers), answers  # the same words whether the path exists or not
        r = c.post("/v1/admin/reload", json={"artifact": str(artifact)}, headers=H_ADMIN)
        assert r.status_code == 200, r.text  # inside the root
    assert "outside the artifact root" in keyed.log()  # the reason goes to the server log


def test_binding_beyond_loopback_needs_a_write_key(artifact, work):
    from explorec.errors import ExploRecError
    from explorec.serve.config import ServiceConfig, _keys, check_bind

    read_only = ServiceConfig(artifact=str(artifact), read_keys=_keys("r"))
    with pytest.raises(ExploRecError, match="only read keys"):
        check_bind(read_only, "0.0.0.0")
    assert "API keys" in check_bind(read_only, "127.0.0.1")
    assert "API keys" in check_bind(ServiceConfig(artifact=str(artifact), write_keys=_keys("w")), "0.0.0.0")
    assert "API keys" in check_bind(ServiceConfig(artifact=str(artifact), admin_keys=_keys("a")), "::")
    # the CLI refuses a read key alone ...
    env = {**_clean_env(), "EXPLOREC_READ_KEYS": "only-read"}
    res = subprocess.run([sys.executable, "-m", "explorec.serve", "--artifact", str(artifact), "--store",
                          f"sqlite:///{work / 'never.db'}", "--host", "0.0.0.0", "--port", "9"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and "refusing to bind 0.0.0.0: only read keys" in res.stderr, res.stderr
    # ... and so does the uvicorn factory, which cannot see the address (assumed public)
    port = free_port()
    res = subprocess.run([sys.executable, "-m", "uvicorn", "--factory",
                          "explorec.serve.app:create_app_from_env", "--host", "127.0.0.1", "--port",
                          str(port)], capture_output=True, text=True, timeout=120,
                         env={**env, "EXPLOREC_ARTIFACT": str(artifact),
                              "EXPLOREC_STORE": f"sqlite:///{work / 'never.db'}"})
    assert res.returncode != 0 and "refusing to bind" in res.stderr, res.stderr[-2000:]
    assert not (work / "never.db").exists()


def test_a_keyless_app_answers_only_loopback_callers(artifact, work):
    from fastapi.testclient import TestClient

    from explorec.serve.app import create_app
    from explorec.serve.config import ServiceConfig

    app = create_app(ServiceConfig(artifact=str(artifact), store=f"sqlite:///{work / 'testclient.db'}"))
    remote = TestClient(app, client=("203.0.113.7", 5555))  # a remote caller (no lifespan)
    r = remote.post("/v1/rank", json={"user": "u1", "k": 3})
    assert r.status_code == 403 and "loopback" in r.json()["error"]
    with TestClient(app, client=("127.0.0.1", 5555)) as c:
        assert c.post("/v1/rank", json={"user": "u1", "k": 3}).status_code == 200


# ------------------------------------------------------------------ one id rule
BAD_IDS = ["x\x00y", "x\ny", "x\x1bz", "x\x7fz", "x\x85z", " padded", "padded ", "a" * 257]


def test_one_id_rule_for_paths_and_bodies(keyed):
    from urllib.parse import quote

    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        for bad in BAD_IDS:
            enc = quote(bad, safe="")
            for method, path, body in (
                    ("put", f"/v1/items/{enc}", {"text": "t"}), ("get", f"/v1/items/{enc}", None),
                    ("delete", f"/v1/items/{enc}", None), ("delete", f"/v1/users/{enc}", None),
                    ("get", f"/v1/users/{enc}/recommendations", None)):
                r = c.request(method, path, json=body, headers=H_WRITE)
                assert r.status_code == 422, (method, bad, r.status_code, r.text)
                assert r.json()["field"] in ("item_id", "user_id"), r.text
            for body in ({"user": bad, "k": 3}, {"user": "u1", "candidates": [bad]},
                         {"user": "u1", "exclude": [bad]}):
                r = c.post("/v1/rank", json=body, headers=H_READ)
                assert r.status_code == 422, (bad, r.text)
            r = c.post("/v1/events", json={"events": [{"user": bad, "item": "i1", "type": "view"}]},
                       headers=H_WRITE)
            assert r.status_code == 422, r.text
        # lone surrogates: refused in ids and in every other stored string alike
        for raw in (b'{"user": "a\\ud800b", "k": 3}',
                    b'{"user": "u1", "context": {"attributes": {"plan": "x\\udfffy"}}}',
                    b'{"user": "u1", "context": {"attributes": {"k\\ud800": "v"}}}'):
            r = c.post("/v1/rank", content=raw, headers={**H_READ, "content-type": "application/json"})
            assert r.status_code == 422, (raw, r.text)
        assert c.put("/v1/items/ok-%C3%A9t%C3%A9", json={"text": "line one\nline two\ttab"},
                     headers=H_WRITE).status_code == 200  # non-ASCII ids, tabs/newlines in text
        assert c.get("/v1/items/ok-%C3%A9t%C3%A9", headers=H_READ).json()["item"] == "ok-été"


def test_files_follow_the_same_id_rule(tmp_path):
    from explorec.data.readers import read_interactions
    from explorec.errors import DataError

    for bad in ("x\x85y", "x\x1by"):
        f = tmp_path / "bad.csv"
        f.write_text(f"user,item,rating\nu1,i1,5\nu2,{bad},4\n", encoding="utf-8")
        with pytest.raises(DataError) as e:
            read_interactions(f)
        msg = str(e.value)
        assert "row 2" in msg and "item" in msg and "control character" in msg, msg


# ------------------------------------------------------------------ outages
def test_redis_outage_answers_503_with_retry_after_then_recovers(artifact, work):
    rs = RedisServer(work / "outage-redis").start()
    srv = ServiceProcess(artifact, rs.url, work / "outage-app").start()
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/rank", json={"user": "u1", "k": 3})
                    codes.append(r.status_code)
                    if r.status_code == 503:
                        assert r.headers.get("retry-after") == "2", r.headers
                        assert "store unavailable" in r.json()["error"]
                except httpx.HTTPError:
                    codes.append(-1)
                time.sleep(0.01)

    t = threading.Thread(target=load)
    try:
        t.start()
        time.sleep(1.0)
        before = len(codes)
        rs.stop()
        time.sleep(2.0)
        down = httpx.get(srv.url + "/readyz", timeout=30)
        assert down.status_code == 503 and down.headers.get("retry-after") == "2", down.text
        during = codes[before:]
        rs.start()  # same port, same directory: the AOF brings the data back
        deadline = time.monotonic() + 30
        while httpx.get(srv.url + "/readyz", timeout=30).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
        srv.stop()
        rs.stop()
    assert codes[:before] and set(codes[:before]) == {200}
    assert 503 in during and set(during) <= {200, 503}, sorted(set(during))  # never a 500
    assert codes[-1] == 200  # recovered
    assert "Traceback" not in srv.log()


# ------------------------------------------------------------------ protocol details
def _raw(port: int, data: bytes) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def test_protocol_details(keyed):
    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        # a 10 MB chunked body (no Content-Length): 413, not 400
        def chunks():
            for _ in range(160):
                yield b"x" * 65536

        r = c.post("/v1/rank", content=chunks(), headers={**H_READ, "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["field"] == "body", r.text
        # 405 names the allowed methods; HEAD works where GET does
        r = c.post("/healthz")
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
        assert c.head("/healthz").status_code == 200 and c.head("/readyz").status_code == 200
        # a body that is not UTF-8: 422 naming the body, as the schema lists
        r = c.post("/v1/rank", content=b'{"user": "\xff\xfe"}',
                   headers={**H_READ, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == "body", r.text
        # context features a policy does not read are refused, not dropped
        # (linucb here was trained with n_context=0)
        r = c.post("/v1/rank", json={"user": "u1", "context": {"features": [0.5, 1.0]}}, headers=H_READ)
        assert r.status_code == 422 and r.json()["field"] == "context.features", r.text
        # k: an integral JSON number counts as an integer (JSON Schema's rule), 2.5 does not
        r = c.post("/v1/rank", json={"user": "u1", "k": 4.0}, headers=H_READ)
        assert r.status_code == 200 and len(r.json()["items"]) == 4, r.text
        assert c.post("/v1/rank", json={"user": "u1", "k": 2.5}, headers=H_READ).status_code == 422
        assert c.post("/v1/rank", json={"user": "u1", "k": "4"}, headers=H_READ).status_code == 422
    head = _raw(keyed.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
