"""The serving engine: one artifact + one store -> rank, learn from rewards, add items.

Every state change goes through the store first and reaches the in-memory policy through
:meth:`Engine.sync`, in the store's order: items by their change sequence, rewards by their
reward sequence. That one path makes a single process, several processes sharing a store, a
restart after ``kill -9`` and a hot swap behave the same way:

* policy state = the last snapshot for this artifact (or the artifact's initial state) plus
  every reward logged after it, each applied exactly once, in sequence order;
* erasing a user bumps the store's epoch; every engine then rebuilds its policy state from the
  artifact by replaying the remaining rewards, so nothing learned from that user remains.

Items put after training are scored by the similarity of their LM vector to the user's
history, calibrated to the model's score scale (the model itself is unchanged until
``explorec retrain``); the policy sees them at once through ``Policy.add_items``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec._io import sha256_bytes
from explorec.errors import ExploRecError
from explorec.ranking import external_key, topk
from explorec.serve.artifact import ServiceArtifact
from explorec.serve.errors import Conflict, Gone, NotFound, ServiceError
from explorec.serve.faults import fault
from explorec.serve.stores import (
    Interaction,
    ItemRecord,
    RankEvent,
    RewardRecord,
    Snapshot,
    Store,
)

log = logging.getLogger("explorec.serve")

__all__ = ["Conflict", "Engine", "EngineConfig", "Gone", "NotFound", "RankResult", "RankedItem",
           "ServiceError"]


@dataclass(frozen=True)
class EngineConfig:
    pool_size: int = 200  # candidates kept for the policy when the request names none
    fresh_items: int = 20  # newest API-added items always in the pool (cold-start exposure)
    max_history: int = 1000  # most recent history items used for scoring
    reward_window_s: float = 7 * 86400.0  # rewards later than this after the rank: 410 Gone
    snapshot_every: int = 500  # rewards between policy-state snapshots
    explain_top: int = 3
    event_cache: int = 2000
    # catalogs above this many items, when the model has no nearest-neighbour index, draw the
    # candidate pool from a precomputed pool of the ``popular_pool`` most popular items (+ the
    # fresh ones) instead of ranking every item's score on every request
    scan_max_items: int = 20_000
    popular_pool: int = 5000


@dataclass
class RankedItem:
    item: str
    score: float | None
    propensity: float
    explanation: list[dict[str, Any]]


@dataclass
class RankResult:
    event_id: str
    items: list[RankedItem]
    policy: str
    artifact: str


def policy_user(user: str, internal: int) -> int:
    """The integer a policy knows a user by: the model's internal id for a training user,
    else ``2**62`` + a seeded hash of the external id (stable across processes and restarts;
    the same for ranks and the rewards that follow them)."""
    return internal if internal >= 0 else (1 << 62) + external_key(user)


@dataclass
class _Served:
    """What a rank computed, kept in memory so its rewards need no recomputation."""

    cand: np.ndarray
    hist: np.ndarray
    base: np.ndarray
    user_key: int
    context: np.ndarray | None
    #: the user's key in the policy's requests (:func:`policy_user`): per-user policy state is
    #: learned under the same key it is ranked with
    policy_user: int = -1


@dataclass
class _Applied:
    n: int = 0
    since_snapshot: int = 0
    skipped: int = 0
    last_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def single_threaded_blas() -> None:
    """One BLAS thread per process: a server's requests are small, and BLAS threads fighting
    over the cores make them 10x slower. Set before numpy starts its pools where possible."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover - threadpoolctl absent
        pass


def _row(cols: np.ndarray, n: int) -> sp.csr_matrix:
    """A one-row binary CSR matrix (built from its parts: no COO round trip)."""
    cols = np.sort(np.asarray(cols, np.int32))
    return sp.csr_matrix((np.ones(len(cols), np.float32), cols, np.array([0, len(cols)], np.int32)),
                         shape=(1, n))


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class Engine:
    """Ranks with the artifact's model and policy; learns from the store's rewards."""

    def __init__(self, art: ServiceArtifact, store: Store | None, config: EngineConfig | None = None
                 ) -> None:
        self.art = art
        self.store = store
        self.config = config or EngineConfig()
        self.model = art.model
        self.model.make_row_major()
        self.n_model = art.n_items
        self.ids: list[str] = list(art.item_ids)
        self.index: dict[str, int] = {i: n for n, i in enumerate(self.ids)}
        self._vectors = np.array(art.item_vectors, np.float32)
        self._deleted = np.zeros(self.n_model, bool)
        self.added: list[int] = []  # internal ids of API-added items, creation order
        # ``lock`` guards the in-memory state (policy, item table, served cache) and is never
        # held during store I/O or text encoding; ``_sync_lock`` lets one thread at a time
        # bring the engine up to the store's heads (its reads happen outside ``lock``)
        self.lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self.policy = art.new_policy()
        self._uses_model_items_only = self.policy.uses_two_tower
        self.users: dict[str, int] = {str(u): n for n, u in enumerate(self.model.user_ids())}
        self._train = self.model.training_history().tocsr()
        rng = np.random.default_rng(int(art.manifest.get("seed", 2020)))
        self._calib = np.sort(rng.choice(self.n_model, min(self.n_model, 2000), replace=False))
        self._can_score_history = self.model.can_score_history()
        self._popular = self._popular_pool()
        self.epoch = 0
        self.items_seq = 0
        self.reward_seq = 0
        self.base_seq = 0
        self.applied = _Applied()
        self._served: OrderedDict[str, tuple[RankEvent, _Served]] = OrderedDict()
        if store is not None:
            self._attach()

    # ------------------------------------------------------------------ properties
    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self.n_items]

    @property
    def deleted(self) -> np.ndarray:
        return self._deleted[: self.n_items]

    def _ids_array(self) -> np.ndarray:
        arr = self.__dict__.get("_ids_arr")
        if arr is None or len(arr) != len(self.ids):
            arr = np.asarray(self.ids, dtype=object)
            self._ids_arr = arr
        return arr

    def training_items(self, user: str) -> list[str]:
        """The external ids of a training user's items in the model's training data ([] for
        users the model was not trained on)."""
        u = self.users.get(user, -1)
        if u < 0:
            return []
        row = self._train.indices[self._train.indptr[u]:self._train.indptr[u + 1]]
        return [self.ids[int(i)] for i in row]

    def n_live_items(self) -> int:
        return int(self.n_items - self.deleted.sum())

    def is_live(self, item: str) -> bool:
        i = self.index.get(item)
        return i is not None and not self._deleted[i]

    def policy_digest(self) -> str:
        state = self.policy.get_state()
        h = b"".join(k.encode() + np.ascontiguousarray(v).tobytes() for k, v in sorted(state.items()))
        return sha256_bytes(h)[:16]

    def status(self) -> dict[str, Any]:
        return {"artifact": self.art.artifact_id, "artifact_path": str(self.art.path),
                "model": self.art.manifest.get("model"), "policy": self.art.policy_name,
                "n_items": self.n_items, "live_items": self.n_live_items(),
                "added_items": len(self.added), "epoch": self.epoch, "reward_seq": self.reward_seq,
                "base_seq": self.base_seq, "rewards_applied": self.applied.n,
                "rewards_skipped": self.applied.skipped, "policy_state_sha256": self.policy_digest()}

    # ------------------------------------------------------------------ setup
    def _attach(self) -> None:
        """Load items, policy snapshot and rewards from the store (start, restart, hot swap)."""
        assert self.store is not None
        heads = self.store.heads()
        self.epoch = heads.epoch
        self.base_seq = int(self.store.meta_setnx(f"base_seq:{self.art.artifact_id}",
                                                  str(heads.rewards_seq)))
        recs = self.store.items_since(0)
        self._apply_items(recs, grow_policy=False)
        self.items_seq = max([r.seq for r in recs], default=0)
        snap = self.store.load_snapshot(self.art.artifact_id)
        if snap is not None and snap.epoch == self.epoch and self.n_model <= snap.n_items <= self.n_items:
            self._grow_policy(self.n_model, snap.n_items)
            self.policy.set_state(snap.arrays)
            self._grow_policy(snap.n_items, self.n_items)
            self.reward_seq = snap.seq
            self.applied.n = snap.n_applied
        else:
            self._grow_policy(self.n_model, self.n_items)
            self.reward_seq = self.base_seq
        self.sync()

    def _grow_policy(self, start: int, stop: int) -> None:
        if stop > start:
            self.policy.add_items(stop - start, self._vectors[start:stop].astype(np.float64))

    def _rebuild(self, epoch: int) -> None:
        """Policy state from the artifact + every remaining reward (after a user was erased)."""
        self.policy = self.art.new_policy()
        self._grow_policy(self.n_model, self.n_items)
        self.reward_seq = self.base_seq
        self.applied = _Applied()
        self.epoch = epoch
        self._served.clear()

    # ------------------------------------------------------------------ sync with the store
    def _popular_pool(self) -> np.ndarray | None:
        """The model's items by training popularity (ties by a fixed hash), most popular first:
        the candidate source for catalogs above ``scan_max_items`` without an index."""
        if self.n_model <= self.config.scan_max_items or self.model.index_ is not None:
            return None
        counts = np.bincount(self._train.indices, minlength=self.n_model).astype(np.float64)
        n = min(self.config.popular_pool, self.n_model)
        return topk(counts[None, :], n, rows=np.array([0]))[0].astype(np.int64)

    def _in_sync(self, h: Any) -> bool:
        return h.epoch == self.epoch and h.items_seq <= self.items_seq and h.rewards_seq <= self.reward_seq

    def sync(self) -> None:
        """Apply every item change and reward the store has that this engine has not.

        The store is read outside :attr:`lock` (ranks keep running on the current state);
        each batch of changes is applied under it. A call that finds the engine up to date
        costs one read of the store's heads and takes no lock.
        """
        if self.store is None:
            return
        h = self.store.heads()
        if self._in_sync(h) and self.applied.since_snapshot < self.config.snapshot_every:
            return
        with self._sync_lock:
            h = self.store.heads()
            if h.epoch != self.epoch:
                with self.lock:
                    self._rebuild(h.epoch)
            if h.items_seq > self.items_seq:
                recs = self.store.items_since(self.items_seq)
                vecs = self._item_vectors(recs)
                with self.lock:
                    self._apply_items(recs, grow_policy=True, vectors=vecs)
                    self.items_seq = max([r.seq for r in recs], default=h.items_seq)
            while h.rewards_seq > self.reward_seq:
                recs = self.store.rewards_since(self.reward_seq, 1000)
                if not recs:
                    self.reward_seq = h.rewards_seq
                    break
                served = self._fetch_served(recs)
                with self.lock:
                    self._apply_rewards(recs, served)
                    self.reward_seq = recs[-1].seq
            if self.applied.since_snapshot >= self.config.snapshot_every:
                self.snapshot()

    def snapshot(self) -> None:
        if self.store is None:
            return
        with self.lock:  # a consistent copy of the state; written after the lock is released
            snap = Snapshot(self.art.artifact_id, self.epoch, self.reward_seq, self.n_items,
                            self.applied.n, self.policy.get_state())
            self.applied.since_snapshot = 0
        self.store.save_snapshot(snap)

    def _item_vector(self, rec: ItemRecord) -> np.ndarray:
        v = rec.vector
        if v is not None and rec.space == self.art.space and len(v) == self._vectors.shape[1]:
            return v
        if rec.text:
            return self.encode([rec.text])[0]
        return np.zeros(self._vectors.shape[1], np.float32)

    def _item_vectors(self, recs: Sequence[ItemRecord]) -> dict[int, np.ndarray]:
        """The LM vector of each live record (by seq), encoding texts stored without one."""
        return {r.seq: self._item_vector(r) for r in recs if r.text or r.vector is not None}

    def _apply_items(self, recs: Sequence[ItemRecord], *, grow_policy: bool,
                     vectors: dict[int, np.ndarray] | None = None) -> None:
        vecs = vectors if vectors is not None else self._item_vectors(recs)
        zero = np.zeros(self._vectors.shape[1], np.float32)
        known = [r for r in recs if r.item in self.index]
        new = sorted((r for r in recs if r.item not in self.index), key=lambda r: r.order)
        for r in known:
            i = self.index[r.item]
            self._deleted[i] = r.deleted
            if not r.deleted and r.text and r.seq in vecs:
                v = vecs[r.seq]
                self._vectors[i] = v
                self._update_policy_vector(i, v)
        if not new:
            return
        start = self.n_items
        need = start + len(new)
        if need > len(self._vectors):
            cap = max(need, int(len(self._vectors) * 1.5) + 16)
            grown = np.zeros((cap, self._vectors.shape[1]), np.float32)
            grown[:start] = self._vectors[:start]
            self._vectors = grown
            d = np.zeros(cap, bool)
            d[:start] = self._deleted[:start]
            self._deleted = d
        for n, r in enumerate(new):
            i = start + n
            self.ids.append(r.item)
            self.index[r.item] = i
            self._vectors[i] = vecs.get(r.seq, zero)
            self._deleted[i] = r.deleted
            self.added.append(i)
        if grow_policy:
            self._grow_policy(start, need)

    def _update_policy_vector(self, i: int, v: np.ndarray) -> None:
        """Re-texted item: the policy refreshes whatever it derived from its vector."""
        if i < self.policy.n_items:
            self.policy.update_item_vectors(np.array([i]), v[None, :].astype(np.float64))

    # ------------------------------------------------------------------ scoring
    def _history_idx(self, user: str, items: Sequence[str]) -> tuple[np.ndarray, int]:
        """(internal history ids: training row + logged items, user key or -1)."""
        u = self.users.get(user, -1)
        parts = []
        if u >= 0:
            parts.append(self._train.indices[self._train.indptr[u]:self._train.indptr[u + 1]])
        logged = [self.index[i] for i in items if i in self.index]
        if logged:
            parts.append(np.asarray(logged, np.int64))
        hist = np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
        return hist, u

    def base_scores(self, hist: np.ndarray, user_key: int = -1) -> np.ndarray:
        """Scores of every item (n_items,) for a user with this history."""
        hm = hist[hist < self.n_model]
        if self._can_score_history:
            row = _row(hm, self.n_model)
            s = np.asarray(self.model.score_history(row), np.float64)[0]
        elif user_key >= 0:
            s = np.asarray(self.model.score(np.array([user_key])), np.float64)[0]
        else:
            s = np.zeros(self.n_model)
        if not np.isfinite(s).all():
            s = np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
        if self.n_items == self.n_model:
            return s
        out = np.empty(self.n_items)
        out[: self.n_model] = s
        ref = s[self._calib]
        mu, sd = float(ref.mean()), float(ref.std())
        if len(hist):
            prof = self.vectors[hist].mean(axis=0)
            prof /= max(float(np.linalg.norm(prof)), 1e-12)
            c_ref = self._vectors[self._calib] @ prof
            c_new = self._vectors[self.n_model:self.n_items] @ prof
            out[self.n_model:] = mu + sd * (c_new - c_ref.mean()) / (c_ref.std() + 1e-9)
        else:
            out[self.n_model:] = mu
        return out

    def _explain(self, user_key: int, hist: np.ndarray, items: np.ndarray) -> list[list[dict[str, Any]]]:
        top = self.config.explain_top
        out: list[list[dict[str, Any]]] = [[] for _ in items]
        if not len(hist) or top <= 0:
            return out
        hist = hist[-50:]
        contrib = np.zeros((len(items), len(hist)))
        hm = hist < self.n_model
        im = items < self.n_model
        rest = np.ones_like(contrib, bool)
        if hm.any() and im.any():  # the model's own terms (every Recommender has them)
            c = np.asarray(self.model.contributions(max(user_key, 0), hist[hm], items[im]), np.float64)
            contrib[np.ix_(np.flatnonzero(im), np.flatnonzero(hm))] = c
            rest = ~im[:, None] | ~hm[None, :]
        if rest.any():  # items added since training: LM-vector similarity
            cos = self.vectors[items] @ self.vectors[hist].T
            contrib = np.where(rest, cos, contrib)
        shown = np.where((contrib > 0) & np.isfinite(contrib), contrib, -np.inf)
        order = np.argsort(-shown, axis=1, kind="stable")[:, :top]
        weights = np.take_along_axis(shown, order, axis=1)
        for r in range(len(items)):
            out[r] = [{"item": self.ids[int(hist[j])], "weight": round(float(w), 6)}
                      for j, w in zip(order[r], weights[r], strict=True) if w > -np.inf]
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._encode_lock:
            return self.art.encode(texts)

    # ------------------------------------------------------------------ rank
    def rank(self, user: str, k: int = 10, *, candidates: Sequence[str] | None = None,
             exclude: Sequence[str] | None = None, features: Sequence[float] | None = None,
             context: dict[str, Any] | None = None, explain: bool = True) -> RankResult:
        """Rank for a user (unknown users are cold-started), log the slate, return it."""
        result, event = self.prepare_rank(user, k, candidates=candidates, exclude=exclude,
                                          features=features, context=context, explain=explain)
        self.commit_rank(event)
        return result

    def commit_rank(self, event: RankEvent) -> None:
        """Log the slate durably; only then may its answer be sent (a reward needs the event)."""
        if self.store is not None:
            self.store.log_rank(event)

    def prepare_rank(self, user: str, k: int = 10, *, candidates: Sequence[str] | None = None,
                     exclude: Sequence[str] | None = None, features: Sequence[float] | None = None,
                     context: dict[str, Any] | None = None, explain: bool = True
                     ) -> tuple[RankResult, RankEvent]:
        """Compute a slate and its log record (not yet durable: see :meth:`commit_rank`)."""
        return self.compute_rank(self.read_for_rank(user), user, k, candidates=candidates,
                                 exclude=exclude, features=features, context=context, explain=explain)

    def read_for_rank(self, user: str) -> tuple[list[str], int]:
        """The store I/O a rank needs: bring the engine up to the store's heads and read the
        user's logged history (its most recent ``max_history`` items and their sequence)."""
        self.sync()
        if self.store is None:
            return [], 0
        return self.store.history(user, limit=self.config.max_history)

    def compute_rank(self, history: tuple[list[str], int], user: str, k: int = 10, *,
                     candidates: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                     features: Sequence[float] | None = None, context: dict[str, Any] | None = None,
                     explain: bool = True) -> tuple[RankResult, RankEvent]:
        """The in-memory part of a rank (no store I/O): slate, propensities, log record."""
        hist_items, hist_seq = history
        ctx = None if features is None else np.asarray(features, np.float64)[None, :]
        if ctx is not None:
            want = int(getattr(self.policy, "n_context", 0) or 0)
            if want == 0:
                raise ServiceError(f"policy {self.art.policy_name} takes no context features; "
                                   "send none (context.attributes are logged for evaluation)",
                                   "context.features")
            if want > 0 and ctx.shape[1] != want:
                raise ServiceError(f"policy {self.art.policy_name} expects {want} context "
                                   f"features, got {ctx.shape[1]}", "context.features")
        with self.lock:
            hist, ukey = self._history_idx(user, hist_items)
            tie_user = policy_user(user, ukey)
            pool = self._index_pool(hist, ukey, exclude) if candidates is None else None
            if pool is not None:  # the model's ANN index named the pool: no catalog scoring
                cand, base = pool
            else:
                base_all = self.base_scores(hist, ukey)
                cand = self._candidates(hist, base_all, candidates, exclude, tie_user)
                base = base_all[cand]
            if len(cand) == 0:
                positions = np.zeros(0, np.int64)
                scores = props = np.zeros(0)
            else:
                k_eff = min(k, len(cand))
                h = _row(hist, self.n_items)
                from explorec.explore import Requests

                req = Requests(cand[None, :], h, np.array([tie_user]), base[None, :], ctx)
                try:
                    sb = self.policy.rank_batch(req, k_eff)
                except ExploRecError as e:
                    if ctx is not None:
                        raise ServiceError(str(e), "context.features") from e
                    raise
                positions, scores, props = sb.positions[0], sb.scores[0], sb.propensities[0]
            items = cand[positions]
            expl = self._explain(ukey, hist, items) if explain else [[] for _ in items]
        event_id = uuid.uuid4().hex
        ids = self._ids_array()
        ext = ids[items].tolist()
        result = RankResult(event_id, [RankedItem(e, _finite(s), float(p), x) for e, s, p, x in
                                       zip(ext, scores, props, expl, strict=True)],
                            self.art.policy_name, self.art.artifact_id)
        ev_ctx = dict(context or {})
        if features is not None:
            ev_ctx["features"] = [float(x) for x in features]
        event = RankEvent(event_id, user, time.time(), self.art.artifact_id, self.art.policy_name,
                          ext, [int(p) for p in positions], [float(p) for p in props],
                          [_finite(s) for s in scores], ids[cand].tolist(), hist_seq,
                          ev_ctx or None)
        with self.lock:
            self._served[event_id] = (event, _Served(cand, hist, base, ukey, ctx, tie_user))
            while len(self._served) > self.config.event_cache:
                self._served.popitem(last=False)
        return result, event

    def _index_pool(self, hist: np.ndarray, ukey: int, exclude: Sequence[str] | None
                    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The candidate pool and its base scores from the model's nearest-neighbour index
        (built at train time for factor models from :data:`explorec.index.ANN_MIN_ITEMS`
        items), or None to score every item: no index, items added since training (their
        scores are calibrated against the catalog's), an empty history, or a pool as large as
        what is left."""
        if self.model.index_ is None or self.n_items != self.n_model or not len(hist):
            return None
        blocked = [hist]
        if exclude:
            blocked.append(np.asarray([self.index[e] for e in exclude if e in self.index],
                                      np.int64))
        if self._deleted.any():
            blocked.append(np.flatnonzero(self._deleted))
        block = np.unique(np.concatenate(blocked))
        pool = self.config.pool_size
        if self.n_model - len(block) <= pool:
            return None
        found = self.model.candidates_from_index(pool, user=ukey, history=_row(hist, self.n_model),
                                                 exclude=block)
        if found is None or not len(found[0]):
            return None
        order = np.argsort(found[0])
        return found[0][order], found[1][order]

    def _candidates(self, hist: np.ndarray, base: np.ndarray, candidates: Sequence[str] | None,
                    exclude: Sequence[str] | None, tie_user: int) -> np.ndarray:
        excl = {self.index[e] for e in (exclude or ()) if e in self.index}
        limit = self.n_model if self._uses_model_items_only else self.n_items
        if candidates is not None:
            out, seen = [], set()
            for n, c in enumerate(candidates):
                i = self.index.get(c)
                if i is None or i >= limit:
                    raise ServiceError(f"unknown item {c!r}", f"candidates[{n}]")
                if self._deleted[i]:
                    raise ServiceError(f"item {c!r} was deleted", f"candidates[{n}]")
                if i not in excl and i not in seen:
                    seen.add(i)
                    out.append(i)
            return np.asarray(out, np.int64)
        blocked = [hist[hist < limit]]
        if excl:
            ex = np.fromiter(excl, np.int64, len(excl))
            blocked.append(ex[ex < limit])
        if self._deleted[:limit].any():
            blocked.append(np.flatnonzero(self._deleted[:limit]))
        block = np.unique(np.concatenate(blocked)) if len(blocked) > 1 else blocked[0]
        n_ok = limit - len(block)
        pool = self.config.pool_size
        if n_ok <= pool:
            ok = np.ones(limit, bool)
            ok[block] = False
            return np.flatnonzero(ok)
        fresh = [i for i in self.added[-self.config.fresh_items:] if i < limit and not self._deleted[i]]
        if self._popular is not None:
            # large catalog: rank only the precomputed popular pool (+ fresh items)
            src = self._popular
            if fresh:
                src = np.union1d(src, np.asarray(fresh, np.int64))
            blocked_mask = np.zeros(limit, bool)
            blocked_mask[block] = True
            src = src[~blocked_mask[src]]
            if len(src) > pool:
                s = np.asarray(base[src], dtype=np.float64)
                # ties by the user's keys on the items' own ids (not their place in the pool)
                top = topk(s[None, :], pool, rows=np.array([tie_user]), cols=src)[0]
                src = src[top]
            return np.sort(src).astype(np.int64)
        # top-`pool` by score among the allowed items (ties by the user's tie keys)
        s = np.array(base[:limit], dtype=np.float64)
        s[block] = -np.inf
        top = topk(s[None, :], pool, rows=np.array([tie_user]))[0]
        if fresh:
            fresh_ok = np.setdiff1d(np.asarray(fresh, np.int64), block)
            top = np.union1d(top, fresh_ok)
        return np.sort(top).astype(np.int64)

    # ------------------------------------------------------------------ rewards
    def event(self, event_id: str) -> RankEvent:
        with self.lock:
            hit = self._served.get(event_id)
        if hit is not None:
            return hit[0]
        ev = self.store.get_event(event_id) if self.store is not None else None
        if ev is None:
            raise NotFound(f"unknown event_id {event_id!r} (never served, or its user was erased)",
                           "event_id")
        return ev

    def reward(self, event_id: str, reward: float, *, item: str | None = None,
               position: int | None = None) -> RewardRecord:
        """Record a reward for one shown item (at most once) and learn from it now."""
        if self.store is None:
            raise ServiceError("no store attached", None, 503)
        ev = self.event(event_id)
        now = time.time()
        if now - ev.ts > self.config.reward_window_s:
            raise Gone(f"event {event_id} was served {now - ev.ts:.0f} s ago, past the reward window "
                       f"of {self.config.reward_window_s:.0f} s", "event_id")
        if item is not None:
            if item not in ev.items:
                raise ServiceError(f"item {item!r} was not shown in event {event_id}", "item")
            pos = ev.items.index(item)
            if position is not None and position != pos:
                raise ServiceError(f"item {item!r} was shown at position {pos}, not {position}",
                                   "position")
        elif position is not None:
            if not 0 <= position < len(ev.items):
                raise ServiceError(f"position {position} is outside the slate of {len(ev.items)} items",
                                   "position")
            pos = position
        else:
            raise ServiceError("name the rewarded item (or its position)", "item")
        res = self.store.add_reward(ev, pos, reward, now)
        if res.status == "unknown_event":
            raise NotFound(f"unknown event_id {event_id!r} (its user was erased)", "event_id")
        if res.status == "duplicate":
            prev = res.record
            raise Conflict(f"a reward for item {ev.items[pos]!r} of event {event_id} was already "
                           f"applied (reward {prev.reward if prev else '?'}); rewards apply once",
                           "event_id")
        assert res.record is not None
        self.sync()
        fault("reward.after_apply")
        return res.record

    def _fetch_served(self, recs: Sequence[RewardRecord]) -> dict[str, tuple[RankEvent, _Served] | None]:
        """For rewards of events no longer in memory: the logged event and what its rank saw,
        read from the store and recomputed (outside :attr:`lock`); None where unlearnable."""
        with self.lock:
            need = list(dict.fromkeys(r.event_id for r in recs if r.event_id not in self._served))
        if not need or self.store is None:
            return {}
        fetched = self.store.get_events(need)
        out: dict[str, tuple[RankEvent, _Served] | None] = {}
        for eid in need:
            ev = fetched.get(eid)
            served = self._reconstruct(ev) if ev is not None else None
            out[eid] = (ev, served) if ev is not None and served is not None else None
        return out

    def _apply_rewards(self, recs: Sequence[RewardRecord],
                       fetched: dict[str, tuple[RankEvent, _Served] | None] | None = None) -> None:
        """Policy update from logged rewards (one Feedback batch, padded candidates)."""
        from explorec.explore import Feedback, Requests, SlateBatch

        t0 = time.perf_counter()
        if fetched is None:
            fetched = self._fetch_served(recs)
        rows: list[tuple[RewardRecord, RankEvent, _Served]] = []
        for r in recs:
            hit = self._served.get(r.event_id)
            if hit is None:
                hit = fetched.get(r.event_id)
                if hit is None:
                    self.applied.skipped += 1
                    continue
                self._served[r.event_id] = hit
            ev, served = hit
            if r.position >= len(ev.positions) or int(ev.positions[r.position]) >= len(served.cand):
                self.applied.skipped += 1
                continue
            rows.append((r, ev, served))
        if rows:
            b = len(rows)
            c = max(len(s.cand) for _, _, s in rows)
            k = max(len(ev.items) for _, ev, _ in rows)
            cand = np.zeros((b, c), np.int64)
            valid = np.zeros((b, c), bool)
            base = np.full((b, c), -np.inf)
            positions = np.zeros((b, k), np.int64)
            items = np.zeros((b, k), np.int64)
            props = np.ones((b, k))
            scores = np.zeros((b, k))
            rewards = np.full((b, k), np.nan)
            hr, hc = [], []
            nctx = {len(s.context[0]) for _, _, s in rows if s.context is not None}
            ctx = np.zeros((b, nctx.pop())) if len(nctx) == 1 and all(
                s.context is not None for _, _, s in rows) else None
            for n, (r, ev, s) in enumerate(rows):
                m = len(s.cand)
                cand[n, :m] = s.cand
                valid[n, :m] = True
                base[n, :m] = s.base
                kk = len(ev.positions)
                positions[n, :kk] = ev.positions
                # padding slots point at a valid column with NaN reward: never observed
                items[n, :kk] = s.cand[np.asarray(ev.positions, np.int64)]
                items[n, kk:] = items[n, 0] if kk else 0
                props[n, :kk] = np.maximum(np.asarray(ev.propensities, np.float64), 1e-12)
                scores[n, :kk] = [x if x is not None else 0.0 for x in ev.scores]
                rewards[n, r.position] = r.reward
                hr += [n] * len(s.hist)
                hc += list(s.hist)
                if ctx is not None and s.context is not None:
                    ctx[n] = s.context[0]
            hist = sp.csr_matrix((np.ones(len(hr), np.float32), (hr, hc)), shape=(b, self.n_items))
            users = np.asarray([s.policy_user for _, _, s in rows])
            req = Requests(cand, hist, users, base, ctx, valid)
            slates = SlateBatch(items, positions, scores, props, None, {"policy": self.art.policy_name})
            try:
                self.policy.update(Feedback(req, slates, rewards))
                done = b
            except Exception:  # a reward the policy cannot take must not stall learning
                done = 0
                for n in range(b):  # learn from the others, one by one, in order
                    one = np.array([n])
                    try:
                        self.policy.update(Feedback(req.take(one), SlateBatch(
                            items[one], positions[one], scores[one], props[one], None, slates.info),
                            rewards[one]))
                        done += 1
                    except Exception as e:
                        log.warning("policy could not learn from reward %s of event %s: %s",
                                    rows[n][0].seq, rows[n][0].event_id, e)
                        self.applied.skipped += 1
            self.applied.n += done
            self.applied.since_snapshot += done
        self.applied.last_ms = (time.perf_counter() - t0) * 1000

    def _reconstruct(self, ev: RankEvent) -> _Served | None:
        """Recompute what the rank saw (candidates, history, base scores) from the log."""
        cand = np.asarray([self.index.get(c, -1) for c in ev.candidates], np.int64)
        if (cand < 0).any():
            return None  # served from another catalog (before a swap): not learnable here
        items: list[str] = []
        if self.store is not None and ev.history_seq > 0:
            items, _ = self.store.history(ev.user, upto_seq=ev.history_seq, limit=self.config.max_history)
        hist, ukey = self._history_idx(ev.user, items)
        base = self.base_scores(hist, ukey)[cand]
        feats = (ev.context or {}).get("features")
        ctx = None if feats is None else np.asarray(feats, np.float64)[None, :]
        return _Served(cand, hist, base, ukey, ctx, policy_user(ev.user, ukey))

    def replay_log(self, store: Store) -> int:
        """Learn from every reward in ``store`` in order (warm start of a retrained artifact)."""
        prev = self.store
        self.store = store
        try:
            last = 0
            n0 = self.applied.n
            while True:
                recs = store.rewards_since(last, 1000)
                if not recs:
                    break
                self._apply_rewards(recs)
                last = recs[-1].seq
            return self.applied.n - n0
        finally:
            self.store = prev

    # ------------------------------------------------------------------ events, items, users
    def add_events(self, rows: Sequence[Interaction]) -> int:
        for n, r in enumerate(rows):
            if not self.is_live(r.item):
                raise ServiceError(f"unknown item {r.item!r}", f"events[{n}].item")
        assert self.store is not None
        return self.store.add_interactions(rows)

    def put_item(self, item: str, text: str, features: dict[str, Any]) -> tuple[bool, int]:
        """Encode and store an item; rankable as soon as this returns. (created?, internal id)"""
        assert self.store is not None
        created = not self.is_live(item)
        vec = self.encode([text])[0]
        self.store.put_item(item, text, features, self.art.space, vec, time.time())
        self.sync()
        return created, self.index[item]

    def delete_item(self, item: str) -> None:
        assert self.store is not None
        if not self.is_live(item):
            raise NotFound(f"unknown item {item!r}", "item_id")
        self.store.delete_item(item, time.time())
        self.sync()

    def delete_user(self, user: str) -> dict[str, int]:
        assert self.store is not None
        counts = self.store.delete_user(user)
        with self.lock:
            for eid in [e for e, (ev, _) in self._served.items() if ev.user == user]:
                del self._served[eid]
        self.sync()
        return counts
