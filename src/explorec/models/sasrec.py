"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018)."""

from __future__ import annotations

from typing import Any

from explorec.data.splits import DEFAULT_SEED
from explorec.models._sequential import (
    SequentialRecommender,
    embed_items,
    item_table,
    time_buckets,
)

TIME_BUCKETS = 32  # log2-second intervals: same second, 1 s, 2-3 s, ..., about 34 years


def _build(n_items: int, dim: int, heads: int, layers: int, max_len: int, dropout: float,
           item_bias: bool, time_bias: bool, distance_bias: bool, text: Any) -> Any:
    import torch
    from torch import nn

    class Block(nn.Module):
        """Pre-norm causal self-attention + feed-forward block."""

        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.norm2 = nn.LayerNorm(dim)
            self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(4 * dim, dim))
            self.drop = nn.Dropout(dropout)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
            B, L, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, heads, dim // heads).permute(
                2, 0, 3, 1, 4)
            a = nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None)
            x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, dim)))
            return x + self.drop(self.ff(self.norm2(x)))

    class SASRecNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
            self.pos = nn.Embedding(max_len, dim)
            nn.init.normal_(self.item.weight, std=0.02)
            nn.init.normal_(self.pos.weight, std=0.02)
            with torch.no_grad():
                self.item.weight[n_items].zero_()
            self.drop = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm = nn.LayerNorm(dim)
            self.bias = nn.Parameter(torch.zeros(n_items)) if item_bias else None
            self.text = text  # item text vectors projected into the item space, or None
            # per-head attention biases, zero at the start (plain SASRec until they learn)
            self.time_bias = nn.Embedding(TIME_BUCKETS, heads) if time_bias else None
            self.distance_bias = nn.Embedding(max_len, heads) if distance_bias else None
            for e in (self.time_bias, self.distance_bias):
                if e is not None:
                    nn.init.zeros_(e.weight)

        def attention_mask(self, x: torch.Tensor, times: torch.Tensor | None
                           ) -> torch.Tensor | None:
            """Causal mask plus the learned biases, ``(B or 1, heads, L, L)``; None when the
            net has no bias (plain causal attention)."""
            if self.time_bias is None and self.distance_bias is None:
                return None
            L = x.shape[1]
            ar = torch.arange(L, device=x.device)
            bias = torch.zeros((1, heads, L, L), device=x.device)
            if self.distance_bias is not None:
                dist = (ar[:, None] - ar[None, :]).clamp(0, max_len - 1)
                bias = bias + self.distance_bias(dist).permute(2, 0, 1)[None]
            if self.time_bias is not None:
                if times is None:  # unknown times: one session
                    times = torch.full(x.shape, float("nan"), dtype=torch.float64,
                                       device=x.device)
                bias = bias + self.time_bias(time_buckets(times, TIME_BUCKETS)).permute(
                    0, 3, 1, 2)
            return bias.masked_fill(ar[None, :] > ar[:, None], float("-inf"))

        def forward(self, x: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
            """(B, L) right-padded item ids (and their float64 timestamps, read with
            ``time_bias``) -> (B, L, dim) hidden states (causal)."""
            pos = torch.arange(x.shape[1], device=x.device)
            e = embed_items(self.item, self.text, x)
            h = self.drop(e * dim ** 0.5 + self.pos(pos)[None])
            mask = self.attention_mask(x, times)
            for b in self.blocks:
                h = b(h, mask)
            return self.norm(h)

        def output(self) -> tuple[torch.Tensor, torch.Tensor | None]:
            return item_table(self.item, self.text)[:n_items], self.bias  # tied input/output embeddings

    return SASRecNet()


class SASRec(SequentialRecommender):
    """A causal Transformer over the user's latest items; the hidden state after the last item
    scores every item as the next one (tied item embeddings, full-softmax cross-entropy at
    every position, as in Klenitskiy & Vasilev 2023 rather than the original sampled BCE).

    Parameters
    ----------
    dim : Transformer width (item embedding size).
    heads : attention heads per block.
    layers : Transformer blocks.
    max_len : most recent items the model reads (and training window length).
    horizon : items after each position that it learns to predict (multi-target objective).
    ties : with timestamps, extra targets only among items sharing the next item's timestamp.
    loss : ``"ce"`` (softmax over all items) or ``"sampled"`` (softmax over the target and
        ``n_negatives`` uniform items shared by the batch; for large catalogs).
    n_negatives : uniform negative items per batch for ``loss="sampled"``.
    dropout : dropout on embeddings, attention and feed-forward layers.
    item_bias : add a learned per-item bias to the output logits.
    time_bias : time-interval-aware attention (after TiSASRec, Li et al. WSDM 2020): each
        head adds a learned bias for the log2-bucketed time between the query and key items
        (same second, seconds, ..., years) to its attention logits, so a head can attend to
        the latest session. Reads the timestamps of the interactions (unknown times count as
        one session).
    distance_bias : each head adds a learned bias for the distance (in items) between query
        and key to its attention logits (relative positions, on top of the absolute ones).
    encoder : item text encoder (``minilm``, ...) whose vectors add to the ID embeddings;
        None: IDs only.
    template : item text template over catalog fields (None: the catalog's own).
    epochs, patience, lr, weight_decay, batch_size : training settings (batch of windows).
    seed, device, progress : as for every neural model.
    """

    name = "sasrec"

    def __init__(self, dim: int = 64, heads: int = 2, layers: int = 2, max_len: int = 50,
                 dropout: float = 0.5, item_bias: bool = False, time_bias: bool = True,
                 distance_bias: bool = False, encoder: str | None = None,
                 template: str | None = None, horizon: int = 10, ties: bool = True,
                 loss: str = "ce", n_negatives: int = 256, epochs: int = 200,
                 patience: int = 15, lr: float = 3e-3, weight_decay: float = 0.0,
                 batch_size: int = 128, seed: int = DEFAULT_SEED, device: str | None = None,
                 progress: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.heads = heads
        self.layers = layers
        self.max_len = max_len
        self.dropout = dropout
        self.item_bias = item_bias
        self.time_bias = time_bias
        self.distance_bias = distance_bias
        self.encoder = encoder
        self.template = template
        self.horizon = horizon
        self.ties = ties
        self.loss = loss
        self.n_negatives = n_negatives
        self._init_training(epochs, patience, lr, weight_decay, batch_size, seed, device, progress)

    def _build_net(self) -> Any:
        if int(self.dim) % int(self.heads):
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        return _build(self.n_items, int(self.dim), int(self.heads), int(self.layers),
                      int(self.max_len), float(self.dropout), bool(self.item_bias),
                      bool(self.time_bias), bool(self.distance_bias),
                      self._text_module(int(self.dim)))

    def _uses_times(self) -> bool:
        return bool(self.time_bias)
