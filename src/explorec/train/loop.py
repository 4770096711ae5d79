"""One training loop for every neural model.

A model supplies three callables: ``batches(epoch, rng)`` yields loss-ready batches,
``step(batch) -> loss tensor`` computes the loss, and ``validate() -> float`` returns the
validation NDCG@10 (higher is better). The loop handles seeding, the optimiser, gradient
clipping, early stopping with best-weights restore, progress bars and optional TensorBoard
logs. It is deliberately small; docs/training.md records the measured comparison with
PyTorch Lightning (``benchmarks/training_overhead.py``) and why this loop was kept.
"""

from __future__ import annotations

import copy
import itertools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TrainConfig:
    epochs: int = 30
    patience: int = 3  # epochs without validation improvement before stopping
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    seed: int = 2020
    device: str | None = None  # None: CUDA when available, else CPU
    progress: bool = True
    tensorboard_dir: str | None = None
    min_delta: float = 1e-4
    # CPU intra-op threads while training; None = half the cores (at least 1). On our 2-core
    # machines one thread trains the two-tower 2.5x faster than two (docs/training.md).
    threads: int | None = None
    # batches per epoch (validation and early stopping after each); None: one full pass.
    # On tens of millions of events a pass is hours; an epoch of N steps validates sooner.
    steps_per_epoch: int | None = None
    # the model adds weight decay for its sparse embedding tables to the loss itself (the
    # rows a batch touches); ``weight_decay`` then applies to the dense parameters only
    sparse_decay_in_loss: bool = False


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the legacy API
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def train(
    module: Any,
    batches: Callable[[int, np.random.Generator], Iterable[Any]],
    step: Callable[[Any], Any],
    validate: Callable[[], float],
    config: TrainConfig,
    *,
    n_batches: int | None = None,
    name: str = "train",
) -> TrainResult:
    """Train ``module`` (a ``torch.nn.Module``) in place; restores the best validated weights."""
    import torch

    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    old_threads = torch.get_num_threads()
    on_cpu = not config.device or str(config.device).startswith("cpu")
    if on_cpu:
        import os

        torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 2) // 2))
    opt = _optimizer(module, config)
    writer = None
    if config.tensorboard_dir:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(config.tensorboard_dir)
        except ImportError:  # pragma: no cover - tensorboard is optional
            writer = None
    progress = None
    if config.progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), transient=True)
        progress.start()
    t0 = time.perf_counter()
    best, best_epoch, best_state = -np.inf, -1, None
    history: list[dict[str, float]] = []
    bad = 0
    try:
        for epoch in range(config.epochs):
            module.train()
            total_steps = n_batches
            if config.steps_per_epoch and (n_batches is None or config.steps_per_epoch < n_batches):
                total_steps = int(config.steps_per_epoch)
            task = progress.add_task(f"{name} epoch {epoch + 1}", total=total_steps) if progress else None
            total, count = 0.0, 0
            # where an epoch's time goes: its set-up (until the first batch: e.g. a shuffle
            # of every interaction), the steps (batches drawn and trained), validation
            t_epoch = time.perf_counter()
            setup_s = 0.0
            for batch in itertools.islice(batches(epoch, rng), config.steps_per_epoch):
                if count == 0:
                    setup_s = time.perf_counter() - t_epoch
                opt.zero_grad(set_to_none=True)
                loss = step(batch)
                loss.backward()
                if config.grad_clip:
                    clip_gradients(module.parameters(), config.grad_clip)
                opt.step()
                total += float(loss.detach())
                count += 1
                if progress:
                    progress.advance(task)
            t_valid = time.perf_counter()
            module.eval()
            with torch.no_grad():
                metric = float(validate())
            if progress:
                progress.remove_task(task)
            rec = {"epoch": epoch + 1, "loss": total / max(1, count), "valid_ndcg@10": metric,
                   "steps": count, "setup_seconds": setup_s,
                   "step_seconds": t_valid - t_epoch - setup_s,
                   "validate_seconds": time.perf_counter() - t_valid}
            history.append(rec)
            if writer is not None:
                writer.add_scalar("loss/train", rec["loss"], epoch)
                writer.add_scalar("ndcg@10/valid", metric, epoch)
            if metric > best + config.min_delta:
                best, best_epoch, bad = metric, epoch + 1, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                bad += 1
                if bad >= config.patience:
                    break
    finally:
        if on_cpu:
            torch.set_num_threads(old_threads)
        if progress:
            progress.stop()
        if writer is not None:
            writer.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return TrainResult(best_epoch=best_epoch, best_metric=float(best), epochs_run=len(history),
                       history=history, seconds=time.perf_counter() - t0)


def _sparse_embeddings(module: Any) -> list[Any]:
    from torch import nn

    return [m.weight for m in module.modules() if isinstance(m, nn.Embedding) and m.sparse]


class _Optimizers:
    """Adam for dense parameters and SparseAdam for embeddings with sparse gradients: a step
    then touches only the rows a batch used, so an epoch's cost follows the interactions,
    not interactions x table size (dense Adam updates every row of every table each step)."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.parts:
            o.step()


def _optimizer(module: Any, config: TrainConfig) -> Any:
    import torch

    sparse = _sparse_embeddings(module)
    ids = {id(p) for p in sparse}
    dense = [p for p in module.parameters() if id(p) not in ids]
    parts = []
    if dense:
        try:  # the fused kernel is much faster than the per-tensor loop, on CPU as on CUDA
            parts.append(torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay,
                                          fused=True))
        except (RuntimeError, TypeError):  # pragma: no cover - older torch / unsupported device
            parts.append(torch.optim.Adam(dense, lr=config.lr, weight_decay=config.weight_decay))
    if sparse:
        if config.weight_decay and not config.sparse_decay_in_loss:
            raise ValueError("weight_decay is not supported with sparse embeddings (SparseAdam); "
                             "use the model's own L2 penalty (reg)")
        parts.append(torch.optim.SparseAdam(sparse, lr=config.lr))
    return parts[0] if len(parts) == 1 and not sparse else _Optimizers(parts)


def clip_gradients(params: Any, max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` that also takes sparse gradients (sparse embedding
    tables): one global norm over dense gradients and sparse gradients' values."""
    import torch

    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not any(g.is_sparse for g in grads):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    total = torch.sqrt(sum(((g.coalesce().values() if g.is_sparse else g).float() ** 2).sum()
                           for g in grads))
    scale = max_norm / (float(total) + 1e-6)
    if scale < 1:
        for g in grads:
            g.mul_(scale)
    return float(total)
