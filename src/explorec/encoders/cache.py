"""On-disk embedding cache keyed by (encoder model id, sha256 of the text).

Each model id has a directory of shards (``keys`` + ``vectors`` .npy pairs, written
atomically). Looking up a known catalog costs hashing its texts and one index lookup.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from explorec._io import atomic_path
from explorec.data.fetch import cache_home
from explorec.encoders.base import TextEncoder


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors of texts already encoded by a given model."""

    def __init__(self, model_id: str, root: str | Path | None = None) -> None:
        base = Path(root) if root is not None else cache_home() / "embeddings"
        self.dir = base / re.sub(r"[^A-Za-z0-9._@-]+", "_", model_id)
        self.model_id = model_id
        self._index: pd.Index | None = None
        self._vectors: np.ndarray | None = None

    def _load(self) -> None:
        keys, vecs = [], []
        if self.dir.exists():
            for kf in sorted(self.dir.glob("*.keys.npy")):
                vf = kf.with_name(kf.name.replace(".keys.npy", ".vecs.npy"))
                if not vf.exists():
                    continue
                k = np.load(kf, allow_pickle=False)
                v = np.load(vf, allow_pickle=False)
                if len(k) == len(v):
                    keys.append(k)
                    vecs.append(v)
        if keys:
            allk = np.concatenate(keys)
            allv = np.concatenate(vecs)
            idx = pd.Index(allk)
            keep = ~idx.duplicated()
            self._index, self._vectors = pd.Index(allk[keep]), allv[keep]
        else:
            self._index, self._vectors = pd.Index([], dtype=object), None

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(positions in the cache or -1, the cached matrix)."""
        if self._index is None:
            self._load()
        assert self._index is not None
        if len(self._index) == 0:
            return np.full(len(keys), -1), None
        return self._index.get_indexer(np.asarray(keys)), self._vectors

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if len(keys) == 0:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        k = np.asarray(keys, dtype="U64")
        name = hashlib.sha256("".join(k).encode()).hexdigest()[:16]
        # vectors first: a shard counts only once its keys file exists
        with atomic_path(self.dir / f"{name}.vecs.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, vectors.astype(np.float32), allow_pickle=False)
        with atomic_path(self.dir / f"{name}.keys.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, k, allow_pickle=False)
        self._index = None  # reload lazily


def encode_cached(encoder: TextEncoder, texts: Sequence[str], *, cache: bool = True,
                  cache_root: str | Path | None = None, batch_size: int = 64,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Encode ``texts``, reusing cached vectors and caching the new ones."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    if not cache:
        return encoder.encode(texts, batch_size=batch_size, progress=progress)
    store = EmbeddingCache(encoder.model_id, cache_root)
    keys = [text_key(t) for t in texts]
    pos, cached = store.lookup(keys)
    missing = np.flatnonzero(pos < 0)
    dim = cached.shape[1] if cached is not None else None
    if len(missing):
        # encode each distinct missing text once
        uniq_keys, first, inverse = np.unique(np.asarray(keys)[missing], return_index=True,
                                              return_inverse=True)
        new = encoder.encode([texts[missing[i]] for i in first], batch_size=batch_size,
                             progress=progress)
        store.add(list(uniq_keys), new)
        dim = new.shape[1]
    assert dim is not None
    out = np.zeros((len(texts), dim), dtype=np.float32)
    hit = pos >= 0
    if hit.any():
        assert cached is not None
        out[hit] = cached[pos[hit]]
        if progress:
            progress(int(hit.sum()))
    if len(missing):
        out[missing] = new[inverse]
    return out
