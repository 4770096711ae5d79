"""The code base stays ruff-clean (the style rule of the project), checked in every test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the dev extra"
    proc = subprocess.run([ruff, "check", "src", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_unsafe_loading_in_src():
    bad = []
    for f in (ROOT / "src").rglob("*.py"):
        text = f.read_text()
        for needle in ("pickle.load", "joblib.load", "allow_pickle=True"):
            if needle in text:
                bad.append(f"{f}: {needle}")
        if "torch.load(" in text and "weights_only=True" not in text:
            bad.append(f"{f}: torch.load without weights_only=True")
    assert not bad, bad
