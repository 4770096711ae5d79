"""Per-step overhead of PyTorch Lightning against explorec's own training loop.

    python benchmarks/training_overhead.py --steps 300 --output benchmarks/results

Both train the same small network (two-tower sized: 384 -> 256 -> 128 item MLP, batch 1024
in-batch softmax over random unit "text" vectors) for the same number of optimiser steps on
the CPU with one validation pass per epoch. Lightning runs with its logger, checkpointing,
progress bar and model summary switched off, i.e. at its leanest. Needs `pip install
'explorec[bench]'` (pytorch-lightning); `make bench` installs it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from explorec._io import atomic_write_json, atomic_write_text
from explorec.report import environment
from explorec.train import TrainConfig, train

N_ITEMS, TEXT_DIM, BATCH = 4096, 384, 1024


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(TEXT_DIM, 256), nn.GELU(), nn.Linear(256, 128))


def loss_fn(net: nn.Module, text: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]
            ) -> torch.Tensor:
    a, b = batch
    ua = nn.functional.normalize(net(text[a]), dim=-1)
    vb = nn.functional.normalize(net(text[b]), dim=-1)
    logits = 20 * ua @ vb.T
    return nn.functional.cross_entropy(logits, torch.arange(len(a)))


def batches(n_steps: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, N_ITEMS, (BATCH,), generator=g),
             torch.randint(0, N_ITEMS, (BATCH,), generator=g)) for _ in range(n_steps)]


def run_ours(text: torch.Tensor, data: list, epochs: int) -> float:
    net = make_net()
    cfg = TrainConfig(epochs=epochs, patience=epochs + 1, lr=1e-3, progress=False, grad_clip=None,
                      threads=torch.get_num_threads())  # same threads as Lightning gets
    t = time.perf_counter()
    train(net, lambda e, rng: iter(data), lambda b: loss_fn(net, text, b), lambda: 0.0, cfg)
    return time.perf_counter() - t


def run_lightning(text: torch.Tensor, data: list, epochs: int) -> float:
    import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch, _):  # type: ignore[no-untyped-def]
            return loss_fn(self.net, text, batch)

        def validation_step(self, batch, _):  # type: ignore[no-untyped-def]
            return None

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)
    val = torch.utils.data.DataLoader(data[:1], batch_size=None)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    t = time.perf_counter()
    trainer.fit(Module(), loader, val)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--output", default="benchmarks/results")
    args = ap.parse_args()
    text = torch.as_tensor(np.random.default_rng(0).normal(size=(N_ITEMS, TEXT_DIM)),
                           dtype=torch.float32)
    per_epoch = max(1, args.steps // args.epochs)
    data = batches(per_epoch, 0)
    steps = per_epoch * args.epochs
    rows = []
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        run_ours(text, data[:2], 1)  # warm up both paths once
        ours = min(run_ours(text, data, args.epochs) for _ in range(2))
        try:
            run_lightning(text, data[:2], 1)
            light = min(run_lightning(text, data, args.epochs) for _ in range(2))
        except ImportError:
            light = float("nan")
        rows.append({"threads": threads, "ours_s": ours, "lightning_s": light,
                     "ours_ms_per_step": 1000 * ours / steps,
                     "lightning_ms_per_step": 1000 * light / steps,
                     "overhead_pct": 100 * (light - ours) / ours})
    report = {"steps": steps, "epochs": args.epochs, "batch": BATCH, "rows": rows,
              "environment": environment(),
              "command": f"python benchmarks/training_overhead.py --steps {args.steps}"}
    try:
        import pytorch_lightning as pl

        report["lightning_version"] = pl.__version__
    except ImportError:
        report["lightning_version"] = None
    md = (f"# Training loop overhead\n\n{steps} steps, batch {BATCH}, CPU, "
          f"pytorch-lightning {report['lightning_version']}; best of 2 runs; both loops run "
          f"with the same torch thread count. Machine: {report['environment']['platform']}, "
          f"{report['environment']['cpu_count']} cores. Command: `{report['command']}`.\n\n"
          "| threads | explorec.train s | ms / step | Lightning s | ms / step | Lightning vs ours |\n"
          "|---:|---:|---:|---:|---:|---:|\n")
    for r in rows:
        md += (f"| {r['threads']} | {r['ours_s']:.2f} | {r['ours_ms_per_step']:.2f} | "
               f"{r['lightning_s']:.2f} | {r['lightning_ms_per_step']:.2f} | "
               f"{r['overhead_pct']:+.1f}% |\n")
    out = Path(args.output)
    atomic_write_json(out / "training_overhead.json", report)
    atomic_write_text(out / "training_overhead.md", md)
    print(md)


if __name__ == "__main__":
    main()
