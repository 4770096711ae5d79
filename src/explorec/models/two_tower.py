"""Two-tower model over language-model item vectors.

Item tower: LM embedding -> MLP, plus an ID embedding that is randomly dropped during
training (ID dropout) so that the text path alone must carry an item; items never seen in
training use the text path only. User tower: attention over the item-tower vectors of the
user's history (no user-ID embedding), so a brand-new user with a few interactions is
scored without retraining. Loss: in-batch softmax with logQ correction (the item's sampling
frequency), or the full softmax for small catalogs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.data.splits import DEFAULT_SEED
from explorec.errors import ExploRecError
from explorec.models._neural import time_ordered_matrix
from explorec.models.base import BaseRecommender, csr_bytes, score_block_bytes
from explorec.models.text_items import ENCODER_BYTES, TextItemsMixin
from explorec.validation import Validator


def _build_module(text_dim: int, n_items: int, dim: int, hidden: int, dropout: float,  # type: ignore[no-untyped-def]
                  sparse: bool = False):
    """The network; ``sparse``: the item ID tables get sparse gradients (a step then updates
    only the rows its batch used: the training loop gives them SparseAdam)."""
    import torch
    from torch import nn

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(),
                                          nn.Dropout(dropout), nn.Linear(hidden, dim))
            self.item_id = nn.Embedding(n_items, dim, sparse=sparse)
            nn.init.normal_(self.item_id.weight, std=0.01)
            # item bias (how likely an item is whatever the user): from text, plus an ID part
            self.text_bias = nn.Linear(text_dim, 1)
            self.id_bias = nn.Embedding(n_items, 1, sparse=sparse)
            nn.init.zeros_(self.id_bias.weight)
            self.query = nn.Parameter(torch.randn(dim) * 0.1)
            self.key = nn.Linear(dim, dim, bias=False)
            self.user_mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(),
                                          nn.Dropout(dropout), nn.Linear(hidden, dim))
            self.empty_user = nn.Parameter(torch.zeros(dim))
            self.log_temp = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

        def items(self, text: torch.Tensor, ids: torch.Tensor, id_mask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
            """(unit item vectors, item biases); ``id_mask`` (0/1) switches the ID parts on."""
            v = self.item_mlp(text) + self.item_id(ids) * id_mask.unsqueeze(-1)
            b = self.text_bias(text).squeeze(-1) + self.id_bias(ids).squeeze(-1) * id_mask
            return nn.functional.normalize(v, dim=-1), b

        def attention_logits(self, v: torch.Tensor) -> torch.Tensor:
            """Per-item attention logit (computed once per item, gathered per history slot)."""
            return (self.key(v) * self.query).sum(-1) / v.shape[-1] ** 0.5

        def users(self, v: torch.Tensor, a: torch.Tensor, hist: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
            """User vectors from item vectors ``v`` (n, dim) and attention logits ``a`` (n,);
            ``hist`` (B, L) item indices into them, ``mask`` (B, L) true where present."""
            w = self.attention(nn.functional.embedding(hist, a[:, None]).squeeze(-1), mask)
            cnt = mask.sum(1, keepdim=True).clamp(min=1)
            m = mask.float() / cnt
            if v.shape[0] <= 8192:
                # small tables: scatter the slot weights into (B, n) and multiply; two dense
                # matmuls are much faster on CPU than (B, L, dim) gathers and their backward
                zeros = torch.zeros(hist.shape[0], v.shape[0], device=v.device, dtype=v.dtype)
                pooled = zeros.scatter_add(1, hist, w) @ v
                mean = zeros.scatter_add(1, hist, m) @ v
            else:
                h = nn.functional.embedding(hist, v)
                pooled = (w.unsqueeze(-1) * h).sum(1)
                mean = (m.unsqueeze(-1) * h).sum(1)
            u = self.user_mlp(torch.cat([pooled, mean], -1)) + mean
            u = torch.where(mask.any(1, keepdim=True), u, self.empty_user.expand_as(u))
            return nn.functional.normalize(u, dim=-1)

        @staticmethod
        def attention(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return torch.softmax(logits.masked_fill(~mask, -1e9), dim=-1) * mask

    return TwoTowerNet()


class TwoTowerRecommender(TextItemsMixin, BaseRecommender):
    """Two-tower retrieval model on LM item vectors (see module docstring).

    Parameters
    ----------
    encoder : text encoder: ``minilm``, ``tfidf`` or a sentence-transformers directory.
    template : item text template over catalog fields (None: the catalog's own).
    dim : output size of the towers (the embedding size).
    hidden : hidden layer size of the towers.
    id_dropout : probability of dropping an item's ID embedding in training.
    max_history : most recent history items the user tower attends to.
    prefix_prob : share of training examples whose history is the user's earliest items
        (as a new user's is) rather than a random subset of their items.
    loss : ``"inbatch"`` (in-batch softmax with logQ correction) or ``"full"``.
    batch_size, epochs, patience, lr, weight_decay, dropout : training settings; early
        stopping on ``fit(..., validate=...)``, else on the validation NDCG@10 of
        ``fit(..., split=...)``; without either every epoch validates as 0, so training
        stops ``patience`` epochs after the first and keeps the first epoch's weights.
    steps_per_epoch : batches per epoch, each epoch a fresh random order (None: one pass
        over every training interaction); validation and early stopping run after each.
    device : None (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    sparse_ids : item ID tables with sparse gradients (SparseAdam; a step updates only the
        rows its batch used); None: above 8,192 items with the in-batch loss (below, every
        step runs the item tower over the whole catalog and dense tables are faster).
    """

    name = "two-tower"
    param_constraints: ClassVar[dict[str, Any]] = {"prefix_prob": "[0, 1]", "loss": ("inbatch", "full"),
                                                   "steps_per_epoch": ">= 1"}
    _state_names = ("item_text_vectors_", "item_vectors_", "item_biases_", "seen_items_",
                    "history_")

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """The encoder, text and ID item vectors with Adam state, users' padded histories,
        and one scoring block."""
        from explorec.models._neural import TORCH_BYTES, training_copies

        d = int(self.dim)
        text = 2048 if self.encoder == "tfidf" else 768 if self.encoder != "minilm" else 384
        return (TORCH_BYTES + ENCODER_BYTES + 3 * 4 * n_items * text
                + training_copies(n_items * d + text * int(self.hidden)) + 5 * 8 * nnz
                + 3 * 8 * n_users * (int(self.max_history) + 1) + 3 * csr_bytes(nnz, n_users)
                + 20 * min(_PADDED_CELLS, n_users * min(n_items, nnz))
                + score_block_bytes(n_items)
                + (3 * 4 * int(self.batch_size) * n_items if self.loss == "full"
                   else 3 * 4 * int(self.batch_size) ** 2))

    def __init__(self, encoder: str = "minilm", template: str | None = None,
                 dim: int = 128, hidden: int = 256, id_dropout: float = 0.5,
                 max_history: int = 50, loss: str = "inbatch", batch_size: int = 1024,
                 epochs: int = 30, patience: int = 3, lr: float = 5e-4,
                 weight_decay: float = 1e-5, dropout: float = 0.3, seed: int = DEFAULT_SEED,
                 prefix_prob: float = 0.5, device: str | None = None,
                 tensorboard_dir: str | None = None, progress: bool = True,
                 steps_per_epoch: int | None = None, sparse_ids: bool | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.template = template
        self.dim = dim
        self.hidden = hidden
        self.id_dropout = id_dropout
        self.max_history = max_history
        self.loss = loss
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.seed = seed
        self.prefix_prob = prefix_prob
        self.device = device
        self.tensorboard_dir = tensorboard_dir
        self.progress = progress
        self.steps_per_epoch = steps_per_epoch
        self.sparse_ids = sparse_ids
        self.item_text_vectors_: np.ndarray | None = None
        self.item_vectors_: np.ndarray | None = None
        self.item_biases_: np.ndarray | None = None
        self.history_: sp.csr_matrix | None = None
        self.seen_items_: np.ndarray | None = None
        self.net_: Any = None
        self.train_result_: Any = None

    # ------------------------------------------------------------------ training
    def _fit(self, X: sp.csr_matrix) -> None:
        import torch

        from explorec.encoders.sentence import torch_device
        from explorec.train import TrainConfig, seed_everything, train

        if self.loss not in ("inbatch", "full"):
            raise ValueError(f"loss must be 'inbatch' or 'full', not {self.loss!r}")
        inputs = self._inputs
        assert inputs is not None
        seed_everything(self.seed)
        dev = torch.device(torch_device(self.device))
        self.item_text_vectors_ = self._encode_catalog()
        n_items = X.shape[1]
        counts = np.asarray(X.sum(axis=0)).ravel()
        self.seen_items_ = (counts > 0).astype(np.float32)
        # the item tower runs over the whole catalog per step only where that is cheap;
        # above, over the batch's distinct items (the catalog-wide pass made an epoch's cost
        # grow with items x interactions), and the ID tables then train with sparse gradients
        # (dense Adam updated every row of them at every step: an epoch's cost grew with
        # items x interactions again)
        small_catalog = n_items <= _FULL_TOWER_ITEMS
        sparse_ids = (not small_catalog and self.loss == "inbatch" if self.sparse_ids is None
                      else bool(self.sparse_ids))
        net = _build_module(self.item_text_vectors_.shape[1], n_items, self.dim, self.hidden,
                            self.dropout, sparse=sparse_ids).to(dev)
        self.net_ = net
        text = torch.as_tensor(self.item_text_vectors_, device=dev)
        all_ids = torch.arange(n_items, device=dev)
        seen = torch.as_tensor(self.seen_items_, device=dev)
        log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / max(1, counts.sum())),
                                dtype=torch.float32, device=dev)

        # padded per-user item lists (train order is random; histories are sampled anyway)
        users_pos = X.tocoo()
        pairs_u = users_pos.row.astype(np.int64)
        pairs_i = users_pos.col.astype(np.int64)
        self.history_ = time_ordered_matrix(inputs.train)
        L = self.max_history
        lengths = np.diff(self.history_.indptr)
        # small data: every user's whole list padded (the random order is one torch sort);
        # large data: only L + 1 items per user are ever drawn, so memory stays O(interactions)
        # however long the longest history is (a (users x longest) matrix ran out of memory)
        compact = len(lengths) * max(1, int(lengths.max(initial=1))) > _PADDED_CELLS
        if compact:
            prefix_np, _ = _padded_rows(self.history_, keep_first=L + 1)
            padded_t = torch.as_tensor(prefix_np, device=dev)
        else:
            padded, _ = _padded_rows(self.history_)
            padded_t = torch.as_tensor(padded, device=dev)
        lengths_t = torch.as_tensor(lengths, device=dev)
        bs = self.batch_size
        n_batches = int(np.ceil(len(pairs_u) / bs))

        gen = torch.Generator(device=dev)
        gen.manual_seed(self.seed)
        slots = torch.arange(max(padded_t.shape[1], L + 1), device=dev)
        state: dict[str, torch.Tensor] = {}

        def batches(epoch: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
            # one random order of every user's items per epoch (instead of a sort per batch)
            if compact:
                state["perm"] = torch.as_tensor(_random_rows(self.history_, padded_t.shape[1], gen),
                                                device=dev)
            else:
                keys = torch.rand(padded_t.shape, generator=gen, device=dev)
                keys = keys.masked_fill(slots[None, :padded_t.shape[1]] >= lengths_t[:, None], 2.0)
                state["perm"] = padded_t.gather(1, keys.argsort(dim=1)[:, :L + 1])
            state["prefix"] = padded_t[:, :L + 1]  # each user's earliest items, in time order
            order = rng.permutation(len(pairs_u))
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                yield (torch.as_tensor(pairs_u[idx], device=dev),
                       torch.as_tensor(pairs_i[idx], device=dev))

        def sample_history(u: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # (B, L+1): the user's items in this epoch's random order, or for a share
            # ``prefix_prob`` of the examples their earliest items (how a new user starts)
            use_prefix = torch.rand(u.shape, generator=gen, device=dev) < self.prefix_prob
            rows = torch.where(use_prefix[:, None], state["prefix"][u], state["perm"][u])
            n = lengths_t[u].clamp(max=rows.shape[1])
            valid = slots[None, :rows.shape[1]] < n[:, None]
            valid &= rows != pos[:, None]  # never show the target in its own history
            # a log-uniform history length per example, 1..available: new users with one or
            # two items are as much part of training as heavy users
            n_avail = valid.sum(1).clamp(min=1).float()
            r = torch.rand(n_avail.shape, generator=gen, device=dev)
            length = torch.exp(r * torch.log(n_avail + 1)).floor().long().clamp(min=1)
            keep = (valid.cumsum(1) <= length[:, None]) & valid
            return rows, keep

        def item_vecs(ids: torch.Tensor, train_mode: bool) -> tuple[torch.Tensor, torch.Tensor]:
            mask = seen[ids]
            if train_mode and self.id_dropout > 0:
                drop = torch.rand(ids.shape, generator=gen, device=dev) < self.id_dropout
                mask = mask * (~drop)
            return net.items(text[ids], ids, mask)

        wd = float(self.weight_decay)

        def step(batch):  # type: ignore[no-untyped-def]
            u, pos = batch
            hist, mask = sample_history(u, pos)
            temp = net.log_temp.exp().clamp(max=100)
            if small_catalog:  # the item tower runs once over the whole catalog
                table = all_ids
                hist_idx, pos_idx = hist, pos
            else:  # or once per distinct item the batch uses
                table, hist_idx, pos_idx = _batch_table(hist, mask, pos)
            v_t, b_t = item_vecs(table, True)
            # sparse ID tables: Adam's weight decay (wd * row added to the gradient) on the rows
            # this batch used, as a loss term (SparseAdam has none); rows a batch does not use
            # keep their values, as their Adam state does
            decay = (0.5 * wd * (net.item_id(table).pow(2).sum() + net.id_bias(table).pow(2).sum())
                     if sparse_ids and wd else 0.0)
            uv = net.users(v_t, net.attention_logits(v_t), hist_idx, mask)
            if self.loss == "full":
                if not small_catalog:
                    v_t, b_t = item_vecs(all_ids, True)
                return torch.nn.functional.cross_entropy(temp * uv @ v_t.T + b_t, pos) + decay
            v = torch.nn.functional.embedding(pos_idx, v_t)
            b = torch.nn.functional.embedding(pos_idx, b_t[:, None]).squeeze(-1)
            logits = temp * uv @ v.T + b[None, :] - log_q[pos][None, :]
            same = pos[:, None] == pos[None, :]
            logits = logits.masked_fill(same & ~torch.eye(len(pos), dtype=torch.bool, device=dev),
                                        -1e9)
            return (torch.nn.functional.cross_entropy(logits, torch.arange(len(pos), device=dev))
                    + decay)

        validate = self._validator(inputs.validation())
        cfg = TrainConfig(epochs=self.epochs, patience=self.patience, lr=self.lr,
                          weight_decay=self.weight_decay, seed=self.seed, device=str(dev),
                          progress=self.progress, tensorboard_dir=self.tensorboard_dir,
                          steps_per_epoch=self.steps_per_epoch, sparse_decay_in_loss=True)
        self.train_result_ = train(net, batches, step, validate, cfg, n_batches=n_batches,
                                   name="two-tower")
        self._refresh_item_vectors()

    def _validator(self, validation: Validator | None) -> Callable[[], float]:
        """The training loop's ``validate()``: the item vectors refreshed from the network,
        then ``validation(self)``; without one every epoch scores 0 (training stops
        ``patience`` epochs past the first, whose weights are kept)."""
        if validation is None:
            return lambda: 0.0

        def validate() -> float:
            self._refresh_item_vectors()
            return float(validation(self))

        return validate

    # ------------------------------------------------------------------ inference
    def _torch(self):  # type: ignore[no-untyped-def]
        import torch

        if self.net_ is None:
            raise ExploRecError("two-tower network weights are missing")
        dev = next(self.net_.parameters()).device
        return torch, dev

    def _refresh_item_vectors(self) -> None:
        torch, dev = self._torch()
        assert self.item_text_vectors_ is not None and self.seen_items_ is not None
        with torch.no_grad():
            n = self.item_text_vectors_.shape[0]
            ids = torch.arange(n, device=dev)
            text = torch.as_tensor(self.item_text_vectors_, device=dev)
            mask = torch.as_tensor(self.seen_items_, device=dev)
            v, b = self.net_.items(text, ids.clamp(max=self.net_.item_id.num_embeddings - 1), mask)
            temp = float(self.net_.log_temp.exp().clamp(max=100))
            self.item_vectors_ = v.cpu().numpy()
            self.item_biases_ = (b.cpu().numpy() / temp).astype(np.float32)

    def _history_tensors(self, history: sp.csr_matrix):  # type: ignore[no-untyped-def]
        """Most recent ``max_history`` items per row (by column order when no time is known)."""
        torch, dev = self._torch()
        padded, lengths = _padded_rows(history, keep_last=self.max_history)
        hist = torch.as_tensor(padded, device=dev)
        mask = torch.arange(padded.shape[1], device=dev)[None, :] < torch.as_tensor(
            lengths, device=dev)[:, None]
        return hist, mask

    def user_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """(n, dim) user-tower vectors for histories (rows over the model's items)."""
        torch, dev = self._torch()
        hist, mask = self._history_tensors(history)
        with torch.no_grad():
            v = torch.as_tensor(self.item_vectors_, device=dev)
            return self.net_.users(v, self.net_.attention_logits(v), hist, mask).cpu().numpy()

    def history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """``[u, 1]`` for histories: their inner product with ``factor_vectors()[1]`` is
        :meth:`score_history`."""
        U = self.user_vectors(sp.csr_matrix(history))
        return np.hstack([U, np.ones((len(U), 1), U.dtype)]).astype(np.float32)

    def ordered_history(self) -> sp.csr_matrix:
        """Each training user's items in time order (what the user tower reads)."""
        assert self.history_ is not None
        return self.history_

    def item_representation(self) -> tuple[np.ndarray, np.ndarray]:
        """(unit item vectors (n_items, dim), item biases (n_items,)): a user's score of item
        i is ``<user_vectors(history), v_i> + b_i``."""
        assert self.item_vectors_ is not None and self.item_biases_ is not None
        return self.item_vectors_, self.item_biases_

    def factor_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``[u, 1]`` for every training user and ``[v_i, b_i / temperature]``: their inner
        product is the model's score."""
        assert self.history_ is not None and self.item_vectors_ is not None
        assert self.item_biases_ is not None
        U = np.vstack([self.user_vectors(self.history_[s:s + 4096])
                       for s in range(0, self.history_.shape[0], 4096)])
        U = np.hstack([U, np.ones((len(U), 1), U.dtype)]).astype(np.float32)
        V = np.hstack([self.item_vectors_, self.item_biases_[:, None]]).astype(np.float32)
        return U, V

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        """``<u, v_i> + b_i / temperature`` (the training logit divided by the temperature)."""
        assert self.item_vectors_ is not None and self.item_biases_ is not None
        return self.user_vectors(history) @ self.item_vectors_.T + self.item_biases_[None, :]

    def _score_history_items(self, history: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        assert self.item_vectors_ is not None and self.item_biases_ is not None
        return self.user_vectors(history) @ self.item_vectors_[items].T + self.item_biases_[None, items]

    def _score(self, users: np.ndarray) -> np.ndarray:
        # time-ordered rows: the user tower sees each user's most recent items
        assert self.history_ is not None
        return self._score_history(self.history_[users])

    def _contributions(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Attention weight of each history item times its similarity to the item."""
        torch, dev = self._torch()
        assert self.item_vectors_ is not None
        h = torch.as_tensor(self.item_vectors_[history[-self.max_history:]], device=dev)
        with torch.no_grad():
            logits = self.net_.attention_logits(h)[None]
            att = self.net_.attention(logits, torch.ones_like(logits, dtype=torch.bool))[0]
            att = att.cpu().numpy()
        full = np.zeros(len(history))
        full[-len(att):] = att
        sim = self.item_vectors_[items] @ self.item_vectors_[history].T
        return sim * full[None, :]

    # ------------------------------------------------------------------ new items
    def _vectors_from_text(self, lm_vectors: np.ndarray) -> np.ndarray:
        torch, dev = self._torch()
        with torch.no_grad():
            t = torch.as_tensor(lm_vectors, device=dev)
            ids = torch.zeros(len(lm_vectors), dtype=torch.long, device=dev)
            mask = torch.zeros(len(lm_vectors), device=dev)
            v, b = self.net_.items(t, ids, mask)
            temp = float(self.net_.log_temp.exp().clamp(max=100))
            self._pending_bias = (b.cpu().numpy() / temp).astype(np.float32)
            return v.cpu().numpy()

    def _grow_items(self, n_new: int) -> None:
        super()._grow_items(n_new)
        assert self.item_vectors_ is not None and self.seen_items_ is not None
        self.item_vectors_ = np.vstack([self.item_vectors_,
                                        np.zeros((n_new, self.item_vectors_.shape[1]), np.float32)])
        self.seen_items_ = np.concatenate([self.seen_items_, np.zeros(n_new, np.float32)])
        assert self.history_ is not None
        h = self.history_
        self.history_ = sp.csr_matrix((h.data, h.indices, h.indptr),
                                      shape=(h.shape[0], h.shape[1] + n_new))
        assert self.item_biases_ is not None
        self.item_biases_ = np.concatenate([self.item_biases_, np.zeros(n_new, np.float32)])

    def _set_item_vectors(self, internal: np.ndarray, vectors: np.ndarray) -> None:
        assert self.item_vectors_ is not None and self.seen_items_ is not None
        self.item_vectors_[internal] = vectors
        assert self.item_biases_ is not None
        self.item_biases_[internal] = self._pending_bias
        self.seen_items_[internal] = 0.0  # text only from now on

    # ------------------------------------------------------------------ artifacts
    def _state(self) -> dict[str, Any]:
        state = super()._state()
        for k, v in self.net_.state_dict().items():
            state[f"net.{k}"] = v.detach().cpu().numpy()
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        import torch

        from explorec.encoders.sentence import torch_device

        super()._set_state(arrays)
        assert self.item_text_vectors_ is not None
        n_ids = arrays["net.item_id.weight"].shape[0]
        net = _build_module(self.item_text_vectors_.shape[1], n_ids, self.dim, self.hidden,
                            self.dropout)
        net.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items()
                             if k.startswith("net.")})
        self.net_ = net.to(torch_device(self.device)).eval()


#: users x longest-history cells above which training draws histories from the sparse rows
_PADDED_CELLS = 20_000_000
#: catalogs up to this size run the item tower over every item at each step
_FULL_TOWER_ITEMS = 8192


def _batch_table(hist: Any, mask: Any, pos: Any) -> tuple[Any, Any, Any]:
    """The distinct items a batch uses, its targets ``pos`` (B,) and the history slots kept
    (``hist``, ``mask``: (B, L)), as ``(table, hist_idx, pos_idx)`` with
    ``table[hist_idx] == hist`` where ``mask`` and ``table[pos_idx] == pos``. Slots masked out
    (about 3/4 of them: history lengths are drawn log-uniformly) point at the first target;
    their weight is 0 whatever item they name, and the item tower skips them."""
    import torch

    table, inv = torch.unique(torch.cat([pos, hist[mask]]), return_inverse=True)
    pos_idx = inv[:len(pos)]
    hist_idx = pos_idx[:1].expand_as(hist).clone()
    hist_idx[mask] = inv[len(pos):]
    return table, hist_idx, pos_idx


def _random_rows(M: sp.csr_matrix, width: int, gen: Any) -> np.ndarray:
    """(rows, width) int64: up to ``width`` entries of each CSR row in a random order (from the
    torch generator ``gen``), in O(non-zeros) memory; short rows are 0-padded."""
    import torch

    M = sp.csr_matrix(M)
    keys = torch.rand(M.nnz, generator=gen, device=gen.device).cpu().numpy()
    row = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    # rows in order, each row's entries by key: one stable argsort of row + key / 2 (keys are
    # float32 in [0, 1): exact in float64 below 2^28 rows, and never past the next row) is the
    # same order as ``np.lexsort((keys, row))`` at an eighth of its time on 20M entries
    order = np.argsort(row + keys.astype(np.float64) * 0.5, kind="stable")
    rank = np.arange(M.nnz) - M.indptr[row]
    keep = rank < width
    out = np.zeros((M.shape[0], width), dtype=np.int64)
    out[row[keep], rank[keep]] = M.indices[order[keep]]
    return out


def _padded_rows(M: sp.csr_matrix, keep_last: int | None = None,
                 keep_first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row item lists of a CSR matrix as a padded (rows, width) int64 array plus lengths.

    With ``keep_last`` (``keep_first``), only the last (first) that many entries of each row
    are kept.
    """
    M = sp.csr_matrix(M)
    lengths = np.diff(M.indptr)
    if keep_last is not None:
        lengths = np.minimum(lengths, keep_last)
    if keep_first is not None:
        lengths = np.minimum(lengths, keep_first)
    width = max(1, int(lengths.max()) if len(lengths) else 1)
    out = np.zeros((M.shape[0], width), dtype=np.int64)
    rows = np.repeat(np.arange(M.shape[0]), lengths)
    starts = M.indptr[:-1] if keep_first is not None else M.indptr[1:] - lengths
    offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, offs] = M.indices[np.repeat(starts, lengths) + offs]
    return out, lengths
