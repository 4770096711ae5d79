"""Seeded train / valid / test splits over one id universe.

All splits keep the full user and item id maps, so the three parts' matrices line up.
``candidates`` restrict which items are ranked at evaluation time (cold-item protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from explorec.data.interactions import Interactions
from explorec.errors import DataError, UnknownNameError

DEFAULT_SEED = 2020


@dataclass(frozen=True)
class Split:
    """Train / valid / test parts and the protocol that produced them."""

    name: str
    seed: int
    train: Interactions
    valid: Interactions
    test: Interactions
    valid_candidates: np.ndarray | None = None
    test_candidates: np.ndarray | None = None
    params: dict | None = None

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            "split": self.name,
            "seed": self.seed,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "test_users": len(self.test.active_users),
        }
        if self.test_candidates is not None:
            d["test_candidates"] = len(self.test_candidates)
        if self.params:
            d.update(self.params)
        return d


def _group_sizes(n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Per-group (train, valid, test) counts, RecBole's rule, vectorised over groups.

    valid/test get ``floor(ratio * n)``; a part whose ``ratio * n`` is in (0, 1) is bumped to 1
    while train keeps more than one row; train gets the rest.
    """
    n = n.astype(np.int64)
    cnt = [np.floor(r * n).astype(np.int64) for r in ratios]
    cnt[0] = n - cnt[1] - cnt[2]
    for i in (2, 1):  # RecBole walks from the last part backwards
        bump = (cnt[0] > 1) & (ratios[i] * n > 0) & (ratios[i] * n < 1)
        cnt[i] = cnt[i] + bump
        cnt[0] = cnt[0] - bump
    return tuple(cnt)


def _rank_within_user(user: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Position of each row within its user's rows, following ``order`` (a permutation)."""
    u = user[order]
    sorted_idx = np.argsort(u, kind="stable")
    u_sorted = u[sorted_idx]
    starts = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
    counts = np.diff(np.r_[starts, len(u_sorted)])
    pos_sorted = np.arange(len(u_sorted)) - np.repeat(starts, counts)
    pos = np.empty(len(order), dtype=np.int64)
    pos[order[sorted_idx]] = pos_sorted
    return pos


def _by_position(inter: Interactions, order: np.ndarray, ratios: tuple[float, float, float]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = _rank_within_user(inter.user, order)
    n = np.bincount(inter.user, minlength=inter.n_users)
    n_tr, n_va, _ = _group_sizes(n, ratios)
    tr_end = n_tr[inter.user]
    va_end = tr_end + n_va[inter.user]
    return pos < tr_end, (pos >= tr_end) & (pos < va_end), pos >= va_end


def canonical_order(inter: Interactions) -> np.ndarray:
    """The rows sorted by their contents (user, item, time, rating): seeded shuffles start
    from this order, so a split depends on which rows exist, never on their order in a file."""
    keys = [a for a in (inter.rating, inter.timestamp) if a is not None]
    return np.lexsort((*keys, inter.item, inter.user))


def _seeded_order(inter: Interactions, seed: int) -> np.ndarray:
    """A seeded random permutation of the rows, a function of their contents."""
    canon = canonical_order(inter)
    return canon[np.random.default_rng(seed).permutation(len(inter))]


def ratio_split(inter: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                seed: int = DEFAULT_SEED) -> Split:
    """Per-user random split (RecBole's default ``RS`` with ``RO`` order, grouped by user)."""
    if abs(sum(ratios) - 1) > 1e-9 or min(ratios) < 0:
        raise ValueError(f"ratios must be non-negative and sum to 1, got {ratios}")
    order = _seeded_order(inter, seed)
    tr, va, te = _by_position(inter, order, ratios)
    return Split("ratio", seed, inter.subset(tr), inter.subset(va), inter.subset(te),
                 params={"ratios": list(ratios)})


def _time_order(inter: Interactions, seed: int) -> np.ndarray:
    if inter.timestamp is None:
        raise DataError("this split needs timestamps", source=inter.source, column="timestamp")
    # Ties in time are broken by a seeded shuffle so the result does not depend on file order.
    shuffled = _seeded_order(inter, seed)
    return shuffled[np.argsort(inter.timestamp[shuffled], kind="stable")]


def leave_last_out_split(inter: Interactions, seed: int = DEFAULT_SEED, n_test: int = 1,
                         n_valid: int = 1) -> Split:
    """Per user, by time: the last ``n_test`` rows to test, the ``n_valid`` before to valid.

    Users with fewer than ``n_test + n_valid + 1`` rows keep everything in train.
    """
    order = _time_order(inter, seed)
    pos = _rank_within_user(inter.user, order)
    n = np.bincount(inter.user, minlength=inter.n_users)[inter.user]
    eligible = n >= n_test + n_valid + 1
    te = eligible & (pos >= n - n_test)
    va = eligible & (pos >= n - n_test - n_valid) & ~te
    tr = ~(te | va)
    return Split("loo", seed, inter.subset(tr), inter.subset(va), inter.subset(te),
                 params={"n_test": n_test, "n_valid": n_valid})


def temporal_split(inter: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                   seed: int = DEFAULT_SEED) -> Split:
    """Global split by time: the oldest 80% train, then 10% valid, the newest 10% test."""
    order = _time_order(inter, seed)
    n = len(inter)
    n_tr = round(ratios[0] * n)
    n_va = round(ratios[1] * n)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    tr, va = rank < n_tr, (rank >= n_tr) & (rank < n_tr + n_va)
    te = rank >= n_tr + n_va
    return Split("temporal", seed, inter.subset(tr), inter.subset(va), inter.subset(te),
                 params={"ratios": list(ratios)})


def cold_item_split(inter: Interactions, cold_fraction: float = 0.2, seed: int = DEFAULT_SEED,
                    valid_fraction: float = 0.1) -> Split:
    """Hold items out of training entirely.

    ``cold_fraction`` of the items (drawn with the seed among items that have interactions)
    form the test set: every interaction with them goes to test, and at test time each user
    ranks only these items. A further ``valid_fraction`` of the items is held out the same way
    for validation (early stopping, blend weights). Training sees neither group.
    """
    if not 0 < cold_fraction < 1 or not 0 <= valid_fraction < 1 - cold_fraction:
        raise ValueError("need 0 < cold_fraction < 1 and 0 <= valid_fraction < 1 - cold_fraction")
    rng = np.random.default_rng(seed)
    items = rng.permutation(inter.active_items)
    n_test = round(cold_fraction * len(items))
    n_valid = round(valid_fraction * len(items))
    test_items = np.sort(items[:n_test])
    valid_items = np.sort(items[n_test:n_test + n_valid])
    te = np.isin(inter.item, test_items)
    va = np.isin(inter.item, valid_items)
    tr = ~(te | va)
    return Split("cold-items", seed, inter.subset(tr), inter.subset(va), inter.subset(te),
                 valid_candidates=valid_items, test_candidates=test_items,
                 params={"cold_fraction": cold_fraction, "valid_fraction": valid_fraction})


def truncate_histories(split: Split, n_history: int, *, fraction: float = 0.2,
                       seed: int = DEFAULT_SEED) -> Split:
    """New-user protocol: a seeded ``fraction`` of the test users keep only their first
    ``n_history`` training interactions (by time; by row order without timestamps).

    Their remaining training rows are dropped, and the test part keeps only these users, so
    metrics measure how well a model serves users with ``n_history`` known items. Validation
    is unchanged (it serves early stopping). Every model fits on the truncated training part.
    """
    if n_history < 0 or not 0 < fraction <= 1:
        raise ValueError("need n_history >= 0 and 0 < fraction <= 1")
    rng = np.random.default_rng(seed)
    candidates = split.test.active_users
    chosen = np.sort(rng.choice(candidates, size=max(1, round(fraction * len(candidates))),
                                replace=False))
    train = split.train
    is_new = np.isin(train.user, chosen)
    pos = _rank_within_user(train.user, train.time_order())
    keep = ~is_new | (pos < n_history)
    test = split.test.subset(np.isin(split.test.user, chosen))
    return Split(f"{split.name}+new-users-{n_history}", split.seed, train.subset(keep),
                 split.valid, test, split.valid_candidates, split.test_candidates,
                 params={**(split.params or {}), "n_history": n_history,
                         "new_users": len(chosen)})


SPLITS: dict[str, Callable[..., Split]] = {
    "ratio": ratio_split,
    "loo": leave_last_out_split,
    "temporal": temporal_split,
    "cold-items": cold_item_split,
}


def make_split(inter: Interactions, name: str = "ratio", *, seed: int = DEFAULT_SEED,
               cold_fraction: float = 0.2) -> Split:
    """Split by registry name: ``ratio``, ``loo``, ``temporal`` or ``cold-items``."""
    if name not in SPLITS:
        raise UnknownNameError("split", name, list(SPLITS))
    if name == "cold-items":
        return cold_item_split(inter, cold_fraction=cold_fraction, seed=seed)
    return SPLITS[name](inter, seed=seed)
