"""``explorec tune``: Optuna search of a model's parameters on validation NDCG@10."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from explorec.cli.common import DataInputs, console, data_command, out
from explorec.cli.report import HtmlOpt, write_html_option
from explorec.errors import ExploRecError


@data_command()
def tune(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    data: DataInputs,
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Optuna trials.")] = 30,
    split: Annotated[str | None, typer.Option(
        "--split", help="ratio | loo | temporal | cold-items (default: loo for next-item "
        "models, ratio otherwise).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the split, the sampler and "
                                      "the models.")] = 2020,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Stop after this many "
                                                  "seconds (finishing the running batch of trials).")
                       ] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Fix a parameter in every trial: NAME=VALUE (repeatable).")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write the result (default benchmarks/results/tuning/MODEL.json when "
        "that folder exists).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Run trials on Dask: 'processes' (a LocalCluster, one worker per "
        "core) or tcp://HOST:8786 (docs/scale.md). Default: this process.")] = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", min=1, help="Trials proposed at a time and run in parallel (default: 1 in "
        "this process, the number of workers with --scheduler). The trials proposed depend on "
        "it, not on --scheduler: the same --batch gives the same result with or without one.")
    ] = None,
    html_path: HtmlOpt = None,
) -> None:
    """Tune a model on validation NDCG@10 (seeded TPE; trial 0 is the current defaults)."""
    from explorec import scale
    from explorec._io import atomic_write_json
    from explorec.cli.common import check_output, fail
    from explorec.data import make_split
    from explorec.evaluate.tuning import default_split_for, tune_model
    from explorec.models.registry import model_class
    from explorec.report import environment

    try:
        from explorec.cli.service import model_params_from_flags
        from explorec.models.params import validate_params

        model_class(model)
        fixed = model_params_from_flags(param, model)
        validate_params(model, model_class(model), fixed)
        check_output(json_path, "--json")
        check_output(html_path, "--html")
        scale.check_scheduler(scheduler)
        split_name = split or default_split_for(model)
        ds = data.load()
        sp = make_split(ds.interactions, split_name, seed=seed)

        def report(n: int, value: float, params: dict[str, Any]) -> None:
            console.print(f"trial {n:3d}  valid ndcg@10 {value:.4f}  {json.dumps(params)}")

        with scale.dask_client(scheduler) as client:
            result = tune_model(model, sp, trials=trials, seed=seed, catalog=ds.catalog,
                                fixed=fixed, timeout=timeout, callback=report,
                                batch=batch or scale.n_workers(client), client=client)
    except (ExploRecError, ValueError, ImportError, typer.BadParameter) as e:
        fail(e)
    result.update({"dataset": ds.name, "command": "explorec " + shlex.join(sys.argv[1:]),
                   "environment": environment()})
    table = Table(title=f"tuned {model} on {ds.name} ({split_name}, seed {seed})")
    for c in ("", "valid ndcg@10", "parameters"):
        table.add_column(c)
    table.add_row("defaults", f"{result['default_value']:.4f}", "")
    table.add_row("best", f"{result['best_value']:.4f}", json.dumps(result["best_params"]))
    out.print(table)
    target = json_path
    default_dir = Path("benchmarks/results/tuning")
    if target is None and default_dir.is_dir():
        target = default_dir / f"{model}.json"
    if target is not None:
        atomic_write_json(target, result)
        console.print(f"wrote {target}")
    write_html_option(result, html_path, source=str(target or "explorec tune"))


def register(app: typer.Typer) -> None:
    """Add ``tune`` to the ``explorec`` command line."""
    app.command("tune")(tune)
