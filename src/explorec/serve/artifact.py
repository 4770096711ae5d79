"""Service artifacts: a fitted model, the item catalog and vectors, and the policy, in one folder.

Layout (every part is a safe explorec artifact: JSON manifest + ``.npy`` arrays with sha256)::

    DIR/manifest.json   kind "service": model and policy names, encoder, parts with the sha256
                        of each part's manifest (so one hash pins the whole artifact)
    DIR/model/          the fitted Recommender (``Recommender.save``)
    DIR/items/          external ids, item texts, catalog columns, item vectors (LM vectors,
                        PCA-reduced to ``vector_dim``), the projection, the encoder's fitted state
    DIR/policy/         the policy's parameters and its initial state (``Policy.get_state``)

No pickle anywhere: loading verifies every sha256 and reads arrays with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec._io import atomic_directory, atomic_write_json, sha256_bytes, sha256_file
from explorec.artifacts import FORMAT_VERSION, MANIFEST, load_artifact, read_manifest, save_artifact
from explorec.errors import ArtifactError, ExploRecError

if TYPE_CHECKING:
    from explorec.data.catalog import Dataset, ItemCatalog
    from explorec.data.interactions import Interactions

DEFAULT_VECTOR_DIM = 64
_PCA_SAMPLE = 8192
_ENCODE_BATCH = 4096


# ------------------------------------------------------------------ projection
@dataclass(frozen=True)
class Projection:
    """PCA of the encoder's vectors: ``normalise((x - mean) @ components.T)``."""

    mean: np.ndarray
    components: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, dim: int, seed: int = 2020) -> Projection:
        """Top-``dim`` principal axes by randomized SVD (Halko et al. 2011), seeded."""
        X = np.asarray(X, np.float64)
        mean = X.mean(axis=0)
        C = X - mean
        k = min(dim + 10, *C.shape)
        Y = C @ np.random.default_rng(seed).standard_normal((C.shape[1], k))
        for _ in range(3):  # power iterations sharpen the spectrum
            Y, _ = np.linalg.qr(Y)
            Y = C @ (C.T @ Y)
        Q, _ = np.linalg.qr(Y)
        _, _, vt = np.linalg.svd(Q.T @ C, full_matrices=False)
        return cls(mean.astype(np.float32), vt[:dim].astype(np.float32))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        from explorec.encoders.base import l2_normalise

        return l2_normalise((np.asarray(X, np.float32) - self.mean) @ self.components.T)

    @property
    def digest(self) -> str:
        return sha256_bytes(self.mean.tobytes() + self.components.tobytes())[:12]


def _encoder(name: str, state: dict[str, np.ndarray] | None = None) -> Any:
    from explorec.encoders import get_encoder

    enc = get_encoder(name)
    if state and "idf" in state and hasattr(enc, "idf"):
        enc.idf = np.asarray(state["idf"], np.float32)
    return enc


def _encoder_state(enc: Any) -> dict[str, np.ndarray]:
    return {"idf": np.asarray(enc.idf, np.float32)} if hasattr(enc, "idf") else {}


# ------------------------------------------------------------------ the loaded artifact
@dataclass
class ServiceArtifact:
    """Everything a server needs, loaded and verified."""

    path: Path
    artifact_id: str
    manifest: dict[str, Any]
    model: Any
    item_ids: list[str]
    texts: list[str]
    item_vectors: np.ndarray
    encoder_name: str
    encoder_state: dict[str, np.ndarray]
    projection: Projection | None
    policy_name: str
    policy_params: dict[str, Any]
    policy_state: dict[str, np.ndarray]
    catalog: dict[str, list[str]] = field(default_factory=dict)
    _encoder: Any = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def space(self) -> str:
        """Identifies the vector space of :meth:`encode` (encoder, its fitted state, projection)."""
        state = b"".join(np.asarray(v).tobytes() for _, v in sorted(self.encoder_state.items()))
        return (f"{self.encoder_name}|{sha256_bytes(state)[:12]}|"
                f"{self.projection.digest if self.projection else 'full'}")

    def encoder(self) -> Any:
        if self._encoder is None:
            self._encoder = _encoder(self.encoder_name, self.encoder_state)
        return self._encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of new item texts, in the same space as :attr:`item_vectors`."""
        from explorec.encoders.base import l2_normalise

        v = np.asarray(self.encoder().encode(list(texts)), np.float32)
        return self.projection(v) if self.projection is not None else l2_normalise(v)

    def new_policy(self, *, initial_state: bool = True) -> Any:
        """A fresh policy prepared on the model and item vectors, with the artifact's state."""
        from explorec.explore import create_policy

        policy = create_policy(self.policy_name, **self.policy_params)
        policy.prepare(self.model, n_items=self.n_items, item_vectors=self.item_vectors)
        if initial_state and self.policy_state:
            policy.set_state({k: v.copy() for k, v in self.policy_state.items()})
        return policy


def load_service_artifact(path: str | Path) -> ServiceArtifact:
    """Load and verify a service artifact (every part's manifest and array sha256)."""
    from explorec.models.base import BaseRecommender

    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("kind") != "service":
        raise ArtifactError(f"{path} holds a {manifest.get('kind')!r} artifact, not a service "
                            "artifact (make one with `explorec train`)")
    parts = manifest.get("parts", {})
    for name in ("model", "items", "policy"):
        entry = parts.get(name)
        if not entry or entry.get("path") != name:
            raise ArtifactError(f"{path / MANIFEST}: part {name!r} missing")
        actual = sha256_file(path / name / MANIFEST)
        if actual != entry["manifest_sha256"]:
            raise ArtifactError(f"{path / name / MANIFEST}: sha256 {actual} does not match the "
                                f"service manifest ({entry['manifest_sha256']})")
    model = BaseRecommender.load(path / "model")
    items_meta, items = load_artifact(path / "items")
    _, policy_arrays = load_artifact(path / "policy")
    item_ids = [str(x) for x in np.asarray(items.pop("item_ids"))]
    if model.items_ is None or list(map(str, model.items_.ids)) != item_ids:
        raise ArtifactError(f"{path}: the model's items differ from the catalog's")
    projection = None
    if "proj_mean" in items:
        projection = Projection(np.asarray(items.pop("proj_mean")), np.asarray(items.pop("proj_components")))
    enc_state = {k[len("encoder."):]: np.asarray(v) for k, v in items.items() if k.startswith("encoder.")}
    catalog = {k[len("catalog."):]: [str(x) for x in np.asarray(v)] for k, v in items.items()
               if k.startswith("catalog.")}
    vectors = np.asarray(items["vectors"], np.float32)
    return ServiceArtifact(
        path=path, artifact_id=sha256_file(path / MANIFEST)[:20], manifest=manifest, model=model,
        item_ids=item_ids, texts=[str(t) for t in np.asarray(items["texts"])], item_vectors=vectors,
        encoder_name=str(items_meta["encoder"]), encoder_state=enc_state, projection=projection,
        policy_name=str(manifest["policy"]), policy_params=dict(manifest.get("policy_params", {})),
        policy_state={k: np.asarray(v) for k, v in policy_arrays.items()}, catalog=catalog)


# ------------------------------------------------------------------ building
def _item_vectors(model: Any, texts: list[str], encoder: str, vector_dim: int, seed: int,
                  progress: Callable[[str], None] | None
                  ) -> tuple[np.ndarray, str, dict[str, np.ndarray], Projection | None]:
    """(vectors, encoder name, encoder state, projection) for the catalog texts."""
    from explorec.models.base import TextItems

    text_vectors = model.text_item_vectors() if isinstance(model, TextItems) else None
    if text_vectors is not None:
        # a text model: reuse the LM vectors it was trained on and its encoder
        full = np.asarray(text_vectors, np.float32)
        enc_name, enc_state = model.text_encoder()
        enc = _encoder(enc_name, enc_state or None)
        encode: Callable[[list[str]], np.ndarray] | None = None
        dim_in = full.shape[1]
    else:
        full = None
        enc_name = encoder
        enc = _encoder(enc_name)
        if hasattr(enc, "fit"):
            enc.fit(texts)

        def encode(t: list[str]) -> np.ndarray:
            return np.asarray(enc.encode(t), np.float32)

        dim_in = int(enc.dim)
    if progress:
        progress(f"encode {len(texts)} item texts with {enc_name}")
    projection = None
    if vector_dim and vector_dim < dim_in:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(len(texts), min(len(texts), _PCA_SAMPLE), replace=False))
        X = full[sample] if full is not None else encode([texts[i] for i in sample])  # type: ignore[misc]
        projection = Projection.fit(X, min(vector_dim, len(sample) - 1 if len(sample) > 1 else 1), seed)
    out = []
    for s in range(0, len(texts), _ENCODE_BATCH):
        X = full[s:s + _ENCODE_BATCH] if full is not None else encode(texts[s:s + _ENCODE_BATCH])  # type: ignore[misc]
        if projection is not None:
            out.append(projection(X))
        else:
            from explorec.encoders.base import l2_normalise

            out.append(l2_normalise(X))
    vectors = np.vstack(out) if out else np.zeros((0, dim_in), np.float32)
    return vectors, enc_name, _encoder_state(enc), projection


def build_artifact(output: str | Path, *, interactions: Interactions, catalog: ItemCatalog | None,
                   model: str, policy: str, texts: list[str] | None = None,
                   template: str | None = None, encoder: str = "minilm",
                   vector_dim: int = DEFAULT_VECTOR_DIM, model_params: dict[str, Any] | None = None,
                   policy_params: dict[str, Any] | None = None, seed: int = 2020,
                   dataset: str = "<memory>",
                   policy_state: Callable[[ServiceArtifact], tuple[dict[str, np.ndarray], dict[str, Any]]]
                   | None = None, extra_meta: dict[str, Any] | None = None,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Fit ``model`` on ``interactions``, prepare ``policy`` and write a service artifact.

    Item texts come from ``texts`` or the ``catalog`` (its template, or ``template``). With
    neither, the item vectors are zeros (items are then known by their interactions only) and
    a policy that explores over item text (``needs_item_text``) is refused before fitting.
    """
    from explorec.encoders.items import NO_TEXT_MESSAGE
    from explorec.explore import create_policy, policy_class
    from explorec.models.registry import create_model

    model_params = dict(model_params or {})
    policy_params = dict(policy_params or {})
    has_text = texts is not None or catalog is not None
    if not has_text and getattr(policy_class(policy), "needs_item_text", False):
        raise ExploRecError(f"policy {policy!r} explores over item text vectors; "
                            + NO_TEXT_MESSAGE.replace("this needs item text, and", "but"))
    pol = create_policy(policy, **policy_params)  # checks the policy's parameters before fitting
    m = create_model(model, **model_params)
    if template is not None and "template" in m.get_params():
        m.set_params(template=template)
    if progress:
        progress(f"fit {model} on {len(interactions)} interactions")
    t0 = time.perf_counter()
    m.fit(interactions, catalog=catalog)
    fit_s = time.perf_counter() - t0
    from explorec.index import ANN_MIN_ITEMS

    if m.n_items >= ANN_MIN_ITEMS:  # factor models get an index for candidate generation
        if progress:
            progress(f"index {m.n_items:,} item vectors (auto)")
        m.build_index("auto")
    items = interactions.items
    if texts is None and catalog is not None:
        texts = catalog.texts(items, getattr(m, "template", None) or template)
    if texts is not None:
        vectors, enc_name, enc_state, projection = _item_vectors(m, texts, encoder, vector_dim,
                                                                 seed, progress)
    else:
        texts = [""] * len(items)
        dim = int(vector_dim) or int(_encoder(encoder).dim)
        vectors, enc_name, enc_state, projection = (np.zeros((len(items), dim), np.float32),
                                                     encoder, {}, None)
    if progress:
        progress(f"prepare policy {policy}")
    if hasattr(pol, "set_interests"):  # the novel-interest prior from the data's time order
        pol.set_interests(interactions=interactions)
    pol.prepare(m, n_items=len(items), item_vectors=vectors)
    state = pol.get_state()
    output = Path(output)
    with atomic_directory(output) as tmp:
        m.save(tmp / "model")
        item_arrays: dict[str, Any] = {"item_ids": np.asarray(items.ids, dtype=object),
                                       "texts": np.asarray(texts, dtype=object), "vectors": vectors}
        if projection is not None:
            item_arrays["proj_mean"] = projection.mean
            item_arrays["proj_components"] = projection.components
        for k, v in enc_state.items():
            item_arrays[f"encoder.{k}"] = v
        if catalog is not None:
            from explorec.data.catalog import format_cell

            frame = catalog.frame.reindex(items.ids)
            for col in frame.columns:
                item_arrays[f"catalog.{col}"] = np.asarray([format_cell(v) for v in frame[col]], dtype=object)
        save_artifact(tmp / "items", {"kind": "service-items", "encoder": enc_name,
                                      "vector_dim": int(vectors.shape[1])}, item_arrays)
        save_artifact(tmp / "policy", {"kind": "policy-state", "policy": policy,
                                       "params": policy_params}, state)
        parts = {name: {"path": name, "manifest_sha256": sha256_file(tmp / name / MANIFEST)}
                 for name in ("model", "items", "policy")}
        from explorec import __version__

        atomic_write_json(tmp / MANIFEST, {
            "format": "explorec-artifact", "format_version": FORMAT_VERSION,
            "explorec_version": __version__, "kind": "service", "dataset": dataset,
            "model": model, "model_params": model_params, "policy": policy,
            "policy_params": policy_params, "encoder": enc_name, "vector_dim": int(vectors.shape[1]),
            "n_items": len(items), "n_users": len(interactions.users),
            "n_interactions": len(interactions), "fit_seconds": fit_s, "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra_meta or {}), "parts": parts, "arrays": {}})
        if policy_state is not None:
            # a learned initial state (e.g. replayed rewards) replaces the prepared one before
            # the directory appears: the artifact is written once, complete
            learned, meta = policy_state(load_service_artifact(tmp))
            save_artifact(tmp / "policy", {"kind": "policy-state", "policy": policy,
                                           "params": policy_params}, learned)
            manifest = json.loads((tmp / MANIFEST).read_text())
            manifest["parts"]["policy"]["manifest_sha256"] = sha256_file(tmp / "policy" / MANIFEST)
            manifest.update(meta)
            atomic_write_json(tmp / MANIFEST, manifest)
    return output


def train_artifact(output: str | Path, *, dataset: str | Dataset = "ml-100k", model: str = "ease",
                   policy: str = "egreedy", encoder: str = "minilm",
                   vector_dim: int = DEFAULT_VECTOR_DIM, model_params: dict[str, Any] | None = None,
                   policy_params: dict[str, Any] | None = None, seed: int = 2020,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Train on every interaction of a dataset (no held-out part) and package for serving."""
    from explorec.data import load_dataset

    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if progress:
        progress(f"loaded {ds.name}: {len(ds.interactions)} interactions")
    return build_artifact(output, interactions=ds.interactions, catalog=ds.catalog, model=model,
                          policy=policy, encoder=encoder, vector_dim=vector_dim,
                          model_params=model_params, policy_params=policy_params, seed=seed,
                          dataset=ds.name, extra_meta={"columns": dict(ds.columns)},
                          progress=progress)
