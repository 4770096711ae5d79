"""iALS solvers measured: our compiled and numpy CG and Cholesky against the `implicit` library.

    python benchmarks/ials_solvers.py --output benchmarks/results

Same split (ML-100K random 8:1:1, seed 2020), same hyper-parameters for every solver (the
constant-regularisation setting ``implicit`` supports), best of ``--repeats`` fit times; then
our default (frequency-scaled regularisation, which ``implicit`` does not offer). Writes
``ials_solvers.json`` and ``ials_solvers.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from explorec._io import atomic_write_json, atomic_write_text
from explorec.data import load_dataset, make_split
from explorec.evaluate import evaluate_model
from explorec.models import create_model
from explorec.report import environment

COMMON = {"factors": 64, "alpha": 5.0, "reg": 50.0, "reg_exponent": 0.0, "iterations": 15}
RUNS = [
    ("cg (explorec, numba), 1 thread", {**COMMON, "solver": "cg", "threads": 1}),
    ("cg (explorec, numba), 2 threads", {**COMMON, "solver": "cg", "threads": 2}),
    ("cg-numpy (explorec)", {**COMMON, "solver": "cg-numpy"}),
    ("cholesky (explorec)", {**COMMON, "solver": "cholesky"}),
    ("implicit 0.7, 1 thread", {**COMMON, "solver": "implicit", "threads": 1}),
    ("implicit 0.7, 2 threads", {**COMMON, "solver": "implicit", "threads": 2}),
    ("cg, explorec defaults", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", default="benchmarks/results")
    args = ap.parse_args()
    ds = load_dataset("ml-100k")
    split = make_split(ds.interactions, "ratio", seed=2020)
    rows = []
    create_model("ials", iterations=1).fit(split.train)  # compile the numba kernel first
    for label, params in RUNS:
        best, best_cpu, model = float("inf"), float("inf"), None
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            with threadpool_limits(1, "blas"):  # implicit asks for it; the same for everyone
                model = create_model("ials", **params).fit(split.train)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        assert model is not None
        valid = evaluate_model(model, split, part="valid", ks=(10,), metrics=("ndcg",))
        test = evaluate_model(model, split, ks=(10,), metrics=("ndcg", "recall"))
        rows.append({"solver": label, "params": model.get_params(), "fit_seconds": best,
                     "fit_cpu_seconds": best_cpu,
                     "valid_ndcg@10": valid.metrics["ndcg@10"], **test.metrics})
        print(f"{label:32s} fit {best:6.2f}s cpu {best_cpu:6.2f}s valid {valid.metrics['ndcg@10']:.4f} "
              f"test {test.metrics['ndcg@10']:.4f}")
    report = {"rows": rows, "environment": environment(),
              "command": f"python benchmarks/ials_solvers.py --repeats {args.repeats}"}
    env = report["environment"]
    lines = ["# iALS solvers on ML-100K (random 8:1:1, seed 2020)", "",
             f"Best of {args.repeats} fits. Machine: {env['platform']}, {env['cpu_count']} cores "
             f"(shared). Command: `{report['command']}`.", "",
             "| solver | fit s | fit CPU s | valid NDCG@10 | test NDCG@10 | test Recall@10 |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['solver']} | {r['fit_seconds']:.2f} | {r['fit_cpu_seconds']:.2f} | "
                     f"{r['valid_ndcg@10']:.4f} | "
                     f"{r['ndcg@10']:.4f} | {r['recall@10']:.4f} |")
    lines += ["", f"Shared settings: {COMMON}. The last row is explorec's default "
              "(128 factors, alpha 5, reg 2 scaled by (1 + alpha n)^0.5)."]
    out = Path(args.output)
    atomic_write_json(out / "ials_solvers.json", report)
    atomic_write_text(out / "ials_solvers.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
