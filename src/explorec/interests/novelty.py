"""Novel-interest prediction: given a user's time-ordered interests, which interest that they
have *not* engaged with will be their next new one?

Protocol (:func:`novel_transitions`): each user's interactions in time order are mapped to
their fine interests; a *novel transition* is the first interaction in an interest after at
least ``min_history`` interactions; its context is the user's ``window`` most recent distinct
interests and the set of interests engaged so far. Each user's last ``n_test`` novel
transitions are held out; earlier ones train. A predictor scores every interest; the seen
ones are removed; Hit@5 and NDCG@5 of the true next novel interest, ties broken by seeded keys
(:func:`explorec.ranking.topk`), so a predictor with constant scores scores like random.

Predictors, one protocol (:class:`NoveltyPredictor`): :class:`PopularNovel` (the interests
most often new to users), :class:`CooccurrenceTable` (Wang et al. 2024's serving form: counts
of "recent interest a -> next novel interest b", smoothed by popularity), and the text-based
:class:`TextBilinear`, which reads the interests' *descriptions* through the text encoder
(a low-rank bilinear form between the context's description embeddings and each candidate's,
trained with a softmax over the unseen interests on the training transitions), optionally
with the co-occurrence score as one more input (``with_table=True``), so that an interest
with few transitions is still predictable from what it is about.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.interests.taxonomy import DEFAULT_SEED, InterestTaxonomy
from explorec.ranking import topk


@dataclass
class Transitions:
    """Novel transitions: ``recent[t]`` (most recent last, -1 padded), ``seen[t]`` (CSR row of
    the interests engaged before), the ``target`` interest, the user and whether held out."""

    user: np.ndarray     # (T,) int64 internal user id
    recent: np.ndarray   # (T, window) int64
    seen: sp.csr_matrix  # (T, K) bool
    target: np.ndarray   # (T,) int64
    test: np.ndarray     # (T,) bool
    n_clusters: int
    recent_items: np.ndarray | None = None  # (T, item_window) internal item ids, -1 padded


    def __len__(self) -> int:
        return len(self.target)

    def subset(self, mask: np.ndarray) -> Transitions:
        idx = np.flatnonzero(mask)
        return Transitions(self.user[idx], self.recent[idx], self.seen[idx], self.target[idx],
                           self.test[idx], self.n_clusters,
                           None if self.recent_items is None else self.recent_items[idx])

    def recency_weights(self, decay: float = 0.7) -> np.ndarray:
        """(T, window) weights of the recent interests, the most recent heaviest (0 for padding)."""
        w = decay ** np.arange(self.recent.shape[1] - 1, -1, -1, dtype=np.float64)
        return np.where(self.recent >= 0, w[None, :], 0.0)


def novel_transitions(interactions: Any, labels: np.ndarray, *, window: int = 5, min_history: int = 5,
                      n_test: int = 1, item_window: int = 10) -> Transitions:
    """Every user's novel transitions (see the module docstring); ``labels``: the fine
    interest of each internal item id."""
    if window < 1 or min_history < 1 or n_test < 0:
        raise ExploRecError("window and min_history must be >= 1 and n_test >= 0")
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1
    order = interactions.time_order()
    users = np.asarray(interactions.user)[order]
    items = np.asarray(interactions.item)[order]
    seq = labels[items]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    t_user, t_recent, t_target, t_test, t_items = [], [], [], [], []
    seen_rows: list[np.ndarray] = []
    for a, b in zip(starts, ends, strict=True):
        s = seq[a:b]
        firsts, first_pos = np.unique(s, return_index=True)
        novel = np.sort(first_pos[first_pos >= min_history])
        if len(novel) == 0:
            continue
        test_from = len(novel) - n_test
        for j, p in enumerate(novel):
            before = s[:p]
            seen_rows.append(firsts[first_pos < p])
            rev = before[::-1]
            _, idx = np.unique(rev, return_index=True)
            distinct = rev[np.sort(idx)][:window][::-1]  # most recent last
            row = np.full(window, -1, dtype=np.int64)
            row[window - len(distinct):] = distinct
            t_recent.append(row)
            last = items[a + max(0, p - item_window):a + p]
            irow = np.full(item_window, -1, dtype=np.int64)
            irow[item_window - len(last):] = last
            t_items.append(irow)
            t_target.append(s[p])
            t_user.append(users[a])
            t_test.append(j >= test_from)
    if not t_target:
        raise ExploRecError(f"no novel-interest transitions (users need more than {min_history} "
                            "interactions and interests they reach later)")
    lens = np.array([len(r) for r in seen_rows])
    indptr = np.r_[0, np.cumsum(lens)]
    seen = sp.csr_matrix((np.ones(indptr[-1], bool), np.concatenate(seen_rows), indptr),
                         shape=(len(t_target), k))
    return Transitions(np.asarray(t_user, np.int64), np.vstack(t_recent), seen,
                       np.asarray(t_target, np.int64), np.asarray(t_test, bool), k, np.vstack(t_items))


# ------------------------------------------------------------------ predictors
class NoveltyPredictor(Protocol):
    name: str

    def fit(self, train: Transitions, taxonomy: InterestTaxonomy) -> NoveltyPredictor: ...

    def scores(self, batch: Transitions) -> np.ndarray:
        """(len(batch), n_clusters) scores; higher is likelier the next novel interest."""
        ...


class PopularNovel:
    """The interests most often new to users in training (the same list for everyone)."""

    name = "popular-novel"

    def fit(self, train: Transitions, taxonomy: InterestTaxonomy) -> PopularNovel:
        self.counts_ = np.bincount(train.target, minlength=train.n_clusters).astype(np.float64)
        return self

    def scores(self, batch: Transitions) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(batch), len(self.counts_))).copy()


class CooccurrenceTable:
    """P(next novel b | recent a) from training counts, summed over the recent interests with
    recency weights; rows smoothed toward the popular-novel distribution (``smoothing``
    pseudo-counts). The precomputed table is what a service looks up: no model per request."""

    name = "cooccurrence"

    def __init__(self, smoothing: float = 1.0, decay: float = 0.7) -> None:
        self.smoothing = smoothing
        self.decay = decay

    def fit(self, train: Transitions, taxonomy: InterestTaxonomy) -> CooccurrenceTable:
        k = train.n_clusters
        w = train.recency_weights(self.decay)
        ok = train.recent >= 0
        a = train.recent[ok]
        b = np.broadcast_to(train.target[:, None], train.recent.shape)[ok]
        counts = sp.coo_matrix((w[ok], (a, b)), shape=(k, k)).toarray()
        pop = np.bincount(train.target, minlength=k) + 1.0
        pop /= pop.sum()
        self.table_ = (counts + self.smoothing * pop[None, :]) / (counts.sum(axis=1, keepdims=True)
                                                                  + self.smoothing)
        return self

    def scores(self, batch: Transitions) -> np.ndarray:
        w = batch.recency_weights(self.decay)
        rows = np.where(batch.recent >= 0, batch.recent, 0)
        return np.einsum("tw,twk->tk", w, self.table_[rows])


class TextBilinear:
    """score(context, b) = u(context)^T A B^T e_b + bias_b [+ gamma * log table(context, b)],
    where e are the interests' description embeddings (the text encoder's reading of their
    words and titles) and u(context) joins the recency-weighted mean of the recent interests'
    embeddings, the mean over every interest engaged so far and, given ``item_vectors``, the
    mean text vector of the user's last ``item_window`` items. Trained with a softmax over the
    interests unseen at each transition (Adam, full batch, ``epochs`` steps, L2
    ``weight_decay``); torch, on CUDA when present."""

    def __init__(self, rank: int = 32, epochs: int = 150, lr: float = 0.03, weight_decay: float = 1e-4,
                 with_table: bool = False, decay: float = 0.7, item_vectors: np.ndarray | None = None,
                 seed: int = DEFAULT_SEED) -> None:
        self.item_vectors = item_vectors
        self.rank = rank
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.with_table = with_table
        self.decay = decay
        self.seed = seed

    @property
    def name(self) -> str:
        return "text-bilinear+table" if self.with_table else "text-bilinear"

    def _context(self, batch: Transitions) -> np.ndarray:
        """(T, 2d): the recency-weighted mean embedding of the recent interests, and the mean
        embedding of every interest engaged so far (the whole profile)."""
        w = batch.recency_weights(self.decay)
        rows = np.where(batch.recent >= 0, batch.recent, 0)
        u = np.einsum("tw,twd->td", w, self.emb_[rows])
        u /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        n_seen = np.maximum(np.asarray(batch.seen.sum(axis=1)).ravel(), 1)[:, None]
        prof = np.asarray(batch.seen.astype(np.float32) @ self.emb_) / n_seen
        parts = [u, prof]
        if self.items_ is not None and batch.recent_items is not None:
            ok = batch.recent_items >= 0
            v = np.where(ok[:, :, None], self.items_[np.where(ok, batch.recent_items, 0)], 0.0).sum(axis=1)
            parts.append(v / np.maximum(ok.sum(axis=1, keepdims=True), 1))
        return np.hstack(parts).astype(np.float32)

    def fit(self, train: Transitions, taxonomy: InterestTaxonomy) -> TextBilinear:
        import torch

        from explorec.interests.taxonomy import reduce_dims

        self.emb_ = reduce_dims(np.asarray(taxonomy.fine_embeddings, dtype=np.float32), seed=self.seed)
        self.items_ = (None if self.item_vectors is None else
                       reduce_dims(np.asarray(self.item_vectors, dtype=np.float32), seed=self.seed))
        if self.emb_.shape[0] != train.n_clusters:
            raise ExploRecError(f"taxonomy has {self.emb_.shape[0]} interests, the transitions "
                                f"{train.n_clusters}")
        if self.with_table:
            self.table_ = CooccurrenceTable(decay=self.decay).fit(train, taxonomy)
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        g = torch.Generator().manual_seed(self.seed)
        U = torch.from_numpy(self._context(train)).to(dev)
        d, du = self.emb_.shape[1], U.shape[1]
        r = min(self.rank, d)
        A = (torch.randn(du, r, generator=g) / math.sqrt(du)).to(dev).requires_grad_()
        B = (torch.randn(d, r, generator=g) / math.sqrt(d)).to(dev).requires_grad_()
        bias = torch.zeros(train.n_clusters, device=dev, requires_grad=True)
        gamma = torch.ones(1, device=dev, requires_grad=True)
        params = [A, B, bias] + ([gamma] if self.with_table else [])
        E = torch.from_numpy(self.emb_).to(dev)
        seen = torch.from_numpy(train.seen.toarray()).to(dev)
        y = torch.from_numpy(train.target).to(dev)
        T = (torch.from_numpy(np.log(self.table_.scores(train)).astype(np.float32)).to(dev)
             if self.with_table else None)
        opt = torch.optim.Adam(params, lr=self.lr)
        for _ in range(self.epochs):
            opt.zero_grad()
            logits = (U @ A) @ (E @ B).T + bias
            if T is not None:
                logits = logits + gamma * T
            logits = logits.masked_fill(seen, float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss = loss + self.weight_decay * (A.pow(2).sum() + B.pow(2).sum())
            loss.backward()
            opt.step()
        self.A_, self.B_ = A.detach().cpu().numpy(), B.detach().cpu().numpy()
        self.bias_ = bias.detach().cpu().numpy()
        self.gamma_ = float(gamma.detach().cpu()) if self.with_table else 0.0
        self.loss_ = float(loss.detach().cpu())
        return self

    def scores(self, batch: Transitions) -> np.ndarray:
        s = (self._context(batch) @ self.A_) @ (self.emb_ @ self.B_).T + self.bias_[None, :]
        if self.with_table:
            s = s + self.gamma_ * np.log(self.table_.scores(batch))
        return s


def engagement_table(history: sp.spmatrix, labels: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """(K, K) P(a user engages interest b | they engage interest a), b != a, from a history
    matrix with no time order (a fitted model's ``training_history()``): co-engagement counts
    over users, each row smoothed toward the interests' overall shares by ``smoothing``
    pseudo-users and normalised; the diagonal is 0. The time-ordered form, where one is
    known, is :func:`transition_table`.

    >>> import scipy.sparse as sp
    >>> h = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]]))
    >>> engagement_table(h, np.array([0, 1, 2]), smoothing=0.0).round(2).tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    labels = np.asarray(labels, dtype=np.int64)
    h = sp.csr_matrix(history)
    if h.shape[1] != len(labels):
        raise ExploRecError(f"history has {h.shape[1]} items, labels {len(labels)}")
    k = int(labels.max()) + 1 if len(labels) else 0
    onehot = sp.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), k))
    engaged = (h @ onehot).astype(bool).astype(np.float64)  # (users, K)
    co = np.asarray((engaged.T @ engaged).todense(), dtype=np.float64)
    np.fill_diagonal(co, 0.0)
    share = np.asarray(engaged.sum(axis=0)).ravel() + 1.0
    share /= share.sum()
    table = co + smoothing * share[None, :]
    np.fill_diagonal(table, 0.0)
    total = table.sum(axis=1, keepdims=True)
    return np.divide(table, total, out=np.zeros_like(table), where=total > 0)


def transition_table(interactions: Any, labels: np.ndarray, *, smoothing: float = 1.0,
                     min_history: int = 5) -> np.ndarray:
    """(K, K) P(next novel interest b | recent interest a) from every novel transition of
    time-ordered ``interactions`` (:class:`CooccurrenceTable`'s table, nothing held out):
    the prior that :class:`~explorec.explore.interest.InterestTSPolicy` reads. Falls back to
    :func:`engagement_table` when the data hold no novel transition."""
    labels = np.asarray(labels, dtype=np.int64)
    try:
        tr = novel_transitions(interactions, labels, min_history=min_history, n_test=0)
    except ExploRecError:
        return engagement_table(interactions.matrix(binary=True), labels, smoothing)
    table = CooccurrenceTable(smoothing=smoothing).fit(tr, None).table_  # type: ignore[arg-type]
    np.fill_diagonal(table, 0.0)
    return table / np.maximum(table.sum(axis=1, keepdims=True), 1e-300)


def _generative() -> NoveltyPredictor:
    from explorec.interests.generative import GenerativeLM

    return GenerativeLM()


PREDICTORS: dict[str, Callable[[], NoveltyPredictor]] = {
    "popular-novel": PopularNovel,
    "cooccurrence": CooccurrenceTable,
    "text-bilinear": TextBilinear,
    "text-bilinear+table": lambda: TextBilinear(with_table=True),
    "generative-lm": _generative,
}
#: what ``evaluate_predictors`` runs by default (the generative LM takes minutes on a CPU:
#: ask for it by name)
DEFAULT_PREDICTORS = ("popular-novel", "cooccurrence", "text-bilinear", "text-bilinear+table")


# ------------------------------------------------------------------ evaluation
def ranked_novel(scores: np.ndarray, batch: Transitions, k: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(T, k) interests by score with the seen ones removed (-1 past the unseen count)."""
    s = np.array(scores, dtype=np.float64)
    s[batch.seen.nonzero()] = -np.inf
    top = topk(s, k, rows=np.arange(len(batch)), seed=seed)
    ok = np.isfinite(np.take_along_axis(s, top, axis=1))
    return np.where(ok, top, -1)


def novelty_metrics(scores: np.ndarray, batch: Transitions, k: int = 5, seed: int = DEFAULT_SEED
                    ) -> dict[str, float]:
    """Hit@k and NDCG@k of the true next novel interest (one relevant item per transition)."""
    top = ranked_novel(scores, batch, k, seed)
    hit = top == batch.target[:, None]
    pos = np.argmax(hit, axis=1)
    found = hit.any(axis=1)
    ndcg = np.where(found, 1.0 / np.log2(pos + 2.0), 0.0)
    return {f"hit@{k}": float(found.mean()), f"ndcg@{k}": float(ndcg.mean()), "transitions": len(batch)}


def evaluate_predictors(transitions: Transitions, taxonomy: InterestTaxonomy,
                        predictors: Sequence[str] | None = None, *, k: int = 5, seed: int = DEFAULT_SEED,
                        item_vectors: np.ndarray | None = None,
                        progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Fit each predictor on the training transitions; its metrics on the held-out ones.
    ``item_vectors`` (the items' text vectors) let the text predictors read the user's
    recent items too."""
    say = progress or (lambda _s: None)
    train, test = transitions.subset(~transitions.test), transitions.subset(transitions.test)
    if len(train) == 0 or len(test) == 0:
        raise ExploRecError("novelty evaluation needs training and held-out transitions")
    rows = []
    for name in predictors or list(DEFAULT_PREDICTORS):
        if name not in PREDICTORS:
            raise ExploRecError(f"unknown novelty predictor {name!r}: use {', '.join(PREDICTORS)}")
        say(f"fitting {name} on {len(train):,} transitions")
        p = PREDICTORS[name]()
        if isinstance(p, TextBilinear):
            p.seed = seed
            p.item_vectors = item_vectors
        elif hasattr(p, "progress"):  # the generative LM: seeded, and it reports its steps
            p.seed = seed  # type: ignore[attr-defined]
            p.progress = say  # type: ignore[attr-defined]
        p.fit(train, taxonomy)
        rows.append({"predictor": name, **novelty_metrics(p.scores(test), test, k, seed)})
    return rows
