"""Interactions from a directory of Parquet files: flat or hive-partitioned, batch by batch,
identical to one file with the same rows; bad input named by file, column and row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from explorec.cli.main import app
from explorec.data import Interactions, load_dataset, load_interactions
from explorec.data.parquet_dir import read_parquet_dir
from explorec.errors import DataError
from explorec.memory import MemoryLimitError


def same(a: Interactions, b: Interactions) -> None:
    assert list(a.users.ids) == list(b.users.ids)
    assert list(a.items.ids) == list(b.items.ids)
    for f in ("user", "item", "rating", "timestamp"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            assert x.dtype == y.dtype, f
            np.testing.assert_array_equal(x, y, err_msg=f)


def frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user": rng.integers(0, 200, n),
        "item": rng.integers(0, 80, n),
        "stars": rng.integers(1, 6, n).astype(np.float64),
        "ts": rng.integers(0, 10_000, n),  # repeats: ties and duplicate pairs
    })


def write_split(df: pd.DataFrame, root: Path, cuts: list[int]) -> Path:
    root.mkdir(parents=True)
    for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(df)], strict=True)):
        df.iloc[a:b].to_parquet(root / f"part-{k:02d}.parquet", index=False)
    return root


COLS = {"user": "user", "item": "item", "rating": "stars", "timestamp": "ts"}


@pytest.mark.parametrize("duplicates", ["first", "last", "sum", "keep"])
def test_flat_directory_equals_single_csv_and_parquet_whatever_the_split(tmp_path, duplicates):
    df = frame()
    df.to_csv(tmp_path / "all.csv", index=False)
    df.to_parquet(tmp_path / "all.parquet", index=False)
    ref = load_interactions(tmp_path / "all.csv", columns=COLS, duplicates=duplicates)
    same(ref, load_interactions(tmp_path / "all.parquet", columns=COLS, duplicates=duplicates))
    flat = write_split(df, tmp_path / "flat", [1, 700, 701, 2500])  # a one-row file too
    for bs in (None, 64, 999):
        same(ref, load_interactions(flat, columns=COLS, duplicates=duplicates, batch_size=bs))
    # one row per batch
    few = tmp_path / "few.csv"
    df.iloc[:300].to_csv(few, index=False)
    same(load_interactions(few, columns=COLS, duplicates=duplicates),
         load_interactions(write_split(df.iloc[:300], tmp_path / "one", [100]), columns=COLS,
                           duplicates=duplicates, batch_size=1))


def test_row_order_without_timestamps_is_the_files_then_their_rows(tmp_path):
    df = frame(800, seed=1).drop(columns="ts")
    df.to_csv(tmp_path / "all.csv", index=False)
    flat = write_split(df, tmp_path / "flat", [300, 301, 650])
    cols = {"user": "user", "item": "item", "rating": "stars"}
    for dup in ("first", "last", "keep", "sum"):
        ref = load_interactions(tmp_path / "all.csv", columns=cols, duplicates=dup)
        for bs in (None, 5):
            same(ref, load_interactions(flat, columns=cols, duplicates=dup, batch_size=bs))


def test_hive_partitions_as_mapped_columns_and_ignored_keys(tmp_path):
    """``user=ID`` in the path is the user column; ``day=YYYY-MM-DD`` is the timestamp (ISO
    dates, as a single file's text column would be read); ``src=`` is not mapped: ignored."""
    rng = np.random.default_rng(2)
    n = 600
    df = pd.DataFrame({
        "user": [f"u{v:03d}" for v in rng.integers(0, 8, n)],
        "item": rng.integers(0, 200, n).astype(str),
        "rating": rng.integers(1, 6, n).astype(np.float64),
        "day": [f"2024-01-{d:02d}" for d in rng.integers(1, 6, n)],
    }).drop_duplicates(["user", "item"]).reset_index(drop=True)
    df.to_csv(tmp_path / "all.csv", index=False)
    root = tmp_path / "hive"
    for (user, day), g in df.groupby(["user", "day"]):
        d = root / "src=web" / f"user={user}" / f"day={day}"
        d.mkdir(parents=True)
        g[["item", "rating"]].to_parquet(d / "x.parquet", index=False)
    (root / "_SUCCESS").write_text("")  # Spark's marker files are skipped
    cols = {"user": "user", "item": "item", "rating": "rating", "timestamp": "day"}
    ref = load_interactions(tmp_path / "all.csv", columns=cols)
    got = load_interactions(root, columns=cols, batch_size=3)
    same(ref, got)
    assert got.timestamp.min() >= pd.Timestamp("2024-01-01").timestamp()
    # a partition key that is not mapped is ignored; a bucket key beside an id column
    bucketed = tmp_path / "bucketed"
    for b, g in df.assign(b=df.index % 3).groupby("b"):
        (bucketed / f"user_bucket={b}").mkdir(parents=True)
        g.drop(columns="b").to_parquet(bucketed / f"user_bucket={b}" / "p.parquet", index=False)
    same(ref, load_interactions(bucketed, columns=cols))


def test_id_cleaning_spans_files_and_batches(tmp_path):
    """Ids are cleaned once per distinct value over the whole column: a text column of
    numbers with a decimal point anywhere is numeric everywhere ('7' and '7.0' are one id),
    spaces are stripped (' 8' is '8'), "007" stays text when no value has a decimal point."""
    a = pd.DataFrame({"user": ["1", " 8", "7", "2"], "item": ["007", "x", "y", "x"],
                      "ts": [1, 2, 3, 4]})
    b = pd.DataFrame({"user": ["7.0", "8", "3", "1"], "item": ["w", "007", "z", "z"],
                      "ts": [5, 6, 7, 8]})
    pd.concat([a, b]).to_csv(tmp_path / "all.csv", index=False)
    root = tmp_path / "d"
    root.mkdir()
    a.to_parquet(root / "a.parquet", index=False)
    b.to_parquet(root / "b.parquet", index=False)
    cols = {"user": "user", "item": "item", "timestamp": "ts"}
    ref = load_interactions(tmp_path / "all.csv", columns=cols)
    for bs in (None, 1, 3):
        same(ref, load_interactions(root, columns=cols, batch_size=bs))
    assert list(ref.users.ids) == ["1", "2", "3", "7", "8"]
    assert "007" in set(ref.items.ids)


def test_numeric_types_may_differ_in_width_and_datetimes_are_seconds(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    when = pd.to_datetime(["2024-01-01 00:00:01", "2024-01-02 00:00:00", "2024-01-03 00:00:00"])
    pq.write_table(pa.table({"user": pa.array([1, 2, 3], pa.int32()), "item": [5, 6, 7],
                             "timestamp": pa.array(when.to_numpy(), pa.timestamp("ms"))}),
                   root / "a.parquet")
    pq.write_table(pa.table({"user": pa.array([4, 1], pa.uint64()), "item": [5, 6],
                             "timestamp": pa.array(when[:2].to_numpy(), pa.timestamp("us"))}),
                   root / "b.parquet")
    got = load_interactions(root)
    assert list(got.users.ids) == ["1", "2", "3", "4"]
    np.testing.assert_array_equal(np.unique(got.timestamp),
                                  [1704067201.0, 1704153600.0, 1704240000.0])
    single = tmp_path / "one.parquet"
    pq.write_table(pa.table({"user": [1], "item": [5],
                             "timestamp": pa.array(when[:1].to_numpy(), pa.timestamp("ms"))}),
                   single)
    assert load_interactions(single).timestamp.tolist() == [1704067201.0]


def test_cli_and_registry_take_a_directory(tmp_path):
    df = frame(500, seed=3).drop_duplicates(["user", "item"])
    root = write_split(df, tmp_path / "d", [100, 400])
    res = CliRunner().invoke(app, ["data", "info", str(root), "--columns",
                                   "user=user,item=item,rating=stars,timestamp=ts", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["interactions"] == len(df) and info["users"] == df["user"].nunique()
    ds = load_dataset(str(root), columns=COLS, min_rating=3)
    assert len(ds.interactions) == int((df["stars"] >= 3).sum())
    assert ds.columns == {"user": "user", "item": "item"}


# ------------------------------------------------------------------ bad input
def err(root: Path, **kw: object) -> str:
    with pytest.raises(DataError) as e:
        read_parquet_dir(root, **kw)  # type: ignore[arg-type]
    return str(e.value)


def two_files(tmp_path: Path, a: pd.DataFrame, b: pd.DataFrame | pa.Table) -> Path:
    root = tmp_path / "d"
    root.mkdir(exist_ok=True)
    a.to_parquet(root / "a.parquet", index=False)
    if isinstance(b, pa.Table):
        pq.write_table(b, root / "b.parquet")
    else:
        b.to_parquet(root / "b.parquet", index=False)
    return root


GOOD = pd.DataFrame({"user": [1, 2], "item": [3, 4], "rating": [5.0, 4.0]})


def test_empty_directory_stray_file_and_corrupt_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .parquet files" in err(empty)
    with pytest.raises(DataError, match=r"no \.parquet files here"):
        load_dataset(str(empty))
    root = two_files(tmp_path, GOOD, GOOD.assign(user=[7, 8]))
    (root / "notes.csv").write_text("user,item\n1,2\n")
    assert re.search(r"file .*notes\.csv: not a Parquet file", err(root))
    (root / "notes.csv").unlink()
    (root / "c.parquet").write_bytes(b"not parquet at all")
    assert re.search(r"c\.parquet", err(root))
    (root / "c.parquet").unlink()
    GOOD.iloc[:0].to_parquet(root / "c.parquet", index=False)  # an empty file is fine
    assert len(read_parquet_dir(root)[0]) == 4


def test_missing_column_and_schema_mismatch_name_the_file(tmp_path):
    root = two_files(tmp_path, GOOD, GOOD.drop(columns="item"))
    msg = err(root)
    assert "b.parquet" in msg and "column 'item'" in msg and "missing column" in msg
    root = two_files(tmp_path, GOOD, GOOD.assign(user=["1", "2"]))
    msg = err(root)
    assert "b.parquet" in msg and "schema mismatch" in msg and "a.parquet" in msg
    root = two_files(tmp_path, GOOD, GOOD.assign(item=[[1], [2]]))
    assert "b.parquet" in err(root) and "cannot hold items" in err(root)
    # a mapped column in the path and in the file
    hive = tmp_path / "hive" / "user=1"
    hive.mkdir(parents=True)
    GOOD.to_parquet(hive / "x.parquet", index=False)
    assert "partition key" in err(tmp_path / "hive")


def test_bad_values_name_file_column_and_row(tmp_path):
    root = two_files(tmp_path, GOOD, pd.DataFrame({"user": [1.0, None, 3.0], "item": [1, 2, 3],
                                                   "rating": [1.0, 2.0, 3.0]}))
    assert re.search(r"b\.parquet, column 'user', row 2: missing id", err(root))
    root = two_files(tmp_path, GOOD, GOOD.assign(rating=["4", "lots"]))
    # a text rating column beside float ones: a schema mismatch, named
    assert "schema mismatch" in err(root)
    root = two_files(tmp_path, GOOD.assign(rating=["5", "4"]), GOOD.assign(rating=["4", "lots"]))
    assert re.search(r"b\.parquet, column 'rating', row 2: non-numeric value 'lots'", err(root))
    root = two_files(tmp_path, GOOD, GOOD.assign(item=[3, 10**9]))
    assert re.search(r"b\.parquet, column 'item', row 2: id of 10 characters",
                     err(root, max_id_length=5))
    root = two_files(tmp_path, GOOD, GOOD.assign(user=["1", "2"]))
    assert "schema mismatch" in err(root)
    root = two_files(tmp_path, GOOD.assign(user=[1.0, 2.0]), GOOD.assign(user=[3.0, 2.5]))
    assert re.search(r"b\.parquet, column 'user', row 2: non-integer numeric id 2.5", err(root))


def test_errors_come_in_the_single_file_order(tmp_path):
    """A bad rating in the first file and a missing user id in the second: the user id is
    reported, as it would be for one file (ids, then ratings, then timestamps)."""
    a = GOOD.assign(rating=["5", "bad"])
    b = pd.DataFrame({"user": ["1", None], "item": ["3", "4"], "rating": ["1", "2"]})
    root = two_files(tmp_path, a.astype({"user": str, "item": str}), b)
    pd.concat([a.astype(str), b]).to_csv(tmp_path / "all.csv", index=False)
    with pytest.raises(DataError, match="row 4: missing id"):
        load_interactions(tmp_path / "all.csv")
    assert re.search(r"b\.parquet, column 'user', row 2: missing id", err(root))


def test_duplicates_across_files_name_both(tmp_path):
    root = two_files(tmp_path, GOOD, GOOD.iloc[::-1])
    msg = err(root)
    assert re.search(r"file .*b\.parquet, row 2: duplicate \(user, item\) pair \('1', '3'\) in "
                     r"row 1 of .*a\.parquet and row 2", msg)
    assert len(read_parquet_dir(root, duplicates="sum")[0]) == 2


def test_memory_is_checked_from_the_footers(tmp_path, monkeypatch):
    root = two_files(tmp_path, GOOD, GOOD.assign(user=[7, 8]))
    monkeypatch.setenv("EXPLOREC_MEMORY_LIMIT", "1000")
    with pytest.raises(MemoryLimitError, match="reading 4 interactions from 2 Parquet files"):
        read_parquet_dir(root)
