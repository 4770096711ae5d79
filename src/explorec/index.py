"""Nearest-neighbour indexes over item vectors, by inner product: exact and HNSW (faiss).

Factor models score ``user_vector . item_vector``; above a few tens of thousands of items,
scoring the whole catalog for every user is the cost of a recommendation. An
:class:`HNSWIndex` (faiss ``IndexHNSWFlat``) answers the same top-k query approximately in
time that grows slowly with the catalog; :class:`ExactIndex` is the reference and the
fallback. :func:`recall_at_k` measures an approximate index against exact search — it is
measured, never assumed (``benchmarks/``).

Indexes are saved in the library's own format (``faiss.write_index``; exact vectors as
``.npy``) next to a JSON manifest with each file's sha256; :func:`load_index` checks it.

>>> import numpy as np
>>> V = np.eye(4, dtype=np.float32)
>>> ids, scores = ExactIndex(V).search(np.array([[0.0, 2.0, 1.0, 0.0]]), 2)
>>> ids.tolist(), scores.tolist()
([[1, 2]], [[2.0, 1.0]])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from explorec._io import atomic_path, atomic_write_text, sha256_file
from explorec.errors import ArtifactError, ExploRecError
from explorec.ranking import DEFAULT_SEED, check_k, topk

#: catalog size from which :func:`build_index` chooses HNSW over exact search by default
ANN_MIN_ITEMS = 50_000
MANIFEST = "index.json"


@runtime_checkable
class VectorIndex(Protocol):
    """Top-k items by inner product with a query vector."""

    kind: str
    n_items: int
    dim: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), both (n, min(k, n_items)), best first; ``-1``/``-inf`` where an
        approximate index found fewer."""
        ...

    def save(self, path: str | Path) -> Path: ...


def _queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if q.shape[1] != dim:
        raise ExploRecError(f"queries have {q.shape[1]} dimensions, the index {dim}")
    return q


def _vectors(vectors: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if v.ndim != 2 or v.shape[0] == 0:
        raise ExploRecError(f"item vectors must be a non-empty (items, dim) array, got {v.shape}")
    if not np.isfinite(v).all():
        raise ExploRecError("item vectors contain NaN or infinite values")
    return v


class ExactIndex:
    """Exact inner-product top-k, in query blocks of bounded memory (ties: seeded keys)."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray, seed: int = DEFAULT_SEED,
                 block_bytes: int = 256 * 2**20) -> None:
        self.vectors = _vectors(vectors)
        self.n_items, self.dim = self.vectors.shape
        self.seed = seed
        self.block_bytes = block_bytes

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = _queries(queries, self.dim)
        rows = max(1, self.block_bytes // (16 * self.n_items))
        ids, vals = [], []
        for s in range(0, len(q), rows):
            scores = q[s:s + rows] @ self.vectors.T
            top = topk(scores, k, rows=np.arange(s, s + len(scores)), seed=self.seed)
            ids.append(top)
            vals.append(np.take_along_axis(scores, top, axis=1).astype(np.float64))
        w = min(k, self.n_items)
        if not ids:
            return np.zeros((0, w), np.int64), np.zeros((0, w))
        return np.vstack(ids), np.vstack(vals)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "vectors.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, self.vectors, allow_pickle=False)
        _write_manifest(path, {"kind": self.kind, "seed": self.seed}, ["vectors.npy"])
        return path


class HNSWIndex:
    """Approximate inner-product search with faiss's HNSW graph (``IndexHNSWFlat``).

    ``m``: graph degree; ``ef_construction``: build-time beam; ``ef_search``: query-time beam
    (recall rises and speed falls with it). Needs ``faiss-cpu`` (``explorec[scale]``).
    """

    kind = "hnsw"

    def __init__(self, vectors: np.ndarray | None = None, m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128, *, _index: Any = None) -> None:
        faiss = _faiss()
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        if _index is None:
            v = _vectors(vectors)  # type: ignore[arg-type]
            index = faiss.IndexHNSWFlat(v.shape[1], self.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.add(v)
            _index = index
        _index.hnsw.efSearch = self.ef_search
        self.index = _index
        self.n_items, self.dim = int(_index.ntotal), int(_index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = _queries(queries, self.dim)
        w = min(k, self.n_items)
        if self.index.hnsw.efSearch < w:
            self.index.hnsw.efSearch = w  # the beam must hold k results
        scores, ids = self.index.search(q, w)
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores.astype(np.float64), -np.inf)
        return ids, scores

    def save(self, path: str | Path) -> Path:
        faiss = _faiss()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "index.faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        _write_manifest(path, {"kind": self.kind, "m": self.m,
                               "ef_construction": self.ef_construction,
                               "ef_search": self.ef_search}, ["index.faiss"])
        return path


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the HNSW index needs faiss: pip install 'explorec[scale]'") from e
    return faiss


def _write_manifest(path: Path, meta: dict[str, Any], files: list[str]) -> None:
    meta = {**meta, "files": {f: sha256_file(path / f) for f in files}}
    atomic_write_text(path / MANIFEST, json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_index(path: str | Path) -> ExactIndex | HNSWIndex:
    """Load an index saved by ``save``, after checking every file's sha256."""
    path = Path(path)
    try:
        meta = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not a valid index ({MANIFEST} unreadable)") from e
    for name, digest in meta.get("files", {}).items():
        f = path / name
        if not f.is_file() or sha256_file(f) != digest:
            raise ArtifactError(f"{f}: missing or its sha256 does not match {MANIFEST}")
    if meta.get("kind") == "exact":
        vectors = np.load(path / "vectors.npy", allow_pickle=False)
        return ExactIndex(vectors, seed=int(meta.get("seed", DEFAULT_SEED)))
    if meta.get("kind") == "hnsw":
        index = _faiss().read_index(str(path / "index.faiss"))
        return HNSWIndex(m=meta["m"], ef_construction=meta["ef_construction"],
                         ef_search=meta["ef_search"], _index=index)
    raise ArtifactError(f"{path}: unknown index kind {meta.get('kind')!r}")


def build_index(vectors: np.ndarray, kind: str = "auto", **params: Any) -> ExactIndex | HNSWIndex:
    """``"exact"``, ``"hnsw"``, or ``"auto"``: HNSW from :data:`ANN_MIN_ITEMS` items when faiss
    is installed, exact below (and without faiss)."""
    if kind == "auto":
        try:
            _faiss()
            kind = "hnsw" if len(vectors) >= ANN_MIN_ITEMS else "exact"
        except ImportError:
            kind = "exact"
    if kind == "exact":
        return ExactIndex(vectors, **params)
    if kind == "hnsw":
        return HNSWIndex(vectors, **params)
    raise ExploRecError(f"unknown index kind {kind!r}: use auto, exact or hnsw")


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of |approx ∩ exact| / |exact| (ids; ``-1`` entries ignored)."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"{approx.shape[0]} approximate rows for {exact.shape[0]} exact ones")
    hits, total = 0, 0
    for a, e in zip(approx, exact, strict=True):
        e = e[e >= 0]
        hits += np.isin(e, a[a >= 0]).sum()
        total += len(e)
    return float(hits / total) if total else 1.0


def recommend_from_index(index: VectorIndex, user_vectors: np.ndarray, k: int,
                         exclude: Any = None, item_bias: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items per user from an index, excluding each user's ``exclude`` row (CSR).

    Fetches ``k`` plus the user's number of excluded items, drops the excluded ones, keeps
    ``k``; a row that still has fewer than ``k`` (an approximate index can return fewer)
    is ``-1``/``-inf`` padded. ``item_bias`` is not supported by inner-product indexes: fold
    it into the vectors (``[v, b]`` with queries ``[u, 1]``) before building.
    """
    import scipy.sparse as sp

    if item_bias is not None:
        raise ExploRecError("fold item biases into the vectors before building the index")
    k = check_k(k)
    U = np.asarray(user_vectors, dtype=np.float32)
    n = len(U)
    ex = sp.csr_matrix(exclude) if exclude is not None else None
    n_ex = np.diff(ex.indptr) if ex is not None else np.zeros(n, dtype=np.int64)
    out_ids = np.full((n, k), -1, dtype=np.int64)
    out_scores = np.full((n, k), -np.inf)
    # users with the same over-fetch are searched together
    for fetch in np.unique(np.minimum(k + n_ex, index.n_items)):
        rows = np.flatnonzero(np.minimum(k + n_ex, index.n_items) == fetch)
        ids, scores = index.search(U[rows], int(fetch))
        if ex is not None:
            sub = ex[rows]
            r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
            keys = r.astype(np.int64) * index.n_items + sub.indices
            flat = np.arange(len(rows), dtype=np.int64)[:, None] * index.n_items + ids
            drop = np.isin(flat, keys) | (ids < 0)
            scores = np.where(drop, -np.inf, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(ids, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        ok = np.isfinite(scores)
        out_ids[rows, :ids.shape[1]] = np.where(ok, ids, -1)
        out_scores[rows, :ids.shape[1]] = np.where(ok, scores, -np.inf)
    return out_ids, out_scores
