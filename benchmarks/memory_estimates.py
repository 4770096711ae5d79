"""Models' memory estimates against the peak memory their fit really takes.

Each model is fitted in a fresh process on seeded synthetic data; the peak resident memory
the fit adds (``ru_maxrss`` after the fit minus before it, data already generated, torch not
yet imported) is compared with ``model.fit_memory(users, items, interactions)``. An estimate
below the measured peak is a failure (the refusal in ``fit`` would come too late); one far
above it (more than 4x, past 256 MiB) is reported as conservative.

    python benchmarks/memory_estimates.py [--users 20000 --items 5000 --interactions 400000]

Exit status 1 when any estimate is below what the fit used. Results:
benchmarks/results/memory_estimates.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: models and the parameters that keep their fit short (one epoch of the neural ones: memory
#: does not grow with epochs)
MODELS: dict[str, dict] = {
    "pop": {}, "random": {}, "itemknn": {}, "userknn": {}, "ease": {}, "slim": {"iterations": 10},
    "rp3beta": {}, "ials": {"iterations": 3}, "bpr": {"epochs": 1, "progress": False},
    "neumf": {"epochs": 1, "progress": False}, "lightgcn": {"epochs": 1, "progress": False},
    "multvae": {"epochs": 1, "progress": False}, "cfgan": {"epochs": 1, "progress": False},
    "gru4rec": {"epochs": 1, "progress": False, "max_len": 20},
    "sasrec": {"epochs": 1, "progress": False, "max_len": 20},
}


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def one(name: str, params: dict, users: int, items: int, interactions: int) -> dict:
    from explorec.data.synthetic import generate
    from explorec.models.registry import create_model

    ds = generate(n_users=users, n_items=items, n_interactions=interactions)
    train = ds.interactions
    train.matrix()  # the cached training matrix belongs to the data, not to the fit
    model = create_model(name, **params)
    estimate = model.check_memory(train.n_users, train.n_items, len(train))
    before = _rss()
    t0 = time.perf_counter()
    model.fit(train, catalog=ds.catalog)
    seconds = time.perf_counter() - t0
    return {"model": name, "params": params, "estimate_bytes": int(estimate),
            "measured_bytes": int(_rss() - before), "fit_seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--interactions", type=int, default=400_000)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, MODELS[args.one], args.users, args.items,
                             args.interactions)))
        return 0
    from explorec.memory import format_bytes

    rows, failures = [], []
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--users", str(args.users),
               "--items", str(args.items), "--interactions", str(args.interactions)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            failures.append(f"{name}: exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r["ratio"] = r["estimate_bytes"] / max(r["measured_bytes"], 1)
        rows.append(r)
        verdict = ("UNDER" if r["estimate_bytes"] < r["measured_bytes"] else
                   "conservative" if r["ratio"] > 4 and r["estimate_bytes"] > 256 * 2**20 else "ok")
        r["verdict"] = verdict
        if verdict == "UNDER":
            failures.append(f"{name}: estimate {format_bytes(r['estimate_bytes'])} below the "
                            f"measured {format_bytes(r['measured_bytes'])}")
        print(f"{name:10s} estimate {format_bytes(r['estimate_bytes']):>9s} measured "
              f"{format_bytes(r['measured_bytes']):>9s} ({r['ratio']:.2f}x) {verdict}", flush=True)
    import platform

    report = {"users": args.users, "items": args.items, "interactions": args.interactions,
              "rows": rows, "failures": failures, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "command": "python benchmarks/memory_estimates.py "
              + " ".join(sys.argv[1:])}
    args.output.mkdir(parents=True, exist_ok=True)
    from explorec._io import atomic_write_text

    atomic_write_text(args.output / "memory_estimates.json", json.dumps(report, indent=2) + "\n")
    md = [f"# Memory estimates vs measured fit peak ({args.users:,} users x {args.items:,} items, "
          f"{args.interactions:,} interactions)", "", f"`{report['command']}`", "",
          "| model | estimate | measured | estimate / measured | verdict |", "|---|---:|---:|---:|---|"]
    md += [f"| {r['model']} | {format_bytes(r['estimate_bytes'])} | "
           f"{format_bytes(r['measured_bytes'])} | {r['ratio']:.2f} | {r['verdict']} |" for r in rows]
    atomic_write_text(args.output / "memory_estimates.md", "\n".join(md) + "\n")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
