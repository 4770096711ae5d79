"""Seeded 64-bit hashes of integer pairs, shared by every layer (ids -> pseudo-random keys).

The data layer orders rows that share a timestamp by them, the ranking layer orders tied
scores by them, and the ``random`` model draws its scores from them: keys that depend only on
(seed, row id, column id), never on where something sits in a file or a batch.
"""

from __future__ import annotations

import numpy as np

# the multipliers of hash64 (row, column, seed, two finaliser rounds); public so that a
# compiled copy of the hash (explorec.factor_topk) uses the same ones
M_ROW = np.uint64(0x9E3779B97F4A7C15)
M_COL = np.uint64(0xC2B2AE3D27D4EB4F)
M_SEED = np.uint64(0x165667B19E3779F9)
M_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
M_MIX2 = np.uint64(0x94D049BB133111EB)


def hash64(rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic 64-bit hashes per (seed, row, col), broadcasting ``rows`` against ``cols``
    (splitmix64 finaliser, vectorised)."""
    r = np.asarray(rows).astype(np.uint64)
    c = np.asarray(cols).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (r * M_ROW) ^ (c * M_COL)
        z = z + np.uint64(seed & 0xFFFF_FFFF_FFFF_FFFF) * M_SEED
        z = (z ^ (z >> np.uint64(30))) * M_MIX1
        z = (z ^ (z >> np.uint64(27))) * M_MIX2
        z = z ^ (z >> np.uint64(31))
    return z


def hash_uniform(rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """Uniforms in [0, 1) per (seed, row, col), broadcasting like :func:`hash64`."""
    return (hash64(rows, cols, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
