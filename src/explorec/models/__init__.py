"""Exploitation scorers behind one Recommender protocol."""

from explorec.models.base import BaseRecommender, NotFittedError, Recommender
from explorec.models.registry import create_model, default_params, model_class, model_names

__all__ = [
    "BaseRecommender",
    "NotFittedError",
    "Recommender",
    "create_model",
    "default_params",
    "model_class",
    "model_names",
]
