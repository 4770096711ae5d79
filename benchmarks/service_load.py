"""Load test of the rank/reward service on 127.0.0.1: requests/s, p50/p95/p99, errors.

A bounded asynchronous load generator (``--concurrency`` keep-alive connections, one request
in flight on each) against a real server process (uvicorn) with a real store. The default
client speaks HTTP/1.1 on bare asyncio streams; ``--client httpx`` uses httpx.AsyncClient,
which on a small machine costs the server more CPU than it measures. Phases per artifact and store:

* ``rank`` (closed loop): ``--concurrency`` clients, each sends its next ``POST /v1/rank`` as
  soon as the last answer arrived: the capacity at that many requests in flight;
* ``rank paced``: the same clients, but requests leave on a fixed schedule of ``--rate``
  requests/s in total; latency counts from the scheduled send time, so a server that falls
  behind pays for the queue it built (no coordinated omission). This is the latency goal;
* ``rank+reward`` (closed loop, and paced at ``--pair-rate`` pairs/s): each client ranks,
  then rewards one shown item (``POST /v1/reward``);
* ``growth``: paced at ``--growth-rate`` requests/s from 1 client and from 64 clients: the
  same offered load spread over more connections must not grow p99 by more than 2x (a lock
  convoy would).

Goals (issue 14; the script exits 1 when one is missed): rank >= 1,000 requests/s at 16 in
flight; rank p99 <= 10 ms paced at 1,000/s over 16 connections; rank+reward >= 500 pairs/s at
16 in flight, and p99 <= 20 ms paced at 500 pairs/s; p99(64 clients) <= 2 x p99(1 client).
Each phase also reports the server's CPU time per request (all its processes, from /proc):
that figure is robust to the machine's other load where the latencies are not.

Artifacts: ML-100K (EASE + LinUCB on TF-IDF item vectors) and a synthetic 100,000-item
catalog (popularity + LinUCB on item vectors; EASE's item-item matrix does not fit 100k
items). Both are trained on first use into ``--work``.

    python benchmarks/service_load.py --duration 10 --concurrency 16 --output benchmarks/results

The generator runs on the same machine as the server, so on a 2-core box both compete for
the CPUs: the figures are a lower bound for a server with the machine to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def ensure_artifact(kind: str, work: Path, policy: str) -> Path:
    from explorec.serve.artifact import load_service_artifact, train_artifact

    out = work / f"artifact-{kind}-{policy}"
    if (out / "manifest.json").exists():
        load_service_artifact(out)
        return out
    t0 = time.perf_counter()
    if kind == "ml-100k":
        train_artifact(out, dataset="ml-100k", model="ease", policy=policy, encoder="tfidf")
    elif kind == "synthetic-100k":
        from explorec.data.synthetic import generate

        ds = generate(n_users=5000, n_items=100_000, n_interactions=300_000, seed=2020)
        train_artifact(out, dataset=ds, model="pop", policy=policy, encoder="tfidf")
    else:
        raise SystemExit(f"unknown artifact kind {kind!r}")
    print(f"trained {kind} artifact in {time.perf_counter() - t0:.1f} s -> {out}", file=sys.stderr)
    return out


class RawConnection:
    """One keep-alive HTTP/1.1 connection on bare asyncio streams.

    The generator shares the machine with the server, so its own cost per request matters:
    this costs a few microseconds where an httpx.AsyncClient request costs about a
    millisecond (measured here: /healthz at ~2,400 req/s with this client, ~270 with httpx).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any], parse: bool = True) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        try:
            self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n" % (path.encode(), self.host.encode(), len(data))
                              + data)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            payload = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise
        return status, json.loads(payload) if status == 200 and parse else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class HttpxConnection:
    def __init__(self, http: Any) -> None:
        self.http = http

    async def post(self, path: str, body: dict[str, Any], parse: bool = True) -> tuple[int, Any]:
        r = await self.http.post(path, json=body)
        return r.status_code, r.json() if r.status_code == 200 else None

    def close(self) -> None:
        pass


async def _load(url: str, duration: float, concurrency: int, users: list[str], reward: bool,
                seed: int, client: str = "raw", rate: float | None = None) -> dict[str, Any]:
    """``concurrency`` clients loop rank (-> reward) until ``duration`` seconds have passed.

    With ``rate`` (requests, or rank+reward pairs, per second over all clients) client ``c``
    starts its n-th request at ``t0 + (n * concurrency + c) / rate`` (or at once when it is
    late) and its latency counts from that scheduled time.
    """
    from urllib.parse import urlsplit

    import httpx

    lat: dict[str, list[float]] = {"rank": [], "reward": []}
    errors: dict[str, int] = {"rank": 0, "reward": 0}
    t_start = time.perf_counter() + 0.05
    stop_at = t_start + duration
    parts = urlsplit(url)

    async def one(n: int, conn: Any) -> None:
        rnd = random.Random(seed * 1000 + n)
        i = 0
        while True:
            due = t_start + (i * concurrency + n) / rate if rate else time.perf_counter()
            if due >= stop_at:
                break
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            i += 1
            user = rnd.choice(users)
            t = min(due, time.perf_counter())
            try:
                # the answer is parsed only when a reward needs its event id (the generator
                # shares the CPUs with the server: its own cost per request matters)
                status, body = await conn.post("/v1/rank", {"user": user, "k": 10}, parse=reward)
            except (OSError, asyncio.IncompleteReadError, ValueError, httpx.HTTPError):
                status, body = 0, None
            lat["rank"].append(time.perf_counter() - t)
            if status != 200:
                errors["rank"] += 1
                continue
            if reward and body["items"]:
                t = time.perf_counter()
                try:
                    status, _ = await conn.post("/v1/reward", {
                        "event_id": body["event_id"], "position": rnd.randrange(len(body["items"])),
                        "reward": float(rnd.random() < 0.2)}, parse=False)
                except (OSError, asyncio.IncompleteReadError, ValueError, httpx.HTTPError):
                    status = 0
                lat["reward"].append(time.perf_counter() - t)
                if status != 200:
                    errors["reward"] += 1
        conn.close()

    async def warm(conn: Any) -> Any:
        # open the connection and send one untimed request: the phase measures steady state,
        # not TCP set-up or the server's first request on a new connection
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError, httpx.HTTPError):
            await conn.post("/v1/rank", {"user": users[0], "k": 10})
        return conn

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as http:
            await asyncio.gather(*(one(n, HttpxConnection(http)) for n in range(concurrency)))
    else:
        conns = await asyncio.gather(*(warm(RawConnection(parts.hostname or "127.0.0.1", parts.port or 80))
                                       for _ in range(concurrency)))
        t_start = time.perf_counter() + 0.05
        stop_at = t_start + duration
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        await asyncio.gather(*(one(n, c) for n, c in enumerate(conns)))
    wall = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    out: dict[str, Any] = {"seconds": round(wall, 2), "client": client, "concurrency": concurrency,
                           "offered_per_s": rate}
    for ep, xs in lat.items():
        if not xs:
            continue
        a = np.asarray(xs) * 1000
        out[ep] = {"requests": len(xs), "requests_per_s": round(len(xs) / wall, 1),
                   "p50_ms": round(float(np.percentile(a, 50)), 2),
                   "p95_ms": round(float(np.percentile(a, 95)), 2),
                   "p99_ms": round(float(np.percentile(a, 99)), 2), "errors": errors[ep]}
    out["total_requests_per_s"] = round(sum(len(x) for x in lat.values()) / wall, 1)
    # the generator's own CPU per request: what it takes from the server on a shared machine
    out["client_cpu_ms_per_request"] = round(client_cpu * 1000 / max(sum(len(x) for x in lat.values()), 1), 3)
    return out


def _run(coro: Any) -> Any:
    """Run the generator on uvloop (the server's loop too) where installed: a cheaper client."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is part of the serve extra
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (uvicorn workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _settle(pid: int, timeout: float = 10.0) -> None:
    """Wait until the server is idle (under 5% of a core over 0.2 s): a phase that left the
    server behind (its queue) must not be measured in the next phase's latencies."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        c0 = _cpu_seconds(pid)
        time.sleep(0.2)
        if _cpu_seconds(pid) - c0 < 0.01:
            return


def _aof_rewrites(redis_url: str | None) -> int | None:
    """How many AOF rewrites the Redis server has done (a fork that rewrites the whole log
    while the service runs: a latency event of its own), or None without Redis."""
    if redis_url is None:
        return None
    import redis as redis_py

    client = redis_py.Redis.from_url(redis_url)
    try:
        return int(client.info("persistence").get("aof_rewrites", 0))
    finally:
        client.close()


def _phase(srv: Any, *args: Any, redis_url: str | None = None, **kw: Any) -> dict[str, Any]:
    _settle(srv.proc.pid)
    c0 = _cpu_seconds(srv.proc.pid)
    a0 = _aof_rewrites(redis_url)
    r = _run(_load(srv.url, *args, **kw))
    n = sum(r[ep]["requests"] for ep in ("rank", "reward") if ep in r)
    r["server_cpu_ms_per_request"] = round((_cpu_seconds(srv.proc.pid) - c0) * 1000 / max(n, 1), 3)
    if a0 is not None:
        r["redis_aof_rewrites"] = (_aof_rewrites(redis_url) or 0) - a0
    return r


def reference_ms(repeat: int = 5) -> float:
    """The best of ``repeat`` timings of one fixed single-threaded task (JSON, a dict, a numpy
    sort): how fast the shared machine runs right now. The same code and load take longer
    when the host is busier; this figure, taken before each case, says how much."""
    rng = np.random.default_rng(2020)
    xs = rng.random(200_000)
    doc = {"items": [{"item": str(i), "score": float(x), "propensity": 0.5}
                     for i, x in enumerate(xs[:2000])]}
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        json.loads(json.dumps(doc))
        d = {str(i): i for i in range(50_000)}
        sum(d[str(i)] for i in range(0, 50_000, 3))
        np.sort(xs)
        best = min(best, time.process_time() - t0)
    return round(best * 1000, 1)


def run_case(artifact: Path, store_kind: str, work: Path, duration: float, concurrency: int,
             workers: int, seed: int, server_cpus: str | None = None, client: str = "raw",
             rates: dict[str, float] | None = None) -> dict[str, Any]:
    from explorec.serve.artifact import load_service_artifact
    from explorec.serve.procs import RedisServer, ServiceProcess

    rates = rates or {"rank": 1000.0, "pairs": 500.0, "growth": 200.0}
    art = load_service_artifact(artifact)
    known = [str(u) for u in art.model.users_.ids]
    rnd = random.Random(seed)
    users = rnd.sample(known, min(len(known), 2000)) + [f"new-{i}" for i in range(200)]
    redis = None
    case_dir = Path(tempfile.mkdtemp(prefix=f"load-{store_kind}-", dir=work))
    if store_kind == "redis":
        redis = RedisServer(case_dir / "redis").start()
        store = redis.url
    else:
        store = f"sqlite:///{case_dir / 'service.db'}"
    prefix = ("taskset", "-c", server_cpus) if server_cpus else ()
    ref = reference_ms()
    srv = ServiceProcess(artifact, store, case_dir, workers=workers, prefix=prefix).start()
    phases: dict[str, Any] = {}
    try:
        _run(_load(srv.url, 2.0, concurrency, users, True, seed, client))  # warm up
        rurl = redis.url if redis is not None else None
        phases["rank"] = _phase(srv, duration, concurrency, users, False, seed + 1, client,
                                redis_url=rurl)
        phases["rank paced"] = _phase(srv, duration, concurrency, users, False, seed + 2, client,
                                      rate=rates["rank"], redis_url=rurl)
        phases["rank+reward"] = _phase(srv, duration, concurrency, users, True, seed + 3, client,
                                       redis_url=rurl)
        phases["rank+reward paced"] = _phase(srv, duration, concurrency, users, True, seed + 4,
                                             client, rate=rates["pairs"], redis_url=rurl)
        for c in (1, 64):
            phases[f"growth {c}"] = _phase(srv, duration, c, users, False, seed + 5, client,
                                           rate=rates["growth"], redis_url=rurl)
    finally:
        srv.stop()
        if redis is not None:
            redis.stop()
        # the case's store (SQLite file or Redis AOF: hundreds of MB after a run) goes; the
        # server's log stays when the case failed
        if not sys.exc_info()[0]:
            shutil.rmtree(case_dir, ignore_errors=True)
    return {"artifact": str(artifact), "model": art.manifest["model"], "policy": art.policy_name,
            "items": art.n_items, "store": store_kind, "workers": workers, "concurrency": concurrency,
            "server_cpus": server_cpus or "shared with the load generator",
            "duration_s": duration, "client": client, "reference_ms": ref, "phases": phases,
            "goals": check_goals(phases)}


GOALS = {"rank_per_s": 1000.0, "rank_p99_ms": 10.0, "pairs_per_s": 500.0, "pair_p99_ms": 20.0,
         "growth_p99_ratio": 2.0}


def check_goals(ph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal: the measured value, the bound, met or not."""
    pr = ph["rank+reward paced"]
    got = {
        "rank_per_s": ph["rank"]["rank"]["requests_per_s"],
        "rank_p99_ms": ph["rank paced"]["rank"]["p99_ms"],
        "pairs_per_s": ph["rank+reward"]["reward"]["requests_per_s"],
        "pair_p99_ms": max(pr["rank"]["p99_ms"], pr.get("reward", {}).get("p99_ms", 0.0)),
        "growth_p99_ratio": round(ph["growth 64"]["rank"]["p99_ms"]
                                  / max(ph["growth 1"]["rank"]["p99_ms"], 1e-9), 2),
    }
    out = {}
    for name, bound in GOALS.items():
        v = got[name]
        ok = v >= bound if name.endswith("_per_s") else v <= bound
        out[name] = {"value": v, "goal": (">= " if name.endswith("_per_s") else "<= ") + str(bound),
                     "met": bool(ok)}
    return out


def markdown(results: list[dict[str, Any]], mach: str, command: str) -> str:
    pinned = results[0].get("server_cpus") if results else None
    where = (f"server pinned to CPUs {pinned} (taskset), load generator on other CPUs"
             if pinned and pinned[0].isdigit() else "server and load generator share the CPUs")
    refs = ", ".join(f"{r['items']:,} items/{r['store']} {r['reference_ms']} ms" for r in results
                     if r.get("reference_ms") is not None)
    lines = ["# Service load test", "",
             f"Machine: {mach}; {where}. Command: `{command}`.", "",
             f"The machine's speed before each case (`reference_ms`, one fixed single-threaded task, "
             f"best of 5; lower is faster, and the same code is slower when it is higher): {refs}.", "",
             "| catalog | model + policy | store | workers | phase | clients | offered/s | endpoint "
             "| req/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms/req | generator CPU ms/req |",
             "|---|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for phase, m0 in r["phases"].items():
            for ep in ("rank", "reward"):
                m = m0.get(ep)
                if not m:
                    continue
                lines.append(f"| {r['items']:,} items | {r['model']} + {r['policy']} | {r['store']} | "
                             f"{r['workers']} | {phase} | {m0['concurrency']} | "
                             f"{m0['offered_per_s'] or 'closed loop'} | /v1/{ep} | "
                             f"{m['requests_per_s']} | {m['p50_ms']} | {m['p95_ms']} | {m['p99_ms']} | "
                             f"{m['errors']} | {m0['server_cpu_ms_per_request']} | "
                             f"{m0.get('client_cpu_ms_per_request', '')} |")
    rewrites = [f"{r['items']:,} items, {phase}" for r in results for phase, m0 in r["phases"].items()
                if m0.get("redis_aof_rewrites")]
    if rewrites:
        lines += ["", "Redis rewrote its append-only file (a fork that writes the whole log while "
                  "the service runs) during: " + "; ".join(rewrites) + "."]
    lines += ["", "## Goals", "", "| catalog | store | goal | measured | bound | met |",
              "|---|---|---|---:|---|---|"]
    for r in results:
        for name, g in r["goals"].items():
            lines.append(f"| {r['items']:,} items | {r['store']} | {name} | {g['value']} | {g['goal']} | "
                         f"{'yes' if g['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogs", default="ml-100k,synthetic-100k")
    p.add_argument("--stores", default="sqlite,redis")
    p.add_argument("--policy", default="linucb")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    p.add_argument("--concurrency", default="16", help="requests in flight (comma-separated to sweep)")
    p.add_argument("--workers", default="2", help="server processes (comma-separated to compare)")
    p.add_argument("--rate", type=float, default=1000.0, help="paced rank phase: requests/s")
    p.add_argument("--pair-rate", type=float, default=500.0, help="paced rank+reward phase: pairs/s")
    p.add_argument("--growth-rate", type=float, default=200.0,
                   help="the 1-client vs 64-client phases: requests/s")
    p.add_argument("--server-cpus", default=None, help="pin the server to these CPUs (taskset -c), "
                   "e.g. 0,1; the load generator then runs elsewhere")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "explorec-load")
    p.add_argument("--output", type=Path, default=None, help="write service_load.{json,md} here")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--client", choices=("raw", "httpx"), default="raw",
                   help="raw asyncio HTTP/1.1 (lean) or httpx.AsyncClient (heavier: it competes with "
                        "the server for the CPUs)")
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    mach = machine()
    results = []
    for kind in [c.strip() for c in a.catalogs.split(",") if c.strip()]:
        art = ensure_artifact(kind, a.work, a.policy)
        for store in [s.strip() for s in a.stores.split(",") if s.strip()]:
            for workers in [int(w) for w in str(a.workers).split(",") if w.strip()]:
                for conc in [int(c) for c in str(a.concurrency).split(",") if c.strip()]:
                    r = run_case(art, store, a.work, a.duration, conc, workers, a.seed,
                                 a.server_cpus, a.client, {"rank": a.rate, "pairs": a.pair_rate,
                                                           "growth": a.growth_rate})
                    results.append(r)
                    ro = r["phases"]["rank"]
                    goals = ", ".join(f"{n} {g['value']} ({'met' if g['met'] else 'MISSED'})"
                                      for n, g in r["goals"].items())
                    print(f"{kind} {store} workers={workers} concurrency={conc}: rank "
                          f"{ro['rank']['requests_per_s']} req/s p99 {ro['rank']['p99_ms']} ms, "
                          f"{ro['server_cpu_ms_per_request']} CPU ms/req; {goals}", file=sys.stderr)
    command = "python benchmarks/service_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"machine": mach, "command": command, "results": results}
    print(json.dumps(report, indent=2))
    if a.output:
        from explorec._io import atomic_write_json, atomic_write_text

        atomic_write_json(a.output / "service_load.json", report)
        atomic_write_text(a.output / "service_load.md", markdown(results, mach, command))
    errors = sum(m[ep]["errors"] for r in results for m in r["phases"].values()
                 for ep in ("rank", "reward") if ep in m)
    missed = [f"{r['items']} items/{r['store']}: {n}" for r in results for n, g in r["goals"].items()
              if not g["met"]]
    if errors:
        print(f"FAILED: {errors} requests failed", file=sys.stderr)
    if missed:
        print("goals missed: " + "; ".join(missed), file=sys.stderr)
    return 0 if not errors and not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
