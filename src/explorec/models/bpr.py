"""BPR-MF: matrix factorisation trained with Bayesian personalised ranking (Rendle et al. 2009)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import DEFAULT_SEED
from explorec.models._neural import NegativeSampler, TorchRecommender


def _build(n_users: int, n_items: int, factors: int) -> Any:
    import torch
    from torch import nn

    class BPRNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user = nn.Embedding(n_users, factors)
            self.item = nn.Embedding(n_items, factors)
            nn.init.normal_(self.user.weight, std=0.1)
            nn.init.normal_(self.item.weight, std=0.1)

        def scores(self, users: torch.Tensor) -> torch.Tensor:
            return self.user(users) @ self.item.weight.T

    return BPRNet()


class BPR(TorchRecommender):
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

    def __init__(self, factors: int = 64, reg: float = 1e-2, n_negatives: int = 4,
                 epochs: int = 200, patience: int = 10, lr: float = 5e-3,
                 weight_decay: float = 0.0, batch_size: int = 2048, seed: int = DEFAULT_SEED,
                 device: str | None = None, progress: bool = True) -> None:
        super().__init__()
        self.factors = factors
        self.reg = reg
        self.n_negatives = n_negatives
        self.epochs = epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.progress = progress

    def _build_net(self) -> Any:
        return _build(self.n_users, self.n_items, int(self.factors))

    def _fit(self, X: sp.csr_matrix) -> None:
        import torch

        from explorec.train import seed_everything

        self._check_training_params()
        for p in ("factors", "n_negatives"):
            if int(getattr(self, p)) < 1:
                raise ValueError(f"{p} must be >= 1, got {getattr(self, p)!r}")
        seed_everything(int(self.seed))
        dev = self._torch_device()
        net = self._build_net().to(dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(self.seed))
        sampler = NegativeSampler(X, dev, gen)
        coo = X.tocoo()
        pu = torch.as_tensor(coo.row.astype(np.int64), device=dev)
        pi = torch.as_tensor(coo.col.astype(np.int64), device=dev)
        bs, nneg, reg = int(self.batch_size), int(self.n_negatives), float(self.reg)

        def batches(epoch: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
            order = torch.randperm(len(pu), generator=gen, device=dev)
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                u = pu[idx]
                yield u, pi[idx], sampler.sample(u, nneg)

        def step(batch):  # type: ignore[no-untyped-def]
            u, i, j = batch
            pu_, qi, qj = net.user(u), net.item(i), net.item(j)
            x = (pu_ * qi).sum(-1, keepdim=True) - (pu_[:, None, :] * qj).sum(-1)
            loss = -torch.nn.functional.logsigmoid(x).mean()
            if reg:
                loss = loss + reg * (pu_.pow(2).sum() + qi.pow(2).sum()
                                     + qj.pow(2).sum() / nneg) / len(u)
            return loss

        self._train(net, batches, step, n_batches=int(np.ceil(len(pu) / bs)))

    def _score_tensor(self, users: Any) -> Any:
        return self.net_.scores(users)

    def _item_similarity(self, items: np.ndarray) -> np.ndarray:
        V = self.net_.item.weight.detach().cpu().numpy()
        V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        return V[items] @ V.T
