"""NeuMF: generalised matrix factorisation fused with an MLP (He et al., WWW 2017)."""

from __future__ import annotations

import itertools
from typing import Any

from explorec.data.splits import DEFAULT_SEED
from explorec.models._neural import PairwiseRecommender, sampler_bytes, training_copies


def _build(n_users: int, n_items: int, factors: int, layers: tuple[int, ...], dropout: float
           ) -> Any:
    import torch
    from torch import nn

    class NeuMFNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gmf_user = nn.Embedding(n_users, factors)
            self.gmf_item = nn.Embedding(n_items, factors)
            self.mlp_user = nn.Embedding(n_users, layers[0] // 2)
            self.mlp_item = nn.Embedding(n_items, layers[0] // 2)
            for e in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
                nn.init.normal_(e.weight, std=0.01)
            # first MLP layer split into its user and item halves, so full ranking can add
            # (users x h) and (items x h) instead of running the layer on every pair
            self.first_user = nn.Linear(layers[0] // 2, layers[1])
            self.first_item = nn.Linear(layers[0] // 2, layers[1], bias=False)
            rest: list[nn.Module] = []
            for a, b in itertools.pairwise(layers[1:]):
                rest += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(a, b)]
            self.rest = nn.Sequential(*rest, nn.ReLU())
            self.out = nn.Linear(factors + layers[-1], 1)

        def pair_logits(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            """Logits for matching shapes of user and item index tensors."""
            g = self.gmf_user(u) * self.gmf_item(i)
            h = self.rest(self.first_user(self.mlp_user(u)) + self.first_item(self.mlp_item(i)))
            return self.out(torch.cat([g, h], -1)).squeeze(-1)

        def all_items(self, u: torch.Tensor) -> torch.Tensor:
            """(len(u), n_items) logits."""
            w = self.out.weight[0]
            k = self.gmf_user.embedding_dim
            g = (self.gmf_user(u) * w[:k]) @ self.gmf_item.weight.T
            hu = self.first_user(self.mlp_user(u))
            hi = self.first_item(self.mlp_item.weight)
            h = self.rest(hu[:, None, :] + hi[None, :, :])
            return g + h @ w[k:] + self.out.bias

    return NeuMFNet()


class NeuMF(PairwiseRecommender):
    """``sigmoid(h' [p_u * q_i ; MLP(p'_u, q'_i)])``, trained pointwise with binary
    cross-entropy on training pairs and ``n_negatives`` sampled negatives each.

    Parameters
    ----------
    factors : GMF embedding size.
    layers : MLP layer sizes; the first is the concatenated user+item MLP embedding size.
    dropout : dropout between MLP layers.
    n_negatives : negatives per positive pair.
    epochs, patience, lr, weight_decay, batch_size : training settings (batch of positives).
    seed, device, progress : as for every neural model.
    """

    name = "neumf"

    def __init__(self, factors: int = 64, layers: tuple[int, ...] = (128, 64, 32),
                 dropout: float = 0.0, n_negatives: int = 4, epochs: int = 100,
                 patience: int = 5, lr: float = 3e-3, weight_decay: float = 0.0,
                 batch_size: int = 2048, seed: int = DEFAULT_SEED, device: str | None = None,
                 progress: bool = True) -> None:
        super().__init__()
        self.factors = factors
        self.layers = tuple(layers)
        self.dropout = dropout
        self.n_negatives = n_negatives
        self._init_training(epochs, patience, lr, weight_decay, batch_size, seed, device, progress)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """GMF and MLP embeddings with gradients and Adam moments, and the sampler's arrays."""
        width = int(self.factors) + int(self.layers[0]) // 2
        return (super().fit_memory(n_users, n_items, nnz)
                + training_copies((n_users + n_items) * width)
                + sampler_bytes(n_users, n_items, nnz, int(self.n_negatives)))

    def _build_net(self) -> Any:
        layers = tuple(int(v) for v in self.layers)
        if len(layers) < 2 or min(layers) < 1 or layers[0] % 2:
            raise ValueError(f"layers needs >= 2 positive sizes, the first even; got {self.layers!r}")
        return _build(self.n_users, self.n_items, int(self.factors), layers, float(self.dropout))

    def _pair_loss(self, net: Any, u: Any, i: Any, j: Any) -> Any:
        import torch

        users = torch.cat([u, u[:, None].expand(-1, j.shape[1]).reshape(-1)])
        items = torch.cat([i, j.reshape(-1)])
        labels = torch.cat([torch.ones_like(u, dtype=torch.float32),
                            torch.zeros(j.numel(), device=u.device)])
        return torch.nn.functional.binary_cross_entropy_with_logits(
            net.pair_logits(users, items), labels)

    def _score_tensor(self, users: Any) -> Any:
        import torch

        return torch.cat([self.net_.all_items(users[s:s + 256])
                          for s in range(0, len(users), 256)]) if len(users) else \
            torch.zeros((0, self.n_items), device=users.device)
