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

from explorec import scale
from explorec.cli.common import (
    DataInputs,
    check_models_params,
    console,
    note,
    parse_list,
    progress,
    stage,
)
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
                  with_item_columns: list[str], chunk_users: int = 20_000,
                  scheduler: str | None = None, index: str = "auto") -> None:
    """Fit (or load) a model and write each user's top-``k`` to ``output``, ``chunk_users``
    users at a time: memory holds one chunk's scores and rows, never the whole output."""
    from explorec.evaluate.protocol import part_matrices, validator
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
                m.fit(sp_.train, catalog=catalog, split=sp_, validate=validator(sp_))
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
    _use_index(m, index, from_artifact=artifact is not None)
    users_map, items_map = m.users_, m.items_
    if wanted is None:
        known, unknown = np.asarray(default_users, dtype=np.int64), []
    else:
        idx = users_map.ids.get_indexer(wanted)
        known = idx[idx >= 0].astype(np.int64)
        unknown = [u for u, i in zip(wanted, idx, strict=True) if i < 0]
    seen = seen if isinstance(seen, sp.csr_matrix) else sp.csr_matrix(seen)
    plan = _ChunkPlan(m=m, k=k, seen=seen, candidates=candidates, seed=seed,
                      columns=columns, items_map=items_map, users_map=users_map,
                      explain=explain, catalog=catalog, with_item_columns=with_item_columns)
    n_rows, n_short = 0, 0
    step = max(1, int(chunk_users))
    with scale.dask_client(scheduler) as plan.client, ChunkWriter(output, fmt) as writer, \
            progress() as bar:
        task = bar.add_task(f"rank {k} items for {len(known):,} users", total=max(len(known), 1))
        chunks = [known[s:s + step] for s in range(0, len(known), step)]
        # on a cluster the next chunk is ranked while this one is turned into rows and written
        ahead = 1 if plan.client is not None else 0
        pending = [plan.start(c) for c in chunks[:ahead]]
        for n, chunk in enumerate(chunks):
            if n + ahead < len(chunks):
                pending.append(plan.start(chunks[n + ahead]))
            frame, short = plan.frame(pending.pop(0))
            writer.write(frame)
            n_rows += len(frame)
            n_short += short
            bar.advance(task, len(chunk))
        if not len(known):
            bar.update(task, completed=1)
        if unknown:  # users the model never saw: the popularity fallback
            for s in range(0, len(unknown), step):
                frame = plan.cold_frame(unknown[s:s + step])
                writer.write(frame)
                n_rows += len(frame)
            shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            note(f"{len(unknown):,} of the requested users are not in the training data "
                 f"({shown}); they get the most popular items")
    if n_short:
        note(f"{n_short:,} users have fewer than k={k} items they have not seen; their lists "
             "are shorter")
    if save_model is not None:
        m.save(save_model)
        console.print(f"saved model to {save_model}")
    console.print(f"wrote {n_rows:,} rows for {len(known) + len(unknown):,} users to {output} "
                  f"({fmt})")


def _use_index(m: Any, kind: str, *, from_artifact: bool) -> None:
    """``--index``: under auto, rank exactly a model whose exact ranking is the faster (exact
    factor scores below :data:`~explorec.index.BATCH_ANN_MIN_ITEMS` items), else keep an
    artifact's index; otherwise build (or drop) the one asked."""
    from explorec.index import ANN_MIN_ITEMS, BATCH_ANN_MIN_ITEMS, INDEX_KINDS

    if kind not in INDEX_KINDS:
        raise typer.BadParameter(f"--index {kind!r}: use {', '.join(INDEX_KINDS)}")
    if kind == "auto" and getattr(m, "exact_factor_scores", False) \
            and m.n_items < BATCH_ANN_MIN_ITEMS:
        why = (f"; faster than the artifact's {m.index_.kind} index below "
               f"{BATCH_ANN_MIN_ITEMS:,} items, --index {m.index_.kind} uses it"
               if m.index_ is not None else "")
        note(f"ranking every item exactly (factor scores pruned by vector norms{why})")
        m.drop_index()
        return
    if kind == "auto" and from_artifact and m.index_ is not None:
        note(f"ranking through the artifact's {m.index_.kind} index ({m.index_.meta()})")
        return
    small = m.index_ is None and m.n_items < ANN_MIN_ITEMS
    if kind == "exact" or (kind == "auto" and small):
        m.drop_index()
        return
    if kind != "auto" and m.index_ is not None and m.index_.kind == kind:
        return
    with stage(f"index {m.n_items:,} item vectors ({kind})"):
        built = m.build_index(kind)
    if built is not None:
        note(f"ranking through a {built.kind} index ({built.meta()}); rows it leaves short are "
             "ranked exactly; --index exact ranks every item")


class _ChunkPlan:
    """Turns a chunk of users into output rows (the same rows whatever the chunk size)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self._cold: tuple[np.ndarray, np.ndarray] | None = None

    def start(self, users: np.ndarray) -> Any:
        """Start ranking ``users`` (on the cluster: in the background); :meth:`frame` of the
        handle returned gives their rows."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortListWarning)  # said once, as a note
            later = scale.recommend_later(self.m, users, self.k, client=self.client,
                                          exclude=self.seen, candidates=self.candidates,
                                          seed=self.seed)
        return users, later

    def frame(self, started: Any) -> tuple[pd.DataFrame, int]:
        users, later = started
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortListWarning)
            items, scores = later()
        width = items.shape[1]
        ranks = np.tile(np.arange(1, width + 1), len(users))
        valid = items.ravel() >= 0
        # external ids by a take on the id index's own (Arrow-backed) array: no Python object
        # per row, which made building a chunk's frame cost more than ranking it
        users_col = self._external("users", np.repeat(users, width)[valid])
        frame = self._rows(users_col, ranks[valid], items.ravel()[valid], scores.ravel()[valid])
        if self.explain:
            because = _because(self.m, users, items, self.items_map)
            frame["because"] = [b for b, ok in zip(because, valid, strict=True) if ok]
        short = int(((items >= 0).sum(axis=1) < self.k).sum())
        return self._item_cells(frame), short

    def cold_frame(self, users: list[str]) -> pd.DataFrame:
        if self._cold is None:
            top, vals = top_items(self.m.item_popularity()[None, :], self.k,
                                  candidates=self.candidates, warn=False)
            ok = top[0] >= 0
            self._cold = (top[0][ok], vals[0][ok])
        top, vals = self._cold
        frame = self._rows(np.repeat(np.asarray(users, dtype=object), len(top)),
                           np.tile(np.arange(1, len(top) + 1), len(users)),
                           np.tile(top, len(users)), np.tile(vals, len(users)))
        if self.explain:
            frame["because"] = [[] for _ in range(len(frame))]  # new users: no history
        return self._item_cells(frame)

    def _external(self, which: str, internal: np.ndarray) -> Any:
        """External ids of internal ``users`` or ``items`` as a pandas string array, taken
        from the whole id list converted once: no Python object per output row (converting
        each chunk's object array cost more than ranking it)."""
        cache = self.__dict__.setdefault("_ext", {})
        if which not in cache:
            ids = (self.users_map if which == "users" else self.items_map).ids
            cache[which] = pd.array(np.asarray(ids, dtype=object), dtype="str")
        return cache[which].take(np.asarray(internal, dtype=np.int64))

    def _rows(self, users: Any, ranks: np.ndarray, items: np.ndarray,
              scores: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({self.columns["user"]: users, "rank": ranks,
                             self.columns["item"]: self._external("items", items),
                             "score": scores})

    def _item_cells(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.with_item_columns:
            cells = self.catalog.frame.reindex(frame[self.columns["item"]].to_numpy())
            for c in self.with_item_columns:
                name = c if c not in frame.columns else f"item_{c}"
                frame[name] = cells[c].to_numpy()
        return frame


class ChunkWriter:
    """Append frames to one CSV, Parquet (one row group per frame) or JSON-lines file,
    written to a temporary name and moved into place only when every chunk is written."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self._parquet: Any = None
        self._schema: Any = None
        self._file: Any = None

    def __enter__(self) -> ChunkWriter:
        from explorec._io import atomic_path

        self._atomic = atomic_path(self.path)
        self.tmp = self._atomic.__enter__()
        if self.fmt != "parquet":
            self._file = open(self.tmp, "w", encoding="utf-8", newline="")
        self._first = True
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                table = pa.Table.from_pandas(frame, preserve_index=False,
                                             schema=_parquet_schema(frame))
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self.tmp, self._schema)
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False, schema=self._schema)
            self._parquet.write_table(table)
        elif self.fmt == "jsonl":
            if len(frame):
                frame.to_json(self._file, orient="records", lines=True, force_ascii=False)
        else:
            csv_frame = frame.copy()
            for col in csv_frame.columns:
                if csv_frame[col].map(lambda v: isinstance(v, list)).any():
                    csv_frame[col] = csv_frame[col].map(lambda v: json.dumps(v, ensure_ascii=False))
            csv_frame.to_csv(self._file, index=False, header=self._first)
        self._first = False

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
            elif self.fmt == "parquet" and exc[0] is None:  # no rows at all: an empty table
                pd.DataFrame().to_parquet(self.tmp, index=False)
            if self._file is not None:
                self._file.close()
        finally:
            self._atomic.__exit__(*exc)


def _parquet_schema(frame: pd.DataFrame) -> Any:
    """The first chunk's schema, with ``because`` typed even when its lists are empty."""
    import pyarrow as pa

    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    if "because" in frame.columns:
        i = schema.get_field_index("because")
        schema = schema.set(i, pa.field("because", pa.list_(pa.struct(
            [("item", pa.string()), ("weight", pa.float64())]))))
    for i, field in enumerate(schema):
        if pa.types.is_null(field.type):  # a column empty in the first chunk: text
            schema = schema.set(i, pa.field(field.name, pa.string()))
    return schema


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
