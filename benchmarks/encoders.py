"""Encoder throughput, cache-hit cost, and new-item latency (issue #3 benchmarks).

    python benchmarks/encoders.py --output benchmarks/results

Measures on the real ML-100K catalog (1,682 item texts): items/s of all-MiniLM-L6-v2 and of
the TF-IDF fallback encoding the catalog cold (empty cache), the cost of the same call when
every text is cached, and the time from a new item's text to a rankable vector in a fitted
two-tower model (encode + item tower + insert), median of 20 items.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from explorec._io import atomic_write_json, atomic_write_text
from explorec.data import load_dataset, make_split
from explorec.data.catalog import DEFAULT_ITEM_TEMPLATE
from explorec.encoders import get_encoder
from explorec.encoders.cache import encode_cached
from explorec.report import environment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="benchmarks/results")
    args = ap.parse_args()
    console = Console()
    ds = load_dataset("ml-100k")
    texts = ds.catalog.texts(ds.interactions.items, DEFAULT_ITEM_TEMPLATE)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as cache_root:
        for name in ("minilm", "tfidf"):
            enc = get_encoder(name)
            if hasattr(enc, "fit"):
                enc.fit(texts)
            t = time.perf_counter()
            _ = enc.dim  # loading the weights is reported separately
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            encode_cached(enc, texts, cache_root=cache_root)
            cold = time.perf_counter() - t
            hits = []
            for _ in range(5):
                t = time.perf_counter()
                encode_cached(enc, texts, cache_root=cache_root)
                hits.append(time.perf_counter() - t)
            hit = statistics.median(hits)
            results[name] = {"model_load_s": load_s, "cold_encode_s": cold,
                             "items_per_s": len(texts) / cold, "cache_hit_s": hit,
                             "cache_hit_items_per_s": len(texts) / hit}
            console.print(f"{name}: {results[name]}")

    # new item: text -> rankable vector in a fitted two-tower (warm cache for the catalog)
    from explorec.models import create_model

    split = make_split(ds.interactions, "ratio", seed=2020)
    model = create_model("two-tower", epochs=1, progress=False).fit(
        split.train, catalog=ds.catalog, split=split)
    lat = []
    for i in range(20):
        text = f"Brand New Movie {i} ({2000 + i}). Genres: Comedy, Romance."
        t = time.perf_counter()
        model.add_items([f"new-{i}"], [text])
        model.score(split.test.active_users[:1])
        lat.append(time.perf_counter() - t)
    results["new_item_two_tower"] = {"median_s": statistics.median(lat), "max_s": max(lat)}
    report = {"items": len(texts), "results": results, "environment": environment(),
              "torch_threads": _threads(), "command": "python benchmarks/encoders.py"}
    out = Path(args.output)
    atomic_write_json(out / "encoders.json", report)
    atomic_write_text(out / "encoders.md", _markdown(report))
    console.print(_markdown(report))


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _markdown(r: dict) -> str:
    env = r["environment"]
    res = r["results"]
    lines = [
        "# Text encoders on the ML-100K catalog",
        "",
        f"{r['items']} item texts (title, year, genres). Machine: {env['platform']}, "
        f"{env['cpu_count']} cores, torch threads {r['torch_threads']}, CPU. "
        f"Command: `{r['command']}`.",
        "",
        "| encoder | weights load s | cold encode s | items/s | cache hit s (all items) | cached items/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("minilm", "tfidf"):
        e = res[name]
        lines.append(f"| {name} | {e['model_load_s']:.2f} | {e['cold_encode_s']:.2f} | "
                     f"{e['items_per_s']:.0f} | {e['cache_hit_s']:.4f} | "
                     f"{e['cache_hit_items_per_s']:.0f} |")
    n = res["new_item_two_tower"]
    lines += ["", f"New item, text to rankable vector in a fitted two-tower (MiniLM encode + item "
                  f"tower + insert + one user scored): median {n['median_s'] * 1000:.1f} ms, "
                  f"max {n['max_s'] * 1000:.1f} ms over 20 items."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
