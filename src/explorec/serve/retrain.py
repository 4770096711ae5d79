"""Retraining a service artifact from the store's log (``explorec retrain``).

The new artifact is fitted on the base artifact's training data plus every interaction the
store logged, with the base items plus those put through the API (minus deletions); with
``replay`` its policy starts from every logged reward, applied in order by a store-less
:class:`~explorec.serve.engine.Engine`. It is written once, atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from explorec.errors import ExploRecError
from explorec.serve.artifact import (
    DEFAULT_VECTOR_DIM,
    ServiceArtifact,
    build_artifact,
    load_service_artifact,
)
from explorec.serve.engine import Engine

if TYPE_CHECKING:
    from explorec.data.catalog import ItemCatalog
    from explorec.serve.stores import Store


def log_interactions(store: Store, base: ServiceArtifact) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Training rows (user, item, timestamp) = the base artifact's + the store's interactions,
    and the catalog (ids, texts) = the base items + items put through the API, minus deletions."""
    X = base.model.training_history().tocoo()
    users = base.model.user_ids()
    ids = list(base.item_ids)
    texts = list(base.texts)
    deleted: set[str] = set()
    for rec in store.items_since(0):
        if rec.deleted:
            deleted.add(rec.item)
            continue
        deleted.discard(rec.item)
        if rec.item in base.model.items_:
            texts[ids.index(rec.item)] = rec.text
        else:
            ids.append(rec.item)
            texts.append(rec.text)
    frames = [pd.DataFrame({"user": users[X.row], "item": np.asarray(ids, dtype=object)[X.col],
                            "timestamp": 0.0})]
    logged = [(r.user, r.item, r.ts) for r in store.iter_interactions()
              if not (r.kind == "rating" and r.value is not None and r.value <= 0)]
    if logged:
        frames.append(pd.DataFrame(logged, columns=["user", "item", "timestamp"]))
    df = pd.concat(frames, ignore_index=True)
    keep = [i for i in ids if i not in deleted]
    df = df[df["item"].isin(set(keep))]
    kept_texts = [t for i, t in zip(ids, texts, strict=True) if i not in deleted]
    return df, keep, kept_texts


def retrain_from_log(store: Store, output: str | Path, *, base: str | Path, model: str | None = None,
                     policy: str | None = None, catalog: ItemCatalog | None = None,
                     model_params: dict[str, Any] | None = None,
                     policy_params: dict[str, Any] | None = None, replay: bool = True,
                     progress: Callable[[str], None] | None = None) -> Path:
    """A new artifact trained on the base artifact's data plus every interaction in the store.

    With ``replay`` the new policy's initial state has learned from every logged reward (in
    order), so exploration resumes where the log left it.
    """
    from explorec.data.catalog import ItemCatalog
    from explorec.data.interactions import IdMap, Interactions

    b = load_service_artifact(base)
    df, ids, texts = log_interactions(store, b)
    if catalog is not None:  # an item file's texts replace the base's for the items it lists
        listed = IdMap.from_values(ids).ids.isin(catalog.frame.index)
        if not listed.any():
            raise ExploRecError(f"the item file {catalog.source} lists none of the artifact's "
                                f"{len(ids):,} items")
        new = catalog.texts(IdMap.from_values([i for i, ok in zip(ids, listed, strict=True) if ok]))
        it = iter(new)
        texts = [next(it) if ok else t for t, ok in zip(texts, listed, strict=True)]
    if df.empty:
        raise ExploRecError("no interactions to train on (base artifact and log are empty)")
    inter = Interactions.from_frame(df, rating_col=None, timestamp_col="timestamp",
                                    duplicates="first", items=IdMap.from_values(ids),
                                    source=f"{b.path} + {store.describe()}")
    catalog = ItemCatalog.from_frame(pd.DataFrame({"item": ids, "text": texts}), source="service log")
    catalog = catalog.with_template("{text}")
    mname = model or str(b.manifest["model"])
    mparams = model_params if model_params is not None else (
        dict(b.manifest.get("model_params", {})) if mname == b.manifest["model"] else {})

    def warm(art: ServiceArtifact) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        eng = Engine(art, store=None)
        n = eng.replay_log(store)
        if progress:
            progress(f"replayed {n} logged rewards into the new policy")
        return eng.policy.get_state(), {"replayed_rewards": n}

    return build_artifact(
        output, interactions=inter, catalog=catalog, model=mname, policy=policy or b.policy_name,
        texts=texts, template="{text}", encoder=b.encoder_name,
        vector_dim=int(b.manifest.get("vector_dim", DEFAULT_VECTOR_DIM)), model_params=mparams,
        policy_params=policy_params if policy_params is not None else (
            b.policy_params if (policy or b.policy_name) == b.policy_name else {}),
        seed=int(b.manifest.get("seed", 2020)), dataset=f"{b.manifest.get('dataset')} + log",
        policy_state=warm if replay else None,
        extra_meta={"retrained_from": {"artifact": b.artifact_id, "store": store.describe()}},
        progress=progress)
