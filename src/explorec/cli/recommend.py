"""``explorec recommend``: top-k lists users can use, in the input's own column names."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import typer

from explorec.cli.common import DataInputs, check_models_params, console, note, parse_list, stage
from explorec.errors import DataError, ExploRecError
from explorec.ranking import ShortListWarning, top_items

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}


def output_format(path: Path) -> str:
    """The output format from the file's extension; a clear error for anything else."""
    if path.is_dir():
        raise typer.BadParameter(f"--output {path} is a directory; give a file name ending in "
                                 ".csv, .parquet or .jsonl")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise typer.BadParameter(f"--output {path}: unknown format {path.suffix or '(none)'!r}; "
                                 "use a file name ending in .csv, .parquet or .jsonl")
    return fmt


def write_table(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write ``frame`` atomically as CSV, Parquet or JSON lines (lists stay lists, except in
    CSV where they are JSON text)."""
    from explorec._io import atomic_path

    with atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            csv_frame = frame.copy()
            for col in csv_frame.columns:
                if csv_frame[col].map(lambda v: isinstance(v, list)).any():
                    csv_frame[col] = csv_frame[col].map(lambda v: json.dumps(v, ensure_ascii=False))
            csv_frame.to_csv(tmp, index=False)


def _load_model(path: Path) -> tuple[Any, dict[str, str]]:
    """A model from a model artifact or a service artifact (its ``model/`` part), and the
    column names recorded with it."""
    from explorec.artifacts import read_manifest
    from explorec.models.base import BaseRecommender

    if not path.exists():
        raise DataError("artifact directory not found", source=path)
    manifest = read_manifest(path)
    columns = {"user": "user", "item": "item", **manifest.get("columns", {})}
    if manifest.get("kind") == "service":
        return BaseRecommender.load(path / "model"), columns
    return BaseRecommender.load(path), columns


def _requested_users(data: DataInputs) -> list[str] | None:
    """``--users``: a file of users (its id column) or comma-separated ids; None: everyone."""
    if data.users is None:
        return None
    if data.users.is_file():
        from explorec.cli.common import parse_mapping
        from explorec.data import load_user_table

        table = load_user_table(data.users, columns=parse_mapping(data.user_columns,
                                                                  "--user-columns"))
        return [str(u) for u in table.frame.index]
    if data.users.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq", ".user"):
        raise DataError("file not found", source=data.users)
    return parse_list(str(data.users), "user")


def run_recommend(data: DataInputs, *, output: Path, model: str, artifact: Path | None,
                  split: str | None, seed: int, cold_fraction: float, k: int,
                  params: dict[str, dict[str, Any]], save_model: Path | None, explain: bool,
                  with_item_columns: list[str]) -> None:
    from explorec.evaluate.protocol import part_matrices
    from explorec.models.registry import create_model, model_class

    fmt = output_format(output)
    if artifact is not None:
        if split is not None:
            raise typer.BadParameter("--artifact recommends from a saved model; --split fits a "
                                     "new one on a split's train part: use one of them")
        if params:
            raise typer.BadParameter("--param sets parameters of a model to fit; --artifact "
                                     "loads a fitted one")
    else:
        model_class(model)
        check_models_params([model], params)
    wanted = _requested_users(data)
    data.users, data.user_columns = None, None  # --users here names users, it is no feature file

    catalog = None
    candidates = None
    if artifact is not None:
        with stage(f"load model {artifact}"):
            m, columns = _load_model(artifact)
        seen = m.user_items_
        if data.items is not None or with_item_columns:
            if data.items is None:
                raise typer.BadParameter("--with-item-columns needs the item file (--items) "
                                         "next to --artifact")
            from explorec.cli.common import parse_mapping
            from explorec.data import load_catalog

            catalog = load_catalog(data.items, columns=parse_mapping(data.item_columns,
                                                                     "--item-columns"))
        default_users = np.arange(m.n_users)
    else:
        ds = data.load()
        columns = dict(ds.columns)
        catalog = ds.catalog
        m = create_model(model, **params.get(model, {}))
        if split is not None:
            from explorec.data import make_split

            with stage(f"split {split} (seed {seed})"):
                sp_ = make_split(ds.interactions, split, seed=seed, cold_fraction=cold_fraction)
            with stage(f"fit {model} on the {split} train part ({len(sp_.train):,} rows)"):
                m.fit(sp_.train, catalog=catalog, split=sp_)
            _, seen, candidates = part_matrices(sp_, "test")
            default_users = sp_.test.active_users
            if len(default_users) == 0:
                raise DataError(f"split {split!r} leaves no test users; nothing to recommend for")
        else:
            with stage(f"fit {model} on all {len(ds.interactions):,} interactions"):
                m.fit(ds.interactions, catalog=catalog)
            seen = m.user_items_
            default_users = ds.interactions.active_users
    if with_item_columns:
        if catalog is None:
            raise typer.BadParameter("--with-item-columns needs item fields: pass --items FILE")
        absent = [c for c in with_item_columns if c not in catalog.columns]
        if absent:
            raise typer.BadParameter(f"--with-item-columns: {absent} not in the item file "
                                     f"{catalog.source}; it has {catalog.columns}")
    users_map, items_map = m.users_, m.items_
    if wanted is None:
        known, unknown = np.asarray(default_users, dtype=np.int64), []
    else:
        idx = users_map.ids.get_indexer(wanted)
        known = idx[idx >= 0].astype(np.int64)
        unknown = [u for u, i in zip(wanted, idx, strict=True) if i < 0]
    with stage(f"rank {k} items for {len(known):,} users"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortListWarning)  # said once below, as a note
        items, scores = m.recommend(known, k, exclude=sp.csr_matrix(seen), candidates=candidates,
                                    seed=seed)
    users_col = np.repeat(np.asarray(users_map.to_external(known), dtype=object), items.shape[1])
    items_flat, scores_flat = items.ravel(), scores.ravel()
    ranks = np.tile(np.arange(1, items.shape[1] + 1), len(known))
    if unknown:  # users the model never saw: the popularity fallback
        cold, cold_scores = top_items(m.item_popularity()[None, :], k, candidates=candidates,
                                      warn=False)
        users_col = np.concatenate([users_col, np.repeat(np.asarray(unknown, dtype=object),
                                                         cold.shape[1])])
        items_flat = np.concatenate([items_flat, np.tile(cold[0], len(unknown))])
        scores_flat = np.concatenate([scores_flat, np.tile(cold_scores[0], len(unknown))])
        ranks = np.concatenate([ranks, np.tile(np.arange(1, cold.shape[1] + 1), len(unknown))])
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        note(f"{len(unknown):,} of the requested users are not in the training data ({shown}); "
             "they get the most popular items")
    n_short = int(((items >= 0).sum(axis=1) < k).sum())
    if n_short:
        note(f"{n_short:,} users have fewer than k={k} items they have not seen; their lists "
             "are shorter")
    valid = items_flat >= 0
    frame = pd.DataFrame({
        columns["user"]: users_col[valid],
        "rank": ranks[valid],
        columns["item"]: items_map.to_external(items_flat[valid]),
        "score": scores_flat[valid],
    })
    if explain:
        because = _because(m, known, items, items_map)
        because += [[] for _ in range(len(valid) - len(because))]  # new users: no history
        frame["because"] = [b for b, ok in zip(because, valid, strict=True) if ok]
    if with_item_columns:
        assert catalog is not None
        cells = catalog.frame.reindex(frame[columns["item"]].to_numpy())
        for c in with_item_columns:
            name = c if c not in frame.columns else f"item_{c}"
            frame[name] = cells[c].to_numpy()
    write_table(frame, output, fmt)
    if save_model is not None:
        m.save(save_model)
        console.print(f"saved model to {save_model}")
    console.print(f"wrote {len(frame):,} rows for {len(known) + len(unknown):,} users to {output} "
                  f"({fmt})")


def _because(m: Any, known: np.ndarray, items: np.ndarray, items_map: Any
             ) -> list[list[dict[str, Any]]]:
    """Per (user, rank), flattened: the history items behind the item, as {item, weight}."""
    try:
        per_user = m.explain(known, np.where(items >= 0, items, 0), top=3)
    except ExploRecError:  # a model that cannot explain: empty lists
        per_user = [[[] for _ in row] for row in items]
    ext = items_map.ids
    return [[{"item": str(ext[h]), "weight": round(w, 6)} for h, w in pairs]
            for row in per_user for pairs in row]
