"""Shared machinery of the next-item (sequential) models: time-ordered sequences, training
windows, full-softmax cross-entropy at every position, scoring from the latest items.

A sequential model's net maps a right-padded batch of item sequences ``(B, L)`` (padding id
``n_items``) to hidden states ``(B, L, d)``; ``net.output()`` gives the output item embeddings
``(n_items, d)`` and biases (or None), and the logits of position ``t`` (``h_t . e_i + b_i``)
score the item that follows the first ``t + 1`` items. Training uses every position of every
window (causal), so one epoch shows each training transition once. The loss is the softmax
cross-entropy over all items (``loss="ce"``) or over the target and ``n_negatives`` uniformly
sampled items shared by the batch (``loss="sampled"``, several times cheaper per step on CPU
when the catalog is much larger than the sample).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from explorec.errors import ExploRecError
from explorec.models._neural import TorchRecommender, time_ordered_matrix, training_copies
from explorec.models.text_items import ENCODER_BYTES, TextItemsMixin


def training_windows(seq: sp.csr_matrix, max_len: int, values: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Cut each row's time-ordered items into (input, target) windows of ``max_len``.

    Transition ``k`` of a row (input item ``k - 1``, target item ``k``) goes to window
    ``(L - 1 - k) // max_len`` counted from the row's end, so the most recent transitions
    share a window with the longest context. Returns right-padded ``inputs`` and ``targets``
    (padding ``n_items`` and ``-100``), both ``(n_windows, max_len)``; and, when ``values``
    (one per entry of ``seq.indices``, e.g. timestamps) is given, each input's and each
    target's value in the same layout (padding NaN), else None and None.
    """
    n_items = seq.shape[1]
    lengths = np.diff(seq.indptr)
    n_trans = np.maximum(lengths - 1, 0)
    n_win = -(-n_trans // max_len)  # ceil
    win_start = np.r_[0, np.cumsum(n_win)][:-1]
    rows = np.repeat(np.arange(seq.shape[0]), n_trans)
    k = np.arange(n_trans.sum()) - np.repeat(np.cumsum(n_trans) - n_trans, n_trans) + 1
    L = lengths[rows]
    back = L - 1 - k  # 0 for the last transition
    window = win_start[rows] + back // max_len
    # within a window, transitions are in time order from column 0; the last window of a row
    # (its oldest transitions) may be shorter
    win_len = np.minimum(max_len, n_trans[rows] - (back // max_len) * max_len)
    col = win_len - 1 - back % max_len
    base = seq.indptr[rows]
    inputs = np.full((int(n_win.sum()), max_len), n_items, dtype=np.int64)
    targets = np.full((int(n_win.sum()), max_len), -100, dtype=np.int64)
    inputs[window, col] = seq.indices[base + k - 1]
    targets[window, col] = seq.indices[base + k]
    if values is None:
        return inputs, targets, None, None
    values = np.asarray(values, dtype=np.float64)
    input_values = np.full(targets.shape, np.nan)
    target_values = np.full(targets.shape, np.nan)
    input_values[window, col] = values[base + k - 1]
    target_values[window, col] = values[base + k]
    return inputs, targets, input_values, target_values


def time_buckets(times: Any, n_buckets: int) -> Any:
    """``(B, L, L)`` long tensor: the time interval between query position ``i`` and key
    position ``j`` of each row of ``times`` ``(B, L)`` (float64 seconds), bucketed on a log2
    scale: 0 for the same second (or an earlier or unknown query time), ``1 + floor(log2(gap))``
    above, capped at ``n_buckets - 1``. NaN (padding) falls in bucket 0."""
    import torch

    gap = (times[:, :, None] - times[:, None, :]).nan_to_num(0.0)
    b = torch.floor(torch.log2(gap.clamp(min=1.0))) + 1
    return torch.where(gap >= 1.0, b, torch.zeros_like(b)).clamp(max=n_buckets - 1).long()


def future_targets(y: Any, horizon: int, fill: float = -100) -> Any:
    """``(B, W, horizon)`` tensor: the next ``horizon`` targets after each position of the
    ``(B, W)`` target windows ``y``, ``fill`` where the window ends first; ``[..., 0]`` is
    ``y``."""
    import torch

    out = torch.full((*y.shape, horizon), fill, dtype=y.dtype, device=y.device)
    for k in range(min(horizon, y.shape[1])):
        out[:, :y.shape[1] - k, k] = y[:, k:]
    return out


def right_padded_last(seq: sp.csr_matrix, max_len: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's last ``max_len`` items in time order from column 0, right-padded with
    ``n_items``; the number of items kept per row; and their stored values (``seq.data``,
    e.g. timestamps; NaN in the padding) in the same layout."""
    n_items = seq.shape[1]
    lengths = np.minimum(np.diff(seq.indptr), max_len)
    out = np.full((seq.shape[0], max_len), n_items, dtype=np.int64)
    vals = np.full((seq.shape[0], max_len), np.nan)
    rows = np.repeat(np.arange(seq.shape[0]), lengths)
    offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    src = np.repeat(seq.indptr[1:] - lengths, lengths) + offs
    out[rows, offs] = seq.indices[src]
    vals[rows, offs] = seq.data[src]
    return out, lengths, vals


def text_items_module(vectors: np.ndarray, dim: int) -> Any:
    """Torch module mapping each item's language-model vector into a net's item space:
    ``module()`` is ``(n_items + 1, dim)`` (last row, the padding id, zero), added to the ID
    embeddings. The projection starts at zero, so training starts from the ID-only model; the
    vectors are a non-persistent buffer (the model stores them as ``item_text_vectors_``)."""
    import torch
    from torch import nn

    class TextItems(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            padded = np.zeros((len(vectors) + 1, vectors.shape[1]), np.float32)
            padded[:-1] = vectors
            self.register_buffer("vectors", torch.as_tensor(padded), persistent=False)
            self.proj = nn.Linear(vectors.shape[1], dim, bias=False)
            nn.init.zeros_(self.proj.weight)

        def forward(self) -> torch.Tensor:
            return self.proj(self.vectors)

    return TextItems()


def item_table(item: Any, text: Any) -> Any:
    """A sequential net's ``(n_items + 1, dim)`` item embeddings: the ID table ``item`` (an
    ``nn.Embedding``) plus, when the net reads text, its ``text()`` part."""
    return item.weight if text is None else item.weight + text()


def embed_items(item: Any, text: Any, x: Any) -> Any:
    """Embeddings of the ``(B, L)`` item ids ``x`` (padding id: the table's last row)."""
    from torch import nn

    if text is None:
        return item(x)
    return nn.functional.embedding(x, item_table(item, text), padding_idx=item.padding_idx)


class SequentialRecommender(TextItemsMixin, TorchRecommender):
    """Base of the next-item models (``gru4rec``, ``sasrec``).

    The user's sequence (``seq_items_`` with their timestamps ``seq_times_``: training
    interactions in time order, plus anything added by :meth:`extend_history`) is the model's
    input; ``score`` gives the next-item logits after each user's latest ``max_len`` items.
    A net is called as ``net(items, times)`` with right-padded ``(B, L)`` item ids and their
    float64 timestamps (NaN where unknown or padding); models that do not read time ignore
    the second argument.

    Objective: ``horizon`` sets how many items ahead each position learns to predict (1: the
    next item only, the usual objective; more: cross-entropy against the uniform distribution
    over the next ``horizon`` items, for data where the order within a session is loose).
    With ``ties``, a position's extra targets are only the later items that share the next
    item's timestamp: items rated in the same second have no real order. The default (10 with
    ties) raised validation NDCG@10 on ML-100K, where half of a user's consecutive ratings
    share a timestamp; without timestamps no items tie and the loss is the plain next-item one.

    Item text: with ``encoder`` (``"minilm"``, ``"tfidf"`` or a sentence-transformers path),
    each item's embedding is its ID embedding plus a learned projection of its text's
    language-model vector (``fit(..., catalog=...)`` gives the text). Items added later with
    :meth:`add_items` are known by their text alone and can be predicted as next items, and
    read in histories, without retraining.
    """

    sequential = True
    _state_names = ("seq_items_", "seq_indptr_", "seq_times_")
    param_constraints: ClassVar[dict[str, Any]] = {"horizon": ">= 1", "loss": ("ce", "sampled")}
    max_len: int
    batch_size: int
    loss: str
    n_negatives: int
    horizon: int = 1
    ties: bool = False
    encoder: str | None = None
    template: str

    def __init__(self) -> None:
        super().__init__()
        self.seq_items_: np.ndarray | None = None
        self.seq_indptr_: np.ndarray | None = None
        self.seq_times_: np.ndarray | None = None
        self.item_text_vectors_: np.ndarray | None = None

    def fit_memory(self, n_users: int, n_items: int, nnz: int) -> int:
        """Item embeddings with Adam state, one batch's logits over the catalog (``ce``) or
        over the sampled negatives, the sequences, and the encoder when items have text."""
        width = n_items if self.loss == "ce" else int(self.n_negatives) + 1
        text = ENCODER_BYTES + 2 * 4 * n_items * 384 if self.encoder else 0
        return (super().fit_memory(n_users, n_items, nnz)
                + training_copies((n_items + 1) * int(getattr(self, "dim", 64)))
                + 3 * 4 * int(self.batch_size) * int(self.max_len) * width + 3 * 8 * nnz + text)

    memory_alternative = ("use --param {name}.loss=sampled, or a smaller {name}.batch_size or "
                          "{name}.max_len")

    # ------------------------------------------------------------------ item text
    def _text_module(self, dim: int) -> Any:
        """The net's text part (None without ``encoder``)."""
        if self.item_text_vectors_ is None:
            return None
        return text_items_module(self.item_text_vectors_, dim)

    def add_items(self, item_ids: Any, texts: Any) -> np.ndarray:
        """Add (or re-text) items known only by their text; they can be recommended as next
        items at once (needs a model fitted with ``encoder``). Returns their internal ids."""
        if not self.encoder:
            raise ExploRecError(f"{self.name} was fitted without item text (encoder=None); "
                                f"refit it with encoder='minilm' to add items by text")
        return super().add_items(item_ids, texts)

    def _grow_items(self, n_new: int) -> None:
        """Rebuild the net for the wider catalog: old items keep their weights, new items
        start with a zero ID embedding and bias (their text speaks for them)."""
        import torch

        super()._grow_items(n_new)
        old = {k: v.detach() for k, v in self.net_.state_dict().items()}
        dev = next(self.net_.parameters()).device
        n_old = self.n_items - n_new
        net = self._build_net().to(dev)
        state = net.state_dict()
        with torch.no_grad():
            for k, v in state.items():
                w = old[k]
                if w.shape == v.shape:
                    v.copy_(w)
                else:  # item-indexed rows (with or without the padding row)
                    v.zero_()
                    v[:n_old] = w[:n_old]
        net.load_state_dict(state)
        self.net_ = net.eval()

    def _set_item_vectors(self, internal: np.ndarray, vectors: np.ndarray) -> None:
        import torch

        text = getattr(self.net_, "text", None)
        assert text is not None
        with torch.no_grad():
            text.vectors[torch.as_tensor(internal, device=text.vectors.device)] = torch.as_tensor(
                vectors, dtype=text.vectors.dtype, device=text.vectors.device)

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        if self.item_text_vectors_ is not None:
            state["item_text_vectors_"] = self.item_text_vectors_
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.item_text_vectors_ = arrays.get("item_text_vectors_")  # before the net is built
        super()._set_state(arrays)

    def _uses_times(self) -> bool:
        """Whether the net reads the timestamps of its input items (subclasses)."""
        return False

    # ------------------------------------------------------------------ sequences
    def _sequences(self) -> sp.csr_matrix:
        """The stored sequences as a CSR whose data is each entry's position in
        ``seq_items_`` plus one (so row slicing keeps the link to ``seq_times_``)."""
        if self.seq_items_ is None or self.seq_indptr_ is None:
            raise ExploRecError(f"{self.name} has no user sequences; fit it first")
        n = len(self.seq_items_)
        return sp.csr_matrix((np.arange(1, n + 1, dtype=np.float64), self.seq_items_,
                              self.seq_indptr_), shape=(len(self.seq_indptr_) - 1, self.n_items))

    @staticmethod
    def _known_times(interactions: Any, ordered: sp.csr_matrix) -> np.ndarray:
        """Timestamps of ``ordered``'s entries (``time_ordered_matrix(..., times=True)``), or
        NaN (unknown) when ``interactions`` carry none."""
        if interactions.timestamp is None:
            return np.full(len(ordered.indices), np.nan)
        return np.asarray(ordered.data, dtype=np.float64)

    def extend_history(self, interactions: Any) -> None:
        """Append later interactions (e.g. a split's validation part) to the users' sequences,
        in time order, without retraining; they also count as seen for ``recommend``.

        This is how the test part of a leave-one-out split is scored (RecBole's protocol for
        sequential models): the validation item is the latest context of the test item.
        """
        seq = self._sequences()
        extra = time_ordered_matrix(interactions, times=True)
        if extra.shape != seq.shape:
            raise ExploRecError(f"interactions cover {extra.shape}, the model {seq.shape}")
        old_rows = np.repeat(np.arange(seq.shape[0]), np.diff(seq.indptr))
        new_rows = np.repeat(np.arange(seq.shape[0]), np.diff(extra.indptr))
        rows = np.concatenate([old_rows, new_rows])
        items = np.concatenate([seq.indices, extra.indices]).astype(np.int64)
        assert self.seq_times_ is not None
        times = np.concatenate([self.seq_times_, self._known_times(interactions, extra)])
        rank = np.arange(len(rows))  # old before new, each in time order
        order = np.lexsort((rank, rows))
        self.seq_items_ = items[order]
        self.seq_times_ = times[order]
        self.seq_indptr_ = np.r_[0, np.cumsum(np.bincount(rows, minlength=seq.shape[0]))
                                 ].astype(np.int64)
        X = self._check_fitted()
        added = sp.csr_matrix((np.ones(len(extra.indices), np.float32), extra.indices,
                               extra.indptr), shape=extra.shape)
        self.user_items_ = ((X + added) > 0).astype(np.float32).tocsr()

    # ------------------------------------------------------------------ training
    def _check_sequence_params(self) -> None:
        self._check_training_params()
        self._check_positive("max_len", "n_negatives", "horizon")
        if self.loss not in ("ce", "sampled"):
            raise ValueError(f"loss must be 'ce' or 'sampled', not {self.loss!r}")

    def _fit(self, X: sp.csr_matrix) -> None:
        import torch

        self._check_sequence_params()
        inputs = self._inputs
        assert inputs is not None
        seq = time_ordered_matrix(inputs.train, times=True)
        self.seq_items_ = seq.indices.astype(np.int64)
        self.seq_indptr_ = seq.indptr.astype(np.int64)
        self.seq_times_ = self._known_times(inputs.train, seq)
        self.item_text_vectors_ = None
        if self.encoder:
            if inputs.catalog is None:
                raise ExploRecError(f"{self.name} with encoder={self.encoder!r} reads item text: "
                                    f"pass fit(..., catalog=...) (or set encoder=None)")
            self.item_text_vectors_ = np.asarray(self._encode_catalog(), dtype=np.float32)
        dev, net = self._start_training()
        horizon, ties = int(self.horizon), bool(self.ties)
        # ties compare target times (row order stands in for time when there is none);
        # the net reads the known input times (NaN when there are none)
        win_in, win_tg, win_in_t, win_t = training_windows(seq, int(self.max_len), seq.data)
        if len(win_in) == 0:
            raise ExploRecError(f"{self.name} needs users with at least two interactions")
        t_in = torch.as_tensor(win_in, device=dev)
        t_tg = torch.as_tensor(win_tg, device=dev)
        t_time = torch.as_tensor(win_t, device=dev) if ties else None
        t_in_time = None
        if self._uses_times():
            known = inputs.train.timestamp is not None
            t_in_time = torch.as_tensor(win_in_t if known else np.full(win_in.shape, np.nan),
                                        device=dev)
        bs = int(self.batch_size)

        def batches(epoch: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
            order = torch.as_tensor(rng.permutation(len(win_in)), device=dev)
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                y = t_tg[idx]
                width = int((y != -100).sum(1).max())  # trim the batch's common padding
                yield (t_in[idx][:, :width], y[:, :width],
                       None if t_in_time is None else t_in_time[idx][:, :width],
                       None if t_time is None else t_time[idx][:, :width])

        n_items = X.shape[1]
        n_neg = int(self.n_negatives)
        sampled = self.loss == "sampled" and n_neg < n_items
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(self.seed))

        def step(batch):  # type: ignore[no-untyped-def]
            x, y, x_time, y_time = batch
            keep = y != -100
            h = net(x, x_time)[keep]
            E, b = net.output()
            target = y[keep] if horizon == 1 else future_targets(y, horizon)[keep]  # (N,) | (N, H)
            if sampled:
                neg = torch.randint(0, n_items, (n_neg,), generator=gen, device=dev)
                neg_logit = h @ E[neg].T + (b[neg][None, :] if b is not None else 0.0)
            if horizon == 1:
                if not sampled:
                    logits = h @ E.T + (b if b is not None else 0.0)
                    return torch.nn.functional.cross_entropy(logits, target)
                pos_logit = (h * E[target]).sum(-1, keepdim=True)
                if b is not None:
                    pos_logit = pos_logit + b[target][:, None]
                neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], -1e9)
                logits = torch.cat([pos_logit, neg_logit], 1)
                return torch.nn.functional.cross_entropy(
                    logits, torch.zeros(len(target), dtype=torch.long, device=dev))
            # several future items per position: cross-entropy against the uniform
            # distribution over the position's targets inside the window (with ``ties``, only
            # the later items that share the next item's timestamp)
            valid = target != -100
            if ties:
                ft = future_targets(y_time, horizon, fill=float("nan"))[keep]
                valid &= ft == ft[:, :1]  # NaN (past the window) never equals
            w = valid / valid.sum(1, keepdim=True)
            t = target.clamp(min=0)
            if not sampled:
                logp = torch.log_softmax(h @ E.T + (b if b is not None else 0.0), -1)
                return -(logp.gather(1, t) * w).sum() / len(t)
            pos_logit = torch.einsum("nd,nhd->nh", h, E[t]) + (b[t] if b is not None else 0.0)
            negs = neg_logit[:, None, :].masked_fill(neg[None, None, :] == t[:, :, None], -1e9)
            lse = torch.logsumexp(torch.cat([pos_logit[..., None], negs], -1), -1)
            return ((lse - pos_logit) * w).sum() / len(t)

        self._train(net, batches, step, n_batches=int(np.ceil(len(win_in) / bs)))

    # ------------------------------------------------------------------ scoring
    def _score_padded(self, padded: np.ndarray, lengths: np.ndarray, times: np.ndarray | None,
                      dev: Any) -> Any:
        """Next-item scores after each row of ``padded`` (``lengths`` real items; ``times``
        their timestamps, None for a net that does not read time)."""
        import torch

        E, b = self.net_.output()
        out = []
        for s in range(0, len(padded), 512):
            x = torch.as_tensor(padded[s:s + 512], device=dev)
            n = torch.as_tensor(lengths[s:s + 512], device=dev)
            width = max(1, int(n.max()) if len(n) else 1)
            t = None if times is None else torch.as_tensor(times[s:s + 512, :width], device=dev)
            h = self.net_(x[:, :width], t)
            last = h[torch.arange(len(x), device=dev), (n - 1).clamp(min=0)]
            logits = last @ E.T + (b if b is not None else 0.0)
            # users without any history: popularity-free uniform scores
            out.append(torch.where((n > 0)[:, None], logits, torch.zeros_like(logits)))
        return torch.cat(out) if out else torch.zeros((0, self.n_items), device=dev)

    def _score_tensor(self, users: Any) -> Any:
        seq = self._sequences()[users.cpu().numpy()]
        padded, lengths, entry = right_padded_last(seq, int(self.max_len))
        times = None
        if self._uses_times():
            assert self.seq_times_ is not None
            times = np.full(entry.shape, np.nan)
            real = ~np.isnan(entry)
            times[real] = self.seq_times_[entry[real].astype(np.int64) - 1]
        return self._score_padded(padded, lengths, times, users.device)

    def _score_history(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores after each row's items, taken in the row's stored column order as time
        (their timestamps are unknown: a time-aware net treats them as one session)."""
        import torch

        padded, lengths, _ = right_padded_last(sp.csr_matrix(history), int(self.max_len))
        times = np.full(padded.shape, np.nan) if self._uses_times() else None
        dev = next(self.net_.parameters()).device
        self.net_.eval()
        with torch.no_grad():
            return self._score_padded(padded, lengths, times, dev).float().cpu().numpy()
