"""The TextEncoder protocol: texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that turns texts into fixed-size vectors.

    ``model_id`` identifies the weights (it keys the embedding cache, so two encoders with
    the same id must give the same vectors); ``dim`` is the vector size.
    """

    model_id: str
    dim: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64,
               progress: Callable[[int], None] | None = None) -> np.ndarray: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)
