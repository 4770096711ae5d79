"""Text encoders: item and user text -> vectors (sentence-transformers offline, TF-IDF fallback)."""

from __future__ import annotations

from explorec.encoders.base import TextEncoder, l2_normalise
from explorec.encoders.cache import EmbeddingCache, encode_cached
from explorec.encoders.tfidf import TfidfEncoder

ENCODERS = ("minilm", "tfidf")


def get_encoder(name: str = "minilm", device: str | None = None) -> TextEncoder:
    """``minilm`` (default, all-MiniLM-L6-v2), ``tfidf``, or a local sentence-transformers path.

    ``minilm`` falls back to ``tfidf`` with a warning when torch is not installed.
    """
    if name == "tfidf":
        return TfidfEncoder()
    if name not in ENCODERS:
        from pathlib import Path

        from explorec.errors import ExploRecError

        if not Path(name).is_dir():
            raise ExploRecError(f"unknown encoder {name!r}: use {', '.join(ENCODERS)}, or the path "
                                "of a directory holding a sentence-transformers model (models are "
                                "never downloaded)")
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        if name != "minilm":
            raise
        import warnings

        warnings.warn("sentence-transformers is not installed; using the TF-IDF encoder "
                      "(pip install 'explorec[deep]' for MiniLM)", stacklevel=2)
        return TfidfEncoder()
    from explorec.encoders.sentence import DEFAULT_MODEL, SentenceTransformerEncoder

    return SentenceTransformerEncoder(DEFAULT_MODEL if name == "minilm" else name, device=device)


__all__ = ["ENCODERS", "EmbeddingCache", "TextEncoder", "TfidfEncoder", "encode_cached",
           "get_encoder", "l2_normalise"]
