"""Mult-VAE: variational autoencoder with a multinomial likelihood (Liang et al., WWW 2018)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import DEFAULT_SEED
from explorec.models._neural import TorchRecommender, training_copies


def _build(n_items: int, hidden: int, latent: int, dropout: float) -> Any:
    import torch
    from torch import nn

    class MultVAENet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.enc = nn.Linear(n_items, hidden)
            self.mu = nn.Linear(hidden, latent)
            self.logvar = nn.Linear(hidden, latent)
            self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(),
                                     nn.Linear(hidden, n_items))
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_normal_(m.weight)
                    nn.init.normal_(m.bias, std=0.001)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = nn.functional.normalize(x, dim=-1)
            h = torch.tanh(self.enc(self.drop(x)))
            mu, logvar = self.mu(h), self.logvar(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            return self.dec(z), mu, logvar

    return MultVAENet()


class MultVAE(TorchRecommender):
    """Encoder ``x_u -> (mu, sigma)``, decoder ``z -> softmax over items``; the loss is the
    multinomial log-likelihood of the user's items plus ``beta`` times the KL term, ``beta``
    annealed linearly from 0 to ``anneal_cap`` over ``anneal_steps`` updates.

    A user is scored from their history alone, so new users need no retraining.

    Parameters
    ----------
    hidden : encoder/decoder hidden size (600 in the paper).
    latent : latent size (200 in the paper).
    dropout : input dropout.
    anneal_cap : largest KL weight ``beta``.
    anneal_steps : updates over which ``beta`` grows from 0 to ``anneal_cap``.
    epochs, patience, lr, weight_decay, batch_size : training settings (batches of users).
    seed, device, progress : as for every neural model.
    """

    name = "multvae"
    param_constraints: ClassVar[dict[str, Any]] = {"anneal_cap": ">= 0", "anneal_steps": ">= 0"}

    def __init__(self, hidden: int = 600, latent: int = 64, dropout: float = 0.5,
                 anneal_cap: float = 0.2, anneal_steps: int = 2000, epochs: int = 300,
                 patience: int = 20, lr: float = 1e-3, weight_decay: float = 0.0,
                 batch_size: int = 64, seed: int = DEFAULT_SEED, device: str | None = None,
                 progress: bool = True) -> None:
        super().__init__()
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.anneal_cap = anneal_cap
        self.anneal_steps = anneal_steps
        self._init_training(epochs, patience, lr, weight_decay, batch_size, seed, device, progress)

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """The dense users x items training tensor, encoder/decoder weights with Adam state,
        and a batch's activations."""
        h = int(self.hidden)
        return (super().fit_memory(n_users, n_items, nnz) + 5 * n_users * n_items
                + training_copies(2 * n_items * h) + 8 * 4 * int(self.batch_size) * n_items)

    memory_alternative = "multvae holds users x items densely; use ease, ials or bpr"

    def _build_net(self) -> Any:
        return _build(self.n_items, int(self.hidden), int(self.latent), float(self.dropout))

    def _fit(self, X: sp.csr_matrix) -> None:
        import torch

        self._check_training_params()
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if float(self.anneal_cap) < 0 or int(self.anneal_steps) < 1:
            raise ValueError("need anneal_cap >= 0 and anneal_steps >= 1, got "
                             f"{self.anneal_cap!r}, {self.anneal_steps!r}")
        dev, net = self._start_training()
        dense = torch.as_tensor((X > 0).toarray().astype(np.float32), device=dev)
        users = np.flatnonzero(np.diff(X.indptr) > 0)
        bs = int(self.batch_size)
        count = {"step": 0}

        def batches(epoch: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
            order = rng.permutation(users)
            for s in range(0, len(order), bs):
                yield dense[torch.as_tensor(order[s:s + bs], device=dev)]

        def step(x):  # type: ignore[no-untyped-def]
            logits, mu, logvar = net(x)
            nll = -(torch.log_softmax(logits, dim=-1) * x).sum(-1).mean()
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1).mean()
            beta = min(float(self.anneal_cap), count["step"] / int(self.anneal_steps))
            count["step"] += 1
            return nll + beta * kl

        self._train(net, batches, step, n_batches=int(np.ceil(len(users) / bs)))

    def _score_tensor(self, users: Any) -> Any:
        import torch

        assert self.user_items_ is not None
        X = self.user_items_[users.cpu().numpy()]
        x = torch.as_tensor((X > 0).toarray().astype(np.float32), device=users.device)
        return self.net_(x)[0]

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        import torch

        dev = next(self.net_.parameters()).device
        self.net_.eval()
        with torch.no_grad():
            x = torch.as_tensor((history > 0).toarray().astype(np.float32), device=dev)
            return self.net_(x)[0].cpu().numpy()
