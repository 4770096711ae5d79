"""LightGCN: linear graph convolution over the user-item graph (He et al., SIGIR 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import DEFAULT_SEED
from explorec.models._neural import (
    PairwiseRecommender,
    add_user_item_embeddings,
    bpr_loss,
    embedding_penalty,
    sampler_bytes,
    training_copies,
)


def normalized_adjacency(X: sp.csr_matrix) -> sp.coo_matrix:
    """``D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, X], [X', 0]]`` (users first)."""
    X = sp.csr_matrix(X, dtype=np.float32)
    X.data[:] = 1.0
    A = sp.bmat([[None, X], [X.T, None]], format="csr")
    deg = np.asarray(A.sum(axis=1)).ravel()
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    return sp.coo_matrix(sp.diags(inv) @ A @ sp.diags(inv), dtype=np.float32)


def _build(n_users: int, n_items: int, factors: int, layers: int) -> Any:
    import torch
    from torch import nn

    class SymmetricSpMM(torch.autograd.Function):
        """``A @ E`` for a symmetric sparse ``A``: the gradient is ``A @ grad`` again, which
        on CPU is 3-4x faster than autograd's generic sparse backward (measured)."""

        @staticmethod
        def forward(ctx: Any, a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            ctx.a = a
            return torch.sparse.mm(a, e)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
            return None, torch.sparse.mm(ctx.a, grad)

    class LightGCNNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            add_user_item_embeddings(self, n_users, n_items, factors)
            self.adj: torch.Tensor | None = None  # set by the model (not a parameter)

        def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
            assert self.adj is not None, "adjacency not set"
            e = torch.cat([self.user.weight, self.item.weight])
            total = e
            for _ in range(layers):
                e = SymmetricSpMM.apply(self.adj, e)
                total = total + e
            total = total / (layers + 1)
            return total[:n_users], total[n_users:]

    return LightGCNNet()


class LightGCN(PairwiseRecommender):
    """User and item embeddings averaged over ``layers`` rounds of neighbourhood propagation
    ``E <- D^-1/2 A D^-1/2 E`` (no weights, no non-linearity), trained with BPR.

    Parameters
    ----------
    factors : embedding size.
    layers : propagation rounds.
    reg : L2 penalty on the (layer-0) embeddings of each batch, per example.
    n_negatives : negatives per positive pair.
    epochs, patience, lr, weight_decay, batch_size : training settings.
    seed, device, progress : as for every neural model.
    """

    name = "lightgcn"
    param_constraints: ClassVar[dict[str, Any]] = {"reg": ">= 0"}

    def __init__(self, factors: int = 64, layers: int = 3, reg: float = 1e-3,
                 n_negatives: int = 4, epochs: int = 300, patience: int = 10, lr: float = 1e-2,
                 weight_decay: float = 0.0, batch_size: int = 4096, seed: int = DEFAULT_SEED,
                 device: str | None = None, progress: bool = True) -> None:
        super().__init__()
        self.factors = factors
        self.layers = layers
        self.reg = reg
        self.n_negatives = n_negatives
        self._init_training(epochs, patience, lr, weight_decay, batch_size, seed, device, progress)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Embeddings with Adam state, the normalised adjacency, every layer's propagated
        embeddings kept for the backward pass, and the sampler's arrays."""
        f = int(self.factors)
        n = n_users + n_items
        return (super().fit_memory(n_users, n_items, nnz) + training_copies(n * f)
                + 2 * 2 * nnz * 20 + 3 * 4 * n * f * (int(self.layers) + 1)
                + sampler_bytes(n_users, n_items, nnz, int(self.n_negatives)))

    def _build_net(self) -> Any:
        net = _build(self.n_users, self.n_items, int(self.factors), int(self.layers))
        net.adj = self._adjacency()
        return net

    def _adjacency(self) -> Any:
        import warnings

        import torch

        A = sp.csr_matrix(normalized_adjacency(self._check_fitted()))
        A.sort_indices()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": used as documented
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.as_tensor(A.indptr.astype(np.int64)),
                                           torch.as_tensor(A.indices.astype(np.int64)),
                                           torch.as_tensor(A.data), size=A.shape,
                                           check_invariants=False)

    def _set_state(self, arrays: dict[str, Any]) -> None:
        super()._set_state(arrays)
        self.net_.adj = self.net_.adj.to(self._torch_device())

    def _check_model_params(self) -> None:
        if int(self.layers) < 0:
            raise ValueError(f"layers must be >= 0, got {self.layers!r}")

    def _start_training(self) -> tuple[Any, Any]:
        dev, net = super()._start_training()
        net.adj = net.adj.to(dev)  # a plain attribute: Module.to does not move it
        return dev, net

    def _pair_loss(self, net: Any, u: Any, i: Any, j: Any) -> Any:
        U, V = net.propagate()
        loss = bpr_loss(U[u], V[i], V[j])
        reg = float(self.reg)
        if reg:  # on the layer-0 embeddings
            loss = loss + embedding_penalty(reg, net.user(u), net.item(i), net.item(j))
        return loss

    def _score_tensor(self, users: Any) -> Any:
        U, V = self.net_.propagate()
        return U[users] @ V.T
