"""The serving engine's CPU per rank when the service batches the requests of a moment
(``Engine.compute_ranks``, what ``RankBatcher`` calls) against one request at a time, in one
process, no HTTP: the part of a rank's cost that batching shares.

    python benchmarks/rank_batching.py [--batches 1,4,8,16] [--repeat 7]

Artifacts as in ``service_load.py`` (ML-100K EASE + LinUCB; a synthetic 100,000-item catalog
with popularity + LinUCB), trained into ``--work`` on first use. Each figure is the best of
``--repeat`` timings of the same requests (the machine is shared: the minimum is the least
disturbed). The slates are checked to be the same batched and alone (exit 1 if not).
Results: benchmarks/results/rank_batching.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
# the repository's src after any PYTHONPATH entries: a side-by-side run points PYTHONPATH at
# another checkout's src, and that code must be the one measured
sys.path.insert(2 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
                str(ROOT / "src"))

from explorec._io import atomic_write_json, atomic_write_text  # noqa: E402
from explorec.serve.artifact import load_service_artifact  # noqa: E402
from explorec.serve.engine import Engine, RankCall, single_threaded_blas  # noqa: E402
from service_load import ensure_artifact, machine  # noqa: E402


def measure(kind: str, work: Path, batches: list[int], n_requests: int, repeat: int,
            seed: int) -> dict[str, Any]:
    art = load_service_artifact(ensure_artifact(kind, work, "linucb"))
    eng = Engine(art, None)
    single_threaded_blas()  # as the service does: one thread, the CPU time is the work
    users = [str(u) for u in art.model.user_ids()]
    rng = np.random.default_rng(seed)
    picked = [users[i] for i in rng.integers(0, len(users), n_requests)]
    calls = [RankCall(u, 10, explain=False) for u in picked]
    hists: list[tuple[list[str], int]] = [([], 0)] * len(calls)

    def slates(outs: list[Any]) -> list[list[tuple[str, float | None, float]]]:
        return [[(i.item, i.score, i.propensity) for i in r.items] for r, _ in outs]

    alone = [eng.compute_ranks(hists[:1], [c])[0] for c in calls]
    rows = []
    for b in batches:
        outs = []
        for s in range(0, len(calls), b):
            outs += eng.compute_ranks(hists[s:s + b], calls[s:s + b])
        same = slates(outs) == slates(alone)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            for s in range(0, len(calls), b):
                eng.compute_ranks(hists[s:s + b], calls[s:s + b])
            best = min(best, time.process_time() - t0)
        rows.append({"batch": b, "cpu_ms_per_rank": round(best * 1000 / len(calls), 3),
                     "same_slates_as_alone": same})
        print(f"{kind}: batch {b}: {rows[-1]['cpu_ms_per_rank']} CPU ms per rank, same slates: "
              f"{same}", file=sys.stderr, flush=True)
    base = rows[0]["cpu_ms_per_rank"] if rows and rows[0]["batch"] == 1 else None
    for r in rows:
        r["vs_batch_1"] = round(r["cpu_ms_per_rank"] / base, 3) if base else None
    return {"catalog": kind, "items": art.n_items, "model": art.manifest.get("model"),
            "policy": art.policy_name, "requests": n_requests, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalogs", default="ml-100k,synthetic-100k")
    p.add_argument("--batches", default="1,2,4,8,16")
    p.add_argument("--requests", type=int, default=480)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "explorec-load")
    p.add_argument("--output", type=Path, default=None)
    a = p.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",")]
    results = [measure(k, a.work, batches, a.requests, a.repeat, a.seed)
               for k in a.catalogs.split(",")]
    load = os.getloadavg()[0]
    report = {"machine": machine(), "load_average_1m": round(load, 2), "seed": a.seed,
              "command": "python benchmarks/rank_batching.py " + " ".join(argv or sys.argv[1:]),
              "results": results}
    lines = ["# Rank batching: the engine's CPU per rank, batched and alone", "",
             f"Machine: {report['machine']}; load average {load:.2f}. Seed {a.seed}. Command: "
             f"`{report['command'].strip()}`. In process, no HTTP; best of {a.repeat} timings.", "",
             "| catalog | model + policy | requests per batch | CPU ms per rank | vs one at a time "
             "| same slates as alone |", "|---|---|---:|---:|---:|---|"]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| {r['items']:,} items | {r['model']} + {r['policy']} | {row['batch']} | "
                         f"{row['cpu_ms_per_rank']} | {row['vs_batch_1']} | "
                         f"{'yes' if row['same_slates_as_alone'] else '**no**'} |")
    print("\n".join(lines))
    if a.output:
        a.output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(a.output / "rank_batching.json", report)
        atomic_write_text(a.output / "rank_batching.md", "\n".join(lines) + "\n")
    ok = all(row["same_slates_as_alone"] for r in results for row in r["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
