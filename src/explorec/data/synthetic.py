"""Seeded synthetic interaction data: power-law popularity, latent-factor tastes, item text.

Users belong to latent taste clusters; each cluster prefers items whose latent vectors point
its way, on top of a Zipf popularity bias. Sampling is vectorised per cluster, so the
generator scales from a few hundred rows to tens of millions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorec.data.catalog import Dataset, ItemCatalog
from explorec.data.interactions import IdMap, Interactions
from explorec.data.splits import DEFAULT_SEED
from explorec.errors import DataError

_TOPIC_WORDS = [
    ["space", "alien", "future", "robot", "galaxy"], ["love", "romance", "wedding", "heart", "paris"],
    ["murder", "detective", "crime", "clue", "alibi"], ["war", "soldier", "battle", "army", "front"],
    ["magic", "dragon", "wizard", "quest", "kingdom"], ["family", "kids", "school", "holiday", "dog"],
    ["horror", "ghost", "night", "blood", "haunted"], ["comedy", "party", "road", "trip", "friends"],
    ["music", "band", "song", "stage", "tour"], ["sport", "team", "coach", "game", "final"],
    ["history", "king", "empire", "queen", "revolution"], ["money", "heist", "bank", "deal", "gang"],
]


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 500
    n_interactions: int = 20_000
    n_factors: int = 8
    n_clusters: int = 12
    popularity_exponent: float = 1.0  # Zipf exponent of item popularity
    activity_exponent: float = 1.0  # Zipf exponent of user activity
    taste_strength: float = 3.0  # how strongly clusters prefer their items over popularity
    seed: int = DEFAULT_SEED


def _check_overrides(cfg: SyntheticConfig, overrides: dict[str, object]) -> dict[str, object]:
    """Options by name and type (ints stay ints; floats accept ints), or a DataError naming them."""
    known = cfg.__dict__
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise DataError(f"synthetic has no option {', '.join(unknown)}; options: "
                        f"{', '.join(known)}")
    out: dict[str, object] = {}
    for key, value in overrides.items():
        want = type(known[key])
        ok = (isinstance(value, int) and not isinstance(value, bool)) if want is int else (
            isinstance(value, int | float) and not isinstance(value, bool))
        if not ok:
            raise DataError(f"synthetic option {key} must be {'an integer' if want is int else 'a number'}"
                            f", got {value!r}")
        if want is int and key != "seed" and int(value) < 1:  # type: ignore[call-overload]
            raise DataError(f"synthetic option {key} must be >= 1, got {value!r}")
        out[key] = want(value)  # type: ignore[call-arg]
    return out


def generate(config: SyntheticConfig | None = None, **overrides: object) -> Dataset:
    """Generate a dataset (interactions with ratings and timestamps, item catalog with text)."""
    cfg = config or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**cfg.__dict__, **_check_overrides(cfg, overrides)})
    if cfg.n_interactions > cfg.n_users * cfg.n_items // 2:
        raise DataError(f"synthetic: n_interactions ({cfg.n_interactions:,}) must be at most half "
                        f"of n_users x n_items ({cfg.n_users:,} x {cfg.n_items:,})")
    rng = np.random.default_rng(cfg.seed)
    k = min(cfg.n_clusters, len(_TOPIC_WORDS))

    item_rank = rng.permutation(cfg.n_items)
    log_pop = -cfg.popularity_exponent * np.log1p(item_rank)  # Zipf bias over items
    centroids = rng.normal(size=(k, cfg.n_factors))
    item_topic = rng.integers(0, k, cfg.n_items)
    item_vec = centroids[item_topic] + 0.5 * rng.normal(size=(cfg.n_items, cfg.n_factors))
    item_vec /= np.linalg.norm(item_vec, axis=1, keepdims=True)
    cnorm = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    user_cluster = rng.integers(0, k, cfg.n_users)
    activity = 1.0 / (1.0 + rng.permutation(cfg.n_users)) ** cfg.activity_exponent
    activity = 0.5 * activity / activity.sum() + 0.5 / cfg.n_users  # everyone has some activity

    # Oversample so that enough unique (user, item) pairs remain after de-duplication.
    users_parts, items_parts, aff_parts = [], [], []
    need, draw = cfg.n_interactions, int(cfg.n_interactions * 1.3) + 100
    seen: np.ndarray = np.empty(0, dtype=np.int64)
    while need > 0:
        u = rng.choice(cfg.n_users, size=draw, p=activity)
        it = np.empty(draw, dtype=np.int64)
        aff = np.empty(draw)
        cl = user_cluster[u]
        for c in range(k):  # one vectorised draw per cluster, not per user
            idx = np.flatnonzero(cl == c)
            if len(idx) == 0:
                continue
            affinity = item_vec @ cnorm[c]
            logits = log_pop + cfg.taste_strength * affinity
            p = np.exp(logits - logits.max())
            p /= p.sum()
            it[idx] = rng.choice(cfg.n_items, size=len(idx), p=p)
            aff[idx] = affinity[it[idx]]
        key = u.astype(np.int64) * cfg.n_items + it
        key, first = np.unique(key, return_index=True)
        fresh = ~np.isin(key, seen, assume_unique=True)
        first = first[fresh][: need]
        seen = np.union1d(seen, key[fresh][: need])
        users_parts.append(u[first])
        items_parts.append(it[first])
        aff_parts.append(aff[first])
        need -= len(first)
    user = np.concatenate(users_parts)
    item = np.concatenate(items_parts)
    aff = np.concatenate(aff_parts)
    rating = np.clip(np.round(3.0 + 2.0 * aff + rng.normal(0, 0.7, len(aff))), 1, 5)
    t0 = 1_600_000_000.0
    timestamp = np.sort(rng.uniform(t0, t0 + 365 * 86400, len(user)))
    order = rng.permutation(len(user))  # rows in random order; time is a column

    users = IdMap.from_values([f"u{i}" for i in range(cfg.n_users)])
    items = IdMap.from_values([f"i{i}" for i in range(cfg.n_items)])
    inter = Interactions(users=users, items=items, user=user[order], item=item[order],
                         rating=rating[order].astype(np.float32), timestamp=timestamp[order],
                         source=f"synthetic(seed={cfg.seed})")
    words = np.array(_TOPIC_WORDS[:k], dtype=object)
    pick = rng.integers(0, 5, size=(cfg.n_items, 3))
    titles = [" ".join(words[t][p]) for t, p in zip(item_topic, pick, strict=True)]
    catalog = ItemCatalog.from_frame(pd.DataFrame({
        "item": items.ids,
        "title": [f"The {t.title()}" for t in titles],
        "year": (1950 + rng.integers(0, 75, cfg.n_items)).astype(str),
        "genres": [[words[t][0]] for t in item_topic],
        "topic": item_topic,
    }), source=inter.source)
    return Dataset(name="synthetic", interactions=inter, catalog=catalog)
