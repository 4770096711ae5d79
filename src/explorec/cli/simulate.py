"""``explorec simulate``: run exploration policies against simulated users built from real data."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from explorec.cli.common import DataInputs, data_command
from explorec.cli.report import HtmlOpt, write_html_option

SIMULATE_HELP = """Run bandit policies against a simulator built from real ratings.

Reports cumulative clicks and regret against the oracle, CTR over time, catalog coverage and
how fast new users and new items get their first click, and the value of exploration:
clusters clicked per user, new interests per 1,000 visits, users retained, visits per user,
intra-list diversity, novelty, items with >= 5 clicks and catalog coverage (see
docs/exploration.md). --dynamics interests adds dormant interests, satiation and users who
leave after a run of click-less visits (explorec.simulate.dynamics)."""

_DYNAMICS_OPTIONS = {"dormant_factor": "--dormant-factor", "satiation_rate": "--satiation-rate",
                     "satiation_window": "--satiation-window", "patience": "--patience",
                     "away_rounds": "--away-rounds", "p_quit": "--p-quit"}


@data_command()
def simulate_command(
    data: DataInputs,
    policies: Annotated[str, typer.Option(
        "--policies", "-p", help="Comma-separated policy names (explorec simulate --list).")
    ] = "greedy,egreedy,softmax,ucb,ts,linucb,lints",
    rounds: Annotated[int, typer.Option("--rounds", "-n", min=1, help="Rounds (user visits) per run.")
                      ] = 10_000,
    slate_size: Annotated[int, typer.Option("--slate-size", "-k", min=1, help="Items per slate.")] = 5,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Number of repetitions.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0,
                                      help="First seed; repetitions use seed, seed+1, ...")] = 2020,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Base recommender for candidates and greedy scores (any that scores "
        "histories: ease, itemknn, pop, content, two-tower).")
    ] = "ease",
    encoder: Annotated[str, typer.Option("--encoder", help="Item text encoder: minilm | tfidf | PATH.")
                       ] = "minilm",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rounds per learning step.")
                          ] = 100,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="POLICY.NAME=VALUE policy parameter, repeatable (e.g. egreedy.epsilon=0.05).")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Write curves as PNG.")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown table.")
                             ] = None,
    html_path: HtmlOpt = None,
    list_policies: Annotated[bool, typer.Option("--list", help="List the policies and exit.")] = False,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Run the policy x seed runs on Dask: 'processes' (a LocalCluster, one "
        "worker per core) or tcp://HOST:8786 (docs/scale.md). Results equal this process's. "
        "Default: this process.")] = None,
    dynamics: Annotated[str, typer.Option(
        "--dynamics", help="User model: 'static' (fixed click probabilities) or 'interests' "
        "(dormant interests, satiation, leaving).")] = "static",
    dormant_factor: Annotated[float | None, typer.Option(
        "--dormant-factor", min=0.0, max=1.0,
        help="interests: click factor of a dormant cluster until its first click (default 0.2).")
    ] = None,
    satiation_rate: Annotated[float | None, typer.Option(
        "--satiation-rate", min=0.0,
        help="interests: factor exp(-rate * exposures of the cluster in the window) (default 0.05).")
    ] = None,
    satiation_window: Annotated[int | None, typer.Option(
        "--satiation-window", min=1, help="interests: shown items remembered for satiation (default 20).")
    ] = None,
    patience: Annotated[int | None, typer.Option(
        "--patience", min=1, help="interests: click-less visits in a row before a user leaves (default 5).")
    ] = None,
    away_rounds: Annotated[int | None, typer.Option(
        "--away-rounds", min=0, help="interests: rounds a user who left stays away (default 500).")
    ] = None,
    p_quit: Annotated[float | None, typer.Option(
        "--p-quit", min=0.0, max=1.0,
        help="interests: probability that a user who leaves never comes back (default 0.1).")] = None,
) -> None:
    from explorec.cli.common import check_output, console, fail, out, parse_list, parse_params
    from explorec.errors import ExploRecError

    dataset = data.dataset

    if list_policies:
        from explorec.explore import describe_policy, policy_names

        for name in policy_names():
            out.print(f"{name:14s} {describe_policy(name)}")
        return
    try:
        names = parse_list(policies, "policy")
        from explorec.explore import policy_names

        unknown = [n for n in names if n not in policy_names()]
        if unknown:
            raise ValueError(f"--policies: unknown {unknown}; known: {', '.join(policy_names())}")
        params = parse_params(param)
        bad = [p for p in params if p not in names]
        if bad:
            raise ValueError(f"--param names policies {bad} that are not in --policies")
        for n in names:  # every policy's parameters are checked before anything is fitted
            from explorec.explore import create_policy

            create_policy(n, **params.get(n, {}))
        for flag, path in (("--json", json_path), ("--plot", plot_path),
                           ("--markdown", markdown_path), ("--html", html_path)):
            check_output(path, flag)
        from explorec.scale import check_scheduler

        check_scheduler(scheduler)
        given = {k: v for k, v in (("dormant_factor", dormant_factor), ("satiation_rate", satiation_rate),
                                   ("satiation_window", satiation_window), ("patience", patience),
                                   ("away_rounds", away_rounds), ("p_quit", p_quit)) if v is not None}
        dyn_params = _dynamics_params(dynamics, given)
        base = model
        results = _run(data, names, rounds, slate_size, list(range(seed, seed + seeds)), base,
                       encoder, batch_size, params, scheduler, dyn_params)
    except (ExploRecError, ValueError, KeyError, typer.BadParameter) as err:
        fail(err)
    from explorec.simulate.report import (
        EXPLORATION_FIELDS,
        SUMMARY_FIELDS,
        markdown_table,
        plot_curves,
        summarize,
    )

    rows = summarize(results)
    table = Table(title=f"Simulation on {dataset}: {rounds:,} rounds, slate {slate_size}, "
                        f"{seeds} seed(s) from {seed}, base model {base}")
    table.add_column("policy")
    from explorec.simulate.report import FIELD_LABELS, format_cell

    for f in SUMMARY_FIELDS:
        table.add_column(FIELD_LABELS[f], justify="right")
    for r in rows:
        table.add_row(r["policy"], *(format_cell(r[f], r[f + "_std"], f) for f in SUMMARY_FIELDS))
    out.print(table)
    value = Table(title=f"Value of exploration ({dynamics} users)")
    value.add_column("policy")
    for f in EXPLORATION_FIELDS:
        value.add_column(FIELD_LABELS[f], justify="right")
    for r in rows:
        value.add_row(r["policy"], *(format_cell(r[f], r[f + "_std"], f) for f in EXPLORATION_FIELDS))
    out.print(value)
    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.report import environment

    command = "explorec simulate " + shlex.join(sys.argv[2:] if len(sys.argv) > 1 and
                                                sys.argv[1] == "simulate" else sys.argv[1:])
    meta = {"dataset": dataset, "rounds": rounds, "slate_size": slate_size, "seeds": seeds,
            "seed": seed, "model": base, "encoder": encoder, "batch_size": batch_size,
            "dynamics": dynamics,
            "dynamics_params": None if dyn_params is None else dyn_params.__dict__,
            "command": command, "environment": environment()}
    report = {**meta, "summary": rows, "results": [r.to_dict() for r in results]}
    if json_path:
        atomic_write_json(json_path, report)
        console.print(f"wrote {json_path}")
    if markdown_path:
        from explorec.evaluate.significance import noise_lines

        clicks: dict[str, list[float]] = {}
        for r in sorted(results, key=lambda r: r.seed):
            clicks.setdefault(r.policy, []).append(float(r.cumulative_reward))
        noise = noise_lines(clicks, what="cumulative clicks", digits=1)
        text = (f"# Simulation: {dataset}, {rounds:,} rounds, slate {slate_size}, base model {base}\n\n"
                f"Seeds {seed}..{seed + seeds - 1}; mean ± std over seeds. Command: `{command}`\n\n"
                + markdown_table(rows) + "\n\n"
                + ("Differences against the best policy, seed by seed (paired t-test over "
                   "seeds; within noise: p >= 0.05):\n\n" + "\n".join(noise) + "\n\n"
                   if noise else "")
                + f"## Value of exploration ({dynamics} users)\n\n"
                + markdown_table(rows, EXPLORATION_FIELDS) + "\n")
        atomic_write_text(markdown_path, text)
        console.print(f"wrote {markdown_path}")
    if plot_path:
        plot_curves(results, plot_path)
        console.print(f"wrote {plot_path}")
    write_html_option(report, html_path, source=str(json_path or "explorec simulate"))


def _run(data: DataInputs, names: list[str], rounds: int, slate_size: int, seeds: list[int],
         model: str, encoder: str, batch_size: int, params: dict[str, dict[str, Any]],
         scheduler: str | None = None, dynamics: Any = None) -> list[Any]:
    from explorec import scale
    from explorec.cli.common import console, progress, stage
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items

    enc = get_encoder(encoder)
    ds = data.load()
    if ds.interactions.rating is None:
        raise ValueError(f"--dataset {data.dataset!r} has no ratings; the simulator derives click "
                         "probabilities from ratings (map a rating column with --columns)")
    from explorec.explore import policy_class
    from explorec.models.registry import model_class

    text_models = {"content", "two-tower", "hybrid"}
    needs_text = model in text_models or any(
        getattr(policy_class(n), "needs_item_text", False) for n in names)
    if ds.catalog is None and not needs_text:
        import numpy as np

        model_class(model)
        vectors = np.zeros((ds.interactions.n_items, 1))  # no policy here reads item text
    else:
        with stage(f"encode {ds.interactions.n_items:,} item texts with {encoder}"):
            vectors = encode_items(ds.interactions.items, ds.catalog, enc)
    from explorec.simulate import simulate

    with scale.dask_client(scheduler) as client, progress() as p:
        tasks = {}

        def advance(name: str, n: int) -> None:
            if name not in tasks:
                tasks[name] = p.add_task(f"{name}", total=rounds * len(seeds))
            p.advance(tasks[name], n)

        def done(res: Any) -> None:
            console.print(f"  {res.policy} seed {res.seed}: clicks {res.cumulative_reward:.0f}, "
                          f"regret {res.cumulative_regret:.1f}, {res.seconds:.1f} s")

        return simulate(ds, names, item_vectors=vectors, rounds=rounds, slate_size=slate_size,
                        seeds=seeds, model=model, batch_size=batch_size, policy_params=params,
                        progress=advance, on_result=done, client=client, dynamics=dynamics)


def _dynamics_params(dynamics: str, given: dict[str, Any]) -> Any:
    """The :class:`~explorec.simulate.dynamics.DynamicsParams` of ``--dynamics`` (None: static)."""
    if dynamics not in ("static", "interests"):
        raise ValueError(f"--dynamics must be 'static' or 'interests', got {dynamics!r}")
    if dynamics == "static":
        if given:
            flags = ", ".join(_DYNAMICS_OPTIONS[k] for k in given)
            raise ValueError(f"{flags} only apply with --dynamics interests")
        return None
    from explorec.simulate.dynamics import DynamicsParams

    return DynamicsParams(**given)


def register(app: typer.Typer) -> None:
    app.command("simulate", help=SIMULATE_HELP)(simulate_command)

