"""The online service end to end: real uvicorn servers on 127.0.0.1, a real redis-server, an
artifact trained once on ML-100K (EASE + LinUCB on TF-IDF item vectors) with `explorec train`.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from explorec.serve.procs import RedisServer, ServiceProcess
from explorec.serve.stores import RedisStore, SQLiteStore

pytestmark = pytest.mark.slow  # trains on the whole of ML-100K (still part of `make test`)

READ_KEY = "read-key-" + "r" * 24
WRITE_KEY = "write-key-" + "w" * 24
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="module")
def artifact(work):
    from typer.testing import CliRunner

    from explorec.cli.main import app

    out = work / "artifact"
    res = CliRunner().invoke(app, ["train", "--dataset", "ml-100k", "--model", "ease", "--policy",
                                   "linucb", "--encoder", "tfidf", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "manifest.json").exists() and (out / "model").is_dir() and (out / "policy").is_dir()
    return out


@pytest.fixture(scope="module")
def server(artifact, work):
    """`explorec serve` on the embedded SQLite store, no keys (loopback only)."""
    srv = ServiceProcess(artifact, f"sqlite:///{work / 'main.db'}", work / "main", cli=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keyed(artifact, work):
    env = {"EXPLOREC_READ_KEYS": f"{READ_KEY},other-read", "EXPLOREC_WRITE_KEYS": WRITE_KEY,
           "EXPLOREC_REWARD_WINDOW": "1.0"}
    srv = ServiceProcess(artifact, f"sqlite:///{work / 'keyed.db'}", work / "keyed", env=env,
                         access_log=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def redis_server(work):
    srv = RedisServer(work / "redis").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def redis_app(artifact, work, redis_server):
    srv = ServiceProcess(artifact, redis_server.url, work / "redis-app").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def status(c: httpx.Client, **kw) -> dict:
    r = c.get("/v1/admin/status", **kw)
    assert r.status_code == 200, r.text
    return r.json()


def rank(c: httpx.Client, user: str, k: int = 10, **body) -> dict:
    r = c.post("/v1/rank", json={"user": user, "k": k, **body})
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------ basics
def test_health_ready_metrics_docs(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["policy"] == "linucb" and ready["items"] == 1682
    spec = client.get("/openapi.json").json()
    for path in ("/v1/rank", "/v1/reward", "/v1/events", "/v1/items/{item_id}", "/v1/users/{user_id}",
                 "/v1/users/{user_id}/recommendations", "/v1/admin/reload", "/metrics"):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200
    rank(client, "1", 3)
    text = client.get("/metrics").text
    assert 'explorec_http_requests_total{method="POST",route="/v1/rank",status="200"}' in text
    assert "explorec_http_request_seconds_bucket" in text and "explorec_items 1682.0" in text
    # micro-batching counters: every rank went through a batch, a batch holds >= 1 request
    counts = {(name, kind): float(v) for name, kind, v in re.findall(
        r'^(explorec_batched_requests|explorec_batches)\{kind="(\w+)"\} (\S+)$', text, re.M)}
    assert counts[("explorec_batched_requests", "rank")] >= 1
    for kind in ("rank", "reward"):
        assert 0 <= counts[("explorec_batches", kind)] <= counts[("explorec_batched_requests", kind)]


def test_rank_shape_and_cold_start(client):
    plain = rank(client, "196", 5)
    assert all(it["explanation"] == [] for it in plain["items"])  # computed only when asked
    out = rank(client, "196", 5, explain=True)
    assert len(out["event_id"]) == 32 and out["policy"] == "linucb" and len(out["items"]) == 5
    for it in out["items"]:
        assert set(it) == {"item", "score", "propensity", "explanation"}
        assert 0 < it["propensity"] <= 1
        assert all(set(e) == {"item", "weight"} for e in it["explanation"])
    assert any(it["explanation"] for it in out["items"])  # user 196 has a history: explained
    cold = rank(client, f"never-seen-{uuid.uuid4().hex}", 5)  # unknown users are served
    assert len(cold["items"]) == 5
    sub = rank(client, "196", 3, candidates=["1", "2", "3", "4"], exclude=["2"])
    assert {i["item"] for i in sub["items"]} <= {"1", "3", "4"} and len(sub["items"]) == 3
    rec = client.get("/v1/users/196/recommendations", params={"k": 4}).json()
    assert len(rec["items"]) == 4 and len(rec["event_id"]) == 32


def test_rank_reward_rank_changes_policy_state(client):
    before = status(client)
    out = rank(client, "42", 5)
    item = out["items"][1]["item"]
    r = client.post("/v1/reward", json={"event_id": out["event_id"], "item": item, "reward": 1.0})
    assert r.status_code == 200, r.text
    assert r.json()["position"] == 1 and r.json()["status"] == "applied"
    after = status(client)  # learned before the reward call returned
    assert after["rewards_applied"] == before["rewards_applied"] + 1
    assert after["policy_state_sha256"] != before["policy_state_sha256"]
    again = rank(client, "42", 5)
    assert item not in [i["item"] for i in again["items"]]  # the clicked item joined the history


def test_user_who_keeps_clicking_one_genre_gets_more_of_it(client, ml100k):
    genres = ml100k.catalog.frame["genres"]
    horror = {i for i, g in genres.items() if "Horror" in g}
    user = f"horror-fan-{uuid.uuid4().hex[:8]}"
    shares = []
    for _ in range(8):
        out = rank(client, user, 10)
        shown = [i["item"] for i in out["items"]]
        shares.append(np.mean([s in horror for s in shown]))
        for pos, s in enumerate(shown):
            r = client.post("/v1/reward", json={"event_id": out["event_id"], "position": pos,
                                                "reward": 1.0 if s in horror else 0.0})
            assert r.status_code == 200
        if not any(s in horror for s in shown):  # no horror offered yet: the user looks for one
            first = sorted(horror)[0]
            client.post("/v1/events", json={"events": [{"user": user, "item": first, "type": "click"}]})
    assert shares[0] < 0.5
    assert np.mean(shares[-3:]) >= 0.6 and np.mean(shares[-3:]) > shares[0] + 0.3, shares


def test_events_feed_history_now(client):
    user = f"events-{uuid.uuid4().hex[:8]}"
    first = [i["item"] for i in rank(client, user, 5)["items"]]
    r = client.post("/v1/events", json={"events": [
        {"user": user, "item": it, "type": kind, "value": 4.0 if kind == "rating" else None}
        for it, kind in zip(first, ["view", "click", "rating", "purchase", "click"], strict=True)]})
    assert r.status_code == 200 and r.json()["accepted"] == 5
    after = [i["item"] for i in rank(client, user, 5)["items"]]
    assert not set(after) & set(first)  # seen items are no longer recommended
    assert rank(client, user, 3, explain=True)["items"][0]["explanation"]  # explain the new slate


def test_put_item_is_rankable_within_one_second(client):
    new = f"new-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    r = client.put(f"/v1/items/{new}", json={"text": "Night of the Haunted Robot (2026). Genres: Horror, "
                                              "Sci-Fi.", "features": {"year": 2026, "tags": ["robot"]}})
    assert r.status_code == 200 and r.json()["created"] is True
    out = rank(client, "196", 4, candidates=[new, "1", "50", "100"])
    elapsed = time.perf_counter() - t0
    # ranked among the candidates (where depends on what the policy learned in earlier tests)
    served = {i["item"]: i for i in out["items"]}
    assert new in served and served[new]["propensity"] > 0 and elapsed < 1.0, (served, elapsed)
    # new items are always in the candidate pool (cold-start exposure), and readable
    assert client.get(f"/v1/items/{new}").json()["features"] == {"year": 2026, "tags": ["robot"]}
    assert client.get("/v1/items/50").json()["source"] == "artifact"
    # ... and the policy can learn from them
    ev = rank(client, "196", 1, candidates=[new])
    assert client.post("/v1/reward", json={"event_id": ev["event_id"], "item": new, "reward": 1}
                       ).status_code == 200
    assert client.put(f"/v1/items/{new}", json={"text": "retitled"}).json()["created"] is False
    assert client.delete(f"/v1/items/{new}").status_code == 200
    gone = client.post("/v1/rank", json={"user": "196", "candidates": [new, "1"]})
    assert gone.status_code == 422 and gone.json()["field"] == "candidates[0]"
    assert client.delete(f"/v1/items/{new}").status_code == 404


# ------------------------------------------------------------------ reward answers and bad input
def test_reward_answers_duplicate_unknown_late(client, keyed):
    out = rank(client, "7", 3)
    body = {"event_id": out["event_id"], "position": 0, "reward": 0.5}
    assert client.post("/v1/reward", json=body).status_code == 200
    dup = client.post("/v1/reward", json={**body, "reward": 1.0})
    assert dup.status_code == 409 and "already applied" in dup.json()["error"]
    unknown = client.post("/v1/reward", json={**body, "event_id": uuid.uuid4().hex})
    assert unknown.status_code == 404 and unknown.json()["field"] == "event_id"
    h = {"X-API-Key": WRITE_KEY}
    late = rank(keyed_client := httpx.Client(base_url=keyed.url, headers=h, timeout=30), "7", 3)
    time.sleep(1.1)  # the keyed server's reward window is 1 s
    r = keyed_client.post("/v1/reward", json={"event_id": late["event_id"], "position": 0, "reward": 1})
    assert r.status_code == 410 and r.json()["field"] == "event_id"
    keyed_client.close()


BAD = [
    ("post", "/v1/rank", {"user": 196}, 422, "user"),
    ("post", "/v1/rank", {"user": "1", "k": 0}, 422, "k"),
    ("post", "/v1/rank", {"user": "1", "k": "10"}, 422, "k"),
    ("post", "/v1/rank", {"user": "1", "color": "red"}, 422, "color"),
    ("post", "/v1/rank", {"user": ""}, 422, "user"),
    ("post", "/v1/rank", {"k": 3}, 422, "user"),
    ("post", "/v1/rank", {"user": "1", "candidates": ["1", "no-such-item"]}, 422, "candidates[1]"),
    ("post", "/v1/rank", {"user": "1", "context": {"features": [1, "x"]}}, 422, "context.features[1]"),
    ("post", "/v1/reward", {"event_id": "not-an-id", "item": "1", "reward": 1}, 422, "event_id"),
    ("post", "/v1/reward", {"event_id": "0" * 32, "item": "1", "reward": 2}, 422, "reward"),
    ("post", "/v1/reward", {"event_id": "0" * 32, "item": "1"}, 422, "reward"),
    ("post", "/v1/events", {"events": []}, 422, "events"),
    ("post", "/v1/events", {"events": [{"user": "1", "item": "1", "type": "like"}]}, 422, "events[0].type"),
    ("post", "/v1/events", {"events": [{"user": "1", "item": "1", "type": "view"},
                                       {"user": "1", "item": "zzz", "type": "view"}]}, 422, "events[1].item"),
    ("put", "/v1/items/x1", {"features": {}}, 422, "text"),
    ("put", "/v1/items/x1", {"text": ""}, 422, "text"),
    ("put", "/v1/items/x1", {"text": "t", "features": {"a": {"nested": 1}}}, 422, "features.a"),
    ("post", "/v1/admin/reload", {"artifact": "/nonexistent"}, 400, "artifact"),
]


def test_bad_requests_get_4xx_naming_the_field(client):
    for method, path, body, code, field in BAD:
        r = client.request(method, path, json=body)
        assert r.status_code == code, (path, body, r.text)
        out = r.json()
        assert out["field"] == field or out["field"].startswith(field), (body, out)
        assert field in out["error"], out
    r = client.post("/v1/rank", content=b'{"user": "1",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body" and "JSON" in r.json()["error"]
    r = client.get("/v1/users/1/recommendations", params={"k": 0})
    assert r.status_code == 422 and r.json()["field"] == "k"
    out = rank(client, "3", 2)
    r = client.post("/v1/reward", json={"event_id": out["event_id"], "item": "no-such", "reward": 1})
    assert r.status_code == 422 and r.json()["field"] == "item"
    r = client.post("/v1/reward", json={"event_id": out["event_id"], "reward": 1})
    assert r.status_code == 422 and r.json()["field"] == "item"
    r = client.post("/v1/reward", json={"event_id": out["event_id"], "position": 5, "reward": 1})
    assert r.status_code == 422 and r.json()["field"] == "position"
    big = b'{"user": "' + b"x" * (2 << 20) + b'"}'
    r = client.post("/v1/rank", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"


# ------------------------------------------------------------------ security
def test_write_endpoints_refuse_a_read_key(keyed):
    read, write = {"X-API-Key": READ_KEY}, {"X-API-Key": WRITE_KEY}
    with httpx.Client(base_url=keyed.url, timeout=30) as c:
        assert c.post("/v1/rank", json={"user": "1", "k": 2}).status_code == 401
        bad = c.post("/v1/rank", json={"user": "1", "k": 2}, headers={"X-API-Key": "nope"})
        assert bad.status_code == 401
        out = c.post("/v1/rank", json={"user": "1", "k": 2}, headers=read)
        assert out.status_code == 200
        assert c.post("/v1/rank", json={"user": "1", "k": 2}, headers={"X-API-Key": "other-read"}
                      ).status_code == 200
        assert c.get("/v1/users/1/recommendations", headers=write).status_code == 200
        eid = out.json()["event_id"]
        writes = [("post", "/v1/reward", {"event_id": eid, "position": 0, "reward": 1}),
                  ("post", "/v1/events", {"events": [{"user": "1", "item": "1", "type": "view"}]}),
                  ("put", "/v1/items/k1", {"text": "a keyed item"}), ("delete", "/v1/items/1", None),
                  ("delete", "/v1/users/1", None), ("get", "/v1/admin/status", None),
                  ("post", "/v1/admin/reload", {})]
        for method, path, body in writes:
            r = c.request(method, path, json=body, headers=read)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["field"] == "X-API-Key" and "has the read scope" in r.json()["error"]
            assert c.request(method, path, json=body).status_code == 401
        assert c.post("/v1/reward", json=writes[0][2], headers=write).status_code == 200
        assert c.put("/v1/items/k1", json={"text": "a keyed item"}, headers=write).status_code == 200
    log = keyed.log()
    assert "POST /v1/rank" in log  # the access log is on ...
    assert READ_KEY not in log and WRITE_KEY not in log  # ... and never shows a key


def test_no_keys_means_loopback_only(artifact, work):
    from explorec.serve.config import ServiceConfig, _keys
    from explorec.serve.server import check_bind

    open_cfg = ServiceConfig(artifact=str(artifact))
    assert "loopback" in check_bind(open_cfg, "127.0.0.1")
    keyed_cfg = ServiceConfig(artifact=str(artifact), write_keys=_keys("k"))
    assert "API keys" in check_bind(keyed_cfg, "0.0.0.0")
    res = subprocess.run([sys.executable, "-m", "explorec.cli.main", "serve", "--artifact", str(artifact),
                          "--store", f"sqlite:///{work / 'never.db'}", "--host", "0.0.0.0", "--port", "9"],
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in __import__("os").environ.items()
                              if not k.startswith("EXPLOREC_") or k == "EXPLOREC_HOME"})
    assert res.returncode == 2 and "refusing to bind 0.0.0.0" in res.stderr
    assert not (work / "never.db").exists()


# ------------------------------------------------------------------ forgetting a user
@pytest.mark.parametrize("which", ["sqlite", "redis"])
def test_delete_user_leaves_no_trace(which, request, work, redis_server):
    srv = request.getfixturevalue("server" if which == "sqlite" else "redis_app")
    user = f"forget-me-{uuid.uuid4().hex}"
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        before = status(c)
        events = []
        for _ in range(3):
            out = rank(c, user, 4, context={"attributes": {"plan": "gold"}})
            events.append(out["event_id"])
            assert c.post("/v1/reward", json={"event_id": out["event_id"], "position": 0, "reward": 1}
                          ).status_code == 200
        c.post("/v1/events", json={"events": [{"user": user, "item": "50", "type": "click"}]})
        mid = status(c)
        assert mid["rewards_applied"] == before["rewards_applied"] + 3
        r = c.delete(f"/v1/users/{user}")
        assert r.status_code == 200, r.text
        assert r.json()["erased"] == {"events": 3, "rewards": 3, "interactions": 4}
        assert r.json()["status"] == "erased"  # gone from the files too (no reader blocked it)
        after = status(c)  # policy state rebuilt from the remaining log, without this user
        assert after["epoch"] == mid["epoch"] + 1
        assert after["rewards_applied"] == before["rewards_applied"]
        gone = c.post("/v1/reward", json={"event_id": events[0], "position": 1, "reward": 1})
        assert gone.status_code == 404
    if which == "sqlite":
        st = SQLiteStore(work / "main.db")
        assert st.user_trace(user) == 0
        st.close()
        raw = b"".join(p.read_bytes() for p in work.iterdir() if p.name.startswith("main.db"))
        assert user.encode() not in raw  # not even in freed pages or the WAL
    else:
        st = RedisStore(redis_server.url)
        assert st.user_trace(user) == 0
        st.close()


# ------------------------------------------------------------------ shared Redis state
def test_redis_store_shares_state_between_processes(redis_app, artifact, work, redis_server):
    other = ServiceProcess(artifact, redis_server.url, work / "redis-app-2").start()
    try:
        with httpx.Client(base_url=redis_app.url, timeout=60) as a, \
                httpx.Client(base_url=other.url, timeout=60) as b:
            before = status(a)
            out = rank(a, "12", 3)  # served by process A ...
            r = b.post("/v1/reward", json={"event_id": out["event_id"], "position": 2, "reward": 1})
            assert r.status_code == 200, r.text  # ... rewarded through process B
            assert b.post("/v1/reward", json={"event_id": out["event_id"], "position": 2, "reward": 1}
                          ).status_code == 409
            new = f"shared-{uuid.uuid4().hex[:6]}"
            assert b.put(f"/v1/items/{new}", json={"text": "Shared Space Comedy"}).status_code == 200
            assert new in [i["item"] for i in rank(a, "12", 2, candidates=[new, "1"])["items"]]
            sa, sb = status(a), status(b)
            assert sa["rewards_applied"] == before["rewards_applied"] + 1
            assert sa["policy_state_sha256"] == sb["policy_state_sha256"]
    finally:
        other.stop()


# ------------------------------------------------------------------ crash, fuzzing, load
def test_kill9_twenty_cycles_lose_no_acknowledged_write(artifact, work):
    from explorec.serve.crash import crash_test

    report = crash_test(artifact, cycles=20, clients=3, min_writes=8, max_delay=0.1,
                        directory=work / "crash", snapshot_every=20)
    assert report["ok"], json.dumps(report, indent=1)
    assert report["acknowledged"]["rewards"] >= 20 and report["replayed_rewards_refused"] > 0


def test_schemathesis_finds_no_5xx(keyed):
    import hypothesis.strategies as st
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(keyed.url + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [op for op in ops if op.path != "/v1/admin/reload"]  # swaps artifacts: tested below
    assert len(ops) >= 10
    strategy = st.one_of([op.as_strategy(generation_mode=mode) for op in ops
                          for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)])
    seen: dict[int, int] = {}

    @settings(max_examples=240, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case) -> None:
        resp = case.call(headers={"X-API-Key": WRITE_KEY}, timeout=30)
        seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
        case.validate_response(resp, checks=[not_a_server_error])

    run()
    assert not any(code >= 500 for code in seen), seen
    assert any(200 <= code < 300 for code in seen) and any(400 <= code < 500 for code in seen), seen


def test_load_generator_reports_figures(server):
    spec = importlib.util.spec_from_file_location("service_load", REPO / "benchmarks" / "service_load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import asyncio

    out = asyncio.run(mod._load(server.url, 1.0, 4, ["1", "2", "new-user"], True, 0))
    for ep in ("rank", "reward"):
        assert out[ep]["requests"] > 0 and out[ep]["errors"] == 0
        assert out[ep]["p50_ms"] <= out[ep]["p95_ms"] <= out[ep]["p99_ms"]


# ------------------------------------------------------------------ learning from the log, hot swap
def test_retrain_ope_and_hot_swap_without_dropping_requests(server, artifact, work):
    from typer.testing import CliRunner

    from explorec.cli.main import app

    store = f"sqlite:///{work / 'main.db'}"
    runner = CliRunner()
    res = runner.invoke(app, ["ope", "--log", store, "--policy", "egreedy", "--policy-param", "epsilon=0.2",
                              "--bootstrap", "50", "--json", str(work / "ope.json")])
    assert res.exit_code == 0, res.output
    ope = json.loads((work / "ope.json").read_text())
    assert ope["rows"] > 50 and ope["logging_policy"] == "linucb"
    assert {e["estimator"] for e in ope["estimates"]} == {"replay", "ipw", "snipw", "dr"}
    assert all(np.isfinite(e["estimate"]) for e in ope["estimates"])
    new_art = work / "retrained"
    res = runner.invoke(app, ["retrain", "--from-log", store, "--output", str(new_art)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((new_art / "manifest.json").read_text())
    base = json.loads((artifact / "manifest.json").read_text())
    assert manifest["n_interactions"] > base["n_interactions"] and manifest["replayed_rewards"] > 0
    assert manifest["n_items"] >= base["n_items"]  # items put through the API joined the catalog

    failures: list[str] = []
    stop = threading.Event()
    served: set[str] = set()

    def stream() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/rank", json={"user": "196", "k": 5})
                    if r.status_code != 200:
                        failures.append(r.text)
                    else:
                        served.add(r.json()["artifact"])
                except httpx.HTTPError as e:
                    failures.append(repr(e))

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            old = status(c)["artifact"]
            time.sleep(0.3)
            r = c.post("/v1/admin/reload", json={"artifact": str(new_art)})  # the endpoint
            assert r.status_code == 200, r.text
            swapped = r.json()["artifact"]
            assert swapped != old and status(c)["artifact"] == swapped
            time.sleep(0.3)
            # the signal: replace what the served path holds, then SIGHUP re-reads it
            tmp = work / "retrained.next"
            shutil.copytree(artifact, tmp)
            shutil.rmtree(new_art)
            tmp.rename(new_art)
            server.signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while status(c)["artifact"] == swapped and time.monotonic() < deadline:
                time.sleep(0.1)
            assert status(c)["artifact"] == old  # the original artifact's id again
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert len(served) >= 2  # requests were answered by both artifacts, none dropped


def test_fast_lane_answers_as_the_declared_routes(artifact, work):
    """``POST /v1/rank`` and ``/v1/reward`` through the fast lane (api/fastlane.py) answer
    exactly as their declared routes (``EXPLOREC_FAST_LANE=0``): the same status, body (event
    ids aside) and content type for valid requests, refusals by the engine, bad keys, invalid
    JSON, schema errors and other content types; the lane takes only the valid ones."""
    env = {"EXPLOREC_READ_KEYS": READ_KEY, "EXPLOREC_WRITE_KEYS": WRITE_KEY}
    read, write = {"X-API-Key": READ_KEY}, {"X-API-Key": WRITE_KEY}
    js = {"Content-Type": "application/json"}
    rank_cases = [
        (read, json.dumps({"user": "196", "k": 5})),
        (read, json.dumps({"user": "196", "k": 10.0, "candidates": ["1", "2", "3", "4"],
                           "exclude": ["2"]})),
        (read, json.dumps({"user": "new-user", "k": 3, "explain": True})),
        (read, json.dumps({"user": "196", "candidates": ["no-such-item"]})),  # engine: 4xx
        (read, json.dumps({"user": "196", "context": {"features": [1.0, 2.0]}})),
        (read, '{"user": '), (read, json.dumps({"user": "1", "bogus": 1})),
        (read, json.dumps({"user": "1", "k": 0})), (read, json.dumps({"user": "1", "k": "10"})),
        (read, b'{"user": "\xff"}'), ({}, json.dumps({"user": "1"})),
        ({"X-API-Key": "nope"}, json.dumps({"user": "1"})),
        ({**read, "Content-Type": "text/plain"}, json.dumps({"user": "1"})),
        (read, '{"user": "1", "k": NaN}'),  # orjson refuses the literal: the route's 422
        (read, json.dumps({"user": "ü-new"}, ensure_ascii=False).encode()),
    ]
    answers = []
    for flag in ("1", "0"):
        d = work / f"lane-{flag}"
        srv = ServiceProcess(artifact, f"sqlite:///{d / 'db'}", d,
                             env={**env, "EXPLOREC_FAST_LANE": flag}).start()
        try:
            got = []
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                for headers, body in rank_cases:
                    r = c.post("/v1/rank", content=body, headers={**js, **headers})
                    got.append(r)
                ev = got[0].json()["event_id"]
                item = got[0].json()["items"][2]["item"]
                for headers, body in [
                        (write, {"event_id": ev, "item": item, "reward": 1}),
                        (write, {"event_id": ev, "item": item, "reward": 1}),  # 409
                        (write, {"event_id": "0" * 32, "position": 0, "reward": 1.0}),  # 404
                        (write, {"event_id": ev, "position": 99, "reward": 1.0}),
                        (read, {"event_id": ev, "position": 0, "reward": 1.0}),  # 403
                        (write, {"event_id": ev, "reward": 1.0}), ({}, {"event_id": ev, "reward": 1})]:
                    got.append(c.post("/v1/reward", content=json.dumps(body),
                                      headers={**js, **headers}))
                metrics = c.get("/metrics").text
        finally:
            srv.stop()
        answers.append(([(r.status_code, r.headers.get("content-type"), r.headers.get("retry-after"),
                          re.sub(r"[0-9a-f]{32}", "*", r.text))
                         for r in got], metrics))
    (fast, fast_metrics), (declared, declared_metrics) = answers
    for n, (a, b) in enumerate(zip(fast, declared, strict=True)):
        assert a == b, (n, a, b)
    assert [a[0] for a in fast] == [200, 200, 200, 422, 422, 422, 422, 422, 422, 422, 401, 401, 422,
                                    422, 200, 200, 409, 404, 422, 403, 422, 401]
    # the valid requests and the engine's refusals went through the lane; the rest did not
    lane = dict(re.findall(r'explorec_fast_lane_requests_total\{route="([^"]+)"\} (\S+)', fast_metrics))
    assert lane == {"/v1/rank": "6.0", "/v1/reward": "5.0"}
    assert "explorec_fast_lane_requests_total{" not in declared_metrics
    assert 'explorec_http_requests_total{method="POST",route="/v1/rank",status="200"} 4.0' in fast_metrics


def test_fast_json_answers_like_starlettes_and_refuses_non_finite_numbers():
    import doctest

    from starlette.responses import JSONResponse

    import explorec.serve.api.responses as responses

    result = doctest.testmod(responses)
    assert result.attempted > 0 and result.failed == 0
    payload = {"event_id": "e", "items": [{"item": "ü", "score": None, "propensity": 0.25,
                                           "explanation": ["x"]}], "n": 3, "ok": True}
    assert json.loads(responses.FastJSON(payload).body) == json.loads(JSONResponse(payload).body)
    with pytest.raises(ValueError, match=r"items\[0\]\.score"):
        responses.FastJSON({"items": [{"score": float("inf")}]})
