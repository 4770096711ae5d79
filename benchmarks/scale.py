"""Scale: fit times, batch scoring, ANN and Dask on 2M and 20M synthetic events, with peak RSS.

    python benchmarks/scale.py                      # everything (about an hour on 2 cores)
    python benchmarks/scale.py --sizes 2M --only fit,ann
    python benchmarks/scale.py --quick              # small sizes, to check the script

Every measurement runs in a fresh process (its peak resident memory is its own). Data:
``explorec.data.synthetic.generate`` at seed 2020 — 2M events over 100,000 users x 20,000
items, 20M events over 1,000,000 users x 100,000 items — generated once and cached as
``.npy`` arrays (the generation itself is timed: the 20M set must come out in bounded time and
memory). Jobs:

- ``fit``: pop, itemknn, ease (refuses above its memory), slim, ials, bpr and two-tower
  (one epoch each: their time per epoch; two-tower's includes encoding every item's text
  with MiniLM once), and ials beside ``implicit`` in the same run at the same settings
  (64 factors, alpha 10, reg 1, 15 sweeps, BLAS at one thread). Goal: ials CPU time <= 1.1x
  implicit's. From the 2M and 20M fit times, the exponent of growth
  ``log(t20 / t2) / log(10)`` per model.
- ``batch``: ``explorec recommend --artifact ials --k 100`` for every one of the 1M users
  (100,000 items), in a subprocess, twice: ``--index auto`` (below 500,000 items: the pruned
  exact ranking of :mod:`explorec.factor_topk`) and ``--index hnsw`` (the artifact's ANN
  index). Each is checked on a sample of users against ranking every item by
  ``model.score`` (the generic path, whose rate is also reported). Goal: the default path
  <= 5 minutes at recall@100 >= 0.95 against exact, peak RSS <= 6 GB.
- ``ann``: IVF and HNSW (faiss), hnswlib when installed, and the pruned exact ranking, over
  the 20M model's 100k item vectors and over 1M vectors (the 100k tiled 10x with noise), ms
  per query single and batched, recall@100 against exact.
- ``dask``: the default batch job for the 20M model's 1M users on a 2-worker LocalCluster
  and in one process: identical output required, overhead <= 20%.

Exit status 1 when a goal is missed. Results: benchmarks/results/scale.{json,md}; per-job
results are kept in benchmarks/results/scale/ so that a partial rerun (``--only``) updates
its part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SIZES = {"2M": (100_000, 20_000, 2_000_000), "20M": (1_000_000, 100_000, 20_000_000),
         # --quick
         "20k": (2_000, 1_000, 20_000), "200k": (20_000, 5_000, 200_000)}
FIT_MODELS: dict[str, dict[str, Any]] = {
    "pop": {}, "itemknn": {}, "ease": {}, "slim": {"iterations": 10},
    "ials": {"factors": 64, "alpha": 10.0, "reg": 1.0, "reg_exponent": 0.0, "iterations": 15},
    "implicit": {"factors": 64, "alpha": 10.0, "reg": 1.0, "reg_exponent": 0.0,
                 "iterations": 15, "solver": "implicit"},
    "bpr": {"epochs": 1, "progress": False},
    # a full pass at 20M is ~20,000 steps: timed over 1,000 and extrapolated (reported so)
    "two-tower": {"epochs": 1, "progress": False, "steps_per_epoch": 1000},
}
GOALS = {"ials_vs_implicit_cpu": 1.1, "batch_seconds": 300.0, "batch_recall": 0.95,
         "batch_rss_gb": 6.0, "dask_overhead": 1.2}
#: ``recommend --index`` settings the batch job runs; the goal applies to the default (auto)
BATCH_INDEXES = ("auto", "hnsw")
CACHE = Path(os.environ.get("EXPLOREC_BENCH_CACHE", Path.home() / ".cache" / "explorec" / "bench"))


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ data
def data_path(size: str) -> Path:
    return CACHE / f"synthetic-{size}"


def make_data(size: str) -> dict[str, Any]:
    """Generate (or find) the size's data; returns the generation's time and memory."""
    from explorec.data.synthetic import generate

    path = data_path(size)
    done = path / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    users, items, events = SIZES[size]
    t0, c0 = time.perf_counter(), _cpu()
    ds = generate(n_users=users, n_items=items, n_interactions=events, seed=2020)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    path.mkdir(parents=True, exist_ok=True)
    inter = ds.interactions
    np.save(path / "user.npy", inter.user)
    np.save(path / "item.npy", inter.item)
    ds.catalog.frame.reset_index()[["item", "title", "genres"]].to_parquet(path / "items.parquet")
    info = {"size": size, "users": users, "items": items, "events": len(inter),
            "generate_seconds": seconds, "generate_cpu_seconds": cpu, "peak_rss_gb": _rss_gb()}
    done.write_text(json.dumps(info))
    return info


def load_data(size: str) -> Any:
    """The cached arrays as Interactions (and the catalog, for two-tower)."""
    import pandas as pd

    from explorec.data.catalog import ItemCatalog
    from explorec.data.interactions import IdMap, Interactions

    path = data_path(size)
    users, items, _ = SIZES[size]
    inter = Interactions(users=IdMap.from_values([f"u{i}" for i in range(users)]),
                         items=IdMap.from_values([f"i{i}" for i in range(items)]),
                         user=np.load(path / "user.npy"), item=np.load(path / "item.npy"),
                         source=f"synthetic-{size}")
    frame = pd.read_parquet(path / "items.parquet")
    return inter, ItemCatalog.from_frame(frame, source=str(path))


# ------------------------------------------------------------------ jobs (each in a process)
def job_fit(size: str, model: str) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from explorec.memory import MemoryLimitError
    from explorec.models.registry import create_model

    inter, catalog = load_data(size)
    inter.matrix()
    params = dict(FIT_MODELS[model])
    name = "ials" if model == "implicit" else model
    m = create_model(name, **params)
    base_rss = _rss_gb()
    t0, c0 = time.perf_counter(), _cpu()
    try:
        with threadpool_limits(1, "blas") if name == "ials" else contextlib.nullcontext():
            m.fit(inter, catalog=catalog)
    except MemoryLimitError as e:
        return {"refused": str(e), "data_rss_gb": base_rss}
    out = {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0,
           "peak_rss_gb": _rss_gb(), "data_rss_gb": base_rss, "params": params}
    if model == "ials":
        m.save(CACHE / f"ials-{size}")
    if model == "two-tower":
        # the timed steps are extrapolated to a full epoch; the epoch's set-up (a shuffle of
        # every interaction), validation and the item-text encoding happen once an epoch
        # whatever its steps, so they are counted once
        h = m.train_result_.history[0]
        batches = math.ceil(inter.matrix().nnz / m.batch_size)
        steps = int(h["steps"])
        once = out["seconds"] - h["step_seconds"]
        out.update(train_seconds=float(m.train_result_.seconds), steps=steps,
                   batches_per_epoch=batches, step_ms=1000 * h["step_seconds"] / steps,
                   epoch_setup_seconds=h["setup_seconds"],
                   epoch_seconds_extrapolated=once + h["step_seconds"] * batches / steps)
    out["measured"] = _measured()
    return out


def _child_rss(fn: Any) -> tuple[Any, float]:
    """``fn()`` and the peak RSS (GB) of the largest child process waited for so far."""
    res = fn()
    return res, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def job_batch(size: str, exact_users: int, index: str) -> dict[str, Any]:
    """``explorec recommend --artifact ials-SIZE --k 100 --index INDEX`` for every user, checked
    on a sample of users against ranking every item by ``model.score`` (the generic path)."""
    from explorec.index import recall_at_k
    from explorec.models.base import BaseRecommender
    from explorec.ranking import top_items

    art = CACHE / f"ials-{size}"
    if not art.exists():
        raise RuntimeError(f"{art} missing: run the fit job for ials at {size} first")
    out = CACHE / f"recs-{size}-{index}.parquet"
    (seconds, output), rss = _child_rss(lambda: _timed_cli(
        ["recommend", "--artifact", str(art), "--k", "100", "--index", index, "-o", str(out)]))
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n_users = len(pc.unique(pq.read_table(out, columns=["user"])["user"]))
    m = BaseRecommender.load(art)
    rng = np.random.default_rng(2020)
    sample = np.sort(rng.choice(m.n_users, min(exact_users, m.n_users), replace=False))
    t0 = time.perf_counter()
    exact = np.vstack([top_items(m.score(b), 100, rows=b, exclude=m.user_items_[b], warn=False)[0]
                       for b in np.array_split(sample, max(1, len(sample) // 1024))])
    exact_seconds = time.perf_counter() - t0
    ids = m.users_.to_external(sample)
    # only the sampled users' rows (the whole file as Python strings is ~20 GB)
    recs = pq.read_table(out, columns=["user", "item", "rank"],
                         filters=[("user", "in", list(map(str, ids)))]).to_pandas()
    recs = recs.sort_values(["user", "rank"])
    recs["i"] = m.items_.to_internal(recs["item"].to_numpy())
    approx = np.full((len(sample), 100), -1)
    got = recs.groupby("user", sort=False)["i"].apply(np.asarray)
    for r, u in enumerate(ids):
        row = got.get(str(u), np.zeros(0, dtype=np.int64))
        approx[r, :len(row)] = row
    index_line = next((ln for ln in output.splitlines() if "index" in ln or "exactly" in ln), "")
    return {"index": index, "users": int(n_users), "items": m.n_items, "seconds": seconds,
            "peak_rss_gb": rss, "exact_users": len(sample), "full_ranking_seconds": exact_seconds,
            "full_ranking_seconds_all_users": exact_seconds * m.n_users / len(sample),
            "recall_at_100": recall_at_k(approx, exact),
            "identical_lists": float((approx == exact).all(axis=1).mean()),
            "note": index_line.strip()}


def _timed_cli(args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    res = subprocess.run([str(Path(sys.executable).parent / "explorec"), *args], env=env,
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"explorec {' '.join(args)} failed:\n{(res.stdout + res.stderr)[-3000:]}")
    return time.perf_counter() - t0, res.stdout + res.stderr


def job_ann(size: str, n_items: int, queries: int) -> dict[str, Any]:
    from explorec.index import ExactIndex, build_index, recall_at_k
    from explorec.models.base import BaseRecommender

    m = BaseRecommender.load(CACHE / f"ials-{size}")
    U, V = m.factor_vectors()
    if n_items > len(V):  # tile the real vectors with noise up to n_items
        rng = np.random.default_rng(2020)
        reps = math.ceil(n_items / len(V))
        V = np.vstack([V + rng.normal(0, 0.1 * V.std(axis=0), V.shape).astype(np.float32)
                       for _ in range(reps)])[:n_items]
    rng = np.random.default_rng(2021)
    q = U[rng.choice(len(U), queries, replace=False)]
    t0 = time.perf_counter()
    exact, _ = ExactIndex(V).search(q, 100)
    exact_ms = 1000 * (time.perf_counter() - t0) / len(q)
    rows: list[dict[str, Any]] = [{"kind": "exact", "batched_ms_per_query": exact_ms,
                                   "recall_at_100": 1.0}]
    from explorec.factor_topk import PruneStats, factor_top_items

    stats = PruneStats()
    factor_top_items(q[:10], V, np.arange(10), 100)  # compile
    t0 = time.perf_counter()
    pruned, _ = factor_top_items(q, V, np.arange(len(q)), 100, stats=stats)
    rows.append({"kind": "pruned exact", "scored_fraction": round(stats.scored_fraction, 4),
                 "batched_ms_per_query": 1000 * (time.perf_counter() - t0) / len(q),
                 "recall_at_100": recall_at_k(pruned, exact)})
    # (kind, build parameters, search settings to try)
    configs: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
        ("ivf", {}, [{"nprobe_frac": 8}, {"nprobe_frac": 4}]),
        ("hnsw", {"m": 16, "ef_construction": 100}, [{"ef_search": e} for e in (100, 200)]),
        ("hnsw", {"m": 32, "ef_construction": 200}, [{"ef_search": e} for e in (100, 200)]),
        ("hnswlib", {"m": 16, "ef_construction": 100}, [{"ef_search": e} for e in (100, 200)]),
        ("hnswlib", {"m": 32, "ef_construction": 200}, [{"ef_search": e} for e in (200, 400)])]
    if len(V) > 500_000:  # an m=32 graph takes a quarter of an hour to build here
        configs = [c for c in configs if c[1].get("m") != 32]
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        configs = [c for c in configs if c[0] != "hnswlib"]
        rows.append({"kind": "hnswlib", "note": "not installed (pip install hnswlib)"})
    for kind, build, searches in configs:
        t0 = time.perf_counter()
        index = build_index(V, kind, **build)
        build_s = time.perf_counter() - t0
        for search in searches:
            if kind == "ivf":
                index.nprobe = max(1, index.nlist // search["nprobe_frac"])
                shown = {"nlist": index.nlist, "nprobe": index.nprobe}
            else:
                index.ef_search = search["ef_search"]
                shown = {"m": index.m, "ef_construction": index.ef_construction,
                         "ef_search": index.ef_search}
            t0 = time.perf_counter()
            got, _ = index.search(q, 100)
            batched = 1000 * (time.perf_counter() - t0) / len(q)
            t0 = time.perf_counter()
            for row in q[:200]:
                index.search(row[None, :], 100)
            single = 1000 * (time.perf_counter() - t0) / min(200, len(q))
            rows.append({"kind": kind, **shown, "build_seconds": build_s,
                         "batched_ms_per_query": batched, "single_ms_per_query": single,
                         "recall_at_100": recall_at_k(got, exact)})
        del index
    return {"items": len(V), "dim": V.shape[1], "queries": len(q), "rows": rows,
            "peak_rss_gb": _rss_gb()}


def job_dask(size: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    art = CACHE / f"ials-{size}"
    outs, times = {}, {}
    for sched in ("single", "processes", "single", "processes"):  # twice each, best of two
        out = CACHE / f"dask-{size}-{sched}.parquet"
        seconds, _ = _timed_cli(["recommend", "--artifact", str(art), "--k", "100",
                                 "--scheduler", sched, "-o", str(out)])
        times[sched] = min(times.get(sched, float("inf")), seconds)
        outs[sched] = out
    a, b = (pq.read_table(outs[s]) for s in ("single", "processes"))
    return {"single_seconds": times["single"], "dask_seconds": times["processes"],
            "overhead": times["processes"] / times["single"], "identical": bool(a.equals(b)),
            "rows": a.num_rows, "measured": _measured()}


def _measured() -> str:
    """Where and when a job ran (a section measured in a later run than the rest says so)."""
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.platform()}, "
            f"{os.cpu_count()} cores ({cpu}), load average {os.getloadavg()[0]:.1f}")


JOBS = {"fit": job_fit, "batch": job_batch, "ann": job_ann, "dask": job_dask}


def run_job(name: str, *args: Any, timeout: float) -> dict[str, Any]:
    """One job in a fresh process; its JSON result, or the error it died with."""
    cmd = [sys.executable, __file__, "--job", name, "--job-args", json.dumps(list(args))]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        tail = (res.stdout + res.stderr)[-1500:]
        return {"error": f"exit {res.returncode} after {time.perf_counter() - t0:.0f} s: {tail}"}
    return json.loads(lines[-1])


# ------------------------------------------------------------------ report
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2M,20M")
    ap.add_argument("--only", default="data,fit,batch,ann,dask")
    ap.add_argument("--models", default=",".join(FIT_MODELS))
    ap.add_argument("--exact-users", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--quick", action="store_true", help="20k and 200k events: checks the script")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--job")
    ap.add_argument("--job-args")
    args = ap.parse_args()
    if args.job:
        print(json.dumps(JOBS[args.job](*json.loads(args.job_args)), default=float))
        return 0
    sizes = ["20k", "200k"] if args.quick else args.sizes.split(",")
    big = sizes[-1]
    only = set(args.only.split(","))
    out = Path(args.output)
    parts_dir = out / "scale"
    parts_dir.mkdir(parents=True, exist_ok=True)
    tag = "quick" if args.quick else "full"
    store = parts_dir / f"{tag}.json"
    results: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}

    def keep(key: str, value: Any) -> None:
        results[key] = value
        store.write_text(json.dumps(results, indent=1, default=float))
        print(f"{key}: {json.dumps(value, default=float)[:400]}", flush=True)

    if "data" in only or not all(data_path(s).joinpath("done.json").exists() for s in sizes):
        for s in sizes:
            info = (run_job("data", s, timeout=args.timeout)
                    if not data_path(s).joinpath("done.json").exists() else make_data(s))
            # data made only to fill this machine's cache keeps the figures of the run that
            # the report's header names
            if "data" in only or f"data/{s}" not in results:
                keep(f"data/{s}", info)
    if "fit" in only:
        for s in sizes:
            for model in args.models.split(","):
                keep(f"fit/{s}/{model}", run_job("fit", s, model, timeout=args.timeout))
    if "batch" in only:
        for index in BATCH_INDEXES:
            keep(f"batch/{big}/{index}", run_job("batch", big, args.exact_users, index,
                                                 timeout=args.timeout))
    if "ann" in only:
        n_items = SIZES[big][1]
        for n in (n_items, 10 * n_items):
            keep(f"ann/{n}", run_job("ann", big, n, args.queries, timeout=args.timeout))
    if "dask" in only:
        keep(f"dask/{big}", run_job("dask", big, timeout=args.timeout))
    return report(results, sizes, out, tag, args)


JOBS["data"] = make_data


def report(results: dict[str, Any], sizes: list[str], out: Path, tag: str,
           args: argparse.Namespace) -> int:
    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.report import environment

    small, big = sizes[0], sizes[-1]
    failures: list[str] = []
    env = environment()
    load = os.getloadavg()
    cmd = "python benchmarks/scale.py" + (" --quick" if args.quick else "")
    machine = (f"{env['platform']}, {env['cpu_count']} cores (shared), load average "
               f"{load[0]:.1f} at the end")
    full_fit = "fit" in set(args.only.split(",")) and set(args.models.split(",")) >= set(FIT_MODELS)
    if full_fit or "meta/machine" not in results:
        results["meta/machine"] = machine  # the run that measures the fits names the machine
        results["meta/fit_run"] = _measured()
        store = out / "scale" / f"{tag}.json"
        if store.exists():
            atomic_write_json(store, results)
    lines = [f"# Scale ({', '.join(sizes)} synthetic events)", "",
             f"Machine: {results['meta/machine']}. Seed 2020. Command: `{cmd}`. Each figure "
             "comes from a fresh process; RSS is its peak resident memory. A section measured "
             "in a later run names its own machine and date.", ""]
    lines += ["## Data (`explorec.data.synthetic.generate`)", "",
              "| size | users | items | events | generate s | peak RSS GB |",
              "|---|---:|---:|---:|---:|---:|"]
    for s in sizes:
        d = results.get(f"data/{s}", {})
        if "events" in d:
            lines.append(f"| {s} | {d['users']:,} | {d['items']:,} | {d['events']:,} | "
                         f"{d['generate_seconds']:.0f} | {d['peak_rss_gb']:.2f} |")
    lines += ["", "## Fit", "", "| model | " + " | ".join(
        f"{s} s | {s} CPU s | {s} RSS GB" for s in sizes) + " | growth exponent |",
        "|---|" + "---:|" * (3 * len(sizes) + 1)]
    for model in FIT_MODELS:
        cells, times = [], []
        for s in sizes:
            r = results.get(f"fit/{s}/{model}")
            if r is None:
                cells += ["—"] * 3
            elif "refused" in r:
                cells += ["refused: " + r["refused"].split(";")[0], "", ""]
            elif "error" in r:
                cells += ["error: " + r["error"][:80].replace("|", "/").replace("\n", " "), "", ""]
            else:
                cells += [f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}", f"{r['peak_rss_gb']:.2f}"]
                times.append(r.get("epoch_seconds_extrapolated", r["seconds"]))
        growth = ""
        if len(times) == len(sizes) == 2 and min(times) > 0:
            ratio = SIZES[big][2] / SIZES[small][2]
            growth = f"{math.log(times[1] / times[0]) / math.log(ratio):.2f}"
        label = {"implicit": "implicit (same settings as ials)", "bpr": "bpr (1 epoch)",
                 "two-tower": "two-tower (1,000 steps)"}.get(model, model)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {growth} |")
    lines.append("")
    tt = {s: results.get(f"fit/{s}/two-tower", {}) for s in sizes}
    if all("step_ms" in r for r in tt.values()):
        lines.append("- two-tower: " + "; ".join(
            f"{s}: {r['steps']:,} steps of {r['batches_per_epoch']:,} in an epoch, "
            f"{r['step_ms']:.0f} ms a step, the epoch's set-up (shuffling every interaction) "
            f"{r['epoch_setup_seconds']:.1f} s, encoding item text "
            f"{r['seconds'] - r['train_seconds']:.0f} s; a full epoch at that rate "
            f"{r['epoch_seconds_extrapolated']:.0f} s" for s, r in tt.items())
            + " (its growth exponent is over these epoch figures: the steps extrapolated, the "
            "once-an-epoch work counted once)")
    # rows measured after the run that named the machine above say where and when
    later = sorted({f"{m} at {s} ({r['measured']})" for m in FIT_MODELS for s in sizes
                    if "measured" in (r := results.get(f"fit/{s}/{m}", {}))
                    and r["measured"] != results.get("meta/fit_run")})
    if later:
        lines.append("- measured in a later run than the rest of the table: " + "; ".join(later))
    for s in sizes:
        a, b = results.get(f"fit/{s}/ials", {}), results.get(f"fit/{s}/implicit", {})
        if "cpu_seconds" in a and "cpu_seconds" in b:
            ratio = a["cpu_seconds"] / b["cpu_seconds"]
            ok = ratio <= GOALS["ials_vs_implicit_cpu"]
            lines.append(f"- {s}: ials / implicit CPU time = {ratio:.2f} (goal <= "
                         f"{GOALS['ials_vs_implicit_cpu']}) {'met' if ok else 'MISSED'}")
            if not ok:
                failures.append(f"ials/implicit at {s}: {ratio:.2f}")
    batch = [(i, results[f"batch/{big}/{i}"]) for i in BATCH_INDEXES if f"batch/{big}/{i}" in results]
    if batch:
        lines += ["", f"## Batch top-100 ({big}: every user, `explorec recommend --artifact`)", "",
                  "| --index | how it ranked | users | items | s | peak RSS GB | recall@100 | "
                  "identical lists |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for index, b in batch:
            if "error" in b:
                lines.append(f"| {index} | error: {b['error'][:120]} | | | | | | |")
                failures.append(f"batch {index}: " + b["error"][:200])
                continue
            lines.append(f"| {index} | {b['note'][:90].replace('|', '/')} | {b['users']:,} | "
                         f"{b['items']:,} | {b['seconds']:.0f} | {b['peak_rss_gb']:.2f} | "
                         f"{b['recall_at_100']:.4f} | {100 * b['identical_lists']:.1f}% |")
        ref = batch[0][1]
        if "error" not in ref:
            lines.append(f"\nRecall and identical lists: on {ref['exact_users']:,} sampled users, "
                         "against ranking every item by `model.score` (the generic path: "
                         f"{ref['full_ranking_seconds']:.1f} s for them, "
                         f"{ref['full_ranking_seconds_all_users']:.0f} s for every user at that "
                         "rate).")
        b = dict(batch).get("auto")
        if b is None or "error" in b:
            failures.append("batch auto: not measured")
        else:
            for what, ok in (("seconds", b["seconds"] <= GOALS["batch_seconds"]),
                             ("recall", b["recall_at_100"] >= GOALS["batch_recall"]),
                             ("RSS", b["peak_rss_gb"] <= GOALS["batch_rss_gb"])):
                if not ok:
                    failures.append(f"batch {what}")
            lines.append(f"- goals for the default (<= {GOALS['batch_seconds']:.0f} s, recall >= "
                         f"{GOALS['batch_recall']}, RSS <= {GOALS['batch_rss_gb']} GB): "
                         + ("met" if not any(f.startswith("batch") for f in failures)
                            else "MISSED"))
    ann = sorted((k for k in results if k.startswith("ann/")), key=lambda k: int(k.split("/")[1]))
    if ann:
        lines += ["", "## ANN indexes (recall@100 against exact; ials item vectors)", "",
                  "| items | index | parameters | build s | ms/query batched | ms/query single "
                  "| recall@100 |",
                  "|---:|---|---|---:|---:|---:|---:|"]
        for key in ann:
            r = results[key]
            if "error" in r:
                lines.append(f"| {key.split('/')[1]} | error | {r['error'][:100]} | | | | |")
                continue
            for row in r["rows"]:
                params = ", ".join(f"{k}={row[k]}" for k in ("nlist", "nprobe", "m",
                                                             "ef_construction", "ef_search",
                                                             "scored_fraction")
                                   if k in row)
                if "note" in row:
                    lines.append(f"| {r['items']:,} | {row['kind']} | {row['note']} | | | | |")
                    continue
                lines.append(f"| {r['items']:,} | {row['kind']} | {params} | "
                             f"{row.get('build_seconds', 0):.1f} | {row['batched_ms_per_query']:.3f} | "
                             f"{row.get('single_ms_per_query', float('nan')):.3f} | "
                             f"{row['recall_at_100']:.4f} |")
    d = results.get(f"dask/{big}")
    if d:
        lines += ["", f"## Dask (LocalCluster, 2 workers) vs one process ({big} model, every "
                  "user, exact top-100)", ""]
        if "error" in d:
            lines.append(f"error: {d['error']}")
            failures.append("dask: " + d["error"][:200])
        else:
            if "measured" in d:
                lines.append(f"Measured {d['measured']} (`python benchmarks/scale.py --sizes "
                             f"{big} --only dask`).")
                lines.append("")
            lines.append(f"- one process {d['single_seconds']:.1f} s, Dask {d['dask_seconds']:.1f} s: "
                         f"ratio {d['overhead']:.2f} (goal <= {GOALS['dask_overhead']}); output "
                         f"identical: {d['identical']} ({d['rows']:,} rows)")
            if not d["identical"] or d["overhead"] > GOALS["dask_overhead"]:
                failures.append(f"dask: ratio {d['overhead']:.2f}, identical {d['identical']}")
    for key, r in results.items():
        if key.startswith(("fit/", "data/", "ann/")) and "error" in r:
            failures.append(f"{key}: {r['error'][:200]}")
    expected = [f"fit/{s}/{m}" for s in sizes for m in FIT_MODELS] + [
        *(f"batch/{big}/{i}" for i in BATCH_INDEXES), f"ann/{SIZES[big][1]}",
        f"ann/{10 * SIZES[big][1]}", f"dask/{big}"]
    missing = [k for k in expected if k not in results]
    if missing:  # a goal nobody measured is not met
        failures.append("not measured: " + ", ".join(missing))
    lines += ["", "Goals missed: " + ("; ".join(failures) if failures else "none")]
    name = "scale" if tag == "full" else "scale_quick"
    atomic_write_json(out / f"{name}.json", {"results": results, "goals": GOALS,
                                             "failures": failures, "environment": env,
                                             "command": cmd})
    atomic_write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
