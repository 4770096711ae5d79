"""A recommendation environment built from real ratings (ML-100K by default).

Hidden truth
    Every user-item pair gets a click probability ``p(u, i) = sigmoid(a * affinity + b)``.
    ``affinity`` is the z-scored EASE score of a model fit on *all* interactions plus a bonus
    for the user's real rating of the item, ``(rating - 3) / 2`` (0 when unrated). ``a`` and
    ``b`` are calibrated so that the average pair has a ``target_ctr`` click rate and each
    user's five best items ``target_top_ctr``. A click at slate position ``j`` happens with
    probability ``p(u, i) / log2(j + 2)`` (position bias).

What policies know
    The base model is fit on a *logged* part of the data: the earliest ``history_fraction``
    of each warm user's interactions with warm items. ``new_user_fraction`` of the users have
    no logged history and enter the stream at a random round; ``new_item_fraction`` of the
    items have no interactions (text only) and are released at random rounds in the first
    half of the run.

Arrivals
    Each round one user arrives, drawn with probability proportional to their real activity
    (number of ratings) among the users that have entered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from explorec.data.interactions import Interactions
from explorec.errors import ExploRecError


@dataclass
class Environment:
    """Everything a simulation run needs; see the module docstring for the construction."""

    p_true: np.ndarray            # (n_users, n_items) click probabilities at position 0
    logged: Interactions          # what the base model and policies may learn from
    item_vectors: np.ndarray      # (n_items, d) LM vectors of every item's text
    user_features: np.ndarray     # (n_users, f) standardised user features (gender, age)
    activity: np.ndarray          # (n_users,) arrival weights
    new_users: np.ndarray         # internal ids of users without logged history
    new_items: np.ndarray         # internal ids of text-only items
    seed: int
    calibration: dict[str, float]

    @property
    def n_users(self) -> int:
        return int(self.p_true.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.p_true.shape[1])

    def examination(self, k: int) -> np.ndarray:
        return 1.0 / np.log2(np.arange(k) + 2.0)

    def schedule(self, rounds: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user per round, entry round per user, release round per item), seeded."""
        rng = np.random.default_rng(seed)
        entry = np.zeros(self.n_users, dtype=np.int64)
        entry[self.new_users] = rng.integers(0, max(int(0.7 * rounds), 1), len(self.new_users))
        release = np.zeros(self.n_items, dtype=np.int64)
        release[self.new_items] = rng.integers(0, max(int(0.5 * rounds), 1), len(self.new_items))
        p = self.activity / self.activity.sum()
        users = rng.choice(self.n_users, size=rounds, p=p)
        warm = np.setdiff1d(np.arange(self.n_users), self.new_users)
        pw = self.activity[warm] / self.activity[warm].sum()
        early = entry[users] > np.arange(rounds)
        while early.any():  # redraw arrivals of new users before they entered, among warm users
            users[early] = rng.choice(warm, size=int(early.sum()), p=pw)
            early = entry[users] > np.arange(rounds)
        # a new user's first arrival is at their entry round (they "sign up" and are served)
        order = np.argsort(entry[self.new_users], kind="stable")
        for u in self.new_users[order]:
            if entry[u] < rounds:
                users[entry[u]] = u
        return users, entry, release


def _ease_scores(X: sp.csr_matrix, reg: float) -> np.ndarray:
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += reg
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    B[np.diag_indices_from(B)] = 0.0
    return np.asarray(X @ B)


def _calibrate(aff: np.ndarray, target_ctr: float, target_top: float, seed: int
               ) -> tuple[float, float]:
    """(a, b) such that mean sigmoid(a*aff+b) = target_ctr and mean top-5 per user = target_top."""
    rng = np.random.default_rng(seed)
    sample = aff.ravel()[rng.integers(0, aff.size, min(aff.size, 200_000))]
    top = -np.partition(-aff, 4, axis=1)[:, :5].ravel()

    def sig(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    def b_for(a: float) -> float:
        lo, hi = -30.0, 10.0
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sig(a * sample + mid).mean() < target_ctr else (lo, mid)
        return (lo + hi) / 2

    lo, hi = 0.01, 10.0
    for _ in range(40):
        a = (lo + hi) / 2
        if sig(a * top + b_for(a)).mean() < target_top:
            lo = a
        else:
            hi = a
    a = (lo + hi) / 2
    return a, b_for(a)


def build_environment(dataset: Any, *, item_vectors: np.ndarray, seed: int = 2020,
                      new_user_fraction: float = 0.1, new_item_fraction: float = 0.1,
                      history_fraction: float = 0.5, target_ctr: float = 0.02,
                      target_top_ctr: float = 0.3, ease_reg: float = 250.0) -> Environment:
    """Build the environment from a :class:`explorec.data.catalog.Dataset` with ratings."""
    inter: Interactions = dataset.interactions
    for name, value in (("new_user_fraction", new_user_fraction), ("new_item_fraction", new_item_fraction),
                        ("history_fraction", history_fraction)):
        if not 0 <= value < 1:
            raise ExploRecError(f"{name} must be in [0, 1), got {value!r}")
    if not 0 < target_ctr < target_top_ctr < 1:
        raise ExploRecError("need 0 < target_ctr < target_top_ctr < 1, got "
                            f"{target_ctr!r}, {target_top_ctr!r}")
    if item_vectors.shape[0] != inter.n_items:
        raise ExploRecError(f"item_vectors has {item_vectors.shape[0]} rows for {inter.n_items} items")
    rng = np.random.default_rng(seed)
    n_users, n_items = inter.n_users, inter.n_items

    X = inter.matrix(binary=True).astype(np.float64)
    s = _ease_scores(X, ease_reg)
    aff = (s - s.mean()) / (s.std() + 1e-12)
    if inter.rating is not None:
        R = sp.csr_matrix((inter.rating.astype(np.float64), (inter.user, inter.item)),
                          shape=(n_users, n_items))
        R.sum_duplicates()
        bonus = R.copy()
        bonus.data = (bonus.data - 3.0) / 2.0
        aff = aff + bonus.toarray()
    a, b = _calibrate(aff, target_ctr, target_top_ctr, seed)
    p_true = (1.0 / (1.0 + np.exp(-(a * aff + b)))).astype(np.float32)

    new_users = np.sort(rng.choice(n_users, round(new_user_fraction * n_users), replace=False))
    new_items = np.sort(rng.choice(n_items, round(new_item_fraction * n_items), replace=False))
    keep = ~np.isin(inter.user, new_users) & ~np.isin(inter.item, new_items)
    if inter.timestamp is not None and history_fraction > 0:
        order = inter.time_order()
    else:
        order = np.lexsort((rng.random(len(inter)), inter.user))
    u_sorted = inter.user[order]
    start = np.searchsorted(u_sorted, u_sorted, side="left")
    rank = np.arange(len(order)) - start
    counts = np.bincount(inter.user, minlength=n_users)
    early = np.zeros(len(inter), bool)
    early[order] = rank < np.ceil(history_fraction * counts[u_sorted])
    logged = inter.subset(keep & early)

    activity = np.maximum(counts, 1).astype(np.float64)
    feats = _user_features(dataset, inter)
    return Environment(p_true, logged, np.asarray(item_vectors, np.float64), feats, activity,
                       new_users, new_items, seed,
                       {"a": float(a), "b": float(b), "mean_ctr": float(p_true.mean()),
                        "top5_ctr": float(np.sort(p_true, axis=1)[:, -5:].mean())})


def _user_features(dataset: Any, inter: Interactions) -> np.ndarray:
    """User features from the dataset's user table, centred: MovieLens' ``gender`` (is female)
    and standardised ``age`` when present, else its numeric columns standardised (up to 8);
    two zero columns when there is no user table."""
    users = getattr(dataset, "users", None)
    if users is None:
        return np.zeros((inter.n_users, 2))
    frame = users.frame.reindex(inter.users.to_external(np.arange(inter.n_users)).astype(str))
    cols: list[np.ndarray] = []
    if "gender" in frame or "age" in frame:
        g = (frame["gender"].astype(str).str.upper() == "F").to_numpy(float) if "gender" in frame \
            else np.zeros(len(frame))
        cols.append(g - g.mean())
        cols.append(_standardised(frame["age"]) if "age" in frame else np.zeros(len(frame)))
    else:
        numeric = [c for c in frame.columns
                   if pd.to_numeric(frame[c], errors="coerce").notna().mean() > 0.9][:8]
        cols += [_standardised(frame[c]) for c in numeric]
    if not cols:
        return np.zeros((inter.n_users, 2))
    return np.column_stack(cols)


def _standardised(col: Any) -> np.ndarray:
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    v = np.where(np.isnan(v), np.nanmean(v) if np.isfinite(v).any() else 0.0, v)
    return (v - v.mean()) / (v.std() + 1e-12)
