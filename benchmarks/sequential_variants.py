"""Compare settings of a next-item model on ML-100K leave-last-out (validation and test).

Each run fits the model on the training part with early stopping on validation NDCG@10, then
reports validation NDCG@10 (train history as context) and test NDCG@10 / HR@10 (validation
item appended to the context, as in ``benchmarks/zoo.py``). The model's own seed stays at its
default (2020) for every split seed, as in ``benchmarks/zoo.py``. One JSON line per run is
appended to ``--output``; the table printed at the end covers every line in that file.

    python benchmarks/sequential_variants.py --model sasrec --params '{"patience": 15}' \
        --seeds 2020,2021,2022 --tag p15

A grid (``--grid FILE``: a JSON list of ``{"tag", "model", "params"}``) runs every entry on
every seed, ``--jobs`` fits at a time in separate processes (one torch thread each); a
machine with a GPU runs them there (``--device``, default CUDA when available).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from explorec.data import load_dataset, make_split
from explorec.evaluate import evaluate_model
from explorec.models import create_model


def fit_one(model: str, params: dict, seed: int, tag: str) -> dict[str, Any]:
    """Fit one setting on one leave-last-out split; its JSON row."""
    import torch

    torch.set_num_threads(1)
    ds = load_dataset("ml-100k")
    split = make_split(ds.interactions, "loo", seed=seed)
    t0 = time.perf_counter()
    m = create_model(model, progress=False, **params).fit(split.train, catalog=ds.catalog,
                                                          split=split)
    fit_s = time.perf_counter() - t0
    valid = evaluate_model(m, split, part="valid", ks=(10,), metrics=("ndcg",)).metrics
    m.extend_history(split.valid)
    test = evaluate_model(m, split, ks=(10,), metrics=("hit", "ndcg")).metrics
    tr = m.train_result_
    return {"tag": tag, "model": model, "params": params, "seed": seed,
            "valid_ndcg@10": valid["ndcg@10"], "test_ndcg@10": test["ndcg@10"],
            "test_hit@10": test["hit@10"], "fit_seconds": round(fit_s, 1),
            "best_epoch": tr.best_epoch, "epochs_run": tr.epochs_run,
            "device": str(next(m.net_.parameters()).device), "torch": torch.__version__}


def run(jobs: list[tuple[str, dict, int, str]], output: Path, workers: int = 1) -> None:
    """Fit every ``(model, params, seed, tag)``; append each row to ``output`` as it ends."""
    def write(row: dict[str, Any]) -> None:
        print(json.dumps(row), flush=True)
        with output.open("a") as f:
            f.write(json.dumps(row) + "\n")

    if workers <= 1:
        for job in jobs:
            write(fit_one(*job))
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(fit_one, *job) for job in jobs]
        for fut in as_completed(futures):
            write(fut.result())


def tied_share() -> float:
    """Share of a user's consecutive ML-100K ratings (in time order) that share a timestamp."""
    import numpy as np

    inter = load_dataset("ml-100k").interactions
    order = np.lexsort((inter.timestamp, inter.user))
    user, ts = inter.user[order], inter.timestamp[order]
    same_user = user[1:] == user[:-1]
    return float(np.mean(ts[1:][same_user] == ts[:-1][same_user]))


def show(output: Path) -> None:
    table = Table(title=f"ML-100K leave-last-out, {output}")
    for col in ("tag", "model", "seed", "valid NDCG@10", "test NDCG@10", "test HR@10",
                "best/run", "fit s", "params"):
        table.add_column(col)
    for line in output.read_text().splitlines():
        r = json.loads(line)
        table.add_row(r["tag"], r["model"], str(r["seed"]), f"{r['valid_ndcg@10']:.4f}",
                      f"{r['test_ndcg@10']:.4f}", f"{r['test_hit@10']:.4f}",
                      f"{r['best_epoch']}/{r['epochs_run']}", f"{r['fit_seconds']:.0f}",
                      json.dumps(r["params"]))
    Console().print(table)


def show_means(output: Path, markdown: bool = False) -> None:
    """One row per (model, tag): mean validation and test NDCG@10 over its split seeds, best
    validation first (the order the defaults were chosen in)."""
    import numpy as np

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in output.read_text().splitlines():
        r = json.loads(line)
        groups.setdefault((r["model"], r["tag"]), []).append(r)
    rows = []
    for (model, tag), rs in groups.items():
        rs.sort(key=lambda r: r["seed"])
        valid = np.array([r["valid_ndcg@10"] for r in rs])
        test = np.array([r["test_ndcg@10"] for r in rs])
        params = {k: v for k, v in rs[0]["params"].items() if k != "device"}
        rows.append((valid.mean(), model, tag, len(rs), test.mean(),
                     " ".join(f"{v:.4f}" for v in valid), " ".join(f"{v:.4f}" for v in test),
                     float(np.mean([r["fit_seconds"] for r in rs])), json.dumps(params)))
    rows.sort(key=lambda r: -r[0])
    head = ("model", "tag", "runs", "valid NDCG@10", "test NDCG@10", "valid per seed",
            "test per seed", "fit s", "params")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for v, model, tag, n, t, vs, ts, fs, pr in rows:
            print(f"| {model} | {tag} | {n} | {v:.4f} | {t:.4f} | {vs} | {ts} | {fs:.0f} | "
                  f"`{pr}` |")
        return
    table = Table(title=f"ML-100K leave-last-out, mean over split seeds, {output}")
    for col in head:
        table.add_column(col)
    for v, model, tag, n, t, vs, ts, fs, pr in rows:
        table.add_row(model, tag, str(n), f"{v:.4f}", f"{t:.4f}", vs, ts, f"{fs:.0f}", pr)
    Console().print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sasrec", choices=["sasrec", "gru4rec"])
    ap.add_argument("--params", default="{}", help="JSON object of model parameters.")
    ap.add_argument("--seeds", default="2020")
    ap.add_argument("--tag", default="run")
    ap.add_argument("--output", type=Path,
                    default=Path("benchmarks/results/sequential_variants.jsonl"))
    ap.add_argument("--grid", type=Path, help="JSON list of {tag, model, params} to run.")
    ap.add_argument("--jobs", type=int, default=1, help="Fits at a time (processes).")
    ap.add_argument("--device", help="torch device for every fit (default: CUDA if present).")
    ap.add_argument("--show", action="store_true", help="Only print the table of --output.")
    ap.add_argument("--means", action="store_true",
                    help="Print means over split seeds per setting instead of every run.")
    ap.add_argument("--markdown", action="store_true", help="With --means: a Markdown table.")
    ap.add_argument("--ties", action="store_true",
                    help="Only print the share of consecutive ratings with tied timestamps.")
    args = ap.parse_args()
    if args.ties:
        print(f"consecutive ratings of one user sharing a timestamp: {tied_share():.3f}")
        return
    if not args.show:
        seeds = [int(s) for s in args.seeds.split(",")]
        entries = (json.loads(args.grid.read_text()) if args.grid else
                   [{"tag": args.tag, "model": args.model, "params": json.loads(args.params)}])
        jobs = []
        for e in entries:
            params = dict(e.get("params", {}))
            if args.device:
                params.setdefault("device", args.device)
            jobs += [(e.get("model", args.model), params, seed, e["tag"]) for seed in seeds]
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        run(jobs, args.output, args.jobs)
    if args.means:
        show_means(args.output, args.markdown)
    else:
        show(args.output)


if __name__ == "__main__":
    main()
