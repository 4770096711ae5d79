"""Connection limits on a real server process: slow heads, huge heads, slow bodies, too many
connections (explorec.serve.guard + uvicorn's limit_concurrency)."""

from __future__ import annotations

import socket
import time

import httpx
import psutil
import pytest

from explorec.data.synthetic import generate
from explorec.serve.artifact import train_artifact
from explorec.serve.guard import ConnectionLimits
from explorec.serve.procs import ServiceProcess

LIMITS = {"EXPLOREC_HEADER_TIMEOUT": "1.5", "EXPLOREC_BODY_TIMEOUT": "1.5",
          "EXPLOREC_MAX_HEADER_BYTES": "8192", "EXPLOREC_MAX_CONNECTIONS": "12"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("hardening")
    art = work / "art"
    train_artifact(art, dataset=generate(n_users=100, n_items=80, n_interactions=1500, seed=3),
                   model="pop", policy="egreedy", encoder="tfidf", vector_dim=8)
    srv = ServiceProcess(art, f"sqlite:///{work / 's.db'}", work / "srv", env=LIMITS).start()
    yield srv
    srv.stop()


def _connect(srv: ServiceProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return s


def _read_all(s: socket.socket, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` seconds)."""
    return _read(s, limit, whole_response=False)


def _read_response(s: socket.socket, limit: float = 10.0) -> bytes:
    """One whole response (its head and ``content-length`` bytes of body) on a connection the
    server may keep open, or what came before it closed (or ``limit`` seconds)."""
    return _read(s, limit, whole_response=True)


def _read(s: socket.socket, limit: float, *, whole_response: bool) -> bytes:
    s.settimeout(limit)
    out = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        head, sep, body = out.partition(b"\r\n\r\n")
        if whole_response and sep:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                break
        try:
            chunk = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    return out


def _ok(srv: ServiceProcess) -> int:
    return httpx.post(srv.url + "/v1/rank", json={"user": "u1", "k": 3}, timeout=10).status_code


def test_a_slow_request_head_is_cut_off(server):
    s = _connect(server)
    t0 = time.monotonic()
    s.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\n")  # ... and never the rest
    got = _read_all(s)
    took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert 1.0 < took < 6.0
    # a connection that sends nothing at all is closed too
    s2 = _connect(server)
    assert _read_all(s2).startswith(b"HTTP/1.1 408")
    assert _ok(server) == 200


def test_a_huge_request_head_is_refused_and_memory_stays_flat(server):
    s = _connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    got = _read_all(s)
    assert got.startswith(b"HTTP/1.1 431"), got[:200]
    assert b"8192" in got
    rss0 = psutil.Process(server.proc.pid).memory_info().rss
    for _ in range(5):  # 10 at a time (under the connection limit), 1 MiB of headers each
        socks = [_connect(server) for _ in range(10)]
        for c in socks:
            try:
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
            except OSError:  # the server closed it mid-send: what we want
                pass
        for c in socks:
            _read_all(c, 5.0)
            c.close()
    grown = psutil.Process(server.proc.pid).memory_info().rss - rss0
    assert grown < 20 * (1 << 20), f"RSS grew by {grown / 2**20:.1f} MiB"
    assert _ok(server) == 200


def test_a_slow_request_body_is_cut_off(server):
    s = _connect(server)
    s.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n{\"user\": ")
    t0 = time.monotonic()
    got = _read_all(s)
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert time.monotonic() - t0 < 6.0


def test_connections_over_the_limit_get_503_until_idle_ones_are_closed(server):
    idle = [_connect(server) for _ in range(12)]
    time.sleep(0.2)
    r = httpx.get(server.url + "/healthz", timeout=10)
    assert r.status_code == 503
    time.sleep(2.5)  # the idle connections' head timeout (1.5 s) closes them
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    for s in idle:
        s.close()


def test_keep_alive_connections_still_serve_many_requests(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for _ in range(5):
            assert c.post("/v1/rank", json={"user": "u2", "k": 3}).status_code == 200
            time.sleep(0.5)  # idle between requests, below the keep-alive timeout


def test_bad_limits_are_named():
    from explorec.errors import ExploRecError

    with pytest.raises(ExploRecError, match="EXPLOREC_HEADER_TIMEOUT"):
        ConnectionLimits.from_env({"EXPLOREC_HEADER_TIMEOUT": "soon"})
    with pytest.raises(ExploRecError, match="EXPLOREC_MAX_HEADER_BYTES"):
        ConnectionLimits.from_env({"EXPLOREC_MAX_HEADER_BYTES": "0"})


def test_a_large_body_sent_with_its_head_is_a_body_not_a_head(server):
    """Head and a 2 MiB body in one write: the head limit counts the head only (413, not 431)."""
    body = b'{"user": "' + b"x" * (2 << 20) + b'"}'
    s = _connect(server)
    try:
        s.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    except OSError:  # the server may answer and close before reading it all
        pass
    got = _read_response(s)  # (the connection stays open: waiting for its close took 10 s)
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    # a head split across writes, with its terminator split too, is still one head
    s2 = _connect(server)
    for part in (b"GET /healthz HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"):
        s2.sendall(part)
        time.sleep(0.05)
    assert _read_response(s2, 2.0).startswith(b"HTTP/1.1 200")
