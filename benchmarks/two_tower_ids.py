"""Two-tower item-ID tables with sparse gradients (SparseAdam) against dense ones (Adam), side
by side in one run: ms per training step on a 100,000-item catalog, and test quality on a
20,000-item split.

    python benchmarks/two_tower_ids.py [--repeat 2] [--output benchmarks/results]

Steps: ``generate(200,000 users, 100,000 items, 2,000,000 events)``, 80 steps of 1,024
examples (TF-IDF item text, so that the figure is the training step, not the encoder), the two
settings alternated ``--repeat`` times, each in a fresh process. Quality: ``generate(20,000
users, 20,000 items, 400,000 events)``, ratio split 0.8/0.1/0.1, 3 epochs of 150 steps, test
NDCG@10 and Recall@10 (full ranking). Seed 2020 throughout. Exits 1 when sparse tables are not
faster per step or lose more than 0.005 NDCG@10. Results: two_tower_ids.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SEED = 2020


def job_step(sparse: bool) -> dict[str, Any]:
    from explorec.data.synthetic import generate
    from explorec.models.registry import create_model

    ds = generate(n_users=200_000, n_items=100_000, n_interactions=2_000_000, seed=SEED)
    m = create_model("two-tower", encoder="tfidf", epochs=1, progress=False, steps_per_epoch=80,
                     sparse_ids=sparse, seed=SEED)
    m.fit(ds.interactions, catalog=ds.catalog)
    h = m.train_result_.history[0]
    return {"step_ms": 1000 * h["step_seconds"] / h["steps"], "steps": h["steps"]}


def job_quality(sparse: bool) -> dict[str, Any]:
    from explorec.data.splits import ratio_split
    from explorec.data.synthetic import generate
    from explorec.evaluate.protocol import evaluate_model
    from explorec.models.registry import create_model

    ds = generate(n_users=20_000, n_items=20_000, n_interactions=400_000, seed=SEED)
    split = ratio_split(ds.interactions, seed=SEED)
    m = create_model("two-tower", encoder="tfidf", epochs=3, patience=5, progress=False,
                     steps_per_epoch=150, sparse_ids=sparse, seed=SEED)
    t0 = time.perf_counter()
    m.fit(split.train, catalog=ds.catalog)
    fit = time.perf_counter() - t0
    r = evaluate_model(m, split, part="test", ks=(10,), metrics=("ndcg", "recall"))
    return {"fit_seconds": fit, **r.metrics}


JOBS = {"step": job_step, "quality": job_quality}


def run_job(name: str, sparse: bool) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--job", name, "--sparse", str(int(sparse))],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"{name} job (sparse={sparse}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--job", choices=sorted(JOBS))
    ap.add_argument("--sparse", type=int, default=1)
    args = ap.parse_args()
    if args.job:
        print(json.dumps(JOBS[args.job](bool(args.sparse))))
        return 0
    from explorec._io import atomic_write_json, atomic_write_text
    from service_load import machine

    steps: dict[str, list[float]] = {"dense": [], "sparse": []}
    for _ in range(args.repeat):
        for name in ("dense", "sparse"):
            r = run_job("step", name == "sparse")
            steps[name].append(r["step_ms"])
            print(f"step {name}: {r['step_ms']:.1f} ms", flush=True)
    quality = {name: run_job("quality", name == "sparse") for name in ("dense", "sparse")}
    for name, q in quality.items():
        print(f"quality {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in q.items()), flush=True)
    best = {k: min(v) for k, v in steps.items()}
    failures = []
    if best["sparse"] >= best["dense"]:
        failures.append(f"sparse step {best['sparse']:.1f} ms not below dense {best['dense']:.1f} ms")
    if quality["sparse"]["ndcg@10"] < quality["dense"]["ndcg@10"] - 0.005:
        failures.append("sparse tables lose NDCG@10")
    result = {"machine": machine(), "load_average_end": os.getloadavg()[0], "seed": SEED,
              "step_ms": steps, "quality": quality, "failures": failures}
    lines = ["# Two-tower item-ID tables: sparse (SparseAdam) vs dense (Adam)", "",
             f"Machine: {result['machine']}, load average {result['load_average_end']:.1f} at the "
             f"end. Seed {SEED}. Command: `python benchmarks/two_tower_ids.py --repeat {args.repeat}`.",
             "", "| ID tables | ms per step, 100,000 items (each run) | best | test NDCG@10, "
             "20,000 items | Recall@10 | fit s (450 steps) |", "|---|---|---:|---:|---:|---:|"]
    for name in ("dense", "sparse"):
        q = quality[name]
        lines.append(f"| {name} | {', '.join(f'{x:.0f}' for x in steps[name])} | {best[name]:.0f} | "
                     f"{q['ndcg@10']:.4f} | {q['recall@10']:.4f} | {q['fit_seconds']:.0f} |")
    lines += ["", "Goals missed: " + ("; ".join(failures) if failures else "none")]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.output / "two_tower_ids.json", result)
        atomic_write_text(args.output / "two_tower_ids.md", text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
