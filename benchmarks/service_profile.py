"""Where a live server's CPU goes under load: py-spy samples of every worker while the load
generator of ``service_load.py`` runs, counted by part of the serving path.

    python benchmarks/service_profile.py [--catalog ml-100k] [--store sqlite] [--duration 15]
                                         [--rate RANKS_PER_S] [--output benchmarks/results]

py-spy (``pip install -e '.[bench]'``) samples the 2 uvicorn workers at 200 Hz with ``--gil``:
only a thread holding the GIL is counted, so waits (an fsync, a socket, an idle loop) are not.
A sample is ``ranking`` (the engine, policy and model) or ``store`` (store reads and writes, on
the I/O threads) when any of its frames is, else it goes by its innermost frame: ``web``
(uvicorn's protocol, Starlette, FastAPI, the middleware and fast lane, JSON), ``batching``
(the micro-batchers, futures, thread hand-offs), ``event loop (C)`` (uvloop and httptools
below the loop's own frame), ``other``. Results: service_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
# the repository's src after any PYTHONPATH entries: a side-by-side run points PYTHONPATH at
# another checkout's src, and that code must be the one measured
sys.path.insert(2 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
                str(ROOT / "src"))

#: ranking and store: any frame of the sample; web and batching: the innermost such frame
PARTS = [
    ("ranking", ("serve/engine.py", "explorec/explore/", "explorec/models/", "explorec/ranking.py",
                 "explorec/_hashing.py")),
    ("store", ("serve/stores/",)),
]
INNER = [
    ("web", ("uvicorn/protocols/", "uvicorn/middleware/", "starlette/", "fastapi/", "pydantic",
             "serve/api/", "serve/guard.py", "json/", "prometheus_client/", "httptools")),
    ("batching", ("serve/service.py", "asyncio/futures.py", "asyncio/events.py",
                  "asyncio/base_events.py", "asyncio/tasks.py", "concurrent/futures/",
                  "threading.py")),
]
#: the worker's own root frames: the event loop's C code (uvloop, httptools) when innermost
ROOTS = ("asyncio/runners.py", "uvicorn/server.py", "uvicorn/_compat.py")


def part_of(stack: str) -> str:
    for name, keys in PARTS:
        if any(k in stack for k in keys):
            return name
    frames = stack.split(";")
    for frame in reversed(frames[1:]):
        for name, keys in INNER:
            if any(k in frame for k in keys):
                return name
    if any(k in frames[-1] for k in ROOTS):
        return "event loop (C)"
    return "other"


def _is_worker(p: object) -> bool:
    """A uvicorn worker of the server (not a helper process, nor one already exited)."""
    import psutil

    try:
        cmd = " ".join(p.cmdline())  # type: ignore[attr-defined]
    except psutil.Error:  # gone, or a zombie not yet reaped
        return False
    return "explorec" in cmd or "spawn" in cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", default="ml-100k", choices=("ml-100k", "synthetic-100k"))
    ap.add_argument("--store", default="sqlite", choices=("sqlite",))
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=None, help="paced ranks/s (default closed loop)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "explorec-load")
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("error: py-spy is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    import psutil

    import service_load as sl
    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.serve.artifact import load_service_artifact
    from explorec.serve.procs import ServiceProcess

    args.work.mkdir(parents=True, exist_ok=True)
    artifact = sl.ensure_artifact(args.catalog, args.work, "linucb")
    art = load_service_artifact(artifact)
    known = [str(u) for u in art.model.users_.ids]
    users = random.Random(2020).sample(known, min(len(known), 2000))
    case = Path(tempfile.mkdtemp(prefix="profile-", dir=args.work))
    srv = ServiceProcess(artifact, f"sqlite:///{case / 'service.db'}", case, workers=2).start()
    counts: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    try:
        sl._run(sl._load(srv.url, 2.0, args.concurrency, users, True, 2020))  # warm up
        sl._settle(srv.proc.pid)
        workers = [p.pid for p in psutil.Process(srv.proc.pid).children(recursive=True)
                   if _is_worker(p)]
        outs = [case / f"spy-{pid}.txt" for pid in workers]
        spies = [subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(args.duration) + 1),
                                   "-r", "200", "-f", "raw", "-o", str(o), "--nonblocking", "--gil"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid, o in zip(workers, outs, strict=True)]
        time.sleep(0.5)
        c0 = sl._cpu_seconds(srv.proc.pid)
        load = sl._run(sl._load(srv.url, args.duration - 1, args.concurrency, users, False, 2021,
                                rate=args.rate))
        cpu_ms = (sl._cpu_seconds(srv.proc.pid) - c0) * 1000 / max(load["rank"]["requests"], 1)
        for s in spies:
            s.wait()
        for o in outs:
            if not o.exists():
                continue
            for line in o.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                if not n.isdigit():
                    continue
                counts[part_of(stack)] += int(n)
                top = stack.split(";")[-1]
                functions[top.split(" (")[0] + " (" + top.split("(")[-1].split(":")[0].split(
                    "site-packages/")[-1].split("/src/")[-1] + ")"] += int(n)
    finally:
        srv.stop()
    shutil.rmtree(case, ignore_errors=True)  # the case's SQLite store
    total = sum(counts.values())
    if not total:
        print("error: py-spy recorded no samples (is ptrace allowed here?)", file=sys.stderr)
        return 2
    shares = {k: counts[k] / total
              for k in [p for p, _ in PARTS + INNER] + ["event loop (C)", "other"]}
    top = [(f, n / total) for f, n in functions.most_common(15)]
    result = {"machine": sl.machine(), "load_average_end": os.getloadavg()[0],
              "catalog": args.catalog, "store": args.store, "rate": args.rate,
              "concurrency": args.concurrency, "duration_s": args.duration,
              "ranks_per_s": load["rank"]["requests_per_s"], "p99_ms": load["rank"]["p99_ms"],
              "server_cpu_ms_per_rank": round(cpu_ms, 3), "samples": total, "shares": shares,
              "top_functions_self": top}
    cmd = (f"python benchmarks/service_profile.py --catalog {args.catalog} --duration "
           f"{args.duration:g}" + (f" --rate {args.rate:g}" if args.rate else ""))
    how = f"paced at {args.rate:g}/s" if args.rate else "closed loop"
    lines = ["# Where a rank's CPU goes (py-spy --gil of both workers under load)", "",
             f"Machine: {result['machine']}, load average {result['load_average_end']:.1f} at the "
             f"end. Command: `{cmd}`. {args.catalog}, EASE/pop + LinUCB, SQLite, 2 workers, "
             f"{args.concurrency} in flight ({how}): "
             f"{result['ranks_per_s']} ranks/s, p99 {result['p99_ms']} ms, server CPU "
             f"{result['server_cpu_ms_per_rank']} ms per rank; {total:,} GIL-holding samples.", "",
             "| part | share of samples |", "|---|---:|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in shares.items()]
    lines += ["", "| function (self) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {v:.1%} |" for f, v in top]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.output / "service_profile.json", result)
        atomic_write_text(args.output / "service_profile.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
