"""The one Recommender protocol and the base class every model builds on."""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp

from explorec import factor_topk
from explorec.artifacts import load_artifact, save_artifact
from explorec.data.catalog import ItemCatalog
from explorec.data.interactions import IdMap, Interactions
from explorec.data.splits import Split
from explorec.errors import ArtifactError, ExploRecError
from explorec.memory import check_memory, format_bytes
from explorec.models.params import validate_params
from explorec.ranking import (
    DEFAULT_SEED,
    check_k,
    stack_lists,
    top_items,
    top_items_sparse,
)
from explorec.validation import Validator, split_validator


class NotFittedError(ExploRecError):
    """A model used before ``fit``."""


@runtime_checkable
class Recommender(Protocol):
    """What every model offers. Users and items are internal ids (dense integers)."""

    name: ClassVar[str]

    def fit(self, train: Interactions, **kwargs: Any) -> Self: ...

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray: ...

    def recommend(self, users: np.ndarray, k: int = 10, exclude_seen: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]: ...

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: str | Path) -> Path: ...

    @classmethod
    def load(cls, path: str | Path) -> Recommender: ...


@runtime_checkable
class TextItems(Protocol):
    """A model that reads item text through an encoder (content, two-tower): the service
    reuses its vectors and encoder for items put through the API."""

    def text_item_vectors(self) -> np.ndarray | None: ...

    def text_encoder(self) -> tuple[str, dict[str, np.ndarray]]: ...

    def encode_texts(self, texts: Any) -> np.ndarray: ...


@runtime_checkable
class VectorRepresentation(Protocol):
    """A model whose score is ``<user vector(history), item vector> + item bias`` (two-tower):
    what representation-based policies (``neural-linear``) build their features from."""

    def user_vectors(self, history: sp.csr_matrix) -> np.ndarray: ...

    def item_representation(self) -> tuple[np.ndarray, np.ndarray]: ...

    def ordered_history(self) -> sp.csr_matrix: ...


@dataclass
class FitInputs:
    """What ``fit`` received, available to ``_fit`` as ``self._inputs``."""

    train: Interactions
    catalog: ItemCatalog | None = None
    split: Split | None = None
    validate: Validator | None = None

    def validation(self) -> Validator | None:
        """How the model validates itself while it trains: ``validate`` when ``fit`` got
        one, else validation NDCG@10 on ``split``'s validation part
        (:func:`explorec.validation.split_validator`), None with neither."""
        if self.validate is not None:
            return self.validate
        return split_validator(self.split)


class BaseRecommender(ABC):
    """Shared machinery: parameters (scikit-learn style), top-K, artifacts.

    A subclass sets ``name``, implements ``_fit(X)`` and ``_score(users)`` over the binary
    training matrix ``X`` (users x items), and lists its learned arrays in ``_state_names``.
    """

    name: ClassVar[str] = "base"
    _state_names: ClassVar[tuple[str, ...]] = ()
    #: parameter ranges ("> 0", ">= 1", "[0, 1]") or allowed values (a tuple), checked by
    #: :func:`explorec.models.params.validate_params` with the common ones it knows
    param_constraints: ClassVar[dict[str, str | tuple[Any, ...]]] = {}
    #: True when ``score`` is ``float32`` of the float64 sum of :meth:`factor_vectors`'
    #: products (see :func:`factor_scores`): ``recommend`` then ranks with
    #: :func:`explorec.factor_topk.factor_top_items`, which scores only the items that can
    #: make each list and returns the same lists
    exact_factor_scores: ClassVar[bool] = False
    #: True when the class scores a history it was not trained on (``score_history``):
    #: set for every subclass that implements ``_score_history`` (see
    #: :meth:`can_score_history` for wrappers, whose answer depends on the models inside)
    scores_history: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "scores_history" not in cls.__dict__:
            cls.scores_history = cls._score_history is not BaseRecommender._score_history

    def training_history(self) -> sp.csr_matrix:
        """(n_users, n_items) what each training user interacted with: the items
        ``recommend`` excludes by default."""
        return self._check_fitted()

    def user_ids(self) -> np.ndarray:
        """External user ids, by internal id."""
        self._check_fitted()
        assert self.users_ is not None
        return np.asarray(self.users_.ids, dtype=object)

    def item_ids(self) -> np.ndarray:
        """External item ids, by internal id."""
        self._check_fitted()
        assert self.items_ is not None
        return np.asarray(self.items_.ids, dtype=object)

    def can_score_history(self) -> bool:
        """Whether :meth:`score_history` works for this model (wrappers ask their inner
        models); the service cold-starts users by history only when it does."""
        return self.scores_history

    def __init__(self) -> None:
        self.user_items_: sp.csr_matrix | None = None
        self.users_: IdMap | None = None
        self.items_: IdMap | None = None
        self.fit_seconds_: float = 0.0
        self.index_: Any = None  # a nearest-neighbour index over item vectors (build_index)
        self._inputs: FitInputs | None = None

    # ------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        for k, v in params.items():
            if k not in self._param_names():
                raise ValueError(f"{self.name} has no parameter {k!r}; "
                                 f"parameters: {self._param_names()}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------- fitting
    def fit(self, train: Interactions, *, catalog: ItemCatalog | None = None,
            split: Split | None = None, validate: Validator | None = None,
            memory_limit: str | int | None = None) -> Self:
        """Fit on the training interactions (implicit feedback: every row is a positive).

        ``catalog`` gives item text to the models that read it. ``validate(model) -> float``
        (higher is better) is how the models that early-stop score themselves after each
        epoch, e.g. :func:`explorec.evaluate.protocol.validator`'s; without it, ``split``
        gives them validation NDCG@10 on its validation part
        (:func:`explorec.validation.split_validator`, the same value). A hybrid chooses its
        blend weight on ``split``'s validation part. Other models ignore all three. Before
        any work, :meth:`fit_memory`'s estimate is checked against the memory this process
        may use (capped by ``memory_limit``, e.g. ``"8GB"``, or ``EXPLOREC_MEMORY_LIMIT``):
        above it, :class:`~explorec.memory.MemoryLimitError` says so in one line.
        """
        if validate is not None and not callable(validate):
            raise TypeError(f"validate must be a callable validate(model) -> float, "
                            f"got {type(validate).__name__}")
        self.set_params(**validate_params(self.name, type(self), self.get_params()))
        self.check_memory(train.n_users, train.n_items, len(train), limit=memory_limit)
        t0 = time.perf_counter()
        self.users_, self.items_ = train.users, train.items
        self.user_items_ = train.matrix()
        self.drop_index()
        self._inputs = FitInputs(train=train, catalog=catalog, split=split,
                                 validate=validate)
        try:
            self._fit(self.user_items_)
        finally:
            self._inputs = None
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    #: what to suggest when the fit does not fit in memory
    memory_alternative: ClassVar[str] = ""

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Estimated peak bytes of ``fit`` beyond its input (subclasses give their own formula).

        Default: a few copies of the training matrix and one block of dense scores.
        """
        return 4 * csr_bytes(nnz, n_users) + score_block_bytes(n_items)

    def check_memory(self, n_users: int, n_items: int, nnz: int,
                     limit: str | int | None = None) -> int:
        """Raise :class:`~explorec.memory.MemoryLimitError` if the fit would not fit; returns
        the estimate in bytes."""
        need = int(self.fit_memory(n_users, n_items, nnz)) + FIT_OVERHEAD_BYTES
        check_memory(f"{self.name} needs ~{format_bytes(need)} to fit {n_users:,} users x "
                     f"{n_items:,} items ({nnz:,} interactions)", need,
                     alternative=self.memory_alternative.format(name=self.name), limit=limit)
        return need

    @abstractmethod
    def _fit(self, X: sp.csr_matrix) -> None:
        """Learn from the binary user x item training matrix (``self._inputs`` has the rest)."""

    def _check_fitted(self) -> sp.csr_matrix:
        if self.user_items_ is None:
            raise NotFittedError(f"{self.name} is not fitted; call fit() first")
        return self.user_items_

    @property
    def n_users(self) -> int:
        return self._check_fitted().shape[0]

    @property
    def n_items(self) -> int:
        return self._check_fitted().shape[1]

    # ------------------------------------------------------------- scoring
    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores (len(users), n_items), or (len(users), len(items)) for given items."""
        X = self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= X.shape[0]):
            bad = users[(users < 0) | (users >= X.shape[0])][0]
            raise ExploRecError(f"user index {bad} out of range [0, {X.shape[0]})")
        s = self._score(users)
        return s if items is None else s[:, np.asarray(items, dtype=np.int64)]

    @abstractmethod
    def _score(self, users: np.ndarray) -> np.ndarray:
        """Dense scores (len(users), n_items) for valid internal user ids."""

    # ------------------------------------------------------------- new users, explanations
    def score_history(self, history: sp.csr_matrix, items: np.ndarray | None = None) -> np.ndarray:
        """Scores for users known only by a history (rows over the model's items): no retraining.

        Values in ``history`` are interaction weights (1 for implicit feedback). A row with an
        empty history gets the popularity fallback: each item's number of training users
        (items added by text alone score 0). Shape (rows, n_items), or (rows, len(items)) for
        the given item ids only: the full scores' columns (up to floating-point rounding where
        a matrix product is cut to them), computed for those items alone where the model can
        (the service scores a large catalog's candidate pool this way, not its whole catalog).
        """
        self._check_fitted()
        if not (isinstance(history, sp.csr_matrix) and history.dtype == np.float32):
            history = sp.csr_matrix(history, dtype=np.float32)
        if history.shape[1] != self.n_items:
            raise ExploRecError(f"history has {history.shape[1]} item columns, the model "
                                f"{self.n_items}")
        if items is None:
            scores = self._score_history(history)
        else:
            items = np.asarray(items, dtype=np.int64)
            if items.ndim != 1:
                raise ExploRecError(f"items must be one list of item indices, got shape {items.shape}")
            if items.size and (items.min() < 0 or items.max() >= self.n_items):
                bad = items[(items < 0) | (items >= self.n_items)][0]
                raise ExploRecError(f"item index {bad} out of range [0, {self.n_items})")
            scores = self._score_history_items(history, items)
        empty = np.diff(history.indptr) == 0
        if empty.any():
            scores = np.array(scores, copy=True)
            pop = self.item_popularity()
            scores[empty] = pop if items is None else pop[items]
        return scores

    def _score_history_items(self, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        """:meth:`score_history`'s columns ``items`` (valid ids). Every model scores the whole
        catalog and keeps those columns; a model whose scores of a few items cost less than
        the whole catalog's overrides this (pop, factor models: a gather of the items'
        vectors; not EASE, where cutting the dense item-item matrix to the columns copies more
        than the product with a sparse history reads)."""
        return np.asarray(self._score_history(history))[:, items]

    def item_popularity(self) -> np.ndarray:
        """(n_items,) number of training users per item (the cold-start fallback's scores)."""
        X = self._check_fitted()
        key = (X.shape, X.nnz)
        cached = getattr(self, "_popularity_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64))
            self._popularity_cache = cached
        return cached[1]

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        from explorec.models.registry import history_scoring_models

        raise ExploRecError(f"model {self.name!r} cannot score a new user's history without "
                            f"retraining; use {', '.join(history_scoring_models())}")

    def recommend_for_history(self, item_ids: list[str], k: int = 10
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (external item ids, scores) for a new user who interacted with ``item_ids``.

        The history's items are never returned; with fewer than ``k`` other items the lists
        are shorter. An empty history gets the most popular items.
        """
        k = check_k(k)
        self._check_fitted()
        assert self.items_ is not None
        idx = self.items_.to_internal(item_ids, what="item")
        h = sp.csr_matrix((np.ones(len(idx), np.float32), (np.zeros(len(idx), int), idx)),
                          shape=(1, self.n_items))
        h.sum_duplicates()
        h.data[:] = 1
        top, vals = top_items(self.score_history(h), k, exclude=h, warn=False)
        ok = top[0] >= 0
        return self.items_.to_external(top[0][ok]), vals[0][ok]

    def explain(self, users: np.ndarray, items: np.ndarray, top: int = 3
                ) -> list[list[list[tuple[int, float]]]]:
        """For each user and each of their items: the history items that contributed most.

        ``items`` is (len(users), n) internal ids (e.g. from ``recommend``). Returns, per user
        and item, up to ``top`` (history item, weight) pairs, largest weight first.
        """
        X = self._check_fitted()
        out = []
        for row, u in enumerate(np.asarray(users, dtype=np.int64)):
            hist = X[u].indices
            if len(hist) == 0:
                out.append([[] for _ in items[row]])
                continue
            contrib = np.asarray(self._contributions(int(u), hist, np.asarray(items[row])))
            order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
            out.append([[(int(hist[j]), float(contrib[i, j])) for j in order[i]
                         if contrib[i, j] > 0] for i in range(len(items[row]))])
        return out

    def contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(items), len(history)) contribution of each history item (internal ids) to each
        item's score for ``user`` — the terms :meth:`explain` ranks."""
        return np.asarray(self._contributions(user, np.asarray(history), np.asarray(items)))

    def make_row_major(self) -> None:
        """Make the learned 2-d arrays C-contiguous (scoring one history row against a
        Fortran-ordered matrix would copy the whole matrix on every request)."""
        for name in self._state_names:
            arr = getattr(self, name, None)
            if isinstance(arr, np.ndarray) and arr.ndim == 2 and not arr.flags.c_contiguous:
                setattr(self, name, np.ascontiguousarray(arr))

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(items), len(history)) contribution of each history item to each item's score.

        Default: cosine of co-occurrence between the items. Models with an additive score
        over history items (EASE, kNN, content) return their exact terms.
        """
        return self._item_similarity(items)[:, history]

    # ------------------------------------------------------------- top-K
    def recommend(self, users: np.ndarray, k: int = 10, exclude_seen: bool = True,
                  batch_size: int = 2048, *, exclude: sp.csr_matrix | None = None,
                  candidates: np.ndarray | None = None, seed: int = DEFAULT_SEED
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items and scores per user, best first; training items excluded by default.

        ``users``: (n,) internal user ids. ``exclude``: a (n_users, n_items) matrix of items
        never to return (default: the training matrix when ``exclude_seen``); ``candidates``:
        the only items that may be returned. Returns ``(items, scores)``, both (n, w) with
        ``w = min(k, most eligible items of any user)``: a user with fewer than ``k`` items
        left has a shorter list, padded at the end with item ``-1`` and score ``-inf`` (a
        :class:`~explorec.ranking.ShortListWarning` says how many users). Ties are ordered by
        :func:`explorec.ranking.topk`'s seeded tie keys (``seed``), never by item id.
        """
        k = check_k(k)
        X = self._check_fitted()
        if exclude is None and exclude_seen:
            exclude = X
        users = np.asarray(users, dtype=np.int64)
        if self.index_ is not None and candidates is None:
            return self._recommend_with_index(users, k, exclude, seed)
        if self.exact_factor_scores and candidates is None and factor_topk.available():
            U, V = self.factor_vectors()  # type: ignore[misc]
            part = factor_topk.factor_top_items(
                U[users], self._prepared_items(V), users, k, seed=seed,
                exclude=exclude[users] if exclude is not None else None)
            return stack_lists([part], k, len(users))
        parts = []
        step = score_rows(X.shape[1], batch_size)
        for s in range(0, len(users), step):
            b = users[s:s + step]
            ex = exclude[b] if exclude is not None else None
            part = None if candidates is not None else self._recommend_sparse(b, k, ex, seed)
            if part is None:
                part = top_items(self.score(b), k, rows=b, candidates=candidates, seed=seed,
                                 exclude=ex, warn=False)
            parts.append(part)
        return stack_lists(parts, k, len(users))

    def _recommend_sparse(self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                          seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k without dense scores over the catalog, or None to score densely.

        A model that can name, per user, a set of items that contains the top-k (with the
        whole tie group at the boundary) overrides this and ranks only those with
        :func:`explorec.ranking.top_of_columns`; the result must equal the dense path's.
        The default serves models whose scores are sparse (:meth:`_sparse_scores`) with
        :func:`explorec.ranking.top_items_sparse`: a row with at least ``k`` eligible
        positive scores is ranked over its non-zeros alone, the others densely.
        """
        S = self._sparse_scores(users)
        if S is None:
            return None
        return top_items_sparse(S, k, rows=users, exclude=exclude, seed=seed)

    # ------------------------------------------------------------- nearest-neighbour index
    def build_index(self, kind: str = "auto", **params: Any) -> Any:
        """Build a nearest-neighbour index (:mod:`explorec.index`) over the item vectors of
        :meth:`factor_vectors` and use it in :meth:`recommend` and :meth:`similar_items`.

        ``kind="auto"`` builds the default approximate index (HNSW) from
        :data:`explorec.index.ANN_MIN_ITEMS` items and none below (exact scoring is then as
        fast); ``"exact"`` removes the index. Returns the index, or None. Rows the index
        leaves short of ``k`` (an approximate search can) are ranked exactly. The index is
        saved with the model (:meth:`save`).
        """
        from explorec.index import ANN_MIN_ITEMS, INDEX_KINDS, build_index

        if kind not in INDEX_KINDS:
            raise ExploRecError(f"unknown index kind {kind!r}: use {', '.join(INDEX_KINDS)}")
        self._check_fitted()
        fv = self.factor_vectors()
        if fv is None:
            if kind in ("auto", "exact"):
                self.drop_index()
                return None
            raise ExploRecError(f"model {self.name!r} has no item vectors to index; an ANN index "
                                "serves factor models (ials, bpr, two-tower)")
        if kind == "exact" or (kind == "auto" and self.n_items < ANN_MIN_ITEMS):
            self.drop_index()
            return None
        self.drop_index()
        self._index_vectors = (np.ascontiguousarray(fv[0], dtype=np.float32),
                               np.ascontiguousarray(fv[1], dtype=np.float32))
        self.index_ = build_index(self._index_vectors[1], kind, **params)
        if self.index_.kind == "exact":  # auto without faiss
            self.drop_index()
        return self.index_

    def drop_index(self) -> None:
        """Stop using an index: exact scoring again."""
        self.index_ = None
        self._index_vectors: tuple[np.ndarray, np.ndarray] | None = None
        self._similar_index: Any = None

    def _indexed_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The factor vectors behind the index, computed once (two-tower's cost a pass)."""
        if self._index_vectors is None:
            fv = self.factor_vectors()
            assert fv is not None
            self._index_vectors = (np.ascontiguousarray(fv[0], dtype=np.float32),
                                   np.ascontiguousarray(fv[1], dtype=np.float32))
        return self._index_vectors

    def history_vectors(self, history: sp.csr_matrix) -> np.ndarray | None:
        """Query vectors for users known by a history (rows over the model's items), such that
        ``score_history(history) == history_vectors(history) @ item vectors.T`` for factor
        models that fold a history in (ials, two-tower); None for the others."""
        return None

    def candidates_from_index(self, n: int, *, user: int = -1,
                              history: sp.csr_matrix | None = None,
                              exclude: np.ndarray | None = None
                              ) -> tuple[np.ndarray, np.ndarray] | None:
        """Up to ``n`` best items and their scores for one user from the index, without
        scoring the catalog: the query is the history's vector (:meth:`history_vectors`) when
        the model folds histories in, else the training user's (``user``). ``exclude``: item
        ids never returned. None when there is no index or no query vector (rank exactly)."""
        if self.index_ is None:
            return None
        q = None
        if history is not None and history.nnz:
            q = self.history_vectors(history)
        if q is None and 0 <= user < self.n_users:
            q = self._indexed_vectors()[0][[user]]
        if q is None:
            return None
        ex = np.unique(np.asarray(exclude if exclude is not None else [], dtype=np.int64))
        ex = ex[(ex >= 0) & (ex < self.n_items)]
        mask = sp.csr_matrix((np.ones(len(ex)), ex, [0, len(ex)]), shape=(1, self.n_items))
        from explorec.index import recommend_from_index

        items, scores = recommend_from_index(self.index_, q, n, exclude=mask)
        ok = items[0] >= 0
        return items[0][ok], scores[0][ok]

    def _prepared_items(self, V: np.ndarray) -> factor_topk.PreparedItems:
        """:func:`explorec.factor_topk.prepare_items` of ``V``, kept while ``V`` is the same
        array with the same contents (a checksum catches changes made in place)."""
        check = float(np.sum(V, dtype=np.float64))
        cached = self.__dict__.get("_factor_items")
        if cached is None or cached[0] is not V or cached[1] != check:
            cached = (V, check, factor_topk.prepare_items(V))
            self._factor_items = cached
        return cached[2]

    def _recommend_with_index(self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                              seed: int) -> tuple[np.ndarray, np.ndarray]:
        from explorec.index import recommend_from_index

        U = self._indexed_vectors()[0]
        ex = sp.csr_matrix(exclude[users]) if exclude is not None else None
        items, scores = recommend_from_index(self.index_, U[users], k, exclude=ex)
        # rows the approximate search left short of what exact ranking would return
        eligible = self.n_items - (np.diff(ex.indptr) if ex is not None else 0)
        short = np.flatnonzero((items >= 0).sum(axis=1) < np.minimum(k, eligible))
        if len(short):
            top, vals = top_items(self.score(users[short]), k, rows=users[short], seed=seed,
                                  exclude=ex[short] if ex is not None else None, warn=False)
            items[short], scores[short] = -1, -np.inf
            items[short, :top.shape[1]], scores[short, :top.shape[1]] = top, vals
        return stack_lists([(items, scores)], k, len(users))

    def factor_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(user vectors (n_users, d), item vectors (n_items, d)) when the model's score is
        exactly their inner product (ials, bpr, two-tower), else None. Nearest-neighbour indexes
        (:mod:`explorec.index`) are built over the item vectors."""
        return None

    def _sparse_scores(self, users: np.ndarray) -> sp.csr_matrix | None:
        """Scores of ``users`` as a sparse matrix (absent = 0), for models whose scores are
        sparse; None (the default) for the others."""
        return None

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Most similar items per item (self excluded), from ``_item_similarity``.

        Same shape contract as :meth:`recommend`: (n, w) ids and similarities, ``-1``-padded
        when fewer than ``k`` other items exist.
        """
        k = check_k(k)
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64)
        if self.index_ is not None:
            return self._similar_with_index(items, k)
        sim = np.asarray(self._item_similarity(items), dtype=np.float64)
        own = sp.csr_matrix((np.ones(len(items)), (np.arange(len(items)), items)), shape=sim.shape)
        return stack_lists([top_items(sim, k, rows=items, exclude=own, warn=False)], k, len(items))

    def _similar_with_index(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine neighbours from an index of the same kind over unit item vectors."""
        from explorec.index import build_index

        V = self._indexed_vectors()[1]
        V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        if self._similar_index is None:
            meta = self.index_.meta()
            params = {p: meta[p] for p in ("m", "ef_construction", "ef_search", "nlist", "nprobe")
                      if p in meta}
            self._similar_index = build_index(V, meta["kind"], **params)
        own = sp.csr_matrix((np.ones(len(items)), (np.arange(len(items)), items)),
                            shape=(len(items), self.n_items))
        from explorec.index import recommend_from_index

        top, vals = recommend_from_index(self._similar_index, V[items], k, exclude=own)
        short = np.flatnonzero((top >= 0).sum(axis=1) < min(k, self.n_items - 1))
        if len(short):
            sim = V[items[short]] @ V.T
            t, v = top_items(sim.astype(np.float64), k, rows=items[short], exclude=own[short],
                             warn=False)
            top[short], vals[short] = -1, -np.inf
            top[short, :t.shape[1]], vals[short, :t.shape[1]] = t, v
        return stack_lists([(top, vals)], k, len(items))

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Default: cosine of item columns of the training matrix."""
        from explorec.data.interactions import normalized_item_vectors

        V = normalized_item_vectors(self._check_fitted())
        return (V[items] @ V.T).toarray()

    # ------------------------------------------------------------- artifacts
    def _state(self) -> dict[str, np.ndarray | sp.spmatrix]:
        return {n: getattr(self, n) for n in self._state_names}

    def save(self, path: str | Path) -> Path:
        """Write a safe artifact (JSON manifest + .npy arrays with sha256) to directory ``path``."""
        X = self._check_fitted()
        assert self.users_ is not None and self.items_ is not None
        meta = {"kind": "recommender", "model": self.name, "params": _jsonable(self.get_params()),
                "fit_seconds": self.fit_seconds_}
        arrays = {"user_items": X, "user_ids": np.asarray(self.users_.ids, dtype=object),
                  "item_ids": np.asarray(self.items_.ids, dtype=object), **self._state()}
        if self.index_ is not None:  # the library's native bytes; the manifest has their sha256
            meta["index"] = self.index_.meta()
            arrays["index_bytes"] = self.index_.to_bytes()
        return save_artifact(path, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> BaseRecommender:
        """Load any saved model; the class is looked up in the registry by the manifest."""
        from explorec.models.registry import model_class

        manifest, arrays = load_artifact(path)
        if manifest.get("kind") != "recommender":
            raise ArtifactError(f"{path} holds a {manifest.get('kind')!r}, not a recommender")
        klass = model_class(manifest["model"])
        if cls is not BaseRecommender and not issubclass(klass, cls):
            raise ArtifactError(f"{path} holds a {manifest['model']!r} model, not {cls.name!r}")
        model = klass(**manifest.get("params", {}))
        model.user_items_ = arrays.pop("user_items")  # type: ignore[assignment]
        model.users_ = IdMap.from_values(arrays.pop("user_ids").astype(object))
        model.items_ = IdMap.from_values(arrays.pop("item_ids").astype(object))
        model.fit_seconds_ = float(manifest.get("fit_seconds", 0.0))
        index_bytes = arrays.pop("index_bytes", None)
        for name in klass._state_names:
            if name not in arrays:
                raise ArtifactError(f"{path}: array {name!r} missing for model {klass.name!r}")
        model._set_state(arrays)
        if "index" in manifest:
            from explorec.index import index_from_bytes

            if index_bytes is None:
                raise ArtifactError(f"{path}: the manifest names an index but index_bytes is missing")
            model.drop_index()
            model.index_ = index_from_bytes(manifest["index"], index_bytes)
        return model

    def _set_state(self, arrays: dict[str, Any]) -> None:
        """Restore learned arrays saved by ``_state`` (models with more state extend this)."""
        for name in self._state_names:
            setattr(self, name, arrays[name])


def csr_bytes(nnz: int, n_rows: int, value_bytes: int = 4) -> int:
    """Bytes of a CSR matrix with 32-bit indices (64-bit past 2**31 non-zeros)."""
    idx = 4 if nnz < 2**31 else 8
    return nnz * (value_bytes + idx) + (n_rows + 1) * idx


#: added to every model's estimate: modules a fit imports lazily, allocator slack
FIT_OVERHEAD_BYTES = 64 * 2**20

#: rows of dense scores ``recommend`` computes at once are sized to stay under this
SCORE_BLOCK_BYTES = 256 * 2**20


def score_rows(n_items: int, batch_size: int) -> int:
    """Users per scoring block: ``batch_size``, fewer when a block would pass SCORE_BLOCK_BYTES."""
    return max(1, min(int(batch_size), SCORE_BLOCK_BYTES // (24 * max(n_items, 1))))


def score_block_bytes(n_items: int, batch_size: int = 2048) -> int:
    """Bytes of one scoring block: float64 scores, tie keys and top-k temporaries."""
    return 24 * score_rows(n_items, batch_size) * n_items


def factor_scores(U: np.ndarray, V64T: np.ndarray, users: np.ndarray) -> np.ndarray:
    """``float32(U[users] V')`` summed in float64 (``V64T``: the item vectors, transposed, as
    float64): float32 products of float32 factors are exact in float64, so the scores do not
    depend on how BLAS blocks or threads the product (a Dask worker's single thread gives the
    same lists as this process's two)."""
    return (U[users].astype(np.float64) @ V64T).astype(np.float32)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


class ItemToItemRecommender(BaseRecommender):
    """Base of the models that score ``history @ W`` with a sparse item x item matrix ``W``
    (``itemknn``, ``rp3beta``, ``slim``); ``_item_weights()`` returns it. A user's score is a
    sum over their history items, so explanations are the exact terms ``W[h, i]``.
    """

    @abstractmethod
    def _item_weights(self) -> sp.csr_matrix:
        """The fitted (n_items, n_items) weight matrix; row ``h`` feeds history item ``h``."""

    def _score(self, users: np.ndarray) -> np.ndarray:
        assert self.user_items_ is not None
        return self._score_history(self.user_items_[users])

    def _sparse_scores(self, users: np.ndarray) -> sp.csr_matrix:
        assert self.user_items_ is not None
        return sp.csr_matrix(self.user_items_[users] @ self._item_weights())

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray((history @ self._item_weights()).toarray())

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._item_weights()[history][:, items].toarray().T.astype(np.float64)
