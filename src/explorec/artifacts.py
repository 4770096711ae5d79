"""Safe artifacts: a JSON manifest plus one ``.npy`` file per array, each with its sha256.

Loading never unpickles: arrays are read with ``allow_pickle=False`` after their hash is
checked against the manifest. Sparse matrices are stored as their CSR parts; arrays of
strings (external ids, texts) as their UTF-8 bytes plus offsets, so one long id costs its own
length, not ``longest id x number of ids`` as fixed-width unicode would.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec._io import atomic_directory, atomic_write_json, sha256_file
from explorec.errors import ArtifactError, ChecksumError

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: string arrays stored as UTF-8 bytes + offsets


def save_artifact(path: str | Path, meta: dict[str, Any],
                  arrays: dict[str, np.ndarray | sp.spmatrix]) -> Path:
    """Write ``meta`` and ``arrays`` to the directory ``path`` atomically (replacing it)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        entries: dict[str, Any] = {}
        for name, arr in arrays.items():
            if not sp.issparse(arr) and np.asarray(arr).dtype.kind in "OUS":
                blob, offsets = _encode_strings(np.asarray(arr))
                entries[name] = {"kind": "strings", "shape": list(np.shape(arr)), "parts": {
                    "utf8": _write_array(tmp, f"{name}.utf8", blob),
                    "offsets": _write_array(tmp, f"{name}.offsets", offsets)}}
            elif sp.issparse(arr):
                csr = sp.csr_matrix(arr)
                parts = {"data": csr.data, "indices": csr.indices, "indptr": csr.indptr}
                files = {}
                for part, a in parts.items():
                    files[part] = _write_array(tmp, f"{name}.{part}", a)
                entries[name] = {"kind": "csr", "shape": list(csr.shape), "parts": files}
            else:
                entries[name] = {"kind": "dense", **_write_array(tmp, name, np.asarray(arr))}
        from explorec import __version__

        atomic_write_json(tmp / MANIFEST, {
            "format": "explorec-artifact",
            "format_version": FORMAT_VERSION,
            "explorec_version": __version__,
            **meta,
            "arrays": entries,
        })
    return path


def _encode_strings(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 UTF-8 bytes, int64 offsets of length n + 1) for a flat array of strings."""
    encoded = [str(v).encode("utf-8", "surrogatepass") for v in arr.ravel()]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _decode_strings(blob: np.ndarray, offsets: np.ndarray, shape: list[int], where: Path
                    ) -> np.ndarray:
    raw = blob.tobytes()
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(raw) or (np.diff(offsets) < 0).any():
        raise ArtifactError(f"{where}: string offsets do not match their bytes")
    out = np.empty(len(offsets) - 1, dtype=object)
    out[:] = [raw[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(offsets)]
    return out.reshape(shape)


def _write_array(directory: Path, name: str, arr: np.ndarray) -> dict[str, Any]:
    fname = f"{name}.npy"
    np.save(directory / fname, arr, allow_pickle=False)
    return {"file": fname, "sha256": sha256_file(directory / fname), "dtype": arr.dtype.str,
            "shape": list(arr.shape)}


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    mf = path / MANIFEST
    if not mf.exists():
        raise ArtifactError(f"{path} is not an explorec artifact (no {MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except ValueError as e:
        raise ArtifactError(f"{mf}: invalid JSON: {e}") from e
    if manifest.get("format") != "explorec-artifact":
        raise ArtifactError(f"{mf}: not an explorec artifact manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ArtifactError(f"{mf}: format version {manifest['format_version']} is newer than "
                            f"this explorec understands ({FORMAT_VERSION})")
    return manifest


def load_artifact(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray | sp.csr_matrix]]:
    """Read a manifest and its arrays, verifying every sha256 before loading."""
    path = Path(path)
    manifest = read_manifest(path)
    arrays: dict[str, np.ndarray | sp.csr_matrix] = {}
    for name, entry in manifest.get("arrays", {}).items():
        if entry["kind"] == "csr":
            p = {k: _read_array(path, v) for k, v in entry["parts"].items()}
            arrays[name] = sp.csr_matrix((p["data"], p["indices"], p["indptr"]),
                                         shape=tuple(entry["shape"]))
        elif entry["kind"] == "strings":
            p = {k: _read_array(path, v) for k, v in entry["parts"].items()}
            arrays[name] = _decode_strings(p["utf8"], p["offsets"], entry["shape"],
                                           path / MANIFEST)
        elif entry["kind"] == "dense":
            arrays[name] = _read_array(path, entry)
        else:
            raise ArtifactError(f"{path / MANIFEST}: array {name!r} has unknown kind "
                                f"{entry['kind']!r}")
    return manifest, arrays


def _read_array(directory: Path, entry: dict[str, Any]) -> np.ndarray:
    f = directory / entry["file"]
    if not f.exists() or f.name != entry["file"] or "/" in entry["file"]:
        raise ArtifactError(f"artifact file missing or outside the artifact: {f}")
    actual = sha256_file(f)
    if actual != entry["sha256"]:
        raise ChecksumError(f, entry["sha256"], actual)
    return np.load(f, allow_pickle=False)
