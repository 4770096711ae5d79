"""Real and realistic sources: ML-100K (RecBole wheel and GroupLens layout), OBD, the
synthetic generator, the split protocols and the split export.

ML-100K and OBD come from the package registry via the fixtures / the user cache; GroupLens
archives are built here, never downloaded.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.data import (
    Dataset,
    IdMap,
    Interactions,
    ItemCatalog,
    UserTable,
    load_atomic_interactions,
    load_dataset,
    load_interactions,
    make_split,
)
from explorec.data.export import export_split
from explorec.data.movielens import GENRES, load_grouplens_100k
from explorec.data.obd import fetch_obd, load_bts_prior, load_obd
from explorec.data.synthetic import generate
from explorec.errors import DataError


# ---------------------------------------------------------------- ML-100K (RecBole wheel)
def test_ml100k_interactions(ml100k):
    inter = ml100k.interactions
    assert isinstance(ml100k, Dataset) and ml100k.name == "ml-100k"
    assert (inter.n_users, inter.n_items, len(inter)) == (943, 1682, 100_000)
    assert inter.describe()["users"] == 943 and inter.describe()["items"] == 1682
    assert sorted(np.unique(inter.rating).tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert inter.timestamp is not None and np.isfinite(inter.timestamp).all()
    assert inter.timestamp.min() > 8.7e8 and inter.timestamp.max() < 8.95e8  # 1997-09..1998-04
    assert inter.matrix().nnz == 100_000  # no duplicate pairs
    assert inter.matrix(binary=False).sum() == pytest.approx(float(inter.rating.sum()))


def test_ml100k_catalog(ml100k):
    cat = ml100k.catalog
    assert len(cat) == 1682
    assert {"title", "year", "genres"} <= set(cat.columns)
    toy = cat.frame.loc["1"]
    assert toy["title"] == "Toy Story" and toy["year"] == "1995"
    assert "Animation" in toy["genres"]
    [text] = cat.texts(IdMap.from_values(["1"]))
    assert "Toy Story" in text and "1995" in text and "Animation" in text
    texts = cat.texts(ml100k.interactions.items)
    assert len(texts) == 1682 and all(texts)
    assert set().union(*cat.frame["genres"]) <= set(GENRES)


def test_ml100k_user_table(ml100k):
    users = ml100k.users
    assert len(users) == 943
    assert list(users.frame.columns) == ["age", "gender", "occupation", "zip"]
    assert set(users.frame["gender"]) == {"M", "F"}
    assert set(users.frame.index) == set(ml100k.interactions.users.ids)


def test_ml100k_knowledge_graph(ml100k):
    kg = ml100k.kg
    assert len(kg.triples) > 90_000
    assert {"head", "relation", "tail"} <= set(kg.triples.columns)
    assert len(kg.links) == pytest.approx(1598, abs=5)
    assert {"item", "entity"} <= set(kg.links.columns)
    assert set(kg.links["item"]) <= set(ml100k.interactions.items.ids)


def test_ml100k_info(ml100k):
    info = ml100k.info()
    assert info["rating_min"] == 1.0 and info["rating_max"] == 5.0
    assert info["kg_links"] == len(ml100k.kg.links)


# ---------------------------------------------------------------- GroupLens archive layout
U_DATA = "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t878542960\n2\t3\t1\t876893119\n" \
         "3\t4\t2\t889751712\n3\t267\t3\t875071561\n"
_T = "http://us.imdb.com/M/title-exact?x"


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in GENRES)


_TOY = _flags("Animation", "Children's", "Comedy")
U_ITEM_LINES = [
    f"1|Toy Story (1995)|01-Jan-1995||{_T}|{_TOY}",
    f"2|Mis\u00e9rables, Les (1995)|01-Jan-1995||{_T}|{_flags('Drama', 'Musical')}",
    f"3|Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)|01-Jan-1995||{_T}|"
    f"{_flags('Drama')}",
    f"4|Usual Suspects, The (1995)|14-Aug-1995||{_T}|{_flags('Crime', 'Thriller')}",
    f"267|unknown||||{_flags('unknown')}",
]
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"
U_GENRE = "".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)) + "\n"


def grouplens_files(**override: str | bytes | None) -> dict[str, bytes]:
    files: dict[str, str | bytes | None] = {
        "u.data": U_DATA,
        "u.item": ("\n".join(U_ITEM_LINES) + "\n").encode("latin-1"),
        "u.user": U_USER,
        "u.genre": U_GENRE,
        "README": "MovieLens 100K (test fixture)\n",
        **override,
    }
    return {k: v.encode("latin-1") if isinstance(v, str) else v
            for k, v in files.items() if v is not None}


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/", "")
        for name, data in files.items():
            zf.writestr(f"ml-100k/{name}", data)
    return path


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    d = root / "ml-100k"
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def check_grouplens(ds: Dataset, ml100k: Dataset) -> None:
    assert isinstance(ds, Dataset)
    assert isinstance(ds.interactions, Interactions)
    assert isinstance(ds.catalog, ItemCatalog) and isinstance(ds.users, UserTable)
    inter = ds.interactions
    assert (inter.n_users, inter.n_items, len(inter)) == (3, 5, 6)
    frame = inter.to_frame()
    assert frame.iloc[0].tolist() == ["1", "1", 5.0, 874965758.0]
    assert inter.rating.dtype == ml100k.interactions.rating.dtype

    cat = ds.catalog.frame
    assert list(cat.columns) == list(ml100k.catalog.frame.columns)
    assert list(cat.index) == ["1", "2", "3", "4", "267"]
    assert cat.loc["1", "title"] == "Toy Story"
    assert cat.loc["1", "year"] == "1995"
    assert cat.loc["1", "genres"] == ["Animation", "Children's", "Comedy"]
    assert cat.loc["2", "title"] == "Mis\u00e9rables, Les"  # latin-1 decoded
    assert cat.loc["3", "title"] == "Shanghai Triad (Yao a yao yao dao waipo qiao)"
    assert cat.loc["4", "title"] == "Usual Suspects, The"
    assert cat.loc["267", "title"] == "unknown" and cat.loc["267", "year"] == ""
    [text] = ds.catalog.texts(IdMap.from_values(["1"]))
    assert text == ml100k.catalog.texts(IdMap.from_values(["1"]))[0]

    assert list(ds.users.frame.columns) == list(ml100k.users.frame.columns)
    assert ds.users.frame.loc["2"].tolist() == ["53", "F", "other", "94043"]


def test_grouplens_zip(tmp_path, ml100k):
    z = make_zip(tmp_path / "ml-100k.zip", grouplens_files())
    check_grouplens(load_dataset(str(z)), ml100k)
    check_grouplens(load_grouplens_100k(z), ml100k)


def test_grouplens_extracted_folder(tmp_path, ml100k):
    d = make_folder(tmp_path, grouplens_files())
    check_grouplens(load_dataset(str(d)), ml100k)
    check_grouplens(load_dataset(str(tmp_path)), ml100k)  # the folder above works too


def test_grouplens_without_optional_files(tmp_path):
    z = make_zip(tmp_path / "ml-100k.zip", grouplens_files(**{"u.user": None, "u.genre": None}))
    ds = load_grouplens_100k(z)
    assert ds.users is None
    assert ds.catalog.frame.loc["1", "genres"] == ["Animation", "Children's", "Comedy"]


def test_grouplens_zip_without_u_data(tmp_path):
    z = make_zip(tmp_path / "ml-100k.zip", grouplens_files(**{"u.data": None}))
    with pytest.raises(DataError, match=r"u\.data") as ei:
        load_dataset(str(z))
    assert str(z) in str(ei.value)


def test_grouplens_not_a_zip(tmp_path):
    z = tmp_path / "ml-100k.zip"
    z.write_text("not a zip")
    with pytest.raises(DataError) as ei:
        load_dataset(str(z))
    assert str(z) in str(ei.value)


def test_grouplens_empty_member(tmp_path):
    z = make_zip(tmp_path / "ml-100k.zip", grouplens_files(**{"u.data": ""}))
    with pytest.raises(DataError, match="empty") as ei:
        load_grouplens_100k(z)
    assert f"{z}:ml-100k/u.data" in str(ei.value)


def test_grouplens_bad_rating_names_member_column_row(tmp_path):
    bad = U_DATA.replace("2\t3\t1\t", "2\t3\tx\t")
    z = make_zip(tmp_path / "ml-100k.zip", grouplens_files(**{"u.data": bad}))
    with pytest.raises(DataError) as ei:
        load_grouplens_100k(z)
    msg = str(ei.value)
    assert f"{z}:ml-100k/u.data" in msg and "column 'rating'" in msg and "row 4" in msg


def test_grouplens_bad_genre_flag(tmp_path):
    lines = [*U_ITEM_LINES[:-1], U_ITEM_LINES[-1][:-1] + "x"]
    z = make_zip(tmp_path / "ml-100k.zip",
                 grouplens_files(**{"u.item": "\n".join(lines) + "\n"}))
    with pytest.raises(DataError) as ei:
        load_grouplens_100k(z)
    assert "u.item" in str(ei.value) and "Western" in str(ei.value)


def test_grouplens_short_u_item_row(tmp_path):
    lines = [U_ITEM_LINES[0][: U_ITEM_LINES[0].rfind("|")], *U_ITEM_LINES[1:]]  # 23 fields
    z = make_zip(tmp_path / "ml-100k.zip",
                 grouplens_files(**{"u.item": "\n".join(lines) + "\n"}))
    with pytest.raises(DataError, match=r"u\.item"):
        load_grouplens_100k(z)


# ---------------------------------------------------------------- Open Bandit Dataset
@pytest.fixture(scope="module")
def obd_root() -> Path:
    return fetch_obd()


@pytest.fixture(scope="module")
def obd_all(obd_root):
    return {b: load_obd(b, "all") for b in ("random", "bts")}


def test_obd_all_campaign(obd_all):
    rnd, bts = obd_all["random"], obd_all["bts"]
    for log in (rnd, bts):
        assert len(log) == 10_000
        assert log.n_actions == 80 and log.n_positions == 3
        assert set(np.unique(log.position).tolist()) == {0, 1, 2}
        assert log.action.min() >= 0 and log.action.max() < 80
        assert set(np.unique(log.reward).tolist()) <= {0.0, 1.0}
        assert ((log.pscore > 0) & (log.pscore <= 1)).all()
        assert len(log.timestamp) == 10_000 and np.isfinite(log.timestamp).all()
        assert log.context.shape[0] == 10_000
        assert len(log.item_context) == 80 and log.item_features.shape[0] == 80
    assert rnd.ctr == pytest.approx(0.0038)
    assert bts.ctr == pytest.approx(0.0042)
    assert rnd.context.shape[1] == bts.context.shape[1]  # aligned categories
    assert rnd.context_names == bts.context_names
    np.testing.assert_allclose(rnd.pscore, 1 / 80)
    assert bts.pscore.std() > 0
    info = rnd.info()
    assert info["rows"] == 10_000 and info["clicks"] == 38 and info["context_dim"] == 22


@pytest.mark.parametrize(("campaign", "n_actions"), [("men", 34), ("women", 46)])
def test_obd_men_women(campaign, n_actions):
    rnd, bts = load_obd("random", campaign), load_obd("bts", campaign)
    for log in (rnd, bts):
        assert len(log) == 10_000 and log.n_actions == n_actions and log.n_positions == 3
    assert rnd.context.shape[1] == bts.context.shape[1]
    np.testing.assert_allclose(rnd.pscore, 1 / n_actions)


def test_obd_bts_prior():
    alpha, beta = load_bts_prior("all")
    assert alpha.shape == beta.shape == (80,)
    assert (alpha > 0).all() and (beta > 0).all()


def test_obd_unknown_behavior_or_campaign():
    with pytest.raises(DataError, match="unknown behavior"):
        load_obd("greedy", "all")
    with pytest.raises(DataError, match="unknown campaign"):
        load_obd("random", "kids")


def test_obd_full_archive_layout(tmp_path, obd_root, obd_all):
    for b in ("random", "bts"):
        shutil.copytree(obd_root / b / "all", tmp_path / b / "all")
    shutil.copy(obd_root / "prior_bts.yaml", tmp_path / "prior_bts.yaml")
    for b in ("random", "bts"):
        log = load_obd(b, "all", root=tmp_path)
        ref = obd_all[b]
        assert log.source == str(tmp_path / b / "all" / "all.csv")
        for name in ("action", "position", "reward", "pscore", "context", "timestamp"):
            np.testing.assert_array_equal(getattr(log, name), getattr(ref, name))
        assert log.context_names == ref.context_names
    alpha, beta = load_bts_prior("all", root=tmp_path)
    np.testing.assert_array_equal(alpha, load_bts_prior("all")[0])
    assert len(beta) == 80


def test_obd_single_behavior_root_without_align(tmp_path, obd_root):
    shutil.copytree(obd_root / "random" / "all", tmp_path / "random" / "all")
    log = load_obd("random", "all", root=tmp_path)
    assert len(log) == 10_000 and log.context.shape[1] > 0


def test_obd_missing_log_file(tmp_path):
    with pytest.raises(DataError, match="not found") as ei:
        load_obd("random", "all", root=tmp_path)
    assert str(tmp_path / "random" / "all" / "all.csv") in str(ei.value)


def _edit_obd(root: Path, src: Path, column: str, data_row: int, value: str) -> Path:
    """Copy random/all into ``root`` with one cell changed (data_row is 1-based)."""
    shutil.copytree(src / "random" / "all", root / "random" / "all")
    path = root / "random" / "all" / "all.csv"
    lines = path.read_text().splitlines()
    k = lines[0].split(",").index(column)
    fields = lines[data_row].split(",")
    fields[k] = value
    lines[data_row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("column", "value", "row"), [
    ("click", "2", 5),
    ("click", "-1", 1),
    ("click", "yes", 9),
    ("propensity_score", "0", 7),
    ("propensity_score", "1.5", 3),
    ("propensity_score", "", 10_000),
    ("item_id", "abc", 2),
    ("position", "1.5", 4),
    ("timestamp", "not a time", 6),
])
def test_obd_bad_cell_names_column_and_row(tmp_path, obd_root, column, value, row):
    path = _edit_obd(tmp_path, obd_root, column, row, value)
    with pytest.raises(DataError) as ei:
        load_obd("random", "all", root=tmp_path)
    msg = str(ei.value)
    assert str(path) in msg and f"column '{column}'" in msg and f"row {row}" in msg, msg


def test_obd_missing_column(tmp_path, obd_root):
    shutil.copytree(obd_root / "random" / "all", tmp_path / "random" / "all")
    path = tmp_path / "random" / "all" / "all.csv"
    df = pd.read_csv(path, index_col=0, dtype=str)
    df.drop(columns=["propensity_score"]).to_csv(path)
    with pytest.raises(DataError) as ei:
        load_obd("random", "all", root=tmp_path)
    assert str(path) in str(ei.value) and "'propensity_score'" in str(ei.value)


def test_obd_malformed_other_log_for_alignment(tmp_path, obd_root):
    for b in ("random", "bts"):
        shutil.copytree(obd_root / b / "all", tmp_path / b / "all")
    other = tmp_path / "bts" / "all" / "all.csv"
    pd.read_csv(other, index_col=0, dtype=str).drop(columns=["user_feature_3"]).to_csv(other)
    with pytest.raises(DataError) as ei:
        load_obd("random", "all", root=tmp_path)
    assert str(other) in str(ei.value) and "user_feature_3" in str(ei.value)


def test_obd_bad_item_context(tmp_path, obd_root):
    shutil.copytree(obd_root / "random" / "all", tmp_path / "random" / "all")
    path = tmp_path / "random" / "all" / "item_context.csv"
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "abc"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as ei:
        load_obd("random", "all", root=tmp_path)
    assert str(path) in str(ei.value) and "'item_id'" in str(ei.value)


# ---------------------------------------------------------------- synthetic generator
SIZES = {"n_users": 300, "n_items": 200, "n_interactions": 5000}


def _arrays(ds: Dataset) -> list[np.ndarray]:
    i = ds.interactions
    return [i.user, i.item, i.rating, i.timestamp]


def test_synthetic_same_seed_is_identical():
    a, b = generate(seed=7, **SIZES), generate(seed=7, **SIZES)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.catalog.texts() == b.catalog.texts()


def test_synthetic_other_seed_differs():
    a, b = generate(seed=7, **SIZES), generate(seed=8, **SIZES)
    assert not np.array_equal(a.interactions.item, b.interactions.item)
    assert not np.array_equal(a.interactions.user, b.interactions.user)


@pytest.mark.parametrize("sizes", [SIZES, {"n_users": 50, "n_items": 40, "n_interactions": 600}])
def test_synthetic_sizes_and_validity(sizes):
    inter = generate(seed=1, **sizes).interactions
    assert len(inter) == sizes["n_interactions"]
    assert inter.n_users == sizes["n_users"] and inter.n_items == sizes["n_items"]
    assert inter.matrix().nnz == len(inter)  # unique (user, item) pairs
    assert set(np.unique(inter.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert inter.timestamp is not None and np.isfinite(inter.timestamp).all()


def test_synthetic_popularity_is_skewed():
    inter = generate(seed=3, **SIZES).interactions
    counts = np.sort(np.bincount(inter.item, minlength=inter.n_items))[::-1]
    top = counts[: inter.n_items // 10].sum()
    assert top / counts.sum() > 0.30


def test_synthetic_catalog_texts():
    ds = generate(seed=3, **SIZES)
    texts = ds.catalog.texts(ds.interactions.items)
    assert len(texts) == SIZES["n_items"]
    assert all(isinstance(t, str) and len(t) > 10 for t in texts)
    assert all("Genres:" in t for t in texts)


def test_synthetic_through_registry():
    ds = load_dataset("synthetic", seed=7, **SIZES)
    np.testing.assert_array_equal(ds.interactions.item, generate(seed=7, **SIZES).interactions.item)


def test_synthetic_too_dense():
    with pytest.raises(ValueError, match="at most half"):
        generate(n_users=10, n_items=10, n_interactions=60)


# ---------------------------------------------------------------- splits on ML-100K
def _keys(inter: Interactions) -> np.ndarray:
    return inter.user.astype(np.int64) * inter.n_items + inter.item


def test_ratio_split_sizes_follow_recbole(ml100k, ml100k_ratio_split):
    full, sp = ml100k.interactions, ml100k_ratio_split
    n = np.bincount(full.user, minlength=full.n_users)
    assert n.min() >= 20  # so RecBole's bump for tiny users never applies here
    got = [np.bincount(p.user, minlength=full.n_users) for p in (sp.train, sp.valid, sp.test)]
    np.testing.assert_array_equal(got[1], n // 10)
    np.testing.assert_array_equal(got[2], n // 10)
    np.testing.assert_array_equal(got[0], n - 2 * (n // 10))


def test_ratio_split_is_a_partition(ml100k, ml100k_ratio_split):
    full, sp = ml100k.interactions, ml100k_ratio_split
    parts = [sp.train, sp.valid, sp.test]
    assert all(p.users is full.users and p.items is full.items for p in parts)
    keys = np.concatenate([_keys(p) for p in parts])
    assert len(keys) == len(full) and len(np.unique(keys)) == len(full)
    np.testing.assert_array_equal(np.sort(keys), np.sort(_keys(full)))
    assert sp.train.matrix().shape == sp.test.matrix().shape == (943, 1682)


def test_ratio_split_seeded(ml100k, ml100k_ratio_split):
    again = make_split(ml100k.interactions, "ratio", seed=2020)
    for part in ("train", "valid", "test"):
        np.testing.assert_array_equal(_keys(getattr(again, part)),
                                      _keys(getattr(ml100k_ratio_split, part)))
    other = make_split(ml100k.interactions, "ratio", seed=2021)
    assert not np.array_equal(np.sort(_keys(other.test)), np.sort(_keys(ml100k_ratio_split.test)))
    assert len(other.test) == len(ml100k_ratio_split.test)  # sizes do not depend on the seed


def test_loo_split(ml100k):
    full = ml100k.interactions
    sp = make_split(full, "loo", seed=2020)
    assert len(sp.test) == len(sp.valid) == 943
    assert len(sp.train) + len(sp.valid) + len(sp.test) == len(full)
    latest = pd.Series(full.timestamp).groupby(full.user).max()
    test_ts = pd.Series(sp.test.timestamp, index=sp.test.user).sort_index()
    np.testing.assert_array_equal(test_ts.index, np.arange(943))
    np.testing.assert_array_equal(test_ts.to_numpy(), latest.to_numpy())
    valid_ts = pd.Series(sp.valid.timestamp, index=sp.valid.user).sort_index()
    assert (valid_ts.to_numpy() <= test_ts.to_numpy()).all()
    train_max = pd.Series(sp.train.timestamp).groupby(sp.train.user).max()
    assert (train_max.to_numpy() <= valid_ts.to_numpy()).all()
    again = make_split(full, "loo", seed=2020)
    np.testing.assert_array_equal(_keys(again.test), _keys(sp.test))


def test_temporal_split(ml100k):
    full = ml100k.interactions
    sp = make_split(full, "temporal", seed=2020)
    assert (len(sp.train), len(sp.valid), len(sp.test)) == (80_000, 10_000, 10_000)
    assert sp.train.timestamp.max() <= sp.valid.timestamp.min()
    assert sp.valid.timestamp.max() <= sp.test.timestamp.min()
    assert sp.train.timestamp.max() <= sp.test.timestamp.min()
    keys = np.concatenate([_keys(p) for p in (sp.train, sp.valid, sp.test)])
    assert len(np.unique(keys)) == len(full)


def test_cold_item_split(ml100k):
    full = ml100k.interactions
    sp = make_split(full, "cold-items", seed=2020)
    assert len(sp.test_candidates) == round(0.2 * 1682) == 336
    assert len(sp.valid_candidates) == round(0.1 * 1682)
    train_items = set(sp.train.item.tolist())
    assert not train_items & set(sp.test.item.tolist())
    assert not train_items & set(sp.valid.item.tolist())
    assert set(sp.test.item.tolist()) <= set(sp.test_candidates.tolist())
    assert not set(sp.test_candidates.tolist()) & set(sp.valid_candidates.tolist())
    assert len(sp.train) + len(sp.valid) + len(sp.test) == len(full)
    assert sp.describe()["test_candidates"] == 336
    other = make_split(full, "cold-items", seed=2021)
    assert not np.array_equal(other.test_candidates, sp.test_candidates)


# ---------------------------------------------------------------- export
def test_export_split_round_trip(tmp_path, ml100k_ratio_split):
    sp = ml100k_ratio_split
    out = tmp_path / "export"
    written = export_split(sp, out, name="ml-100k")
    names = sorted(p.name for p in written)
    assert names == sorted(["train.csv", "valid.csv", "test.csv", "ml-100k.train.inter",
                            "ml-100k.valid.inter", "ml-100k.test.inter", "split.json"])
    assert sorted(p.name for p in out.iterdir()) == names  # no temp files left
    for part in ("train", "valid", "test"):
        orig = getattr(sp, part)
        back = load_atomic_interactions(out / f"ml-100k.{part}.inter")
        assert len(back) == len(orig)
        a = orig.to_frame().sort_values(["user", "item"]).reset_index(drop=True)
        b = back.to_frame().sort_values(["user", "item"]).reset_index(drop=True)
        assert a["user"].tolist() == b["user"].tolist()
        assert a["item"].tolist() == b["item"].tolist()
        np.testing.assert_allclose(a["rating"], b["rating"])
        np.testing.assert_allclose(a["timestamp"], b["timestamp"])
        csv = load_interactions(out / f"{part}.csv")
        assert len(csv) == len(orig)
    assert (out / "split.json").read_text().count('"seed": 2020') == 1


def test_export_ids_with_quote_and_backslash_round_trip(tmp_path):
    df = pd.DataFrame({"user": ['u"1', "u\\2", "u3"] * 4, "item": [f"i{k}" for k in range(12)],
                       "rating": 1.0, "timestamp": np.arange(12.0)})
    sp = make_split(Interactions.from_frame(df), "ratio", seed=1)
    export_split(sp, tmp_path, name="odd")
    back = load_atomic_interactions(tmp_path / "odd.train.inter")
    assert set(back.users.ids) == set(sp.train.to_frame()["user"])
