"""Evaluation: top-K metrics and the full-ranking protocol (off-policy estimators come later)."""

from explorec.evaluate.metrics import ALL_METRICS, DEFAULT_METRICS
from explorec.evaluate.protocol import EvalResult, evaluate_model, evaluate_scores

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "EvalResult", "evaluate_model", "evaluate_scores"]
