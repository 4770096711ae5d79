"""Model registry: name -> (module:class, default parameters). One line per model.

Classes are imported lazily, so listing models never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from explorec.errors import UnknownNameError

_MODELS: dict[str, tuple[str, dict[str, Any], str]] = {
    "random": ("explorec.models.baselines:RandomRecommender", {}, "seeded uniform scores"),
    "pop": ("explorec.models.baselines:PopularityRecommender", {}, "most popular items"),
    # itemknn defaults: chosen on validation NDCG@10 by benchmarks/knn_grid.py (seed 2020)
    "itemknn": ("explorec.models.knn:ItemKNN",
                {"k": 50, "shrink": 0.0, "alpha": 0.7, "user_weighting": "iuf"},
                "item-based kNN, asymmetric cosine with shrinkage"),
    "userknn": ("explorec.models.knn:UserKNN", {"k": 100, "shrink": 0.0},
                "user-based kNN, cosine with shrinkage"),
    "ease": ("explorec.models.ease:EASE", {"reg": 250.0}, "closed-form linear autoencoder"),
    "content": ("explorec.models.content:ContentRecommender", {},
                "LM-embedding interest profiles (single or multi-interest)"),
    "two-tower": ("explorec.models.two_tower:TwoTowerRecommender", {},
                  "LM item tower + attention user tower, in-batch softmax with logQ"),
    "hybrid": ("explorec.models.hybrid:HybridRecommender", {},
               "CF scores (ease by default) blended with LM content, weight chosen on validation"),
}


def model_names() -> list[str]:
    return list(_MODELS)


def model_class(name: str) -> type:
    if name not in _MODELS:
        raise UnknownNameError("model", name, list(_MODELS))
    module, _, cls = _MODELS[name][0].partition(":")
    return getattr(importlib.import_module(module), cls)


def default_params(name: str) -> dict[str, Any]:
    if name not in _MODELS:
        raise UnknownNameError("model", name, list(_MODELS))
    return dict(_MODELS[name][1])


def describe(name: str) -> str:
    return _MODELS[name][2]


def create_model(name: str, **params: Any) -> Any:
    """Instantiate a registered model with its defaults, overridden by ``params``."""
    klass = model_class(name)
    merged = {**default_params(name), **params}
    try:
        return klass(**merged)
    except TypeError as e:
        raise ValueError(f"bad parameters for model {name!r}: {e}") from e
