"""Safe artifacts: a JSON manifest plus one ``.npy`` file per array, each with its sha256.

Loading never unpickles: arrays are read with ``allow_pickle=False`` after their hash is
checked against the manifest. Sparse matrices are stored as their CSR parts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec._io import atomic_directory, atomic_write_json, sha256_file
from explorec.errors import ArtifactError, ChecksumError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def save_artifact(path: str | Path, meta: dict[str, Any],
                  arrays: dict[str, np.ndarray | sp.spmatrix]) -> Path:
    """Write ``meta`` and ``arrays`` to the directory ``path`` atomically (replacing it)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        entries: dict[str, Any] = {}
        for name, arr in arrays.items():
            if sp.issparse(arr):
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


def _write_array(directory: Path, name: str, arr: np.ndarray) -> dict[str, Any]:
    if arr.dtype == object:
        arr = arr.astype(str)  # external ids: fixed-width unicode, no pickle needed
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
