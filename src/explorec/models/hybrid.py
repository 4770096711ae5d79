"""Hybrid: collaborative-filtering scores blended with language-model content scores."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import Split
from explorec.models.base import BaseRecommender
from explorec.validation import heldout_metric, part_matrices


def _zscore(s: np.ndarray) -> np.ndarray:
    """Per-user standardisation, so that the two parts' scales are comparable."""
    mu = s.mean(axis=1, keepdims=True)
    sd = s.std(axis=1, keepdims=True)
    return (s - mu) / np.where(sd > 0, sd, 1.0)


class HybridRecommender(BaseRecommender):
    """``(1 - w) * z(cf) + w * z(text)`` with per-user z-scored parts.

    Parameters
    ----------
    cf : any registered model name for the collaborative part (default ``ease``).
    text : the language-model part (``content`` or ``two-tower``).
    cf_params : parameters of the collaborative part.
    text_params : parameters of the language-model part.
    weight : the text weight ``w``. ``None`` chooses it on validation NDCG@10 from
        ``weights`` (needs ``fit(..., split=...)``; without a split 0.1 is used). ``fit``'s
        ``validate``, when given, is passed on to both parts (their early stopping).
    weights : the text weights tried on validation when ``weight`` is None.
    """

    name = "hybrid"
    param_constraints: ClassVar[dict[str, Any]] = {"weight": "[0, 1]", "weights": "[0, 1]"}
    _state_names = ()

    def __init__(self, cf: str = "ease", text: str = "content", cf_params: dict | None = None,
                 text_params: dict | None = None, weight: float | None = None,
                 weights: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
                 ) -> None:
        super().__init__()
        self.cf = cf
        self.text = text
        self.cf_params = dict(cf_params or {})
        self.text_params = dict(text_params or {})
        self.weight = weight
        self.weights = tuple(weights)
        self.cf_model_: Any = None
        self.text_model_: Any = None
        self.weight_: float | None = None
        self.validation_: dict[str, float] = {}

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Both parts are fitted and kept: the sum of their estimates."""
        cf, text = self._parts()
        return int(cf.fit_memory(n_users, n_items, nnz) + text.fit_memory(n_users, n_items, nnz))

    def _parts(self) -> tuple[Any, Any]:
        from explorec.models.registry import create_model

        if self.cf == "hybrid" or self.text == "hybrid":
            raise ValueError("a hybrid cannot contain a hybrid")
        return create_model(self.cf, **self.cf_params), create_model(self.text, **self.text_params)

    def _fit(self, X: sp.csr_matrix) -> None:
        inputs = self._inputs
        assert inputs is not None
        self.cf_model_, self.text_model_ = self._parts()
        self.validation_ = {}
        for part in (self.cf_model_, self.text_model_):
            part.fit(inputs.train, catalog=inputs.catalog, split=inputs.split,
                     validate=inputs.validate)
        if self.weight is not None:
            self.weight_ = float(self.weight)
        elif inputs.split is None or len(inputs.split.valid) == 0:
            self.weight_ = 0.1
        else:
            self.weight_ = self._choose_weight(inputs.split)

    def _choose_weight(self, split: Split) -> float:
        """The first of ``weights`` with the best validation NDCG@10 of the blend (each part
        scored once; ties in the blend's scores broken with the default seed)."""
        relevant, excluded, candidates = part_matrices(split, "valid")
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        zc = _zscore(self.cf_model_.score(users))
        zt = _zscore(self.text_model_.score(users))
        row = np.full(relevant.shape[0], -1)
        row[users] = np.arange(len(users))
        best_w, best = 0.0, -np.inf
        for w in self.weights:
            def score(u: np.ndarray, w: float = w) -> np.ndarray:
                r = row[u]
                return (1 - w) * zc[r] + w * zt[r]

            ndcg = heldout_metric(score, relevant, excluded, metric="ndcg", k=10,
                                  candidates=candidates)
            self.validation_[f"{w:g}"] = ndcg
            if ndcg > best + 1e-9:
                best_w, best = w, ndcg
        return best_w

    def _blend(self, cf: np.ndarray, text: np.ndarray) -> np.ndarray:
        w = self.weight_ if self.weight_ is not None else 0.1
        return (1 - w) * _zscore(cf) + w * _zscore(text)

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self._blend(self.cf_model_.score(users), self.text_model_.score(users))

    def can_score_history(self) -> bool:
        return all(m is None or m.can_score_history()
                   for m in (getattr(self, "cf_model_", None), getattr(self, "text_model_", None)))

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self._blend(self.cf_model_.score_history(history),
                           self.text_model_.score_history(history))

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        w = self.weight_ if self.weight_ is not None else 0.1
        return ((1 - w) * self.cf_model_.contributions(user, history, items)
                + w * self.text_model_.contributions(user, history, items))

    def add_items(self, item_ids, texts):  # type: ignore[no-untyped-def]
        raise ValueError("add items to a hybrid through a text model alone; the CF part "
                         "cannot score items it never saw")

    # ------------------------------------------------------------------ artifacts
    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"weight_": np.array([self.weight_], dtype=np.float64)}
        for prefix, m in (("cf.", self.cf_model_), ("text.", self.text_model_)):
            for k, v in m._state().items():
                state[prefix + k] = v
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.weight_ = float(arrays["weight_"][0])
        self.cf_model_, self.text_model_ = self._parts()
        for prefix, m in (("cf.", self.cf_model_), ("text.", self.text_model_)):
            m.user_items_, m.users_, m.items_ = self.user_items_, self.users_, self.items_
            m._set_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
