"""The docs' walkthroughs run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def bash_blocks(doc: Path, section: str) -> list[str]:
    """The ```bash blocks of one ``## section`` of a Markdown file."""
    text = doc.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    nxt = text.find("\n## ", start + 1)
    body = text[start:nxt if nxt > 0 else None]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.S)


@pytest.mark.slow
def test_your_own_data_walkthrough_runs_as_written(tmp_path, ml100k):
    blocks = bash_blocks(REPO / "docs" / "datasets.md", "Your own data")
    assert blocks, "the walkthrough has no bash block"
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for block in blocks:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, block + "\n" + proc.stdout + proc.stderr
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    assert list(recs.columns) == ["customer", "rank", "product", "score", "because", "name"]
    three = pd.read_csv(tmp_path / "three.csv", dtype=str)
    assert sorted(three["customer"].unique()) == ["1", "2", "3"]
    assert (tmp_path / "cold.json").exists()
