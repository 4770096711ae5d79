"""Item vectors from catalog text: template -> texts -> cached encoder vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from explorec.data.catalog import ItemCatalog
from explorec.data.interactions import IdMap
from explorec.encoders.base import TextEncoder
from explorec.encoders.cache import encode_cached
from explorec.errors import DataError


def item_texts(items: IdMap, catalog: ItemCatalog | None, template: str | None = None
               ) -> list[str]:
    """The items' texts (``template`` None: the catalog's own, see
    :meth:`ItemCatalog.resolve_template`); one clear error when there is no catalog."""
    if catalog is None:
        raise DataError(NO_TEXT_MESSAGE)
    return catalog.texts(items, template)


NO_TEXT_MESSAGE = ("this needs item text, and the dataset has no item catalog: pass --items FILE "
                   "(with --item-columns and --template) on the command line, or catalog= / "
                   "explorec.data.load_catalog in Python")


def encode_items(items: IdMap, catalog: ItemCatalog | None, encoder: TextEncoder, *,
                 template: str | None = None, cache: bool = True,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(n_items, dim) L2-normalised vectors, in internal id order.

    Encoders with a ``fit`` method (TF-IDF) are fitted on the catalog's texts first.
    """
    texts = item_texts(items, catalog, template)
    fit = getattr(encoder, "fit", None)
    if callable(fit):
        fit(texts)
    return encode_cached(encoder, texts, cache=cache, progress=progress)
