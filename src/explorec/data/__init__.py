"""Data layer: interactions, item catalog, user table, splits, dataset registry, loaders."""

from explorec.data.catalog import Dataset, ItemCatalog, KnowledgeGraph, UserTable
from explorec.data.interactions import IdMap, Interactions
from explorec.data.readers import (
    load_atomic_interactions,
    load_catalog,
    load_interactions,
    load_user_table,
    read_atomic,
)
from explorec.data.registry import dataset_info, dataset_names, fetch_dataset, load_dataset
from explorec.data.splits import (
    DEFAULT_SEED,
    Split,
    cold_item_split,
    leave_last_out_split,
    make_split,
    ratio_split,
    temporal_split,
)

__all__ = [
    "DEFAULT_SEED",
    "Dataset",
    "IdMap",
    "Interactions",
    "ItemCatalog",
    "KnowledgeGraph",
    "Split",
    "UserTable",
    "cold_item_split",
    "dataset_info",
    "dataset_names",
    "fetch_dataset",
    "leave_last_out_split",
    "load_atomic_interactions",
    "load_catalog",
    "load_dataset",
    "load_interactions",
    "load_user_table",
    "make_split",
    "ratio_split",
    "read_atomic",
    "temporal_split",
]
