"""Dataset registry: names -> fetch / load functions, plus users' own files by path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from explorec.data.catalog import Dataset
from explorec.data.fetch import dataset_dir
from explorec.errors import DataError, UnknownNameError


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


def _synthetic_entry() -> DatasetEntry:
    from explorec.data.synthetic import generate

    return DatasetEntry(
        "synthetic", "generated",
        "Seeded generator: power-law popularity, latent-factor tastes, timestamps, item text "
        "(options: n_users, n_items, n_interactions, seed)",
        "generated locally", lambda **_: None, lambda **kw: generate(**kw),
    )


_ENTRIES: dict[str, Callable[[], DatasetEntry]] = {
    "ml-100k": _ml100k_entry,
    "obd": _obd_entry,
    "synthetic": _synthetic_entry,
}


def dataset_names() -> list[str]:
    return list(_ENTRIES)


def get_entry(name: str) -> DatasetEntry:
    if name not in _ENTRIES:
        raise UnknownNameError("dataset", name, list(_ENTRIES))
    return _ENTRIES[name]()


def fetch_dataset(name: str, **kwargs: object) -> Path | None:
    return get_entry(name).fetch(**kwargs)


def load_dataset(name: str, *, columns: Mapping[str, str] | None = None, **options: object
                 ) -> Dataset:
    """Load an interaction dataset by registry name, or a user's file by path.

    Paths: ``.inter`` (RecBole atomic), ``.csv``/``.tsv``/``.parquet`` (with ``columns``
    mapping roles ``user``, ``item``, ``rating``, ``timestamp`` to the file's names), or a
    GroupLens ``ml-100k.zip`` archive (or its extracted folder).
    """
    if name not in _ENTRIES:
        path = Path(name)
        if path.exists():
            from explorec.data.readers import load_atomic_interactions, load_interactions

            if path.suffix == ".zip" or path.is_dir():
                from explorec.data.movielens import load_grouplens_100k

                return load_grouplens_100k(path)
            if path.suffix == ".inter":
                inter = load_atomic_interactions(path)
            else:
                inter = load_interactions(path, columns=columns)
            return Dataset(name=path.stem, interactions=inter)
        raise UnknownNameError("dataset", name, list(_ENTRIES))
    entry = get_entry(name)
    if entry.kind == "bandit":
        raise DataError(f"dataset {name!r} is logged bandit feedback, not an interaction log; "
                        "use it with `explorec ope`")
    return entry.load(**options)  # type: ignore[return-value]


def load_obd_collection() -> dict[str, object]:
    """All six OBD logs keyed ``behavior/campaign``."""
    from explorec.data.obd import BEHAVIORS, CAMPAIGNS, load_obd

    return {f"{b}/{c}": load_obd(b, c) for c in CAMPAIGNS for b in BEHAVIORS}


def dataset_info(name: str, **options: object) -> dict[str, object]:
    """Summary with at least ``users``, ``items`` and ``interactions``."""
    entry = get_entry(name) if name in _ENTRIES else None
    if entry is not None and entry.kind == "bandit":
        logs = entry.load()
        per_log = {k: v.info() for k, v in logs.items()}  # type: ignore[attr-defined]
        return {
            "name": name,
            "kind": "bandit",
            "source": entry.source,
            "users": sum(int(v["distinct_contexts"]) for v in per_log.values()),
            "items": max(int(v["actions"]) for v in per_log.values()),
            "interactions": sum(int(v["rows"]) for v in per_log.values()),
            "logs": per_log,
        }
    ds = load_dataset(name, **options)
    info = ds.info()
    info["kind"] = "interactions"
    info["source"] = entry.source if entry else str(name)
    return info
