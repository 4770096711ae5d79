"""TF-IDF text encoder over hashed word uni- and bi-grams: the fallback when torch is absent.

Hashing keeps it stateless for unseen words, so a new item's text gets a vector without
refitting; the IDF weights are learned by ``fit`` on a corpus (the catalog) and are part of
``model_id`` so the cache never mixes vectors from different fits.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

from explorec.encoders.base import l2_normalise

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # words in any script, inner apostrophes kept


class TfidfEncoder:
    """Sublinear TF x IDF over ``dim`` hashed features, L2-normalised."""

    def __init__(self, dim: int = 2048, bigrams: bool = True) -> None:
        self.dim = dim
        self.bigrams = bigrams
        self.idf: np.ndarray = np.ones(dim, dtype=np.float32)

    @property
    def model_id(self) -> str:
        digest = hashlib.sha256(self.idf.tobytes()).hexdigest()[:12]
        return f"tfidf2-hash{self.dim}{'-bi' if self.bigrams else ''}-{digest}"

    def _counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        rows, cols = [], []
        for r, text in enumerate(texts):
            toks = _TOKEN.findall(text.casefold())
            feats = toks + ([f"{a} {b}" for a, b in pairwise(toks)] if self.bigrams else [])
            rows.extend([r] * len(feats))
            cols.extend(zlib.crc32(f.encode()) % self.dim for f in feats)
        data = np.ones(len(rows), dtype=np.float32)
        m = sp.csr_matrix((data, (rows, cols)), shape=(len(texts), self.dim))
        m.sum_duplicates()
        return m

    def fit(self, texts: Sequence[str]) -> TfidfEncoder:
        df = np.asarray((self._counts(texts) > 0).sum(axis=0)).ravel()
        self.idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
        return self

    def encode(self, texts: Sequence[str], *, batch_size: int = 4096,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), batch_size):
            m = self._counts(texts[s:s + batch_size])
            m.data = 1 + np.log(m.data)
            out[s:s + m.shape[0]] = l2_normalise((m @ sp.diags(self.idf)).toarray())
            if progress:
                progress(m.shape[0])
        return out
