"""Side information: item catalog (text + features) and the user table."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorec.data.interactions import IdMap, Interactions
from explorec.errors import DataError

DEFAULT_ITEM_TEMPLATE = "{title} ({year}). Genres: {genres}."


@dataclass(frozen=True)
class ItemCatalog:
    """Item side information indexed by external item id (strings).

    ``frame`` has one row per item; ``text_fields`` are the columns a text template may use.
    """

    frame: pd.DataFrame
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not self.frame.index.is_unique:
            dup = self.frame.index[self.frame.index.duplicated()][0]
            raise DataError(f"duplicate item id {dup!r} in catalog", source=self.source)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, item_col: str = "item", source: str = "<frame>"
                   ) -> ItemCatalog:
        if item_col not in df.columns:
            raise DataError(f"missing column; found {list(map(str, df.columns))}", source=source,
                            column=item_col)
        ids = df[item_col].astype(str).str.strip()
        if ids.duplicated().any():
            row = int(np.flatnonzero(ids.duplicated().to_numpy())[0]) + 1
            raise DataError(f"duplicate item id {ids.iloc[row - 1]!r}", source=source,
                            column=item_col, row=row)
        frame = df.drop(columns=[item_col]).set_axis(pd.Index(ids, name="item"), axis=0)
        return cls(frame=frame, source=source)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def texts(self, item_ids: IdMap | None = None, template: str = DEFAULT_ITEM_TEMPLATE
              ) -> list[str]:
        """Item texts from a ``str.format`` template over catalog columns.

        List-valued cells are joined with ", ". Missing items or values give empty fields.
        """
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        missing = fields - set(self.frame.columns)
        if missing:
            raise DataError(f"template uses unknown fields {sorted(missing)}; "
                            f"catalog has {self.columns}", source=self.source)
        frame = self.frame if item_ids is None else self.frame.reindex(item_ids.ids)
        out = []
        for row in frame[sorted(fields)].itertuples(index=False):
            values = {f: _fmt(v) for f, v in zip(sorted(fields), row, strict=True)}
            out.append(re.sub(r"\s+", " ", template.format(**values)).strip())
        return out


def _fmt(v: object) -> str:
    if isinstance(v, list | tuple | np.ndarray):
        return ", ".join(map(str, v))
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v)


@dataclass(frozen=True)
class UserTable:
    """User side information (demographics, features) indexed by external user id."""

    frame: pd.DataFrame
    source: str = "<memory>"

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, user_col: str = "user", source: str = "<frame>"
                   ) -> UserTable:
        if user_col not in df.columns:
            raise DataError(f"missing column; found {list(map(str, df.columns))}", source=source,
                            column=user_col)
        ids = df[user_col].astype(str).str.strip()
        if ids.duplicated().any():
            row = int(np.flatnonzero(ids.duplicated().to_numpy())[0]) + 1
            raise DataError(f"duplicate user id {ids.iloc[row - 1]!r}", source=source,
                            column=user_col, row=row)
        return cls(frame=df.drop(columns=[user_col]).set_axis(pd.Index(ids, name="user"), axis=0),
                   source=source)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class KnowledgeGraph:
    """Knowledge-graph triples (head, relation, tail) and item -> entity links."""

    triples: pd.DataFrame
    links: pd.DataFrame

    def __len__(self) -> int:
        return len(self.triples)


@dataclass(frozen=True)
class Dataset:
    """What a dataset loader returns: interactions plus whatever side information exists."""

    name: str
    interactions: Interactions
    catalog: ItemCatalog | None = None
    users: UserTable | None = None
    kg: KnowledgeGraph | None = None

    def info(self) -> dict[str, object]:
        d: dict[str, object] = {"name": self.name, **self.interactions.describe()}
        if self.interactions.rating is not None:
            r = self.interactions.rating
            d["rating_min"] = float(r.min())
            d["rating_max"] = float(r.max())
        if self.interactions.timestamp is not None:
            t = self.interactions.timestamp
            d["time_min"] = pd.Timestamp(t.min(), unit="s").isoformat()
            d["time_max"] = pd.Timestamp(t.max(), unit="s").isoformat()
        d["catalog_items"] = len(self.catalog) if self.catalog is not None else 0
        d["catalog_fields"] = self.catalog.columns if self.catalog is not None else []
        d["user_table_rows"] = len(self.users) if self.users is not None else 0
        d["user_fields"] = list(self.users.frame.columns) if self.users is not None else []
        d["kg_triples"] = len(self.kg) if self.kg is not None else 0
        d["kg_links"] = len(self.kg.links) if self.kg is not None else 0
        return d

