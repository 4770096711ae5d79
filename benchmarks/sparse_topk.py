"""Top-k from sparse scores (pop's global list, neighbour models' sparse products) against
the dense path, side by side: identical lists, and the time of each.

    python benchmarks/sparse_topk.py [--users 30000 --items 20000 --interactions 600000]

Exit status 1 if any list differs. Results: benchmarks/results/sparse_topk.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from explorec._io import atomic_write_text  # noqa: E402
from explorec.data.synthetic import generate  # noqa: E402
from explorec.models.registry import create_model  # noqa: E402

MODELS = {"pop": {}, "itemknn": {"k": 50}, "userknn": {"k": 50}, "rp3beta": {}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=30_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--interactions", type=int, default=600_000)
    ap.add_argument("--rank-users", type=int, default=4000)
    ap.add_argument("--k", default="10,100")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    ds = generate(n_users=args.users, n_items=args.items, n_interactions=args.interactions)
    users = np.arange(min(args.rank_users, args.users))
    rows, failures = [], []
    for name, params in MODELS.items():
        m = create_model(name, **params).fit(ds.interactions)
        sparse_path = m._recommend_sparse
        for k in (int(x) for x in args.k.split(",")):
            best = {"sparse": np.inf, "dense": np.inf}
            out = {}
            for _ in range(args.repeats):  # alternate, so that load hits both alike
                for path in ("sparse", "dense"):
                    m._recommend_sparse = sparse_path if path == "sparse" else (
                        lambda *a, **kw: None)
                    t0 = time.perf_counter()
                    out[path] = m.recommend(users, k)
                    best[path] = min(best[path], time.perf_counter() - t0)
            m._recommend_sparse = sparse_path
            same = (out["sparse"][0].shape == out["dense"][0].shape
                    and np.array_equal(out["sparse"][0], out["dense"][0]))
            if not same:
                failures.append(f"{name} k={k}: sparse and dense lists differ")
            rows.append({"model": name, "k": k, "sparse_seconds": best["sparse"],
                         "dense_seconds": best["dense"], "speedup": best["dense"] / best["sparse"],
                         "identical": bool(same)})
            print(f"{name:8s} k={k:<4d} sparse {best['sparse']:.3f}s dense {best['dense']:.3f}s "
                  f"({best['dense'] / best['sparse']:.1f}x) identical={same}", flush=True)
    report = {"users": args.users, "items": args.items, "interactions": args.interactions,
              "rank_users": len(users), "repeats": args.repeats, "rows": rows,
              "failures": failures, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
              "machine": platform.machine(), "seed": 2020,
              "command": "python benchmarks/sparse_topk.py " + " ".join(sys.argv[1:])}
    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output / "sparse_topk.json", json.dumps(report, indent=2) + "\n")
    md = [f"# Sparse vs dense top-k ({args.users:,} users x {args.items:,} items, "
          f"{args.interactions:,} events; {len(users):,} users ranked, best of {args.repeats})",
          "", f"`{report['command']}` — load average {report['load_average'][0]:.1f} on "
          f"{report['cpus']} CPUs", "", "| model | k | sparse s | dense s | speed-up | identical |",
          "|---|---:|---:|---:|---:|---|"]
    md += [f"| {r['model']} | {r['k']} | {r['sparse_seconds']:.3f} | {r['dense_seconds']:.3f} | "
           f"{r['speedup']:.1f}x | {r['identical']} |" for r in rows]
    atomic_write_text(args.output / "sparse_topk.md", "\n".join(md) + "\n")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
