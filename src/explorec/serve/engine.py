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
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec._io import sha256_bytes
from explorec.errors import ExploRecError
from explorec.ranking import external_key, top_set, topk
from explorec.serve.artifact import ServiceArtifact
from explorec.serve.errors import Conflict, Gone, NotFound, ServiceError
from explorec.serve.faults import fault
from explorec.serve.stores import (
    Heads,
    Interaction,
    ItemRecord,
    RankEvent,
    RewardRecord,
    Snapshot,
    Store,
)

log = logging.getLogger("explorec.serve")

__all__ = ["Conflict", "Engine", "EngineConfig", "Gone", "NotFound", "RankCall", "RankResult",
           "RankedItem", "RewardCall", "ServiceError"]


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


@dataclass(frozen=True)
class RankCall:
    """One rank request, as :meth:`Engine.compute_ranks` takes it."""

    user: str
    k: int = 10
    candidates: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    features: Sequence[float] | None = None
    context: dict[str, Any] | None = None
    explain: bool = True


@dataclass(frozen=True)
class RewardCall:
    """One reward, as :meth:`Engine.rewards` takes it: the event and the item (or position)."""

    event_id: str
    reward: float
    item: str | None = None
    position: int | None = None


@dataclass
class _Prepared:
    """A rank request on its way through :meth:`Engine.compute_ranks`."""

    call: RankCall
    hist: np.ndarray
    hist_seq: int
    ukey: int
    tie_user: int
    ctx: np.ndarray | None
    cand: np.ndarray | None = None
    base: np.ndarray | None = None
    positions: np.ndarray | None = None
    scores: np.ndarray | None = None
    props: np.ndarray | None = None


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
    """One BLAS/OpenMP thread per process: a server's requests are small, and BLAS threads
    fighting over the cores (or spinning on the other core while they wait) make them slower.

    Limits the libraries loaded so far (threadpoolctl) and sets the environment that the
    ones loaded later (scipy's own OpenBLAS, loaded with the artifact) and spawned workers
    read; an explicit setting in the environment is left as it is. The service calls this at
    start and again once its artifact is loaded.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover - threadpoolctl absent
        pass


def _row(cols: np.ndarray, n: int) -> sp.csr_matrix:
    """A one-row binary CSR matrix (built from its parts: no COO round trip)."""
    return _rows([cols], n)


def _rows(rows: Sequence[np.ndarray], n: int) -> sp.csr_matrix:
    """A binary CSR matrix with one row per array of column ids (each sorted, as CSR wants)."""
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    idx = (np.concatenate([np.sort(np.asarray(r, np.int64)) for r in rows]) if len(rows)
           else np.zeros(0, np.int64))
    small = n < 2**31 and indptr[-1] < 2**31
    return sp.csr_matrix((np.ones(len(idx), np.float32), idx.astype(np.int32 if small else np.int64),
                          indptr.astype(np.int32 if small else np.int64)), shape=(len(rows), n))


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
        train = self.model.training_history().tocsr()
        if not train.has_canonical_format:  # sorted, distinct ids per row: a row is a history
            train = train.copy()
            train.sum_duplicates()
        self._train = train
        rng = np.random.default_rng(int(art.manifest.get("seed", 2020)))
        self._calib = np.sort(rng.choice(self.n_model, min(self.n_model, 2000), replace=False))
        self._can_score_history = self.model.can_score_history()
        self._popular = self._popular_pool()
        # the popular pool by item id: the columns a large catalog's rank has the model score
        self._popular_cols = None if self._popular is None else np.sort(self._popular)
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

    def sync(self, heads: Heads | None = None) -> None:
        """Apply every item change and reward the store has that this engine has not.

        The store is read outside :attr:`lock` (ranks keep running on the current state);
        each batch of changes is applied under it. A call that finds the engine up to date
        costs one read of the store's heads (none when the caller read them: ``heads``) and
        takes no lock.
        """
        if self.store is None:
            return
        h = self.store.heads() if heads is None else heads
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
        if len(parts) == 1 and not logged:  # a canonical CSR row: sorted and distinct already
            return parts[0].astype(np.int64), u
        hist = np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
        return hist, u

    def base_scores(self, hist: np.ndarray, user_key: int = -1) -> np.ndarray:
        """Scores of every item (n_items,) for a user with this history."""
        return self.base_scores_many([hist], [user_key])[0]

    def base_scores_many(self, hists: Sequence[np.ndarray], user_keys: Sequence[int],
                         history: sp.csr_matrix | None = None) -> np.ndarray:
        """(B, n_items) scores for B users with these histories (one model call);
        ``history``: the histories as a (B, n_items) CSR when the caller has built it."""
        b = len(hists)
        if self._can_score_history:
            if history is not None and self.n_items == self.n_model:
                X = history
            else:
                X = _rows([h[h < self.n_model] for h in hists], self.n_model)
            S = np.asarray(self.model.score_history(X), np.float64)
        else:
            S = np.zeros((b, self.n_model))
            known = np.flatnonzero(np.asarray(user_keys) >= 0)
            if len(known):
                S[known] = self.model.score(np.asarray(user_keys, np.int64)[known])
        if not np.isfinite(S).all():
            S = np.nan_to_num(S, nan=0.0, posinf=0.0, neginf=0.0)
        if self.n_items == self.n_model:
            return S
        out = np.empty((b, self.n_items))
        out[:, : self.n_model] = S
        for r, hist in enumerate(hists):
            # items added since training: the user's text profile, on the model's score scale
            s = S[r]
            ref = s[self._calib]
            mu, sd = float(ref.mean()), float(ref.std())
            if len(hist):
                prof = self.vectors[hist].mean(axis=0)
                prof /= max(float(np.linalg.norm(prof)), 1e-12)
                c_ref = self._vectors[self._calib] @ prof
                c_new = self._vectors[self.n_model:self.n_items] @ prof
                out[r, self.n_model:] = mu + sd * (c_new - c_ref.mean()) / (c_ref.std() + 1e-9)
            else:
                out[r, self.n_model:] = mu
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

    def serve_ranks(self, calls: Sequence[RankCall]) -> list[tuple[RankResult, RankEvent] | Exception]:
        """A moment's ranks end to end, made for one store-I/O thread hop: the store reads
        (:meth:`read_for_ranks`), the slates (:meth:`compute_ranks`) and the durable log of
        every slate served (one ``Store.log_ranks`` write, group-committed). Returns only after
        that write: no slate is answered before it is durable. A request's own error is in its
        place; a store error raises for the whole batch (nothing of it was answered)."""
        out = self.compute_ranks(self.read_for_ranks([c.user for c in calls]), calls)
        events = [o[1] for o in out if not isinstance(o, BaseException)]
        if events and self.store is not None:
            self.store.log_ranks(events)
        return out

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
        return self.read_for_ranks([user])[0]

    def read_for_ranks(self, users: Sequence[str]) -> list[tuple[list[str], int]]:
        """:meth:`read_for_rank` for several users: the store's heads and the histories in one
        read (``Store.heads_and_histories``), then a sync if the heads moved."""
        if self.store is None:
            return [([], 0) for _ in users]
        heads, hists = self.store.heads_and_histories(users, limit=self.config.max_history)
        self.sync(heads)
        return hists

    def compute_rank(self, history: tuple[list[str], int], user: str, k: int = 10, *,
                     candidates: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                     features: Sequence[float] | None = None, context: dict[str, Any] | None = None,
                     explain: bool = True) -> tuple[RankResult, RankEvent]:
        """The in-memory part of a rank (no store I/O): slate, propensities, log record."""
        out = self.compute_ranks([history], [RankCall(user, k, candidates, exclude, features,
                                                      context, explain)])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def compute_ranks(self, histories: Sequence[tuple[list[str], int]], calls: Sequence[RankCall]
                      ) -> list[tuple[RankResult, RankEvent] | Exception]:
        """:meth:`compute_rank` for a batch of requests, in one pass: one base-model scoring of
        every history, one policy call per group of equal (k, candidate count, context width).

        Each request's slate is the one it would get alone (the policy sees the same
        candidates, base scores and tie keys; a sampling policy's draws are shared by the
        group, each slate still follows its own logged propensities). A request that fails
        (an unknown candidate, context of the wrong width) gets its error in its place; the
        others are answered.
        """
        if len(histories) != len(calls):
            raise ValueError(f"{len(histories)} histories for {len(calls)} rank calls")
        n = len(calls)
        out: list[Any] = [None] * n
        prep: list[_Prepared | None] = [None] * n
        with self.lock:
            # 1. histories, context checks, index pools
            need_scores: list[int] = []
            built: dict[tuple[int, ...], sp.csr_matrix] = {}
            for j, (call, (hist_items, hist_seq)) in enumerate(zip(calls, histories, strict=True)):
                try:
                    ctx = self._context_row(call.features)
                    hist, ukey = self._history_idx(call.user, hist_items)
                    p = _Prepared(call, hist, hist_seq, ukey, policy_user(call.user, ukey), ctx)
                    if call.candidates is None:
                        pool = self._index_pool(hist, ukey, call.exclude)
                        if pool is not None:  # the model's ANN index named the pool
                            p.cand, p.base = pool
                    if p.cand is None:
                        need_scores.append(j)
                    prep[j] = p
                except ServiceError as e:
                    out[j] = e
            # 2. base scores of every history that needs them, in one model call
            if need_scores:
                H = _rows([prep[j].hist for j in need_scores], self.n_items)  # type: ignore[union-attr]
                built[tuple(need_scores)] = H  # the policy's history matrix too, for that group
                preps = [prep[j] for j in need_scores]
                cols = self._popular_cols if self._pool_only(preps) else None  # type: ignore[arg-type]
                if cols is not None:  # the model scores the popular pool's columns alone
                    S = self.model.score_history(H, items=cols)
                    S = np.asarray(S, np.float64)
                    if not np.isfinite(S).all():
                        S = np.nan_to_num(S, nan=0.0, posinf=0.0, neginf=0.0)
                else:
                    S = self.base_scores_many([p.hist for p in preps],  # type: ignore[union-attr]
                                              [p.ukey for p in preps], H)  # type: ignore[union-attr]
                pools = self._candidates_many(preps, S, cols)  # type: ignore[arg-type]
                for r, j in enumerate(need_scores):
                    p, c = prep[j], pools[r]
                    assert p is not None
                    if isinstance(c, ServiceError):
                        out[j] = c
                        prep[j] = None
                    else:
                        p.cand = c
                        p.base = S[r][c] if cols is None else S[r][np.searchsorted(cols, c)]
            # 3. the policy, once per group of requests with the same shapes
            groups: dict[tuple[int, int, int], list[int]] = {}
            for j, p in enumerate(prep):
                if p is None or out[j] is not None:
                    continue
                assert p.cand is not None
                if len(p.cand) == 0:
                    p.positions = np.zeros(0, np.int64)
                    p.scores = p.props = np.zeros(0)
                    continue
                width = -1 if p.ctx is None else p.ctx.shape[1]
                groups.setdefault((min(p.call.k, len(p.cand)), len(p.cand), width), []).append(j)
            for (k_eff, _, _), rows in groups.items():
                self._rank_group([prep[j] for j in rows], k_eff, out, rows,  # type: ignore[misc]
                                 built.get(tuple(rows)))
            # 4. answers and the served-slate cache
            ids = self._ids_array()
            # event ids: 128 random bits each, as 32 hex digits, one urandom read per batch
            fresh = os.urandom(16 * n).hex()
            for j, p in enumerate(prep):
                if p is None or out[j] is not None:
                    continue
                out[j] = self._answer(p, ids, fresh[32 * j:32 * j + 32])
            while len(self._served) > self.config.event_cache:
                self._served.popitem(last=False)
        return out

    def _context_row(self, features: Sequence[float] | None) -> np.ndarray | None:
        if features is None:
            return None
        ctx = np.asarray(features, np.float64)[None, :]
        want = int(getattr(self.policy, "n_context", 0) or 0)
        if want == 0:
            raise ServiceError(f"policy {self.art.policy_name} takes no context features; "
                               "send none (context.attributes are logged for evaluation)",
                               "context.features")
        if want > 0 and ctx.shape[1] != want:
            raise ServiceError(f"policy {self.art.policy_name} expects {want} context "
                               f"features, got {ctx.shape[1]}", "context.features")
        return ctx

    def _rank_group(self, group: list[_Prepared], k: int, out: list[Any], rows: list[int],
                    hists: sp.csr_matrix | None = None) -> None:
        """One ``rank_batch`` for requests of equal candidate count; a policy error is retried
        request by request so that it reaches only the request that caused it."""
        from explorec.explore import Requests

        if hists is None:
            hists = _rows([p.hist for p in group], self.n_items)
        ctx = None if group[0].ctx is None else np.vstack([p.ctx for p in group])  # type: ignore[misc]
        req = Requests(np.stack([p.cand for p in group]), hists,  # type: ignore[misc]
                       np.array([p.tie_user for p in group]), np.stack([p.base for p in group]),  # type: ignore[misc]
                       ctx)
        try:
            sb = self.policy.rank_batch(req, k)
        except ExploRecError as e:
            if len(group) > 1:
                for p, j in zip(group, rows, strict=True):
                    self._rank_group([p], k, out, [j])
                return
            out[rows[0]] = (ServiceError(str(e), "context.features") if group[0].ctx is not None
                            else e)
            return
        for r, p in enumerate(group):
            p.positions, p.scores, p.props = sb.positions[r], sb.scores[r], sb.propensities[r]

    def _answer(self, p: _Prepared, ids: np.ndarray, event_id: str) -> tuple[RankResult, RankEvent]:
        call = p.call
        assert p.cand is not None and p.positions is not None
        items = p.cand[p.positions]
        expl = (self._explain(p.ukey, p.hist, items) if call.explain else [[] for _ in items])
        ext = ids[items].tolist()
        sc = p.scores
        assert sc is not None and p.props is not None
        scores = sc.tolist()  # JSON has no inf/nan: a score that is not finite is null
        finite = np.isfinite(sc)
        if not finite.all():
            scores = [s if f else None for s, f in zip(scores, finite.tolist(), strict=True)]
        props = p.props.tolist()
        result = RankResult(event_id, list(map(RankedItem, ext, scores, props, expl)),
                            self.art.policy_name, self.art.artifact_id)
        ev_ctx = dict(call.context or {})
        if call.features is not None:
            ev_ctx["features"] = [float(x) for x in call.features]
        event = RankEvent(event_id, call.user, time.time(), self.art.artifact_id,
                          self.art.policy_name, ext, p.positions.tolist(), props, scores,
                          ids[p.cand].tolist(), p.hist_seq, ev_ctx or None)
        self._served[event_id] = (event, _Served(p.cand, p.hist, p.base, p.ukey, p.ctx, p.tie_user))
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

    def _pool_only(self, preps: Sequence[_Prepared]) -> bool:
        """Whether every one of these requests takes its candidates from the popular pool
        (a large catalog, no items added since training, no named candidates, fewer items
        blocked than would leave ``pool_size``), so that the model need score only the pool."""
        if self._popular_cols is None or self.n_items != self.n_model or not self._can_score_history:
            return False
        free = self.n_model - int(self._deleted.sum()) - self.config.pool_size
        return all(p.call.candidates is None and len(p.hist) + len(p.call.exclude or ()) < free
                   for p in preps)

    def _candidates_many(self, preps: Sequence[_Prepared], S: np.ndarray,
                         cols: np.ndarray | None = None) -> list[np.ndarray | ServiceError]:
        """Each request's candidate pool (sorted internal ids) from its row of ``S``: the
        items it names, or the best ``pool_size`` of the items it may be shown (by base score,
        ties by the user's tie keys) plus the freshest API items; the rows that rank the whole
        catalog share one partition. ``cols``: the item ids of ``S``'s columns when the model
        scored only the popular pool (:meth:`_pool_only` holds for every request)."""
        limit = self.n_model if self._uses_model_items_only else self.n_items
        pool = self.config.pool_size
        deleted = np.flatnonzero(self._deleted[:limit])
        fresh = np.asarray([i for i in self.added[-self.config.fresh_items:]
                            if i < limit and not self._deleted[i]], np.int64)
        out: list[np.ndarray | ServiceError | None] = [None] * len(preps)
        scan: list[tuple[int, np.ndarray]] = []  # (row, blocked ids): top of the whole catalog
        popular: list[tuple[int, np.ndarray]] = []  # (row, blocked ids): top of the popular pool
        for r, p in enumerate(preps):
            call = p.call
            excl = {self.index[e] for e in (call.exclude or ()) if e in self.index}
            if call.candidates is not None:
                try:
                    out[r] = self._named_candidates(call.candidates, excl, limit)
                except ServiceError as e:
                    out[r] = e
                continue
            blocked = [p.hist[p.hist < limit]]
            if excl:
                ex = np.fromiter(excl, np.int64, len(excl))
                blocked.append(ex[ex < limit])
            if len(deleted):
                blocked.append(deleted)
            block = np.unique(np.concatenate(blocked)) if len(blocked) > 1 else blocked[0]
            if limit - len(block) <= pool:
                ok = np.ones(limit, bool)
                ok[block] = False
                out[r] = np.flatnonzero(ok)
            elif self._popular is not None:
                popular.append((r, block))
            else:
                scan.append((r, block))
        if cols is not None and len(popular) != len(preps):
            raise RuntimeError("scores of the popular pool only, for a request that needs more")
        if popular:
            for (r, _), c in zip(popular, self._popular_candidates_many(
                    S, popular, fresh, [preps[r].tie_user for r, _ in popular], limit, cols),
                    strict=True):
                out[r] = c
        if scan:
            # one partition for every row that ranks the whole catalog (ties by tie keys)
            rows = [r for r, _ in scan]
            Sb = np.array(S[rows, :limit], dtype=np.float64)
            for i, (_, block) in enumerate(scan):
                Sb[i, block] = -np.inf
            top = top_set(Sb, pool, rows=np.array([preps[r].tie_user for r in rows]))
            for i, (r, block) in enumerate(scan):
                t = top[i]
                if len(fresh):
                    t = np.union1d(t, np.setdiff1d(fresh, block))
                out[r] = np.sort(t).astype(np.int64)
        return out  # type: ignore[return-value]

    def _named_candidates(self, candidates: Sequence[str], excl: set[int], limit: int) -> np.ndarray:
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

    def _popular_candidates_many(self, S: np.ndarray, rows: Sequence[tuple[int, np.ndarray]],
                                 fresh: np.ndarray, tie_users: Sequence[int], limit: int,
                                 cols: np.ndarray | None = None) -> list[np.ndarray]:
        """Large catalog: for each (row of ``S``, blocked ids), the best ``pool_size`` of the
        precomputed popular pool (+ fresh items) it may be shown, sorted; one partition for
        the rows that need one (ties by each user's keys on the items' own ids). ``cols``:
        ``S`` holds the pool's columns only, these item ids (no fresh items then)."""
        assert self._popular is not None
        if cols is not None:
            src = cols
        else:
            src = self._popular if not len(fresh) else np.union1d(self._popular, fresh)
        pool = self.config.pool_size
        out: list[np.ndarray | None] = [None] * len(rows)
        blocked = np.zeros((len(rows), len(src)), bool)
        mark = np.zeros(limit, bool)
        part = []  # the rows with more than ``pool`` items left: these need a partition
        for i, (_, block) in enumerate(rows):
            mark[block] = True
            blocked[i] = mark[src]
            mark[block] = False
            if len(src) - int(blocked[i].sum()) <= pool:
                out[i] = src[~blocked[i]].astype(np.int64)
            else:
                part.append(i)
        if part:
            # blocked items below every score the model gives (its -inf and NaN, which rank
            # as -inf, become the lowest finite float: below every other item, tied as before)
            which = np.asarray([rows[i][0] for i in part])
            Sb = np.asarray(S[which] if cols is not None else S[which[:, None], src], np.float64)
            if not np.isfinite(Sb).all():  # base_scores_many's rows are finite already
                low = np.finfo(np.float64).min
                Sb = np.nan_to_num(Sb, nan=low, neginf=low)
            Sb[blocked[part]] = -np.inf
            top = top_set(Sb, pool, rows=np.asarray([tie_users[i] for i in part]), cols=src)
            for j, i in enumerate(part):
                out[i] = np.sort(src[top[j]]).astype(np.int64)
        return out  # type: ignore[return-value]

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
        out = self.rewards([RewardCall(event_id, reward, item, position)])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def rewards(self, calls: Sequence[RewardCall]) -> list[RewardRecord | ServiceError]:
        """:meth:`reward` for several rewards: one durable store write, one sync (the policy
        learns them in one update). Each gets its record or its own error (unknown event,
        late, duplicate, a wrong item or position), in order."""
        if self.store is None:
            raise ServiceError("no store attached", None, 503)
        now = time.time()
        out: list[Any] = [None] * len(calls)
        todo: list[tuple[int, RankEvent, int, float]] = []
        for j, c in enumerate(calls):
            try:
                ev = self.event(c.event_id)
                todo.append((j, ev, self._reward_position(ev, c, now), c.reward))
            except ServiceError as e:
                out[j] = e
        if not todo:
            return out
        results = self.store.add_rewards([(ev, pos, r, now) for _, ev, pos, r in todo])
        for (j, ev, pos, _), res in zip(todo, results, strict=True):
            if res.status == "unknown_event":
                out[j] = NotFound(f"unknown event_id {ev.event_id!r} (its user was erased)", "event_id")
            elif res.status == "duplicate":
                prev = res.record
                out[j] = Conflict(f"a reward for item {ev.items[pos]!r} of event {ev.event_id} was "
                                  f"already applied (reward {prev.reward if prev else '?'}); rewards "
                                  "apply once", "event_id")
            else:
                assert res.record is not None
                out[j] = res.record
        self.sync()
        fault("reward.after_apply")
        return out

    def _reward_position(self, ev: RankEvent, call: RewardCall, now: float) -> int:
        """The slate position a reward names (checked against the event), or its error."""
        if now - ev.ts > self.config.reward_window_s:
            raise Gone(f"event {ev.event_id} was served {now - ev.ts:.0f} s ago, past the reward "
                       f"window of {self.config.reward_window_s:.0f} s", "event_id")
        item, position = call.item, call.position
        if item is not None:
            if item not in ev.items:
                raise ServiceError(f"item {item!r} was not shown in event {ev.event_id}", "item")
            pos = ev.items.index(item)
            if position is not None and position != pos:
                raise ServiceError(f"item {item!r} was shown at position {pos}, not {position}",
                                   "position")
            return pos
        if position is not None:
            if not 0 <= position < len(ev.items):
                raise ServiceError(f"position {position} is outside the slate of {len(ev.items)} items",
                                   "position")
            return position
        raise ServiceError("name the rewarded item (or its position)", "item")

    def _fetch_served(self, recs: Sequence[RewardRecord]) -> dict[str, tuple[RankEvent, _Served] | None]:
        """For rewards of events no longer in memory: the logged event and what its rank saw,
        read from the store and recomputed (outside :attr:`lock`); None where unlearnable."""
        with self.lock:
            need = list(dict.fromkeys(r.event_id for r in recs if r.event_id not in self._served))
        if not need or self.store is None:
            return {}
        fetched = self.store.get_events(need)
        evs = [fetched[eid] for eid in need if eid in fetched]
        served = dict(zip((e.event_id for e in evs), self.reconstruct(evs), strict=True))
        out: dict[str, tuple[RankEvent, _Served] | None] = {}
        for eid in need:
            s = served.get(eid)
            out[eid] = (fetched[eid], s) if s is not None else None
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

    def reconstruct(self, events: Sequence[RankEvent]) -> list[_Served | None]:
        """Recompute what each logged rank saw (candidates, history, base scores) from the
        log: None for an event served from another catalog (before a swap). One store read
        for the histories, one model call for the scores (the candidates' columns only where
        the model can: a large catalog is not scored whole per reward)."""
        index = self.index
        cands: list[np.ndarray | None] = []
        for ev in events:
            cand = np.fromiter((index.get(c, -1) for c in ev.candidates), np.int64, len(ev.candidates))
            cands.append(None if (cand < 0).any() else cand)
        ok = [j for j, c in enumerate(cands) if c is not None]
        out: list[_Served | None] = [None] * len(events)
        if not ok:
            return out
        logged = [j for j in ok if events[j].history_seq > 0]
        items: dict[int, list[str]] = {}
        if self.store is not None and logged:
            read = self.store.histories([events[j].user for j in logged], limit=self.config.max_history,
                                        upto=[events[j].history_seq for j in logged])
            items = {j: h[0] for j, h in zip(logged, read, strict=True)}
        keyed = [self._history_idx(events[j].user, items.get(j, [])) for j in ok]
        hists = [h for h, _ in keyed]
        if self.n_items == self.n_model and self._can_score_history:
            cols = np.unique(np.concatenate([cands[j] for j in ok]))  # type: ignore[misc]
            S = np.asarray(self.model.score_history(_rows(hists, self.n_model), items=cols), np.float64)
            if not np.isfinite(S).all():
                S = np.nan_to_num(S, nan=0.0, posinf=0.0, neginf=0.0)
            bases = [S[r][np.searchsorted(cols, cands[j])] for r, j in enumerate(ok)]
        else:
            S = self.base_scores_many(hists, [u for _, u in keyed])
            bases = [S[r][cands[j]] for r, j in enumerate(ok)]
        for r, j in enumerate(ok):
            ev, (hist, ukey) = events[j], keyed[r]
            feats = (ev.context or {}).get("features")
            ctx = None if feats is None else np.asarray(feats, np.float64)[None, :]
            out[j] = _Served(cands[j], hist, bases[r], ukey, ctx, policy_user(ev.user, ukey))  # type: ignore[arg-type]
        return out

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
