"""BPR-MF: matrix factorisation trained with Bayesian personalised ranking (Rendle et al. 2009)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from explorec.data.splits import DEFAULT_SEED
from explorec.errors import ExploRecError
from explorec.models._neural import (
    SPARSE_EMBEDDING_ROWS,
    PairwiseRecommender,
    add_user_item_embeddings,
    bpr_loss,
    embedding_penalty,
    sampler_bytes,
    training_copies,
)
from explorec.models.base import NotFittedError, factor_scores


def _build(n_users: int, n_items: int, factors: int) -> Any:
    import torch
    from torch import nn

    class BPRNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # large tables: sparse gradients, so a step updates only the batch's rows (dense
            # Adam over every row made an epoch grow with interactions x users)
            add_user_item_embeddings(self, n_users, n_items, factors,
                                     sparse=n_users + n_items >= SPARSE_EMBEDDING_ROWS)

        def scores(self, users: torch.Tensor) -> torch.Tensor:
            return self.user(users) @ self.item.weight.T

    return BPRNet()


class BPR(PairwiseRecommender):
    """``score(u, i) = <p_u, q_i>``, trained on ``-log sigmoid(x_ui - x_uj)`` for training pairs
    ``(u, i)`` and uniform negatives ``j`` the user never interacted with.

    Parameters
    ----------
    factors : embedding size.
    reg : L2 penalty on the embeddings of each batch (per example).
    n_negatives : negatives per positive pair.
    epochs, patience, lr, weight_decay, batch_size : training settings (early stopping on
        validation NDCG@10 when ``fit`` gets a split).
    seed : random seed (initialisation, batches, negatives).
    device : None (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    progress : show a progress bar per epoch.
    """

    name = "bpr"
    exact_factor_scores = True
    param_constraints: ClassVar[dict[str, Any]] = {"reg": ">= 0"}

    def __init__(self, factors: int = 64, reg: float = 1e-2, n_negatives: int = 4,
                 epochs: int = 200, patience: int = 10, lr: float = 5e-3,
                 weight_decay: float = 0.0, batch_size: int = 2048, seed: int = DEFAULT_SEED,
                 device: str | None = None, progress: bool = True) -> None:
        super().__init__()
        self.factors = factors
        self.reg = reg
        self.n_negatives = n_negatives
        self._init_training(epochs, patience, lr, weight_decay, batch_size, seed, device, progress)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Embeddings with gradients and Adam moments, and the negative sampler's arrays."""
        return (super().fit_memory(n_users, n_items, nnz)
                + training_copies((n_users + n_items) * int(self.factors))
                + sampler_bytes(n_users, n_items, nnz, int(self.n_negatives)))

    def factor_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self.net_ is None:
            raise NotFittedError(f"{self.name} is not fitted; call fit() first")
        return (self.net_.user.weight.detach().cpu().numpy().astype(np.float32, copy=False),
                self.net_.item.weight.detach().cpu().numpy().astype(np.float32, copy=False))

    def _score(self, users: np.ndarray) -> np.ndarray:
        """``P[users] Q'`` summed in float64, rounded to float32 (:func:`factor_scores`):
        the same on any device and thread count."""
        if self.net_ is None:
            raise ExploRecError(f"{self.name} network weights are missing")
        U, V = self.factor_vectors()
        return factor_scores(U, np.ascontiguousarray(V.T, dtype=np.float64), users)

    def _build_net(self) -> Any:
        return _build(self.n_users, self.n_items, int(self.factors))

    def _pair_loss(self, net: Any, u: Any, i: Any, j: Any) -> Any:
        pu, qi, qj = net.user(u), net.item(i), net.item(j)
        loss = bpr_loss(pu, qi, qj)
        reg = float(self.reg)
        return loss + embedding_penalty(reg, pu, qi, qj) if reg else loss

    def _score_tensor(self, users: Any) -> Any:
        return self.net_.scores(users)

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        V = self.net_.item.weight.detach().cpu().numpy()
        V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        return V[items] @ V.T
