"""Exploration policies: rank slates with per-position propensities and learn online."""

from explorec.explore.base import (
    BasePolicy,
    Feedback,
    Policy,
    Requests,
    Slate,
    SlateBatch,
)
from explorec.explore.registry import create_policy, describe_policy, policy_class, policy_names

__all__ = [
    "BasePolicy",
    "Feedback",
    "Policy",
    "Requests",
    "Slate",
    "SlateBatch",
    "create_policy",
    "describe_policy",
    "policy_class",
    "policy_names",
]
