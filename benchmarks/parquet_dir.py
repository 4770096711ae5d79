"""Interactions from a directory of Parquet files vs one file read whole through pandas.

Generates a hive-partitioned directory (``user_bucket=0..15``, several files and row groups per
bucket; seeded random user/item ids, ratings, timestamps, no duplicate pairs) and the same rows
as one Parquet file; then, each in a fresh process, reads the directory with
``load_interactions(DIR)`` (batch by batch, :mod:`explorec.data.parquet_dir`) and the single
file with ``load_interactions(FILE)`` (``pandas.read_parquet`` + ``Interactions.from_frame``).
Reports rows/s, the peak resident memory each read adds (``VmHWM`` after the read minus the
resident memory before it, the modules already imported) and checks that both give the
same arrays (sha256 over ids, codes, ratings and timestamps).

    python benchmarks/parquet_dir.py [--rows 20000000 --users 1000000 --items 100000]
                                     [--string-ids] [--skip-pandas] [--workdir DIR]

Exit status 1 when the two reads differ, or the directory read's peak exceeds the memory
estimate the reader checks before it starts (``parquet_dir.BYTES_PER_ROW`` per row plus
``parquet_dir.FIXED_BYTES``).
Results: benchmarks/results/parquet_dir.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BUCKETS = 16
FILES_PER_BUCKET = 4


def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss() -> int:
    """Peak resident memory of this process so far (bytes): ``VmHWM``, which starts afresh
    with the program (``ru_maxrss`` keeps the parent's peak across fork and exec on Linux,
    so a child started by a process holding the generated data would report that)."""
    hwm = _status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_now() -> int:
    """Resident memory now (bytes): the baseline a read's peak is measured from."""
    now = _status("VmRSS")
    return now if now is not None else _rss()


def generate(workdir: Path, rows: int, users: int, items: int, string_ids: bool,
             seed: int = 2020) -> tuple[Path, Path]:
    """(directory, single file) holding the same ``rows`` distinct (user, item) pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    # distinct pairs: draw a few more keys than needed, drop repeats, keep `rows` of them
    keys = np.unique(rng.integers(0, users * items, int(rows * 1.02) + 1000, dtype=np.int64))
    keys = rng.permutation(keys)[:rows]
    if len(keys) < rows:
        raise SystemExit(f"users x items too small for {rows:,} distinct pairs")
    user, item = keys // items, keys % items
    del keys
    rating = rng.integers(1, 6, rows).astype(np.float32)
    ts = rng.integers(1_600_000_000, 1_700_000_000, rows)
    directory, single = workdir / "events", workdir / "events.parquet"

    def table(sel: np.ndarray | slice) -> pa.Table:
        u, i = user[sel], item[sel]
        cols = {"user": pa.array(u), "item": pa.array(i)}
        if string_ids:
            cols = {"user": pa.array(np.char.add("u", u.astype("U"))),
                    "item": pa.array(np.char.add("sku-", i.astype("U")))}
        return pa.table({**cols, "rating": pa.array(rating[sel]), "ts": pa.array(ts[sel])})

    bucket = user % BUCKETS
    for b in range(BUCKETS):
        rows_b = np.flatnonzero(bucket == b)
        (directory / f"user_bucket={b}").mkdir(parents=True)
        for k, chunk in enumerate(np.array_split(rows_b, FILES_PER_BUCKET)):
            pq.write_table(table(chunk), directory / f"user_bucket={b}" / f"part-{k}.parquet",
                           row_group_size=1 << 18)
    writer = None
    for chunk in np.array_split(np.arange(rows), max(1, rows // 2_000_000)):
        t = table(chunk)
        writer = writer or pq.ParquetWriter(single, t.schema)
        writer.write_table(t, row_group_size=1 << 20)
    assert writer is not None
    writer.close()
    return directory, single


def digest(inter: object) -> str:
    h = hashlib.sha256()
    for idmap in (inter.users, inter.items):  # type: ignore[attr-defined]
        h.update("\x00".join(map(str, idmap.ids)).encode())
    for f in ("user", "item", "rating", "timestamp"):
        arr = getattr(inter, f)
        h.update(f.encode() + (b"-" if arr is None else np.ascontiguousarray(arr).tobytes()))
    return h.hexdigest()


def read_one(path: str, batch_size: int | None) -> dict:
    from explorec.data import load_interactions

    cols = {"user": "user", "item": "item", "rating": "rating", "timestamp": "ts"}
    before = _rss_now()
    t0 = time.perf_counter()
    inter = load_interactions(path, columns=cols, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    return {"rows": len(inter), "users": inter.n_users, "items": inter.n_items,
            "seconds": seconds, "rows_per_s": len(inter) / seconds,
            "rss_before": before, "rss_peak": _rss(), "added_bytes": _rss() - before,
            "sha256": digest(inter)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--string-ids", action="store_true", help="ids as text ('u123', 'sku-7')")
    ap.add_argument("--skip-pandas", action="store_true", help="only read the directory")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated files here")
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(read_one(args.one, args.batch_size)))
        return 0
    from explorec.data.parquet_dir import BYTES_PER_ROW, FIXED_BYTES
    from explorec.memory import format_bytes

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="explorec-parquet-dir-")
        workdir = Path(tmp)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        directory, single = generate(workdir, args.rows, args.users, args.items, args.string_ids)
        gen_s = time.perf_counter() - t0
        n_files = sum(1 for _ in directory.rglob("*.parquet"))
        print(f"generated {args.rows:,} rows in {n_files} files + one file in {gen_s:.0f} s",
              flush=True)
        results: dict[str, dict] = {}
        for name, path in (("directory", directory), ("pandas single file", single)):
            if name != "directory" and args.skip_pandas:
                continue
            cmd = [sys.executable, __file__, "--one", str(path)]
            if args.batch_size:
                cmd += ["--batch-size", str(args.batch_size)]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr[-2000:])
                results[name] = {"error": p.stderr.strip().splitlines()[-1:]}
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            results[name] = r
            print(f"{name:20s} {r['seconds']:7.1f} s  {r['rows_per_s'] / 1e6:5.2f} M rows/s  "
                  f"peak +{format_bytes(r['added_bytes'])} (RSS {format_bytes(r['rss_peak'])})",
                  flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    failures = [f"{k}: {v['error']}" for k, v in results.items() if "error" in v]
    d, s = results.get("directory", {}), results.get("pandas single file", {})
    identical = None
    if "sha256" in d and "sha256" in s:
        identical = d["sha256"] == s["sha256"]
        if not identical:
            failures.append("the directory and the single file gave different interactions")
    estimate = args.rows * BYTES_PER_ROW + FIXED_BYTES
    if "added_bytes" in d and d["added_bytes"] > estimate:
        failures.append(f"directory read peak {format_bytes(d['added_bytes'])} above the "
                        f"reader's estimate {format_bytes(estimate)}")
    command = "python benchmarks/parquet_dir.py " + " ".join(sys.argv[1:])
    report = {"rows": args.rows, "users": args.users, "items": args.items,
              "string_ids": args.string_ids, "files": n_files, "batch_size": args.batch_size,
              "estimate_bytes": estimate, "results": results, "identical": identical,
              "failures": failures, "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "command": command}
    from explorec._io import atomic_write_text

    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output / "parquet_dir.json", json.dumps(report, indent=2) + "\n")
    kind = "text ids" if args.string_ids else "integer ids"
    md = [f"# Interactions from a Parquet directory vs one pandas frame ({args.rows:,} rows, "
          f"{kind}, {n_files} files)", "", f"`{command}` on {os.cpu_count()} CPUs", "",
          "| read | seconds | M rows/s | peak RSS added | peak RSS | bytes/row |",
          "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        if "error" in r:
            md.append(f"| {name} | failed: {r['error']} | | | | |")
            continue
        md.append(f"| {name} | {r['seconds']:.1f} | {r['rows_per_s'] / 1e6:.2f} | "
                  f"{format_bytes(r['added_bytes'])} | {format_bytes(r['rss_peak'])} | "
                  f"{r['added_bytes'] / args.rows:.0f} |")
    md += ["", f"Same interactions from both: {identical}. The reader's up-front memory "
           f"estimate for this size: {format_bytes(estimate)} ({BYTES_PER_ROW} bytes/row + "
           f"{format_bytes(FIXED_BYTES)})."]
    atomic_write_text(args.output / "parquet_dir.md", "\n".join(md) + "\n")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
