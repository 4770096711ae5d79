"""Dataset registry: names -> fetch / load functions, plus users' own files by path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from explorec.data.catalog import Dataset
from explorec.data.fetch import dataset_dir
from explorec.errors import DataError
from explorec.registry import Registry


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str  # "interactions" or "bandit"
    description: str
    source: str
    fetch: Callable[..., Path | None]
    load: Callable[..., object]

    def is_cached(self) -> bool:
        from explorec.data.fetch import MANIFEST

        return self.kind == "generated" or (dataset_dir(self.name) / MANIFEST).exists()


def _ml100k_entry() -> DatasetEntry:
    from explorec.data.movielens import RECBOLE_SOURCE, fetch_ml100k, load_ml100k

    return DatasetEntry(
        "ml-100k", "interactions",
        "MovieLens-100K: 943 users, 1,682 movies, 100,000 ratings with timestamps; titles, "
        "years, genres; user demographics; Freebase KG triples",
        RECBOLE_SOURCE.describe(), fetch_ml100k, lambda **_: load_ml100k(),
    )


def _obd_entry() -> DatasetEntry:
    from explorec.data.obd import OBP_SOURCE, fetch_obd

    return DatasetEntry(
        "obd", "bandit",
        "Open Bandit Dataset small sample (ZOZOTOWN): random and Bernoulli-TS behaviour "
        "policies, campaigns all/men/women, 3 positions, clicks and propensities",
        OBP_SOURCE.describe(), fetch_obd, lambda **_: load_obd_collection(),
    )


def _instacart_entry() -> DatasetEntry:
    from explorec.data.instacart import INSTACART_SOURCE, fetch_instacart, load_instacart_sample

    return DatasetEntry(
        "instacart-sample", "interactions",
        "Instacart sample (optional; non-commercial terms): 593 users, 14,190 products, "
        "150,000 order lines -> 54,137 (user, product) rows, rating = times bought, time = "
        "order sequence (order_number, cart position), no product names",
        INSTACART_SOURCE.describe(), fetch_instacart, lambda **_: load_instacart_sample(),
    )


def _synthetic_entry() -> DatasetEntry:
    from explorec.data.synthetic import generate

    return DatasetEntry(
        "synthetic", "generated",
        "Seeded generator: power-law popularity, latent-factor tastes, timestamps, item text "
        "(options: n_users, n_items, n_interactions, n_factors, n_clusters, "
        "popularity_exponent, activity_exponent, taste_strength, seed)",
        "generated locally", lambda **_: None, lambda **kw: generate(**kw),
    )


# name -> a function building its entry (the loaders are imported only then)
DATASETS: Registry[Callable[[], DatasetEntry]] = Registry("dataset", {
    "ml-100k": _ml100k_entry,
    "obd": _obd_entry,
    "instacart-sample": _instacart_entry,
    "synthetic": _synthetic_entry,
})


def dataset_names() -> list[str]:
    return DATASETS.names()


def get_entry(name: str) -> DatasetEntry:
    return DATASETS.get(name)()


def fetch_dataset(name: str, **kwargs: object) -> Path | None:
    return get_entry(name).fetch(**kwargs)


def load_dataset(
    name: str,
    *,
    columns: Mapping[str, str] | None = None,
    duplicates: str = "error",
    min_rating: float | None = None,
    k_core: int | None = None,
    max_id_length: int | None = None,
    items: str | Path | None = None,
    item_columns: Mapping[str, str] | None = None,
    template: str | None = None,
    users: str | Path | None = None,
    user_columns: Mapping[str, str] | None = None,
    **options: object,
) -> Dataset:
    """Load an interaction dataset by registry name, or a user's file by path.

    Paths: ``.inter`` (RecBole atomic; its sibling ``.item`` and ``.user`` files are read too),
    ``.csv``/``.tsv``/``.parquet`` (with ``columns`` mapping roles ``user``, ``item``,
    ``rating``, ``timestamp`` to the file's names), a directory of Parquet files (flat or
    hive-partitioned, read in bounded memory; the same ``columns``), or a GroupLens
    ``ml-100k.zip`` archive (or its extracted folder).

    ``duplicates`` (own files): what to do with repeated (user, item) pairs (see
    :meth:`Interactions.from_frame`). ``min_rating`` keeps rows rated at least that;
    ``k_core`` then keeps the users and items with at least that many interactions.
    ``items`` / ``users``: an item catalog (text, features) / user table to use instead of the
    dataset's own, read with :func:`load_catalog` / :func:`load_user_table` and the
    ``item_columns`` / ``user_columns`` mappings. ``template``: the item text template.
    ``options`` go to a registered generator (``synthetic``).
    """
    from explorec.data.readers import (
        load_atomic_interactions,
        load_catalog,
        load_user_table,
        read_interactions,
    )

    if name in DATASETS:
        if columns:
            raise DataError(f"columns apply to your own files; {name!r} is a registered dataset "
                            "with known columns")
        entry = get_entry(name)
        if entry.kind == "bandit":
            raise DataError(f"dataset {name!r} is logged bandit feedback, not an interaction log; "
                            "use it with `explorec ope`")
        if options and entry.kind != "generated":
            raise DataError(f"dataset options {sorted(options)} apply to generators "
                            f"(synthetic); {name!r} takes none")
        ds: Dataset = entry.load(**options)  # type: ignore[assignment]
    else:
        if options:
            raise DataError(f"dataset options {sorted(options)} apply to registered generators, "
                            f"not to the file {name}")
        path = Path(name)
        if not path.exists():
            if path.suffix or "/" in name or "\\" in name:
                raise DataError("file not found", source=name)
            raise DATASETS.unknown(name)
        if path.is_dir() and not _is_grouplens_dir(path):
            from explorec.data.parquet_dir import is_parquet_dir

            if not is_parquet_dir(path):
                raise DataError("no .parquet files here: a directory dataset is a directory of "
                                "Parquet files (flat or hive-partitioned) or an extracted "
                                "GroupLens ml-100k folder (u.data, u.item)", source=path)
            inter, cols = read_interactions(path, columns=columns, duplicates=duplicates,
                                            max_id_length=max_id_length)
            ds = Dataset(name=path.name, interactions=inter,
                         columns={"user": str(cols["user"]), "item": str(cols["item"])})
        elif path.suffix == ".zip" or path.is_dir():
            from explorec.data.movielens import load_grouplens_100k

            ds = load_grouplens_100k(path)
        elif path.suffix == ".inter":
            inter = load_atomic_interactions(path, duplicates=duplicates,
                                             max_id_length=max_id_length)
            sib_items, sib_users = path.with_suffix(".item"), path.with_suffix(".user")
            ds = Dataset(
                name=path.stem, interactions=inter,
                catalog=load_catalog(sib_items, max_id_length=max_id_length)
                if sib_items.exists() and items is None else None,
                users=load_user_table(sib_users, max_id_length=max_id_length)
                if sib_users.exists() and users is None else None,
                columns={"user": "user_id", "item": "item_id"})
        else:
            inter, cols = read_interactions(path, columns=columns, duplicates=duplicates,
                                            max_id_length=max_id_length)
            ds = Dataset(name=path.stem, interactions=inter,
                         columns={"user": str(cols["user"]), "item": str(cols["item"])})
    inter = ds.interactions
    if min_rating is not None:
        inter = inter.filter_rating(float(min_rating)).compact()
    if k_core is not None:
        if int(k_core) < 1:
            raise DataError(f"k_core must be >= 1, got {k_core}")
        inter = inter.k_core(int(k_core))
    catalog, user_table = ds.catalog, ds.users
    if items is not None:
        catalog = load_catalog(items, columns=item_columns, max_id_length=max_id_length)
    elif item_columns:
        raise DataError("item columns were given without an items file (--items FILE)")
    if users is not None:
        user_table = load_user_table(users, columns=user_columns, max_id_length=max_id_length)
    elif user_columns:
        raise DataError("user columns were given without a users file (--users FILE)")
    if template is not None:
        if catalog is None:
            raise DataError("a text template needs item text, and the dataset has no item "
                            "catalog: pass --items FILE")
        catalog = catalog.with_template(template)
    return replace(ds, interactions=inter, catalog=catalog, users=user_table)


def _is_grouplens_dir(path: Path) -> bool:
    """An extracted GroupLens archive: a ``u.data`` file somewhere under ``path``."""
    return any(p.is_file() for p in path.rglob("u.data"))


def load_obd_collection() -> dict[str, object]:
    """All six OBD logs keyed ``behavior/campaign``."""
    from explorec.data.obd import BEHAVIORS, CAMPAIGNS, load_obd

    return {f"{b}/{c}": load_obd(b, c) for c in CAMPAIGNS for b in BEHAVIORS}


def dataset_info(name: str, **options: object) -> dict[str, object]:
    """Summary with at least ``users``, ``items`` and ``interactions``."""
    entry = get_entry(name) if name in DATASETS else None
    if entry is not None and entry.kind == "bandit":
        logs = entry.load()
        per_log = {k: v.info() for k, v in logs.items()}  # type: ignore[attr-defined]
        # logged bandit feedback: rows are impressions, and its users are anonymous contexts
        return {
            "name": name,
            "kind": "bandit",
            "source": entry.source,
            "impressions": sum(int(v["rows"]) for v in per_log.values()),
            "items": max(int(v["actions"]) for v in per_log.values()),
            "distinct_contexts": sum(int(v["distinct_contexts"]) for v in per_log.values()),
            "logs": per_log,
        }
    ds = load_dataset(name, **options)
    info = ds.info()
    info["kind"] = "interactions"
    info["source"] = entry.source if entry else str(name)
    return info
