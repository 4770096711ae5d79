"""A split's held-out part, ranked and scored: what evaluation and model validation share.

The evaluation protocol (:mod:`explorec.evaluate`) and a model that validates itself while it
trains (early stopping, a hybrid's blend weight) rank a held-out part the same way: every
user with a relevant candidate item, all candidate items the user has not seen ranked
(:func:`explorec.ranking.eligible_scores` with ``clip=True``, then
:func:`explorec.ranking.topk`'s seeded tie order), and the per-user top-K metrics of
:func:`user_metrics`. This module holds those pieces below the models (it imports only
:mod:`explorec.data` and :mod:`explorec.ranking`), so that models never import the
evaluation layer; :mod:`explorec.evaluate.protocol` builds on it.

A *validator* is a callable ``validate(model) -> float``: the validation score of a fitted
model as it is now, higher is better. ``fit(train, validate=...)`` takes one;
:func:`split_validator` is the one a model uses when it gets only ``split=``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import Split
from explorec.ranking import DEFAULT_SEED, candidate_mask, eligible_scores, topk

#: ``validate(model) -> score``, higher is better (see the module docstring)
Validator = Callable[[Any], float]

USER_METRICS = ("precision", "recall", "f1", "ndcg", "mrr", "map", "hit")


def part_matrices(split: Split, part: str) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray | None]:
    """(relevant, excluded, candidates) for ``part``.

    Validation excludes training items; test excludes training and validation items.
    """
    if part == "valid":
        return split.valid.matrix(), split.train.matrix(), split.valid_candidates
    if part == "test":
        excluded = (split.train.matrix() + split.valid.matrix()).tocsr()
        excluded.data[:] = 1
        return split.test.matrix(), excluded, split.test_candidates
    raise ValueError(f"part must be 'valid' or 'test', not {part!r}")


def candidates_of(candidates: np.ndarray | None, n_items: int) -> tuple[np.ndarray | None, int]:
    """(boolean mask of the candidate items, or None for all; number of candidates)."""
    if candidates is None:
        return None, n_items
    mask = candidate_mask(candidates, n_items)
    return mask, int(mask.sum())


def ranked_users(relevant: sp.csr_matrix, cand_mask: np.ndarray | None,
                 users: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """(relevant items restricted to the candidates, the users left with one or more).

    Only relevant items that are candidates count; users left with none are not ranked.
    ``users`` restricts the answer to those users.
    """
    if cand_mask is not None:
        relevant = sp.csr_matrix(relevant @ sp.diags(cand_mask.astype(relevant.dtype)))
        relevant.eliminate_zeros()
    found = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if users is not None:
        found = found[np.isin(found, np.asarray(users, dtype=np.int64))]
    return relevant, found


@dataclass
class RankedBatch:
    """One batch of users ranked by :func:`ranked_batches`."""

    users: np.ndarray  #: (b,) user ids
    scores: np.ndarray  #: (b, n_items) float64 scores, ``-inf`` where not rankable
    top: np.ndarray  #: (b, k) the top-k items, best first
    shown: np.ndarray  #: (b, k) whether each top-k entry is rankable (a short list ends early)
    relevant: np.ndarray  #: (b, n_items) booleans: the relevant items
    hits: np.ndarray  #: (b, k) whether each shown entry is relevant


def ranked_batches(score_fn: Callable[[np.ndarray], np.ndarray], relevant: sp.csr_matrix,
                   excluded: sp.csr_matrix, users: np.ndarray, *, k: int,
                   cand_mask: np.ndarray | None = None, batch_size: int = 1024,
                   seed: int = DEFAULT_SEED) -> Iterator[RankedBatch]:
    """Rank the candidates of ``users`` (from :func:`ranked_users`) in batches.

    ``score_fn(users) -> (len(users), n_items)`` scores; excluded items and non-candidates
    are not ranked, the model's own NaN or infinite scores are (clipped, see
    :func:`explorec.ranking.eligible_scores`); ties follow :func:`explorec.ranking.topk`'s
    seeded keys of (user, item).
    """
    n_items = relevant.shape[1]
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        raw = np.asarray(score_fn(batch), dtype=np.float64)
        if raw.shape != (len(batch), n_items):
            raise ValueError(f"score function returned shape {raw.shape}, "
                             f"expected {(len(batch), n_items)}")
        scores = eligible_scores(raw, exclude=excluded[batch], candidates=cand_mask, clip=True)
        top = topk(scores, k, rows=batch, seed=seed)
        # A user with fewer than k items left gets a short list: -inf entries are not shown.
        shown = np.isfinite(np.take_along_axis(scores, top, axis=1))
        rel = relevant[batch].toarray().astype(bool)
        hits = np.take_along_axis(rel, top, axis=1) & shown
        yield RankedBatch(users=batch, scores=scores, top=top, shown=shown, relevant=rel,
                          hits=hits)


def user_metrics(hits: np.ndarray, n_pos: np.ndarray, ks: tuple[int, ...],
                 metrics: tuple[str, ...] = USER_METRICS) -> dict[str, np.ndarray]:
    """Per-user metric values from a hit matrix.

    ``hits``: (users, K) booleans, column j true if the item ranked j+1 is relevant.
    ``n_pos``: (users,) number of relevant items. Returns ``{"name@k": (users,) array}``.
    """
    hits = hits.astype(np.float64)
    kmax = hits.shape[1]
    n_pos = n_pos.astype(np.float64)
    ranks = np.arange(1, kmax + 1, dtype=np.float64)
    cum_hits = np.cumsum(hits, axis=1)
    discount = 1.0 / np.log2(ranks + 1)
    cum_dcg = np.cumsum(hits * discount, axis=1)
    cum_idcg = np.cumsum(discount)
    # first hit rank (0 if none) for MRR
    any_hit = hits.any(axis=1)
    first = np.where(any_hit, hits.argmax(axis=1) + 1, 0)
    prec_at = cum_hits / ranks
    cum_ap = np.cumsum(prec_at * hits, axis=1)
    safe_pos = np.maximum(n_pos, 1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        if k > kmax:
            raise ValueError(f"k={k} exceeds the list length {kmax}")
        h = cum_hits[:, k - 1]
        ideal = np.minimum(n_pos, k).astype(np.int64)
        for m in metrics:
            if m == "precision":
                v = h / k
            elif m == "recall":
                v = h / safe_pos
            elif m == "f1":
                p, r = h / k, h / safe_pos
                v = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
            elif m == "ndcg":
                idcg = np.where(ideal > 0, cum_idcg[np.maximum(ideal, 1) - 1], 1.0)
                v = cum_dcg[:, k - 1] / idcg
            elif m == "mrr":
                v = np.where((first > 0) & (first <= k), 1.0 / np.maximum(first, 1), 0.0)
            elif m == "map":
                v = cum_ap[:, k - 1] / np.maximum(ideal, 1)
            elif m == "hit":
                v = (h > 0).astype(np.float64)
            else:
                raise ValueError(f"not a per-user top-K metric: {m}")
            out[f"{m}@{k}"] = v
    return out


def heldout_metric(score_fn: Callable[[np.ndarray], np.ndarray], relevant: sp.csr_matrix,
                   excluded: sp.csr_matrix, *, metric: str = "ndcg", k: int = 10,
                   candidates: np.ndarray | None = None, batch_size: int = 1024,
                   seed: int = DEFAULT_SEED) -> float:
    """Mean ``metric@k`` (one of :data:`USER_METRICS`) over the users with a relevant
    candidate item: the value :func:`explorec.evaluate.protocol.evaluate_scores` reports
    for the same inputs.

    >>> import scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 1]]))
    >>> excluded = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]]))
    >>> scores = np.array([[9.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    >>> heldout_metric(lambda u: scores[u], relevant, excluded, metric="hit", k=1)
    0.5
    """
    if metric not in USER_METRICS:
        raise ValueError(f"not a per-user top-K metric: {metric!r}; use one of "
                         f"{', '.join(USER_METRICS)}")
    cand_mask, n_candidates = candidates_of(candidates, relevant.shape[1])
    relevant, users = ranked_users(relevant, cand_mask)
    if k > n_candidates:
        raise ValueError(f"k={k} exceeds the number of candidate items ({n_candidates})")
    if len(users) == 0:
        raise ValueError("no user has a relevant candidate item to rank")
    values = [user_metrics(b.hits, b.relevant.sum(axis=1), (k,), (metric,))[f"{metric}@{k}"]
              for b in ranked_batches(score_fn, relevant, excluded, users, k=k,
                                      cand_mask=cand_mask, batch_size=batch_size, seed=seed)]
    return float(np.nanmean(np.concatenate(values)))


def split_validator(split: Split | None, *, metric: str = "ndcg", k: int = 10
                    ) -> Validator | None:
    """``validate(model)``: mean ``metric@k`` of ``model.score`` on ``split``'s validation
    part, ties broken with the split's seed (what
    ``evaluate_model(model, split, part="valid", ks=(k,), metrics=(metric,))`` reports), or
    None when there is no split or its validation part is empty.

    The part's matrices are built on the first call and kept for the later ones (one call per
    training epoch)."""
    if split is None or len(split.valid) == 0:
        return None
    parts: list[tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray | None]] = []

    def validate(model: Any) -> float:
        if not parts:
            parts.append(part_matrices(split, "valid"))
        relevant, excluded, candidates = parts[0]
        return heldout_metric(model.score, relevant, excluded, metric=metric, k=k,
                              candidates=candidates, seed=split.seed)

    return validate
