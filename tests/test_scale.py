"""Scale on one machine: memory estimates and refusals, EASE's in-place fit, sparse top-k."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from explorec.cli.main import app
from explorec.data.synthetic import generate
from explorec.memory import MemoryLimitError, available_bytes, format_bytes, parse_size
from explorec.models.ease import EASE, gram_float32, symmetrize_lower
from explorec.models.registry import create_model, model_names


@pytest.fixture(scope="module")
def synth():
    return generate(n_users=3000, n_items=1500, n_interactions=60_000)


# ------------------------------------------------------------------ memory
def test_parse_size_and_errors():
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size(1024) == 1024
    for bad in ("lots", "-1GB", "0", "5 parsecs"):
        with pytest.raises(Exception, match="memory limit"):
            parse_size(bad)
    assert format_bytes(1_600_000_000) == "1.6 GB"


def test_available_memory_is_known_here():
    have, source = available_bytes()
    assert have is not None and have > 0 and "{}" in source
    capped, source = available_bytes("1MB")
    assert capped == 10**6 and "memory_limit" in source


@pytest.mark.parametrize("name", model_names())
def test_every_model_estimates_its_memory(name):
    m = create_model(name)
    small = m.fit_memory(1000, 1000, 20_000)
    big = m.fit_memory(1000, 100_000, 2_000_000)
    assert isinstance(small, int) and small > 0
    assert big > small  # more items and interactions never need less


def test_fit_refuses_above_the_limit_in_one_line(synth):
    with pytest.raises(MemoryLimitError) as e:
        EASE().fit(synth.interactions, memory_limit="1MB")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("ease needs ~") and "1,500 items" in msg and "1.0 MB memory_limit" in msg
    assert "ials" in msg  # names the alternative


def test_environment_limit_applies(synth, monkeypatch):
    monkeypatch.setenv("EXPLOREC_MEMORY_LIMIT", "2MB")
    with pytest.raises(MemoryLimitError, match="EXPLOREC_MEMORY_LIMIT"):
        create_model("slim").fit(synth.interactions)


def test_cli_memory_limit_flag(tmp_path):
    res = CliRunner().invoke(app, ["evaluate", "--models", "ease", "--memory-limit", "1MB",
                                   "--json", str(tmp_path / "r.json")])
    assert res.exit_code != 0
    assert "ease needs ~" in res.output and "limit set by --memory-limit" in res.output
    res = CliRunner().invoke(app, ["evaluate", "--models", "ease", "--memory-limit", "lots"])
    assert res.exit_code == 2 and "--memory-limit" in res.output


def test_ease_at_the_size_that_crashed_refuses_or_fits_never_a_signal(tmp_path):
    """100,000 users x 20,000 items, 2M events: a segmentation fault before issue 13. Under a
    1 GB limit the fit must refuse in one line (the estimate is ~2 GB), before any work."""
    code = ("from explorec.data.synthetic import generate\n"
            "from explorec.models.ease import EASE\n"
            "from explorec.memory import MemoryLimitError\n"
            "ds = generate(n_users=100_000, n_items=20_000, n_interactions=2_000_000)\n"
            "try:\n"
            "    EASE().fit(ds.interactions, memory_limit='1GB')\n"
            "except MemoryLimitError as e:\n"
            "    print('REFUSED', e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]  # negative = killed by a signal
    assert "REFUSED ease needs ~2.0 GB" in p.stdout


# ------------------------------------------------------------------ EASE in float32, in place
def test_ease_in_place_float32_matches_float64_reference(synth):
    X = synth.interactions.matrix()
    m = EASE(reg=100.0).fit(synth.interactions)
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += 100.0
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    assert m.weights_.dtype == np.float32 and m.weights_.flags["C_CONTIGUOUS"]
    assert np.abs(m.weights_ - B).max() < 1e-5 * max(1.0, np.abs(B).max())


def test_gram_blocks_and_symmetrize(monkeypatch):
    import explorec.models.ease as ease

    rng = np.random.default_rng(0)
    X = sp.random(200, 90, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    monkeypatch.setattr(ease, "GRAM_BLOCK_BYTES", 20 * 90 * 7)  # blocks of 7 rows
    assert np.allclose(gram_float32(X), (X.T @ X).toarray(), atol=1e-5)
    A = rng.normal(size=(50, 50)).astype(np.float32)
    L = np.tril(A)
    symmetrize_lower(L, block=8)
    assert np.array_equal(L, L.T) and np.array_equal(np.tril(L), np.tril(A))


# ------------------------------------------------------------------ sparse top-k == dense top-k
@pytest.mark.parametrize("name", ["pop", "itemknn", "userknn", "rp3beta", "slim"])
@pytest.mark.parametrize("k", [5, 400])
def test_sparse_recommend_equals_dense(synth, name, k):
    params = {"k": 20} if name in ("itemknn", "userknn") else {}
    m = create_model(name, **params).fit(synth.interactions)
    users = np.arange(0, m.n_users, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = m.recommend(users, k)
        sparse_all = m.recommend(users, k, exclude_seen=False)
        m._recommend_sparse = lambda *a, **kw: None  # the dense path, for reference
        dense = m.recommend(users, k)
        dense_all = m.recommend(users, k, exclude_seen=False)
    for a, b in ((sparse, dense), (sparse_all, dense_all)):
        assert a[0].shape == b[0].shape
        assert np.array_equal(a[0], b[0])
        assert np.allclose(a[1], b[1])


# ------------------------------------------------------------------ the generator from the CLI
def test_synthetic_options_on_every_data_command(tmp_path):
    opts = ["--dataset-option", "n_users=400", "--dataset-option", "n_items=200",
            "--dataset-option", "n_interactions=6000"]
    res = CliRunner().invoke(app, ["evaluate", "--dataset", "synthetic", *opts, "--models", "pop",
                                   "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert "pop" in json.dumps(report)
    for bad, says in (("bogus=1", "synthetic has no option bogus"),
                      ("n_users=abc", "n_users must be an integer"),
                      ("n_users=0", "n_users must be >= 1")):
        res = CliRunner().invoke(app, ["evaluate", "--dataset", "synthetic", "--dataset-option",
                                       bad, "--models", "pop"])
        assert res.exit_code != 0 and says in res.output, res.output
    res = CliRunner().invoke(app, ["evaluate", "--dataset-option", "n_users=5", "--models", "pop"])
    assert res.exit_code != 0 and "'ml-100k' takes none" in res.output


# ------------------------------------------------------------------ batch scoring in chunks
@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_recommend_in_chunks_writes_the_same_file(tmp_path, fmt):
    """Chunks of users bound the memory; the output must not depend on their size."""
    art = tmp_path / "model"
    base = ["--dataset", "synthetic", "--dataset-option", "n_users=300", "--dataset-option",
            "n_items=200", "--dataset-option", "n_interactions=5000"]
    res = CliRunner().invoke(app, ["recommend", *base, "--model", "itemknn", "--k", "5",
                                   "-o", str(tmp_path / f"fit.{fmt}"), "--save-model", str(art)])
    assert res.exit_code == 0, res.output
    outs = []
    for chunk in (1000, 37):
        out = tmp_path / f"recs{chunk}.{fmt}"
        res = CliRunner().invoke(app, ["recommend", "--artifact", str(art), "--k", "5",
                                       "--explain", "--chunk-users", str(chunk), "-o", str(out)])
        assert res.exit_code == 0, res.output
        outs.append(out.read_bytes() if fmt != "parquet" else out)
    if fmt == "parquet":
        import pandas as pd
        import pyarrow.parquet as pq

        a, b = (pd.read_parquet(p) for p in outs)
        assert a.equals(b) and len(a) == 300 * 5
        assert pq.ParquetFile(outs[1]).num_row_groups == 9  # ceil(300 / 37)
    else:
        assert outs[0] == outs[1]
