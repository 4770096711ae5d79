"""Item vectors from catalog text: template -> texts -> cached encoder vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from explorec.data.catalog import DEFAULT_ITEM_TEMPLATE, ItemCatalog
from explorec.data.interactions import IdMap
from explorec.encoders.base import TextEncoder
from explorec.encoders.cache import encode_cached
from explorec.errors import DataError


def item_texts(items: IdMap, catalog: ItemCatalog | None, template: str = DEFAULT_ITEM_TEMPLATE
               ) -> list[str]:
    if catalog is None:
        raise DataError("this model needs item text: the dataset has no item catalog "
                        "(load one with explorec.data.load_catalog)")
    return catalog.texts(items, template)


def encode_items(items: IdMap, catalog: ItemCatalog | None, encoder: TextEncoder, *,
                 template: str = DEFAULT_ITEM_TEMPLATE, cache: bool = True,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(n_items, dim) L2-normalised vectors, in internal id order.

    Encoders with a ``fit`` method (TF-IDF) are fitted on the catalog's texts first.
    """
    texts = item_texts(items, catalog, template)
    fit = getattr(encoder, "fit", None)
    if callable(fit):
        fit(texts)
    return encode_cached(encoder, texts, cache=cache, progress=progress)
