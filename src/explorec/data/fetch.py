"""Fetch dataset files from package-registry wheels (or local archives) into the cache.

Every extracted file is checked against a pinned sha256, and a dataset directory appears in
the cache only once all of its files are verified (it is built in a temporary directory and
renamed into place), so a failed fetch never leaves a half-written cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from explorec._io import atomic_directory, atomic_write_json, sha256_file
from explorec.errors import ChecksumError, FetchError

MANIFEST = "MANIFEST.json"
TERMS = "TERMS.txt"


def cache_home() -> Path:
    """``$EXPLOREC_HOME``, default ``~/.cache/explorec``."""
    return Path(os.environ.get("EXPLOREC_HOME", Path.home() / ".cache" / "explorec")).expanduser()


def dataset_dir(name: str) -> Path:
    return cache_home() / "datasets" / name


@dataclass(frozen=True)
class WheelSource:
    """Files carried inside a pinned wheel on the package registry."""

    requirement: str  # e.g. "recbole==1.2.1"
    members: Mapping[str, str]  # path inside the wheel -> name in the cache directory
    sha256: Mapping[str, str]  # name in the cache directory -> pinned sha256
    wheel_sha256: str | None = None  # the wheel file itself, when pinned too
    terms: str | None = None  # the data's terms of use, shown wherever the source is

    def describe(self) -> str:
        return f"pip wheel {self.requirement}" + (f"; terms: {self.terms}" if self.terms else "")


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps REQUIREMENT`` into ``dest``; returns the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(f"pip download {requirement} failed: " + " | ".join(tail))
    return wheels[0]


def fetch_wheel_files(name: str, source: WheelSource, *, wheel: str | Path | None = None,
                      force: bool = False, target: Path | None = None) -> Path:
    """Make ``dataset_dir(name)`` (or ``target``) hold the verified files of ``source``;
    return the directory.

    ``wheel`` uses a local wheel file instead of downloading. Already verified caches are
    reused unless ``force``. A pinned ``source.wheel_sha256`` is checked before anything is
    extracted; ``source.terms`` are written beside the files (``TERMS.txt``) and into the
    manifest.
    """
    target = dataset_dir(name) if target is None else Path(target)
    if not force and is_complete(target, source.sha256):
        return target
    with tempfile.TemporaryDirectory(prefix="explorec-dl-") as tmp:
        whl = Path(wheel) if wheel is not None else download_wheel(source.requirement, Path(tmp))
        if not whl.exists():
            raise FetchError(f"wheel not found: {whl}")
        wheel_sha = sha256_file(whl)
        if source.wheel_sha256 is not None and wheel_sha != source.wheel_sha256:
            raise ChecksumError(whl, source.wheel_sha256, wheel_sha)
        with atomic_directory(target) as staging:
            try:
                zf = zipfile.ZipFile(whl)
            except zipfile.BadZipFile as e:
                raise FetchError(f"{whl} is not a valid wheel (zip): {e}") from e
            with zf:
                names = set(zf.namelist())
                for member, out_name in source.members.items():
                    if member not in names:
                        raise FetchError(f"{whl.name} has no member {member}")
                    (staging / out_name).parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(staging / out_name, "wb") as dst:
                        while block := src.read(1 << 20):
                            dst.write(block)
            try:
                verify_files(staging, source.sha256)
            except ChecksumError as e:
                raise ChecksumError(f"{whl.name}: {name}/{Path(e.path).name}", e.expected,
                                    e.actual) from None
            if source.terms:
                (staging / TERMS).write_text(source.terms + "\n", encoding="utf-8")
            atomic_write_json(staging / MANIFEST, {
                "dataset": name,
                "source": source.describe(),
                "wheel": whl.name,
                "wheel_sha256": wheel_sha,
                "files": dict(source.sha256),
                **({"terms": source.terms} if source.terms else {}),
            })
    return target


def verify_files(directory: Path, pinned: Mapping[str, str]) -> None:
    """Raise :class:`ChecksumError` on the first file whose sha256 differs from the pin."""
    for fname, expected in pinned.items():
        path = directory / fname
        if not path.exists():
            raise FetchError(f"missing file {path}")
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(path, expected, actual)


def is_complete(directory: Path, pinned: Mapping[str, str]) -> bool:
    """True if the directory's manifest records these pins and every file exists (cheap check).

    Full hashes were verified when the directory was created; ``explorec data fetch
    --force`` fetches and verifies again.
    """
    import json

    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("files") == dict(pinned) and all((directory / f).exists() for f in pinned)
