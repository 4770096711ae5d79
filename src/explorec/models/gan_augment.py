"""Any model trained on interactions augmented by CFGAN for sparse users (``gan-augment``)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.models.base import BaseRecommender


class GanAugmented(BaseRecommender):
    """Fit CFGAN, add its top ``n_add`` items for every user with fewer than ``max_history``
    training interactions (:func:`explorec.models.cfgan.gan_augment`), then fit ``base`` on
    the augmented interactions. Generated items are not treated as seen: they can be
    recommended.

    Parameters
    ----------
    base : registered name of the model trained on the augmented data (default ``ease``).
    base_params : its parameters.
    max_history : users with fewer training interactions than this get generated ones.
    n_add : generated interactions added per such user.
    cfgan_params : parameters of the CFGAN generator.
    """

    name = "gan-augment"
    param_constraints: ClassVar[dict[str, Any]] = {"n_add": ">= 1"}
    _state_names = ("augmented_",)

    def __init__(self, base: str = "ease", base_params: dict | None = None,
                 max_history: int = 20, n_add: int = 5, cfgan_params: dict | None = None
                 ) -> None:
        super().__init__()
        self.base = base
        self.base_params = dict(base_params or {})
        self.max_history = max_history
        self.n_add = n_add
        self.cfgan_params = dict(cfgan_params or {})
        self.base_model_: Any = None
        self.augmented_: sp.csr_matrix | None = None
        self.augment_info_: dict[str, Any] = {}

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """CFGAN's fit, then the base model's on the augmented interactions."""
        from explorec.models.registry import create_model

        cfgan = create_model("cfgan", **self.cfgan_params).fit_memory(n_users, n_items, nnz)
        more = nnz + n_users * int(self.n_add)
        return int(max(cfgan, self._base().fit_memory(n_users, n_items, more)) + 2 * 8 * more)

    def _base(self) -> Any:
        from explorec.models.registry import create_model

        if self.base in ("gan-augment", "hybrid"):
            raise ValueError(f"base must be a plain model, not {self.base!r}")
        return create_model(self.base, **self.base_params)

    def _fit(self, X: sp.csr_matrix) -> None:
        from explorec.models.cfgan import gan_augment
        from explorec.models.registry import default_params

        inputs = self._inputs
        assert inputs is not None
        base = self._base()
        params = {**default_params("cfgan"), **self.cfgan_params}
        augmented, self.augment_info_ = gan_augment(
            inputs.train, max_history=int(self.max_history), n_add=int(self.n_add),
            cfgan_params=params, split=inputs.split, validate=inputs.validate)
        self.base_model_ = base.fit(augmented, catalog=inputs.catalog, split=inputs.split,
                                    validate=inputs.validate)
        self.augmented_ = self.base_model_.user_items_

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.base_model_.score(users)

    def can_score_history(self) -> bool:
        base = getattr(self, "base_model_", None)
        return base is None or base.can_score_history()

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self.base_model_.score_history(history)

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        return self.base_model_._item_similarity(items)

    # ------------------------------------------------------------------ artifacts
    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"augmented_": self.augmented_}
        for k, v in self.base_model_._state().items():
            state["base." + k] = v
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.augmented_ = arrays["augmented_"]
        m = self._base()
        m.user_items_, m.users_, m.items_ = self.augmented_, self.users_, self.items_
        m._set_state({k[5:]: v for k, v in arrays.items() if k.startswith("base.")})
        self.base_model_ = m
