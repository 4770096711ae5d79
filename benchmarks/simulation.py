"""Exploration benchmark (issue #4): bandit policies in the ML-100K simulator.

    python benchmarks/simulation.py --rounds 50000 --seeds 2020,2021,2022 --output benchmarks/results

The base model (``--bases``, default ``ease``) is shared by all policies run on it: it picks
the candidates and gives greedy its scores. On ``ease``: greedy, egreedy, softmax, ucb, ts,
linucb, lints, neural-linear (on the embeddings of a two-tower model fit on the same logged
data) and Vowpal Wabbit (``vw``). ``--bases ease,two-tower`` adds a second table with
greedy, egreedy, lints and neural-linear on a two-tower base.

Writes ``simulation_ml100k.{md,json}`` and ``simulation_ml100k_<base>.png``, times 100,000
rounds of ``lints`` (the speed goal: under a minute on 2 cores), and exits non-zero when the
issue's acceptance does not hold on either base: linear TS or neural-linear beats greedy and
epsilon-greedy in cumulative clicks and reaches a new user's first click in fewer visits
than greedy; greedy has the lowest coverage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from explorec._io import atomic_write_json, atomic_write_text
from explorec.data import load_dataset
from explorec.encoders import get_encoder
from explorec.encoders.items import encode_items
from explorec.evaluate.significance import noise_lines
from explorec.report import environment
from explorec.simulate import build_environment, fit_base_model, make_policy, run_policy, simulate
from explorec.simulate.report import markdown_table, plot_curves, summarize

CONFIGS = {
    "ease": ["greedy", "egreedy", "softmax", "ucb", "ts", "linucb", "lints", "neural-linear", "vw"],
    "two-tower": ["greedy", "egreedy", "lints", "neural-linear"],
}


def check(rows: list[dict]) -> list[str]:
    """The acceptance statements for one base model; returns the failures."""
    by = {r["policy"]: r for r in rows}
    fails = []
    learners = [p for p in ("lints", "neural-linear") if p in by]
    ok = [p for p in learners
          if by[p]["cumulative_reward"] > max(by["greedy"]["cumulative_reward"],
                                              by["egreedy"]["cumulative_reward"])
          and by[p]["new_user_first_click_rounds"] < by["greedy"]["new_user_first_click_rounds"]]
    if not ok:
        fails.append(f"neither of {learners} beats greedy and egreedy in clicks while reaching new "
                     "users' first click sooner than greedy")
    lowest = min(rows, key=lambda r: r["coverage"])["policy"]
    if lowest != "greedy":
        fails.append(f"lowest coverage is {lowest}, not greedy")
    return fails


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=50_000)
    ap.add_argument("--slate-size", type=int, default=5)
    ap.add_argument("--seeds", default="2020,2021,2022")
    ap.add_argument("--bases", default="ease")
    ap.add_argument("--speed-rounds", type=int, default=100_000)
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    console = Console(stderr=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    ds = load_dataset("ml-100k")
    vectors = encode_items(ds.interactions.items, ds.catalog, get_encoder("minilm"))

    report: dict = {"rounds": args.rounds, "slate_size": args.slate_size, "seeds": seeds,
                    "command": "python " + " ".join(sys.argv), "environment": environment(),
                    "bases": {}}
    md = [f"# Exploration policies in the ML-100K simulator ({args.rounds:,} rounds, slate "
          f"{args.slate_size}, seeds {args.seeds})", "",
          f"Command: `python {' '.join(sys.argv)}`. Machine: {environment()['cpu_count']}-core "
          f"{environment()['machine']}, CPU only; "
          "mean ± std over seeds. Clicks are realised; regret is expected clicks lost against "
          "an oracle that knows the click probabilities and picks from the same candidates.", ""]
    failures = []
    for base in args.bases.split(","):
        def done(r, _base=base):  # type: ignore[no-untyped-def]
            console.print(f"[{_base}] {r.policy} seed {r.seed}: clicks {r.cumulative_reward:.0f} "
                          f"regret {r.cumulative_regret:.0f} coverage {r.coverage:.3f} "
                          f"new-user {r.new_user_first_click_rounds:.2f} ({r.seconds:.0f} s)")

        results = simulate(ds, CONFIGS[base], item_vectors=vectors, rounds=args.rounds,
                           slate_size=args.slate_size, seeds=seeds, model=base, on_result=done)
        rows = summarize(results)
        fails = check(rows)
        failures += [f"{base}: {f}" for f in fails]
        png = args.output / f"simulation_ml100k_{base.replace('-', '_')}.png"
        plot_curves(results, png)
        report["bases"][base] = {"summary": rows, "results": [r.to_dict() for r in results],
                                 "acceptance_failures": fails}
        clicks: dict[str, list[float]] = {}
        for r in sorted(results, key=lambda r: r.seed):
            clicks.setdefault(r.policy, []).append(float(r.cumulative_reward))
        noise = noise_lines(clicks, what="cumulative clicks", digits=1)
        for line in noise:
            console.print(escape(f"[{base}] {line}"), highlight=False)
        md += [f"## Base model: {base}", "", markdown_table(rows), "",
               "Against the best policy, seed by seed (paired t-test over seeds; within noise: "
               "p >= 0.05):", "", *noise, "",
               f"Acceptance: {'met' if not fails else 'NOT met: ' + '; '.join(fails)}.", "",
               f"![curves]({png.name})", ""]

    # speed: one lints run of --speed-rounds on the ease base
    env = build_environment(ds, item_vectors=vectors, seed=seeds[0])
    base_model = fit_base_model(env, ds, "ease", seed=seeds[0])
    t = time.perf_counter()
    run_policy(env, make_policy("lints", env, base_model, seed=seeds[0]), base_model,
               rounds=args.speed_rounds, slate_size=args.slate_size, seed=seeds[0])
    secs = time.perf_counter() - t
    report["speed"] = {"policy": "lints", "rounds": args.speed_rounds, "seconds": secs}
    md += ["## Speed", "", f"`lints` on the ease base: {args.speed_rounds:,} rounds in {secs:.1f} s "
           "(goal: under 60 s on 2 cores).", ""]
    if secs > 60:
        failures.append(f"speed: {args.speed_rounds} rounds of lints took {secs:.1f} s")
    report["acceptance_failures"] = failures
    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output / "simulation_ml100k.json", report)
    atomic_write_text(args.output / "simulation_ml100k.md", "\n".join(md))
    console.print(f"wrote {args.output / 'simulation_ml100k.md'}")
    if failures:
        console.print("[red]acceptance not met:[/red] " + "; ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
