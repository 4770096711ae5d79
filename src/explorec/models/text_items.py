"""Shared by models that read item text: encoding the catalog and adding items by text."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from explorec.data.interactions import IdMap
from explorec.errors import ExploRecError

#: resident memory of a loaded sentence-transformer encoder with torch (MiniLM, measured ~0.5 GB)
ENCODER_BYTES = 600 * 2**20


class TextItemsMixin:
    """Needs ``encoder`` and ``template`` parameters; keeps ``item_texts_vectors_`` (LM space).

    ``add_items`` makes new items rankable from their text alone, without retraining.
    """

    encoder: str
    template: str
    item_text_vectors_: np.ndarray | None
    items_: IdMap | None
    user_items_: sp.csr_matrix | None

    def _encoder(self):  # type: ignore[no-untyped-def]
        from explorec.encoders import get_encoder

        enc = getattr(self, "_encoder_obj", None)
        if enc is None:
            enc = get_encoder(self.encoder)
            if hasattr(enc, "fit") and getattr(self, "tfidf_idf_", None) is not None:
                enc.idf = self.tfidf_idf_
            self._encoder_obj = enc
        return enc

    def _encode_catalog(self) -> np.ndarray:
        from explorec.encoders.items import encode_items

        inputs = self._inputs  # type: ignore[attr-defined]
        enc = self._encoder()
        vecs = encode_items(inputs.train.items, inputs.catalog, enc, template=self.template)
        if hasattr(enc, "idf"):
            self.tfidf_idf_ = enc.idf
        return vecs

    def text_item_vectors(self) -> np.ndarray | None:
        """The LM vectors of the training items' texts (None before fit)."""
        return self.item_text_vectors_

    def text_encoder(self) -> tuple[str, dict[str, np.ndarray]]:
        """(encoder name, its fitted state: TF-IDF's ``idf`` where it has one), to rebuild
        the encoder this model read its items with."""
        idf = getattr(self, "tfidf_idf_", None)
        return str(self.encoder), ({"idf": np.asarray(idf)} if idf is not None else {})

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """LM vectors of raw texts, with the encoder this model was trained with."""
        from explorec.encoders.cache import encode_cached

        return encode_cached(self._encoder(), list(texts))

    def _vectors_from_text(self, lm_vectors: np.ndarray) -> np.ndarray:
        """Map LM vectors into the model's item space (identity for content models)."""
        return lm_vectors

    def add_items(self, item_ids: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Add (or re-text) items known only by text; returns their internal ids."""
        if self.items_ is None or self.user_items_ is None:
            raise ExploRecError("fit the model before adding items")
        if len(item_ids) != len(texts):
            raise ExploRecError(f"{len(item_ids)} item ids but {len(texts)} texts")
        ids = [str(i) for i in item_ids]
        seen: set[str] = set()
        for n, (i, t) in enumerate(zip(ids, texts, strict=True)):
            if item_ids[n] is None or not i.strip():
                raise ExploRecError(f"item_ids[{n}]: empty or missing item id")
            if i in seen:
                raise ExploRecError(f"item_ids[{n}]: item {i!r} appears twice in one call")
            seen.add(i)
            if t is None or not isinstance(t, str) or not t.strip():
                raise ExploRecError(f"texts[{n}] (item {i!r}): empty or missing text; an item "
                                    "added by text needs some text to be ranked by")
        lm = self.encode_texts(texts)
        existing = self.items_.ids.get_indexer(ids)
        new_ids = [i for i, e in zip(ids, existing, strict=True) if e < 0]
        if new_ids:
            n_old = len(self.items_)
            self.items_ = IdMap(pd.Index(list(self.items_.ids) + list(dict.fromkeys(new_ids)),
                                         dtype=object))
            self.user_items_ = sp.csr_matrix(
                (self.user_items_.data, self.user_items_.indices, self.user_items_.indptr),
                shape=(self.user_items_.shape[0], len(self.items_)))
            self._grow_items(len(self.items_) - n_old)
        internal = self.items_.ids.get_indexer(ids)
        assert self.item_text_vectors_ is not None
        self.item_text_vectors_[internal] = lm
        self._set_item_vectors(internal, self._vectors_from_text(lm))
        return internal

    def _grow_items(self, n_new: int) -> None:
        assert self.item_text_vectors_ is not None
        pad = np.zeros((n_new, self.item_text_vectors_.shape[1]), dtype=np.float32)
        self.item_text_vectors_ = np.vstack([self.item_text_vectors_, pad])

    def _set_item_vectors(self, internal: np.ndarray, vectors: np.ndarray) -> None:
        """Store item-space vectors for these items (models override)."""

    # A fitted TF-IDF encoder's IDF weights travel with the model, so that texts added after
    # loading land in the same space as the catalog's vectors.
    def _state(self) -> dict:
        state = super()._state()  # type: ignore[misc]
        if getattr(self, "tfidf_idf_", None) is not None:
            state["tfidf_idf_"] = self.tfidf_idf_
        return state

    def _set_state(self, arrays: dict) -> None:
        super()._set_state(arrays)  # type: ignore[misc]
        if "tfidf_idf_" in arrays:
            self.tfidf_idf_ = arrays["tfidf_idf_"]
            self._encoder_obj = None
