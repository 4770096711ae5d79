"""Top-K ranking metrics, vectorised over users.

Conventions follow RecBole so that figures are comparable: a user's list is the top-K of a
full ranking over candidate items (training items excluded); ``recall@k`` divides hits by
the user's number of relevant items; ``ndcg@k`` and ``map@k`` normalise by
``min(n_relevant, k)`` ideal positions; per-user values are averaged over users with at least
one relevant item.

Per-user metrics: precision, recall, f1, ndcg, mrr, map, hit, auc.
List-level metrics (over all users' top-K lists): itemcoverage, gini, novelty, ild.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from explorec.data.interactions import normalized_item_vectors as normalized_item_vectors  # re-export

# the per-user top-K metrics live in the leaf module explorec.validation (models validate
# themselves with them while training, below this layer); re-exported here
from explorec.validation import USER_METRICS as USER_METRICS
from explorec.validation import user_metrics as user_metrics

RANK_METRICS = ("auc",)  # need the full ranking, not only the top-K
LIST_METRICS = ("itemcoverage", "gini", "novelty", "ild")
ALL_METRICS = USER_METRICS + RANK_METRICS + LIST_METRICS
DEFAULT_METRICS = ALL_METRICS


def check_metrics(metrics: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {', '.join(ALL_METRICS)}")
    return tuple(metrics)


def auc_from_scores(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per-user AUC of a full ranking: P(relevant item scored above a candidate non-relevant).

    ``scores``: (users, items) with ``-inf`` for items that are not candidates;
    ``relevant``: (users, items) booleans. Rows with no relevant or no negative item get NaN.
    Ties are counted as half.
    """
    cand = np.isfinite(scores)
    rel = relevant & cand
    n_pos = rel.sum(axis=1).astype(np.float64)
    n_neg = cand.sum(axis=1) - n_pos
    # Mann-Whitney U with average ranks for ties, per row.
    from scipy.stats import rankdata

    masked = np.where(cand, scores, -np.inf).astype(np.float64)
    ranks = rankdata(masked, axis=1, method="average")  # ascending; -inf rank lowest
    n_excluded = (~cand).sum(axis=1, keepdims=True)
    ranks = ranks - n_excluded  # ranks among candidates
    rank_sum = np.where(rel, ranks, 0.0).sum(axis=1)
    u = rank_sum - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


# ------------------------------------------------------------------ list-level metrics
def item_coverage(topk: np.ndarray, n_candidates: int) -> float:
    """Share of candidate items that appear in at least one user's list.

    ``topk`` may be a (users, k) matrix or the flat array of recommended items.
    """
    return float(len(np.unique(topk)) / max(1, n_candidates))


def gini_index(topk: np.ndarray, n_items: int) -> float:
    """Gini index of how often each item is recommended (0 = equal exposure, 1 = one item)."""
    counts = np.sort(np.bincount(topk.ravel(), minlength=n_items)).astype(np.float64)
    n = len(counts)
    idx = np.arange(1, n + 1)
    total = counts.sum()
    return float(((2 * idx - n - 1) * counts).sum() / (n * total)) if total > 0 else 0.0


def novelty(topk: np.ndarray, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information ``-log2 p(i)`` of recommended items.

    ``p(i)`` is the share of training users who interacted with ``i``, add-one smoothed so
    that items nobody has seen get a finite value.
    """
    p = (item_popularity + 1.0) / (n_users + 1.0)
    return float((-np.log2(p[topk])).mean())


def intra_list_diversity(topk: np.ndarray, item_vectors: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Per-user mean pairwise cosine distance within the list.

    Uses ``sum_{i<j} v_i.v_j = (|sum v|^2 - sum |v|^2) / 2``, so one sparse product per batch
    gives every user's value without forming the K x K matrices.
    """
    n_users, k = topk.shape
    if k < 2:
        return np.zeros(n_users)
    n_items = item_vectors.shape[0]
    rows = np.repeat(np.arange(n_users), k)
    ind = sp.csr_matrix((np.ones(n_users * k), (rows, topk.ravel())), shape=(n_users, n_items))
    summed = ind @ item_vectors
    if sp.issparse(summed):
        sq_sum = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    else:
        sq_sum = (np.asarray(summed) ** 2).sum(axis=1)
    if sp.issparse(item_vectors):
        norms_sq = np.asarray(item_vectors.multiply(item_vectors).sum(axis=1)).ravel()
    else:
        norms_sq = (np.asarray(item_vectors) ** 2).sum(axis=1)
    self_sq = norms_sq[topk].sum(axis=1)
    mean_sim = (sq_sum - self_sq) / (k * (k - 1))
    return 1.0 - mean_sim
