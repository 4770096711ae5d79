"""MovieLens-100K: from RecBole's wheel (default) or the official GroupLens archive layout."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from explorec.data.catalog import Dataset, ItemCatalog, KnowledgeGraph, UserTable
from explorec.data.fetch import WheelSource, fetch_wheel_files
from explorec.data.interactions import Interactions
from explorec.data.readers import read_atomic, recbole_item_frame
from explorec.errors import DataError

_PREFIX = "recbole/dataset_example/ml-100k/"
RECBOLE_SOURCE = WheelSource(
    requirement="recbole==1.2.1",
    members={f"{_PREFIX}ml-100k.{ext}": f"ml-100k.{ext}"
             for ext in ("inter", "item", "user", "kg", "link")},
    sha256={
        "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        "ml-100k.kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
        "ml-100k.link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
    },
)

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def fetch_ml100k(*, wheel: str | Path | None = None, force: bool = False) -> Path:
    return fetch_wheel_files("ml-100k", RECBOLE_SOURCE, wheel=wheel, force=force)


def load_ml100k(directory: str | Path | None = None) -> Dataset:
    """Load ML-100K from RecBole atomic files (fetched into the cache when ``directory`` is None)."""
    d = Path(directory) if directory is not None else fetch_ml100k()
    inter, _ = read_atomic(d / "ml-100k.inter")
    interactions = Interactions.from_frame(
        inter, user_col="user_id", item_col="item_id", rating_col="rating",
        timestamp_col="timestamp", source=str(d / "ml-100k.inter"),
    )
    item, _ = read_atomic(d / "ml-100k.item")
    item = recbole_item_frame(item)
    catalog = ItemCatalog.from_frame(item, item_col="item_id", source=str(d / "ml-100k.item"))
    user, _ = read_atomic(d / "ml-100k.user")
    users = UserTable.from_frame(user.rename(columns={"zip_code": "zip"}), user_col="user_id",
                                 source=str(d / "ml-100k.user"))
    kg = None
    if (d / "ml-100k.kg").exists():
        triples, _ = read_atomic(d / "ml-100k.kg")
        links, _ = read_atomic(d / "ml-100k.link")
        kg = KnowledgeGraph(
            triples=triples.rename(columns={"head_id": "head", "relation_id": "relation",
                                            "tail_id": "tail"}),
            links=links.rename(columns={"item_id": "item", "entity_id": "entity"}),
        )
    return Dataset(name="ml-100k", interactions=interactions, catalog=catalog, users=users, kg=kg)


# ---------------------------------------------------------------- GroupLens archive layout
def load_grouplens_100k(archive: str | Path) -> Dataset:
    """Parse the official GroupLens ``ml-100k.zip`` (or its extracted folder).

    Reads ``u.data`` (tab: user, item, rating, timestamp), ``u.item`` (pipe, latin-1: id,
    "Title (Year)", release date, video date, URL, 19 genre flags) and ``u.user`` (pipe: id,
    age, gender, occupation, zip) into the same objects as :func:`load_ml100k`.
    """
    archive = Path(archive)
    files = _GroupLensFiles(archive)
    data = files.read("u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    interactions = Interactions.from_frame(data, source=files.name("u.data"))

    genre_names = GENRES
    if files.has("u.genre"):
        g = files.read("u.genre", sep="|", names=["genre", "idx"]).dropna()
        genre_names = list(g.sort_values("idx", key=lambda s: s.astype(int))["genre"])
    cols = ["item", "raw_title", "release_date", "video_release_date", "url", *genre_names]
    files.check_fields("u.item", "|", len(cols))
    item = files.read("u.item", sep="|", names=cols)
    parsed = item["raw_title"].fillna("").str.extract(r"^(?P<title>.*?)\s*(?:\((?P<year>\d{4})\))?\s*$")
    flag_frame = item[genre_names].fillna("0").apply(pd.to_numeric, errors="coerce")
    bad = ~flag_frame.isin([0, 1])
    if bad.to_numpy().any():
        r, c = (int(x[0]) for x in np.nonzero(bad.to_numpy()))
        raise DataError(f"genre flag must be 0 or 1, got {item[genre_names[c]].iloc[r]!r}",
                        source=files.name("u.item"), column=genre_names[c], row=r + 1)
    flags = flag_frame.to_numpy().astype(bool)
    names = np.asarray(genre_names, dtype=object)
    catalog_frame = pd.DataFrame({
        "item": item["item"],
        "title": parsed["title"].map(_fix_article),
        "year": parsed["year"].fillna(""),
        "genres": [list(names[row]) for row in flags],
    })
    catalog = ItemCatalog.from_frame(catalog_frame, source=files.name("u.item"))
    users = None
    if files.has("u.user"):
        u = files.read("u.user", sep="|", names=["user", "age", "gender", "occupation", "zip"])
        users = UserTable.from_frame(u, source=files.name("u.user"))
    return Dataset(name="ml-100k", interactions=interactions, catalog=catalog, users=users)


def _fix_article(title: str) -> str:
    """'Usual Suspects, The' stays as GroupLens wrote it; only whitespace is normalised."""
    return re.sub(r"\s+", " ", title).strip()


class _GroupLensFiles:
    """Read members of a GroupLens archive, zipped (``ml-100k/u.data``) or extracted."""

    def __init__(self, archive: Path) -> None:
        if not archive.exists():
            raise DataError("archive not found", source=archive)
        self.archive = archive
        self.zip: zipfile.ZipFile | None = None
        self.members: dict[str, str] = {}
        if archive.is_dir():
            for p in archive.rglob("u.*"):
                self.members.setdefault(p.name, str(p))
        else:
            try:
                self.zip = zipfile.ZipFile(archive)
            except zipfile.BadZipFile as e:
                raise DataError(f"not a zip archive: {e}", source=archive) from e
            for m in self.zip.namelist():
                self.members.setdefault(Path(m).name, m)
        if "u.data" not in self.members or "u.item" not in self.members:
            raise DataError("not a GroupLens ml-100k archive: u.data and u.item are required",
                            source=archive)

    def has(self, fname: str) -> bool:
        return fname in self.members

    def name(self, fname: str) -> str:
        return f"{self.archive}:{self.members[fname]}" if self.zip else self.members[fname]

    def raw(self, fname: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(self.members[fname])
        return Path(self.members[fname]).read_bytes()

    def check_fields(self, fname: str, sep: str, n_fields: int) -> None:
        """Every non-empty line must have exactly ``n_fields`` fields."""
        for i, line in enumerate(self.raw(fname).decode("latin-1").splitlines(), start=1):
            if line.strip() and line.count(sep) != n_fields - 1:
                raise DataError(f"expected {n_fields} {sep!r}-separated fields, found "
                                f"{line.count(sep) + 1}", source=self.name(fname), row=i)

    def read(self, fname: str, *, sep: str, names: list[str]) -> pd.DataFrame:
        raw = self.raw(fname)
        if not raw.strip():
            raise DataError("empty file", source=self.name(fname))
        try:
            return pd.read_csv(io.BytesIO(raw), sep=sep, names=names, header=None, dtype=str,
                               encoding="latin-1", quoting=3, keep_default_na=False,
                               na_values=[""], index_col=False)
        except (pd.errors.ParserError, ValueError) as e:
            raise DataError(f"cannot parse: {e}", source=self.name(fname)) from e
