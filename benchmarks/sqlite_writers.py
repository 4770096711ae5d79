"""Several processes writing to one SQLite store, as ``serve --workers N`` does: how long a
durable write takes when the writers take turns through the store's ``flock`` (the default)
and when they are left to SQLite's busy handler (``SQLiteStore.writer_lock = False``).

    python benchmarks/sqlite_writers.py [--processes 2] [--rate 400] [--batch 2] [--seconds 8]

Each process writes ``--batch`` slate records (200 candidates each, as the service logs them)
``--rate`` times a second on a fixed schedule, one ``Store.log_ranks`` call at a time, and
times every call. The two modes run one after the other on fresh files, twice each
(alternating), on the same machine. Exit 1 when the lock's p99 is not below the busy
handler's (the reason it exists). Results: benchmarks/results/sqlite_writers.{json,md}.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _writer(path: str, lock: bool, rate: float, batch: int, seconds: float, start_at: float,
            seed: int, out: Any) -> None:
    from explorec.serve.stores.records import RankEvent
    from explorec.serve.stores.sqlite import SQLiteStore

    SQLiteStore.writer_lock = lock
    store = SQLiteStore(path)
    rng = np.random.default_rng(seed)
    cands = [str(i) for i in range(1682)]
    lat: list[float] = []
    n = 0
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    try:
        while True:
            due = t0 + n / rate
            if due - t0 >= seconds:
                break
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            n += 1
            pool = [cands[i] for i in rng.choice(len(cands), 200, replace=False)]
            events = [RankEvent(uuid.uuid4().hex, f"u{rng.integers(943)}", time.time(), "bench",
                                "linucb", pool[:10], list(range(10)), [1.0] * 10,
                                [float(x) for x in rng.random(10)], pool, 0, None)
                      for _ in range(batch)]
            t = time.perf_counter()
            store.log_ranks(events)
            lat.append(time.perf_counter() - t)
    finally:
        store.close()
    out.put(lat)


def run_mode(lock: bool, processes: int, rate: float, batch: int, seconds: float, seed: int,
             work: Path) -> dict[str, Any]:
    d = Path(tempfile.mkdtemp(prefix="writers-", dir=work))
    path = str(d / "store.db")
    from explorec.serve.stores.sqlite import SQLiteStore

    SQLiteStore(path).close()  # the schema, before the writers race for it
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start_at = time.time() + 1.5  # after every process has imported and opened the store
    procs = [ctx.Process(target=_writer, args=(path, lock, rate, batch, seconds, start_at,
                                               seed + i, q)) for i in range(processes)]
    for p in procs:
        p.start()
    lat = np.concatenate([np.asarray(q.get(), float) for _ in procs]) * 1000
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a writer process exited with {p.exitcode}")
    shutil.rmtree(d, ignore_errors=True)
    return {"writer_lock": lock, "writes": len(lat),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "p999_ms": round(float(np.percentile(lat, 99.9)), 3),
            "max_ms": round(float(lat.max()), 3),
            "over_5ms": int((lat > 5).sum())}


def main(argv: list[str] | None = None) -> int:
    from service_load import machine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--rate", type=float, default=400.0, help="writes a second, each process")
    p.add_argument("--batch", type=int, default=2, help="slate records per write")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "explorec-writers")
    p.add_argument("--output", type=Path, default=None)
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in range(a.repeat):
        for lock in (True, False):
            row = run_mode(lock, a.processes, a.rate, a.batch, a.seconds, a.seed + 100 * r, a.work)
            row["run"] = r + 1
            rows.append(row)
            print(f"run {r + 1}, writer lock {'on' if lock else 'off'}: {row}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    worst = {lock: max(x["p99_ms"] for x in rows if x["writer_lock"] == lock) for lock in (True, False)}
    best_off = min(x["p99_ms"] for x in rows if not x["writer_lock"])
    ok = worst[True] < best_off
    command = "python benchmarks/sqlite_writers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"machine": machine(), "load_average_end": load, "command": command,
              "processes": a.processes, "rate_per_process": a.rate, "batch": a.batch,
              "seconds": a.seconds, "rows": rows, "lock_p99_below_busy_handler": ok}
    lines = ["# SQLite writers: the store's flock against SQLite's busy handler", "",
             f"Machine: {report['machine']}; load average {load:.2f} at the end. Seed {a.seed}. "
             f"Command: `{command}`. {a.processes} processes on one file, each {a.rate:g} "
             f"durable writes/s of {a.batch} slate records (200 candidates each).", "",
             "| run | writers take turns by | writes | p50 ms | p99 ms | p99.9 ms | max ms "
             "| writes over 5 ms |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for x in rows:
        how = "flock (`writer_lock = True`)" if x["writer_lock"] else "SQLite's busy handler"
        lines.append(f"| {x['run']} | {how} | {x['writes']:,} | {x['p50_ms']} | {x['p99_ms']} | "
                     f"{x['p999_ms']} | {x['max_ms']} | {x['over_5ms']} |")
    lines += ["", f"Goal: every p99 with the lock below the best p99 without it: "
                  f"{'met' if ok else '**missed**'}."]
    print("\n".join(lines))
    if a.output:
        from explorec._io import atomic_write_json, atomic_write_text

        atomic_write_json(a.output / "sqlite_writers.json", report)
        atomic_write_text(a.output / "sqlite_writers.md", "\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
