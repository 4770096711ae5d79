"""CLI for the online service: ``explorec train``, ``serve``, ``retrain`` and ``ope --log``.

Registered on the main app by :func:`register`; helpers from :mod:`explorec.cli.main` are
imported inside the commands (that module imports this one at its end).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from explorec.cli.common import DataInputs, SeedOpt, data_command


def _kv(values: list[str] | None, what: str) -> dict[str, Any]:
    from explorec.cli.common import parse_kv

    return parse_kv(values, what)


@data_command()
def train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Artifact directory to write.")],
    data: DataInputs,
    model: Annotated[str, typer.Option("--model", help="Model name (see `explorec models`).")] = "ease",
    policy: Annotated[str, typer.Option("--policy", help="greedy, egreedy, softmax, ucb, ts, linucb, "
                                        "lints, neural-linear, vw, mmr")] = "egreedy",
    encoder: Annotated[str, typer.Option("--encoder", help="Item text encoder for non-text models: "
                                         "minilm or tfidf.")] = "minilm",
    vector_dim: Annotated[int, typer.Option("--vector-dim", min=0, help="PCA size of the stored item "
                                            "vectors (0 = keep the encoder's).")] = 64,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Model parameter NAME=VALUE (or MODEL.NAME=VALUE); `explorec models MODEL` "
        "lists them.")] = None,
    policy_param: Annotated[list[str] | None, typer.Option(
        "--policy-param", help="Policy parameter NAME=VALUE (e.g. epsilon=0.1).")] = None,
    seed: SeedOpt = 2020,
) -> None:
    """Train a model on a whole dataset and package it with item vectors, catalog and policy."""
    from explorec.cli.common import console, fail, out
    from explorec.errors import ExploRecError
    from explorec.explore import create_policy, policy_class
    from explorec.models.params import validate_params
    from explorec.models.registry import model_class
    from explorec.serve.artifact import train_artifact

    try:
        if output.exists() and not output.is_dir():
            raise typer.BadParameter(f"--output {output} is a file; give a directory")
        model_params = model_params_from_flags(param, model)
        validate_params(model, model_class(model), model_params)
        policy_params = _kv(policy_param, "--policy-param")
        policy_class(policy)
        create_policy(policy, **policy_params)  # bad policy parameters fail before any fitting
        ds = data.load()
        path = train_artifact(output, dataset=ds, model=model, policy=policy, encoder=encoder,
                              vector_dim=vector_dim, model_params=model_params,
                              policy_params=policy_params, seed=seed,
                              progress=lambda m: console.print(m, highlight=False))
        from explorec.serve.artifact import load_service_artifact

        art = load_service_artifact(path)
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)
    out.print(f"wrote service artifact {path} (id {art.artifact_id}): {art.manifest['model']} + "
              f"{art.policy_name}, {art.n_items} items, vectors {art.item_vectors.shape[1]}-d "
              f"({art.encoder_name})")


def model_params_from_flags(values: list[str] | None, model: str) -> dict[str, Any]:
    """``--param NAME=VALUE`` (or ``MODEL.NAME=VALUE`` naming this command's model)."""
    out: dict[str, Any] = {}
    for key, value in _kv(values, "--param").items():
        if "." in key:
            owner, _, name = key.partition(".")
            if owner != model:
                raise typer.BadParameter(f"--param {key}: this command trains {model!r}, not "
                                         f"{owner!r}")
            key = name
        out[key] = value
    return out


def serve(
    artifact: Annotated[str | None, typer.Option("--artifact", "-a", help="Service artifact directory "
                                                 "(or EXPLOREC_ARTIFACT).")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="sqlite:///PATH (embedded, default sqlite:///explorec-service.db) or "
        "redis://HOST:PORT/DB (shared); or EXPLOREC_STORE.")] = None,
    host: Annotated[str, typer.Option("--host", help="Bind address; non-loopback needs API keys.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Server processes (share the store).")
                       ] = 1,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log",
                                             help="Log each request line (never headers, keys, "
                                                  "query strings or ids: those are hashed).")
                          ] = False,
    artifact_root: Annotated[str | None, typer.Option(
        "--artifact-root", help="Directory hot swaps may load artifacts from (default: the one "
        "holding --artifact; or EXPLOREC_ARTIFACT_ROOT).")] = None,
) -> None:
    """Serve the rank/reward API (FastAPI + uvicorn; OpenAPI at /docs).

    API keys come from EXPLOREC_READ_KEYS, EXPLOREC_WRITE_KEYS and EXPLOREC_ADMIN_KEYS
    (comma-separated); other settings from the EXPLOREC_* variables described in
    docs/service.md.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # before numpy/scipy start their thread pools
    from explorec.cli.common import fail
    from explorec.errors import ExploRecError
    from explorec.serve.config import ServiceConfig
    from explorec.serve.server import run

    try:
        config = ServiceConfig.from_env(artifact=artifact, store=store, artifact_root=artifact_root)
        run(config, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log)
    except ExploRecError as e:
        fail(e)


def retrain(
    from_log: Annotated[str, typer.Option("--from-log", help="Store URL of the service's log.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New artifact directory.")],
    artifact: Annotated[str | None, typer.Option(
        "--artifact", "-a", help="Base artifact (default: the one the service last served).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model (default: the base's).")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Policy (default: the base's).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Model parameter NAME=VALUE.")
                     ] = None,
    policy_param: Annotated[list[str] | None, typer.Option("--policy-param",
                                                           help="Policy parameter NAME=VALUE.")] = None,
    replay: Annotated[bool, typer.Option("--replay/--no-replay",
                                         help="Warm-start the new policy on every logged reward.")
                      ] = True,
    items: Annotated[Path | None, typer.Option(
        "--items", help="Item file whose texts replace the base artifact's (for the items it "
        "lists).")] = None,
    item_columns: Annotated[str | None, typer.Option(
        "--item-columns", help="Item file columns: item=ID_COLUMN[,FIELD=COLUMN...].")] = None,
    template: Annotated[str | None, typer.Option(
        "--template", help="Item text from the item file's fields, e.g. '{name}. {description}'.")
    ] = None,
) -> None:
    """Train a new artifact on the base artifact's data plus every logged interaction and item."""
    from explorec.cli.common import console, fail, out, parse_mapping
    from explorec.errors import ExploRecError
    from explorec.serve.artifact import load_service_artifact
    from explorec.serve.retrain import retrain_from_log
    from explorec.serve.stores import open_store

    try:
        if output.exists() and not output.is_dir():
            raise typer.BadParameter(f"--output {output} is a file; give a directory")
        catalog = None
        if items is not None:
            from explorec.data import load_catalog

            catalog = load_catalog(items, columns=parse_mapping(item_columns, "--item-columns"),
                                   template=template)
        elif item_columns or template:
            raise typer.BadParameter("--item-columns and --template need --items FILE")
        _existing_store(from_log, "--from-log")
        st = open_store(from_log)
        try:
            base = artifact or st.meta_get("artifact_path")
            if not base:
                raise ExploRecError("no --artifact given and the store does not name one")
            path = retrain_from_log(st, output, base=base, model=model, policy=policy,
                                    catalog=catalog,
                                    model_params=_kv(param, "--param") if param else None,
                                    policy_params=_kv(policy_param, "--policy-param") if policy_param
                                    else None, replay=replay, progress=lambda m: console.print(m))
        finally:
            st.close()
        art = load_service_artifact(path)
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)
    out.print(f"wrote {path} (id {art.artifact_id}): {art.n_items} items, "
              f"{art.manifest['n_interactions']} interactions, "
              f"{art.manifest.get('replayed_rewards', 0)} rewards replayed; hot-swap it with "
              "POST /v1/admin/reload or SIGHUP")


def ope_from_log(log: str, policy: str, *, artifact: str | None, policy_params: dict[str, Any],
                 estimators: str, n_bootstrap: int, seed: int, json_path: Path | None,
                 markdown_path: Path | None, html_path: Path | None = None) -> None:
    """``explorec ope --log STORE --policy NAME``: evaluate a policy on the service's log."""
    from rich.table import Table

    from explorec._io import atomic_write_json, atomic_write_text
    from explorec.cli.common import console, fail, out, parse_list
    from explorec.errors import ExploRecError
    from explorec.serve.artifact import load_service_artifact
    from explorec.serve.ope_log import LOG_ESTIMATORS, evaluate_log
    from explorec.serve.stores import open_store

    try:
        _existing_store(log, "--log")
        names = tuple(parse_list(estimators, "estimator"))
        names = tuple(n for n in names if n in LOG_ESTIMATORS) or LOG_ESTIMATORS
        st = open_store(log)
        try:
            base = artifact or st.meta_get("artifact_path")
            if not base:
                raise ExploRecError("no --artifact given and the store does not name one")
            art = load_service_artifact(base)
            report = evaluate_log(st, art, policy, policy_params=policy_params, estimators=names,
                                  n_bootstrap=n_bootstrap, seed=seed)
        finally:
            st.close()
    except (ExploRecError, ValueError, typer.BadParameter) as e:
        fail(e)
    report["command"] = "explorec " + shlex.join(sys.argv[1:])
    table = Table(title=f"OPE of {policy} on the service log ({report['rows']} shown slots, "
                        f"{report['events']} slates)")
    for c in ("estimator", "estimate", "95% CI"):
        table.add_column(c, justify="left" if c == "estimator" else "right")
    for e in report["estimates"]:
        table.add_row(e["estimator"], f"{e['estimate']:.5f}", f"[{e['ci_low']:.5f}, {e['ci_high']:.5f}]")
    out.print(table)
    if report["logged_value"] is not None:
        out.print(f"logged policy {report['logging_policy']}: mean reward per slot "
                  f"{report['logged_value']:.5f}; skipped slates: {report['skipped_events']}")
    if json_path:
        atomic_write_json(json_path, report)
        console.print(f"wrote {json_path}")
    if markdown_path:
        lines = [f"# OPE of `{policy}` on the service log", "",
                 f"Store {report['store']}, artifact {report['artifact']} (logging policy "
                 f"{report.get('logging_policy')}), {report['events']} slates, {report['rows']} shown "
                 f"slots, logged mean reward {report['logged_value']}.", "",
                 "| estimator | estimate | 95% CI |", "|---|---:|---:|"]
        lines += [f"| {e['estimator']} | {e['estimate']:.5f} | [{e['ci_low']:.5f}, {e['ci_high']:.5f}] |"
                  for e in report["estimates"]]
        atomic_write_text(markdown_path, "\n".join(lines) + "\n")
        console.print(f"wrote {markdown_path}")
    from explorec.cli.report import write_html_option

    write_html_option(report, html_path, source=str(json_path or "explorec ope --log"))


def _existing_store(url: str, flag: str) -> None:
    """A store that is read (a service's log) must exist: opening a missing SQLite file would
    create an empty database and report on nothing."""
    from explorec.serve.stores import sqlite_path

    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise typer.BadParameter(f"{flag} {url}: no such SQLite file ({path}); give the store "
                                 "URL the service ran with")


def register(app: typer.Typer) -> None:
    """Add the service commands to the ``explorec`` app."""
    app.command("train")(train)
    app.command("serve")(serve)
    app.command("retrain")(retrain)
