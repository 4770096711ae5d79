"""Shared pieces of the neural zoo models: the torch-model base class, negative sampling,
time-ordered sequences.

Every neural model trains through :func:`explorec.train.train` (seeded, early stopping on
``fit``'s ``validate`` callable or its split's validation NDCG@10, with best-weight restore,
CPU by default, CUDA when available) and stores
its network as plain arrays (``net.<parameter>``) in the safe artifact.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.models.base import BaseRecommender, csr_bytes, score_block_bytes

#: resident memory torch itself takes once imported (CPU build, measured ~0.3 GB)
TORCH_BYTES = 400 * 2**20


def training_copies(n_params: int) -> int:
    """Bytes of ``n_params`` float32 weights with their gradient and two Adam moments."""
    return 4 * 4 * int(n_params)


def sampler_bytes(n_users: int, n_items: int, nnz: int, n_negatives: int) -> int:
    """Positive keys, the optional flat table and one epoch of (user, pos, negatives)."""
    table = n_users * n_items if n_users * n_items <= 50_000_000 else 0
    return 8 * nnz * 2 + table + 8 * nnz * (2 + int(n_negatives)) * 2


class TorchRecommender(BaseRecommender):
    """Base for models whose scores come from a ``torch.nn.Module`` (``self.net_``).

    Subclasses implement ``_build_net()`` (from their parameters and ``n_users``/``n_items``)
    and ``_score_tensor(users) -> (len(users), n_items)`` tensor, and call
    ``self._train(net, batches, step, n_batches)`` from ``_fit``.
    Training settings shared by all of them are constructor parameters of the subclasses:
    ``epochs, patience, lr, weight_decay, batch_size, seed, device, progress``.
    """

    epochs: int
    patience: int
    lr: float
    weight_decay: float
    seed: int
    device: str | None
    progress: bool

    def __init__(self) -> None:
        super().__init__()
        self.net_: Any = None
        self.train_result_: Any = None

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """torch, the training matrix and its per-epoch arrays; subclasses add their weights."""
        return TORCH_BYTES + 3 * csr_bytes(nnz, n_users, 8) + score_block_bytes(n_items)

    def _init_training(self, epochs: int, patience: int, lr: float, weight_decay: float,
                       batch_size: int, seed: int, device: str | None, progress: bool) -> None:
        """Store the training settings every neural model takes as constructor parameters."""
        self.epochs = epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ training
    @abstractmethod
    def _build_net(self) -> Any:
        """The torch module to train (subclasses)."""

    def _torch_device(self) -> Any:
        import torch

        from explorec.encoders.sentence import torch_device

        return torch.device(torch_device(self.device))

    def _start_training(self) -> tuple[Any, Any]:
        """Seed every generator and build the network on the training device:
        ``(device, net)``."""
        from explorec.train import seed_everything

        seed_everything(int(self.seed))
        dev = self._torch_device()
        return dev, self._build_net().to(dev)

    def _check_positive(self, *names: str) -> None:
        for p in names:
            if int(getattr(self, p)) < 1:
                raise ValueError(f"{p} must be >= 1, got {getattr(self, p)!r}")

    def _check_training_params(self) -> None:
        self._check_positive("epochs", "patience")
        if float(self.lr) <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if float(self.weight_decay) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        bs = getattr(self, "batch_size", 1)
        if int(bs) < 1:
            raise ValueError(f"batch_size must be >= 1, got {bs!r}")

    def _validator(self) -> tuple[Callable[[], float], int]:
        """(validation score of the network as it is now, patience): ``fit``'s ``validate``,
        else validation NDCG@10 on its ``split`` (:meth:`FitInputs.validation`). Without
        either, every epoch counts as an improvement, so all ``epochs`` run and the last
        weights are kept."""
        validation = self._inputs.validation() if self._inputs is not None else None
        if validation is None:
            counter = iter(range(1, 1 << 30))
            return (lambda: float(next(counter))), int(self.epochs) + 1

        def validate() -> float:
            return float(validation(self))

        return validate, int(self.patience)

    def _train(self, net: Any, batches: Callable[..., Any], step: Callable[[Any], Any],
               n_batches: int | None = None) -> None:
        from explorec.train import TrainConfig, train

        self.net_ = net
        validate, patience = self._validator()
        cfg = TrainConfig(epochs=int(self.epochs), patience=patience, lr=float(self.lr),
                          weight_decay=float(self.weight_decay), seed=int(self.seed),
                          device=str(self._torch_device()), progress=bool(self.progress))
        self.train_result_ = train(net, batches, step, validate, cfg, n_batches=n_batches,
                                   name=self.name)

    # ------------------------------------------------------------------ scoring
    @abstractmethod
    def _score_tensor(self, users: Any) -> Any:
        """Scores (len(users), n_items) as a tensor (subclasses)."""

    def _score(self, users: np.ndarray) -> np.ndarray:
        import torch

        if self.net_ is None:
            raise ExploRecError(f"{self.name} network weights are missing")
        dev = next(self.net_.parameters()).device
        was_training = self.net_.training
        self.net_.eval()
        try:
            with torch.no_grad():
                u = torch.as_tensor(np.ascontiguousarray(users, dtype=np.int64), device=dev)
                out = self._score_tensor(u).float().cpu().numpy()
        finally:
            self.net_.train(was_training)
        return out

    # ------------------------------------------------------------------ artifacts
    def _state(self) -> dict[str, Any]:
        state = super()._state()
        if self.net_ is None:
            raise ExploRecError(f"{self.name} network weights are missing")
        for k, v in self.net_.state_dict().items():
            state[f"net.{k}"] = v.detach().cpu().numpy()
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        import torch

        super()._set_state(arrays)
        net = self._build_net()
        net.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items()
                             if k.startswith("net.")})
        self.net_ = net.to(self._torch_device()).eval()


class PairwiseRecommender(TorchRecommender):
    """Base of the models trained on batches of training pairs ``(u, i)``, each with
    ``n_negatives`` uniform items ``j`` the user never interacted with (``bpr``,
    ``lightgcn``, ``neumf``). Subclasses give the batch loss in ``_pair_loss``.
    """

    factors: int
    n_negatives: int
    batch_size: int

    def _check_model_params(self) -> None:
        """Checks of a subclass's own parameters, run before training starts."""

    @abstractmethod
    def _pair_loss(self, net: Any, u: Any, i: Any, j: Any) -> Any:
        """Loss of a batch: users ``u`` (B,), positives ``i`` (B,), negatives ``j`` (B, n)."""

    def _fit(self, X: sp.csr_matrix) -> None:
        import torch

        self._check_training_params()
        self._check_positive("factors", "n_negatives")
        self._check_model_params()
        dev, net = self._start_training()
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(self.seed))
        sampler = NegativeSampler(X, dev, gen)
        coo = X.tocoo()
        pu = torch.as_tensor(coo.row.astype(np.int64), device=dev)
        pi = torch.as_tensor(coo.col.astype(np.int64), device=dev)
        bs, nneg = int(self.batch_size), int(self.n_negatives)

        def batches(epoch: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
            order = torch.randperm(len(pu), generator=gen, device=dev)
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                u = pu[idx]
                yield u, pi[idx], sampler.sample(u, nneg)

        self._train(net, batches, lambda batch: self._pair_loss(net, *batch),
                    n_batches=int(np.ceil(len(pu) / bs)))


#: user + item rows from which pairwise models train their tables with sparse gradients
SPARSE_EMBEDDING_ROWS = 200_000


def add_user_item_embeddings(module: Any, n_users: int, n_items: int, factors: int,
                             std: float = 0.1, sparse: bool = False) -> None:
    """Give ``module`` ``user`` and ``item`` embedding tables initialised N(0, std^2);
    ``sparse``: their gradients are sparse (the training loop then uses SparseAdam)."""
    from torch import nn

    module.user = nn.Embedding(n_users, factors, sparse=sparse)
    module.item = nn.Embedding(n_items, factors, sparse=sparse)
    nn.init.normal_(module.user.weight, std=std)
    nn.init.normal_(module.item.weight, std=std)


def bpr_loss(pu: Any, qi: Any, qj: Any) -> Any:
    """Mean ``-log sigmoid(<p_u, q_i> - <p_u, q_j>)`` over users (B, d), positives (B, d) and
    negatives (B, n, d)."""
    import torch

    x = (pu * qi).sum(-1, keepdim=True) - (pu[:, None, :] * qj).sum(-1)
    return -torch.nn.functional.logsigmoid(x).mean()


def embedding_penalty(reg: float, pu: Any, qi: Any, qj: Any) -> Any:
    """``reg`` times the squared L2 norm of a batch's embeddings per example (users (B, d),
    positives (B, d), negatives (B, n, d); a negative counts ``1 / n``)."""
    return reg * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / qj.shape[1]) / len(pu)


class NegativeSampler:
    """Uniform negatives that avoid each user's training items, vectorised.

    Positives are kept as sorted keys ``user * n_items + item`` (and, for matrices up to 50M
    cells, as a flat boolean table); a draw that hits one is redrawn (a few rounds; what is
    left after them is accepted, which on sparse data is a handful of draws in a million).
    """

    def __init__(self, X: sp.csr_matrix, device: Any, generator: Any, rounds: int = 5) -> None:
        import torch

        X = sp.csr_matrix(X)
        self.n_items = X.shape[1]
        rows = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        keys = np.sort(rows * self.n_items + X.indices.astype(np.int64))
        self.keys = torch.as_tensor(keys, device=device)
        self.dense: Any = None
        if X.shape[0] * X.shape[1] <= 50_000_000:  # a flat bool table is faster to probe
            dense = np.zeros(X.shape[0] * X.shape[1], dtype=bool)
            dense[keys] = True
            self.dense = torch.as_tensor(dense, device=device)
        self.device = device
        self.gen = generator
        self.rounds = rounds

    def is_positive(self, users: Any, items: Any) -> Any:
        import torch

        if len(self.keys) == 0:
            return torch.zeros_like(items, dtype=torch.bool)
        k = users * self.n_items + items
        if self.dense is not None:
            return self.dense[k]
        pos = torch.searchsorted(self.keys, k).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == k

    def sample(self, users: Any, n: int = 1) -> Any:
        """(len(users), n) negative items for ``users`` (a 1-d long tensor)."""
        import torch

        u = users[:, None].expand(-1, n)
        items = torch.randint(0, self.n_items, u.shape, generator=self.gen, device=self.device)
        for _ in range(self.rounds):
            bad = self.is_positive(u, items)
            if not bool(bad.any()):
                break
            redraw = torch.randint(0, self.n_items, u.shape, generator=self.gen,
                                   device=self.device)
            items = torch.where(bad, redraw, items)
        return items


def time_ordered_matrix(train: Any, times: bool = False) -> sp.csr_matrix:
    """Binary user x item CSR whose column order within each row follows time
    (:meth:`Interactions.time_order`; row order when there are no timestamps): row ``u``'s
    ``indices`` are the user's items, oldest first.
    With ``times`` the stored values are the timestamps (float64) instead of ones."""
    n = len(train)
    t = train.timestamp if train.timestamp is not None else np.arange(n, dtype=np.float64)
    order = train.time_order()
    user, item = train.user[order], train.item[order]
    indptr = np.r_[0, np.cumsum(np.bincount(user, minlength=train.n_users))]
    data = np.asarray(t, dtype=np.float64)[order] if times else np.ones(n, np.float32)
    return sp.csr_matrix((data, item, indptr), shape=(train.n_users, train.n_items))


def last_items(M: sp.csr_matrix, length: int, pad: int) -> np.ndarray:
    """The last ``length`` entries of each row's ``indices`` (time order), left-padded with
    ``pad``: a (rows, length) int64 array, most recent item in the last column."""
    M = sp.csr_matrix(M)
    n = np.minimum(np.diff(M.indptr), length)
    out = np.full((M.shape[0], length), pad, dtype=np.int64)
    rows = np.repeat(np.arange(M.shape[0]), n)
    offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # 0..n_r-1 within each row
    src = np.repeat(M.indptr[1:] - n, n) + offs
    out[rows, length - np.repeat(n, n) + offs] = M.indices[src]
    return out
