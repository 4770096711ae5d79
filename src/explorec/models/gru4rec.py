"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016)."""

from __future__ import annotations

from typing import Any

from explorec.data.splits import DEFAULT_SEED
from explorec.models._sequential import (
    SequentialRecommender,
    embed_items,
    item_table,
)


def _build(n_items: int, dim: int, hidden: int, layers: int, dropout: float, text: Any) -> Any:
    import torch
    from torch import nn

    class GRU4RecNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
            nn.init.normal_(self.item.weight, std=0.02)
            self.drop = nn.Dropout(dropout)
            self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True,
                              dropout=dropout if layers > 1 else 0.0)
            self.out = nn.Linear(hidden, dim)
            self.bias = nn.Parameter(torch.zeros(n_items))
            self.text = text  # item text vectors projected into the item space, or None

        def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
            """(B, L) right-padded item ids -> (B, L, dim) states (padding comes last, so it
            never feeds a real position); ``times`` is not read."""
            e = embed_items(self.item, self.text, x)
            h, _ = self.gru(self.drop(e))
            return self.out(self.drop(h))

        def output(self) -> tuple[torch.Tensor, torch.Tensor]:
            return item_table(self.item, self.text)[:n_items], self.bias  # tied item embeddings

    return GRU4RecNet()


class GRU4Rec(SequentialRecommender):
    """A GRU over the user's latest items; its state after the last item scores every item as
    the next one (full-softmax cross-entropy at every position, tied item embeddings).

    Parameters
    ----------
    dim : item embedding size.
    hidden : GRU state size.
    layers : stacked GRU layers.
    max_len : most recent items the model reads (and training window length).
    horizon : items after each position that it learns to predict (multi-target objective).
    ties : with timestamps, extra targets only among items sharing the next item's timestamp.
    loss : ``"ce"`` (softmax over all items) or ``"sampled"`` (softmax over the target and
        ``n_negatives`` uniform items shared by the batch; for large catalogs).
    n_negatives : uniform negative items per batch for ``loss="sampled"``.
    dropout : dropout on embeddings and GRU outputs.
    encoder : item text encoder (``minilm``, ...) whose vectors add to the ID embeddings;
        None: IDs only.
    template : item text template over catalog fields (None: the catalog's own).
    epochs, patience, lr, weight_decay, batch_size : training settings (batch of windows).
    seed, device, progress : as for every neural model.
    """

    name = "gru4rec"

    def __init__(self, dim: int = 64, hidden: int = 128, layers: int = 1, max_len: int = 50,
                 dropout: float = 0.5, encoder: str | None = None,
                 template: str | None = None, horizon: int = 10, ties: bool = True,
                 loss: str = "ce", n_negatives: int = 256, epochs: int = 200, patience: int = 15,
                 lr: float = 3e-3, weight_decay: float = 0.0, batch_size: int = 128,
                 seed: int = DEFAULT_SEED, device: str | None = None, progress: bool = True
                 ) -> None:
        super().__init__()
        self.dim = dim
        self.hidden = hidden
        self.layers = layers
        self.max_len = max_len
        self.dropout = dropout
        self.encoder = encoder
        self.template = template
        self.horizon = horizon
        self.ties = ties
        self.loss = loss
        self.n_negatives = n_negatives
        self._init_training(epochs, patience, lr, weight_decay, batch_size, seed, device, progress)

    def _build_net(self) -> Any:
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        self._check_positive("dim", "hidden", "layers")
        return _build(self.n_items, int(self.dim), int(self.hidden), int(self.layers),
                      float(self.dropout), self._text_module(int(self.dim)))
