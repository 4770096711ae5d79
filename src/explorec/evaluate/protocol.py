"""Full-ranking evaluation of a fitted model on one part of a split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import Split
from explorec.evaluate.metrics import (
    DEFAULT_METRICS,
    LIST_METRICS,
    USER_METRICS,
    auc_from_scores,
    check_metrics,
    gini_index,
    intra_list_diversity,
    item_coverage,
    normalized_item_vectors,
    novelty,
    user_metrics,
)
from explorec.ranking import DEFAULT_SEED

# part_matrices lives in the leaf module explorec.validation (models validate with it);
# re-exported here, where callers have always found it
from explorec.validation import Validator, candidates_of, ranked_batches, ranked_users
from explorec.validation import part_matrices as part_matrices


@dataclass
class EvalResult:
    """Mean metrics plus the per-user values behind them (for significance tests)."""

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(repr=False)
    users: np.ndarray = field(repr=False)
    seconds: float = 0.0


def evaluate_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    relevant: sp.csr_matrix,
    excluded: sp.csr_matrix,
    *,
    train: sp.csr_matrix,
    ks: tuple[int, ...] = (10, 20),
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    candidates: np.ndarray | None = None,
    batch_size: int = 1024,
    item_vectors: sp.csr_matrix | np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    seed: int = DEFAULT_SEED,
    users: np.ndarray | None = None,
    parts: bool = False,
) -> Any:
    """Rank all candidate items for every user with a relevant item; compute the metrics.

    ``users`` restricts the work to those users (of the ones with a relevant item);
    ``parts=True`` returns the raw :class:`EvalParts` instead of the summary, so that user
    partitions computed apart (``explorec.scale``) combine with :func:`combine_parts` into
    exactly the single-process result.

    ``score_fn(users) -> (len(users), n_items)`` scores. Excluded items and non-candidates get
    ``-inf`` (:func:`explorec.ranking.eligible_scores`; the ranking loop is
    :func:`explorec.validation.ranked_batches`, which model validation shares). Work is
    batched over users; inside a batch everything is array operations. Tied scores are
    ordered by :func:`explorec.ranking.topk`'s seeded tie keys (``seed``), so ties carry no
    information: constant scores rank like ``random``.
    """
    import time

    t0 = time.perf_counter()
    metrics = check_metrics(metrics)
    ks = tuple(sorted(set(ks)))
    kmax = max(ks)
    n_items = relevant.shape[1]
    cand_mask, n_candidates = candidates_of(candidates, n_items)
    relevant, users = ranked_users(relevant, cand_mask, users)
    if kmax > n_candidates:
        raise ValueError(f"k={kmax} exceeds the number of candidate items ({n_candidates})")
    per_metric_user = [m for m in metrics if m in USER_METRICS]
    want_auc = "auc" in metrics
    want_ild = "ild" in metrics
    if want_ild and item_vectors is None:
        item_vectors = normalized_item_vectors(train)

    chunks: dict[str, list[np.ndarray]] = {}
    all_topk = []
    for b in ranked_batches(score_fn, relevant, excluded, users, k=kmax, cand_mask=cand_mask,
                            batch_size=batch_size, seed=seed):
        n_pos = b.relevant.sum(axis=1)
        for name, v in user_metrics(b.hits, n_pos, ks, tuple(per_metric_user)).items():
            chunks.setdefault(name, []).append(v)
        if want_auc:
            chunks.setdefault("auc", []).append(auc_from_scores(b.scores, b.relevant))
        if want_ild:
            for k in ks:
                chunks.setdefault(f"ild@{k}", []).append(
                    intra_list_diversity(b.top[:, :k], item_vectors))
        all_topk.append(np.where(b.shown, b.top, -1))
        if progress is not None:
            progress(len(b.users))

    per_user = {name: np.concatenate(c) for name, c in chunks.items()}
    topk_all = np.concatenate(all_topk) if all_topk else np.zeros((0, kmax), dtype=np.int64)
    raw = EvalParts(per_user=per_user, users=users, topk=topk_all,
                    seconds=time.perf_counter() - t0)
    if parts:
        return raw
    return combine_parts([raw], train=train, ks=ks, metrics=metrics, candidates=candidates,
                         n_items=n_items)


@dataclass
class EvalParts:
    """What :func:`evaluate_scores` computed for a set of users, before summarising."""

    per_user: dict[str, np.ndarray]
    users: np.ndarray
    topk: np.ndarray
    seconds: float = 0.0


def combine_parts(parts: list[EvalParts], *, train: sp.csr_matrix, ks: tuple[int, ...],
                  metrics: tuple[str, ...], candidates: np.ndarray | None, n_items: int
                  ) -> EvalResult:
    """The summary over user partitions, in user order: per-user metrics concatenated and
    averaged, list metrics (coverage, Gini, novelty) over every user's list."""
    import time

    t0 = time.perf_counter()
    metrics = check_metrics(metrics)
    ks = tuple(sorted(set(ks)))
    users = np.concatenate([p.users for p in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(users, kind="stable")
    users = users[order]
    names = [n for n in (parts[0].per_user if parts else {})]
    per_user = {n: np.concatenate([p.per_user[n] for p in parts])[order] for n in names}
    topk_all = np.concatenate([p.topk for p in parts])[order] if parts else np.zeros((0, 1))
    cand_mask, n_candidates = candidates_of(candidates, n_items)
    out: dict[str, float] = {name: float(np.nanmean(v)) for name, v in per_user.items()}
    popularity = np.asarray(train.astype(bool).sum(axis=0)).ravel()
    for k in ks:
        lists = topk_all[:, :k]
        shown_items = lists[lists >= 0]
        if "itemcoverage" in metrics:
            out[f"itemcoverage@{k}"] = item_coverage(shown_items, n_candidates)
        if "gini" in metrics:
            out[f"gini@{k}"] = gini_index(shown_items if cand_mask is None else
                                          _remap(shown_items, cand_mask), n_candidates)
        if "novelty" in metrics:
            out[f"novelty@{k}"] = novelty(shown_items, popularity, train.shape[0])
    ordered = _order(out, metrics, ks)
    return EvalResult(metrics=ordered, per_user=per_user, users=users,
                      seconds=sum(p.seconds for p in parts) + time.perf_counter() - t0)


def _remap(lists: np.ndarray, cand_mask: np.ndarray) -> np.ndarray:
    """Item ids -> positions among the candidates (so Gini counts over candidates only)."""
    pos = np.cumsum(cand_mask) - 1
    return pos[lists]


def _order(values: dict[str, float], metrics: tuple[str, ...], ks: tuple[int, ...]
           ) -> dict[str, float]:
    out = {}
    for m in metrics:
        if m == "auc":
            if "auc" in values:
                out["auc"] = values["auc"]
            continue
        for k in ks:
            key = f"{m}@{k}"
            if key in values:
                out[key] = values[key]
    return out


def evaluate_model(
    model: object,
    split: Split,
    *,
    part: str = "test",
    ks: tuple[int, ...] = (10, 20),
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    batch_size: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Evaluate a fitted :class:`~explorec.models.base.Recommender` on ``part`` of ``split``.

    Ties in the model's scores are broken with the split's seed."""
    relevant, excluded, candidates = part_matrices(split, part)
    return evaluate_scores(
        model.score,  # type: ignore[attr-defined]
        relevant, excluded, train=split.train.matrix(), ks=ks, metrics=metrics,
        candidates=candidates, batch_size=batch_size, progress=progress, seed=split.seed,
    )


def validator(split: Split | None, *, metric: str = "ndcg", k: int = 10) -> Validator | None:
    """The validation callable to pass to ``fit(..., validate=...)``: ``validate(model)``
    is :func:`evaluate_model`'s ``metric@k`` on ``split``'s validation part (what early
    stopping and tuning measure); None without a split or with an empty validation part."""
    if split is None or len(split.valid) == 0:
        return None

    def validate(model: object) -> float:
        return evaluate_model(model, split, part="valid", ks=(k,),
                              metrics=(metric,)).metrics[f"{metric}@{k}"]

    return validate


def users_to_evaluate(split: Split, part: str = "test") -> int:
    relevant, _, _ = part_matrices(split, part)
    return int((np.diff(relevant.indptr) > 0).sum())


__all__ = ["LIST_METRICS", "EvalParts", "EvalResult", "combine_parts", "evaluate_model", "evaluate_scores",
           "part_matrices", "users_to_evaluate", "validator"]
