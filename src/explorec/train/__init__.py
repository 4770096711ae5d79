"""Shared PyTorch training layer: seeded, early stopping on validation NDCG@10, CPU/CUDA."""

from explorec.train.loop import TrainConfig, TrainResult, seed_everything, train

__all__ = ["TrainConfig", "TrainResult", "seed_everything", "train"]
