"""Fit + evaluate wall time and quality of the baselines on ML-100K (reported, not asserted).

    python benchmarks/baselines.py --seeds 2020 --output benchmarks/results

Writes ``baselines.json`` and ``baselines.md``: per model, mean and std over seeds of the
test metrics, fit seconds, evaluation seconds and peak traced memory of fit, with RecBole
1.2.1's published-by-us reference figures (issue #2) beside ours.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from explorec._io import atomic_write_json, atomic_write_text
from explorec.data import load_dataset, make_split
from explorec.evaluate.experiment import run_evaluation
from explorec.evaluate.significance import noise_lines
from explorec.report import environment

MODELS = ["random", "pop", "itemknn", "userknn", "ease", "hybrid"]
# RecBole 1.2.1, ML-100K, default protocol, seed 2020 (figures from issue #2 / #6).
RECBOLE = {"ease": {"ndcg@10": 0.3295, "recall@10": 0.2805, "fit_s": 1.1},
           "itemknn": {"ndcg@10": 0.2834, "recall@10": 0.2470, "fit_s": 1.2},
           "pop": {"ndcg@10": 0.1033}}
SHOW = ["ndcg@10", "recall@10", "ndcg@20", "recall@20", "mrr@10", "hit@10", "precision@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="2020")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--output", default="benchmarks/results")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    console = Console()
    t0 = time.perf_counter()
    ds = load_dataset("ml-100k")
    load_s = time.perf_counter() - t0
    runs = []
    with Progress(console=console) as progress:
        for seed in seeds:
            split = make_split(ds.interactions, "ratio", seed=seed)
            runs.append(run_evaluation(split, models, dataset="ml-100k", catalog=ds.catalog, ks=(10, 20),
                                       progress=progress, measure_memory=True))
    summary = {}
    for name in models:
        rows = [next(r for r in run["results"] if r["model"] == name) for run in runs]
        entry = {}
        for key in SHOW:
            vals = [r["metrics"][key] for r in rows]
            entry[key] = {"mean": statistics.fmean(vals),
                          "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0,
                          "values": vals}  # per seed, in --seeds order
        for key in ("fit_seconds", "eval_seconds", "fit_peak_mib"):
            vals = [r[key] for r in rows]
            entry[key] = {"mean": statistics.fmean(vals),
                          "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0}
        entry["params"] = rows[0]["params"]
        entry["recbole_1.2.1"] = RECBOLE.get(name, {})
        summary[name] = entry
    report = {"dataset": "ml-100k", "split": "ratio", "seeds": seeds, "load_seconds": load_s,
              "models": summary, "environment": environment(),
              "command": f"python benchmarks/baselines.py --seeds {args.seeds}"}
    out = Path(args.output)
    atomic_write_json(out / "baselines.json", report)
    atomic_write_text(out / "baselines.md", to_markdown(report))
    console.print(to_markdown(report))


def to_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# Baselines on ML-100K (random 8:1:1 per-user split, full ranking)",
        "",
        f"Seeds {report['seeds']}; mean ± std over seeds. Machine: {env['platform']}, "
        f"{env['cpu_count']} cores, Python {env['python']}, numpy {env['numpy']}. "
        f"Command: `{report['command']}`.",
        "",
        "| model | NDCG@10 | Recall@10 | NDCG@20 | MRR@10 | Hit@10 | fit s | eval s | fit peak MiB "
        "| RecBole NDCG@10 | RecBole fit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in sorted(report["models"].items(), key=lambda kv: -kv[1]["ndcg@10"]["mean"]):
        def f(key: str, digits: int = 4, e: dict = e) -> str:
            m, s = e[key]["mean"], e[key]["std"]
            return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if s else "")

        rb = e["recbole_1.2.1"]
        lines.append(
            f"| {name} | {f('ndcg@10')} | {f('recall@10')} | {f('ndcg@20')} | {f('mrr@10')} | "
            f"{f('hit@10')} | {f('fit_seconds', 2)} | {f('eval_seconds', 2)} | "
            f"{f('fit_peak_mib', 1)} | {rb.get('ndcg@10', '—')} | {rb.get('fit_s', '—')} |")
    lines += ["", "Against the best model, seed by seed (paired t-test over seeds; within noise: "
              "p >= 0.05):", ""]
    for key in ("ndcg@10", "recall@10"):
        values = {name: e[key]["values"] for name, e in report["models"].items()
                  if "values" in e[key]}
        lines += noise_lines(values, what=key) or [f"- {key}: per-seed values not kept."]
    lines += ["", "eval s = validation + test evaluation with all metrics (incl. AUC, ILD). "
              "RecBole's Pop figure counts sampled negatives and de-duplicates counts within a "
              "batch (docs/evaluation.md), so it is not a like-for-like popularity baseline."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
