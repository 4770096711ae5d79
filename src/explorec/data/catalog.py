"""Side information: item catalog (text + features) and the user table."""

from __future__ import annotations

import re
import string
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from explorec.data.interactions import IdMap, Interactions, clean_ids
from explorec.errors import DataError

DEFAULT_ITEM_TEMPLATE = "{title} ({year}). Genres: {genres}."


class CatalogCoverageWarning(UserWarning):
    """Some items have no row in the item catalog (their text is empty)."""


@dataclass(frozen=True)
class ItemCatalog:
    """Item side information indexed by external item id (strings).

    ``frame`` has one row per item; its columns are the fields a text ``template`` may use.
    ``template`` is this catalog's text template (``None``: :meth:`default_template`).
    """

    frame: pd.DataFrame
    source: str = "<memory>"
    template: str | None = None

    def __post_init__(self) -> None:
        if not self.frame.index.is_unique:
            dup = self.frame.index[self.frame.index.duplicated()][0]
            raise DataError(f"duplicate item id {dup!r} in catalog", source=self.source)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, item_col: str = "item", source: str = "<frame>",
                   max_id_length: int | None = None) -> ItemCatalog:
        if item_col not in df.columns:
            raise DataError(f"missing column; found {list(map(str, df.columns))}", source=source,
                            column=item_col)
        if not df.columns.is_unique:
            raise DataError("duplicate column name", source=source,
                            column=str(df.columns[df.columns.duplicated()][0]))
        ids = pd.Series(clean_ids(df[item_col], source=source, column=item_col,
                                  max_length=max_id_length), dtype=object)
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

    def with_template(self, template: str | None) -> ItemCatalog:
        """The same catalog with another text template (checked against the columns)."""
        if template is not None:
            self._check_template(template)
        return replace(self, template=template)

    def default_template(self) -> str:
        """The text template used when none is given: MovieLens' ``{title} ({year}). Genres:
        {genres}.`` when the catalog has those fields, ``{text}`` for a single text column,
        else every column joined with ". "."""
        cols = self.columns
        if {"title", "year", "genres"} <= set(cols):
            return DEFAULT_ITEM_TEMPLATE
        if "text" in cols:
            return "{text}"
        if not cols:
            raise DataError("the item catalog has no columns besides the item id, so there is "
                            "no item text", source=self.source)
        return ". ".join("{" + c + "}" for c in cols)

    def resolve_template(self, template: str | None = None) -> str:
        """``template``, else this catalog's own, else :meth:`default_template`."""
        return template or self.template or self.default_template()

    def _check_template(self, template: str) -> set[str]:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        except ValueError as e:
            raise DataError(f"bad text template {template!r}: {e}", source=self.source) from e
        missing = fields - set(self.frame.columns)
        if missing:
            raise DataError(f"template uses unknown fields {sorted(missing)}; "
                            f"catalog has {self.columns}", source=self.source)
        return fields

    def texts(self, item_ids: IdMap | None = None, template: str | None = None) -> list[str]:
        """Item texts from a ``str.format`` template over catalog columns (default:
        :meth:`resolve_template`).

        List-valued cells are joined with ", ". Missing values give empty fields; items with
        no row in the catalog get empty text and one :class:`CatalogCoverageWarning` with
        their count.
        """
        template = self.resolve_template(template)
        fields = self._check_template(template)
        frame = self.frame if item_ids is None else self.frame.reindex(item_ids.ids)
        if item_ids is not None:
            absent = int((~item_ids.ids.isin(self.frame.index)).sum())
            if absent:
                warnings.warn(f"{absent:,} of {len(item_ids):,} items have no row in the item "
                              f"catalog {self.source}; their text is empty",
                              CatalogCoverageWarning, stacklevel=2)
        out = []
        for row in frame[sorted(fields)].itertuples(index=False):
            values = {f: format_cell(v) for f, v in zip(sorted(fields), row, strict=True)}
            out.append(re.sub(r"\s+", " ", template.format(**values)).strip())
        return out


def format_cell(v: object) -> str:
    """A catalog cell as text: lists joined with ", ", missing values empty."""
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
    def from_frame(cls, df: pd.DataFrame, *, user_col: str = "user", source: str = "<frame>",
                   max_id_length: int | None = None) -> UserTable:
        if user_col not in df.columns:
            raise DataError(f"missing column; found {list(map(str, df.columns))}", source=source,
                            column=user_col)
        ids = pd.Series(clean_ids(df[user_col], source=source, column=user_col,
                                  max_length=max_id_length), dtype=object)
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
    #: the input's own column names for the user and item ids (outputs use them)
    columns: dict[str, str] = field(default_factory=lambda: {"user": "user", "item": "item"})

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

