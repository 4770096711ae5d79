"""Nearest-neighbour indexes over item vectors, by inner product: exact, IVF and HNSW.

Factor models score ``user_vector . item_vector``; above a few tens of thousands of items,
scoring the whole catalog for every user is the cost of a recommendation. Approximate
indexes answer the same top-k query while scanning a fraction of the catalog:

- :class:`HNSWIndex` (faiss ``IndexHNSWFlat``, the default) and :class:`HNSWLibIndex`
  (hnswlib, optional): a navigable small-world graph. Slower to build, high recall.
- :class:`IVFIndex` (faiss ``IndexIVFFlat``): items clustered by k-means, a query scans its
  ``nprobe`` nearest clusters. Fast to build; on factor vectors, whose norms vary with
  popularity, it needs many cells for good recall.

:class:`ExactIndex` is the reference and the fallback. :func:`recall_at_k` measures an
approximate index against exact search — it is measured, never assumed
(``benchmarks/scale.py``, ``benchmarks/results/scale.md``).

Indexes are saved in the library's own format (``faiss.write_index`` /
``hnswlib.Index.save_index``; exact vectors as ``.npy``) next to a JSON manifest with each
file's sha256; :func:`load_index` checks it. :meth:`to_bytes` / :func:`index_from_bytes` give
the same bytes for storage inside a model artifact (whose manifest holds their sha256).

>>> import numpy as np
>>> V = np.eye(4, dtype=np.float32)
>>> ids, scores = ExactIndex(V).search(np.array([[0.0, 2.0, 1.0, 0.0]]), 2)
>>> ids.tolist(), scores.tolist()
([[1, 2]], [[2.0, 1.0]])
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from explorec._io import atomic_path, atomic_write_text, sha256_file
from explorec._optional import require
from explorec.errors import ArtifactError, ExploRecError
from explorec.ranking import DEFAULT_SEED, check_k, topk

#: catalog size from which :func:`build_index` chooses HNSW over exact search by default
ANN_MIN_ITEMS = 50_000
#: catalog size from which batch ranking (``explorec recommend --index auto``) of a model
#: with exact factor scores goes through an index rather than
#: :func:`explorec.factor_topk.factor_top_items`. Measured over iALS vectors
#: (benchmarks/results/scale.md): at 100,000 items the pruned exact ranking took 0.076 ms a
#: query against HNSW's 0.19 at recall 0.95; at 1,000,000 items 1.41 ms against 0.42 at
#: recall 0.97. Exact stays the default up to about where the two cross (interpolated).
BATCH_ANN_MIN_ITEMS = 500_000
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

    def meta(self) -> dict[str, Any]:
        """Kind and parameters, enough for :func:`index_from_bytes` with :meth:`to_bytes`."""
        ...

    def to_bytes(self) -> np.ndarray:
        """The index in the library's native format, as a uint8 array."""
        ...


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
        _write_manifest(path, self.meta(), ["vectors.npy"])
        return path

    def meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "dim": self.dim}

    def to_bytes(self) -> np.ndarray:
        return np.frombuffer(np.ascontiguousarray(self.vectors).tobytes(), dtype=np.uint8)


class _FaissIndex(ABC):
    """Shared search, save and (de)serialisation of the faiss indexes."""

    kind = ""
    index: Any

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """The subclass's build and search parameters, for :meth:`meta`."""

    @abstractmethod
    def _tune(self, k: int) -> None:
        """Adjust the search beam for ``k`` results (HNSW's beam must hold them)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = _queries(queries, self.dim)
        w = min(k, self.n_items)
        self._tune(w)
        scores, ids = self.index.search(q, w)
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores.astype(np.float64), -np.inf)
        return ids, scores

    def meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, **self._params()}

    def to_bytes(self) -> np.ndarray:
        return np.asarray(_faiss().serialize_index(self.index), dtype=np.uint8)

    def save(self, path: str | Path) -> Path:
        faiss = _faiss()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "index.faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        _write_manifest(path, self.meta(), ["index.faiss"])
        return path

    # Dask sends models (and their index) to workers by pickle, in memory: faiss objects
    # travel as their native bytes. Nothing here is ever written to disk by pickle.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["index"] = self.to_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["index"] = _faiss().deserialize_index(state["index"])
        self.__dict__.update(state)


class HNSWIndex(_FaissIndex):
    """Approximate inner-product search with faiss's HNSW graph (``IndexHNSWFlat``).

    ``m``: graph degree; ``ef_construction``: build-time beam; ``ef_search``: query-time beam
    (recall rises and speed falls with it; raised to ``k`` when smaller). Needs ``faiss-cpu``
    (``explorec[scale]``).
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

    def _params(self) -> dict[str, Any]:
        return {"m": self.m, "ef_construction": self.ef_construction,
                "ef_search": self.ef_search}

    def _tune(self, k: int) -> None:
        self.index.hnsw.efSearch = max(self.ef_search, k)


class IVFIndex(_FaissIndex):
    """Approximate inner-product search over k-means cells (faiss ``IndexIVFFlat``).

    ``nlist``: cells (default ``4 sqrt(n)``, at most ``n / 39``, faiss's points per
    centroid); ``nprobe``: cells a query scans (default ``nlist / 8``, at least 16; recall
    rises and speed falls with it). k-means is seeded (``seed``): the same vectors give the
    same index. Needs ``faiss-cpu``.
    """

    kind = "ivf"

    def __init__(self, vectors: np.ndarray | None = None, nlist: int | None = None,
                 nprobe: int | None = None, seed: int = DEFAULT_SEED, *, _index: Any = None
                 ) -> None:
        faiss = _faiss()
        self.seed = int(seed)
        if _index is None:
            v = _vectors(vectors)  # type: ignore[arg-type]
            n = len(v)
            self.nlist = int(nlist) if nlist else max(1, min(n // 39, int(4 * np.sqrt(n))))
            if self.nlist < 1 or self.nlist > n:
                raise ExploRecError(f"ivf nlist must be in [1, {n}] for {n} items, got {nlist}")
            quantizer = faiss.IndexFlatIP(v.shape[1])
            index = faiss.IndexIVFFlat(quantizer, v.shape[1], self.nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = self.seed
            index.train(v)
            index.add(v)
            self._quantizer = quantizer  # keep it alive as long as the index
            _index = index
        else:
            self.nlist = int(_index.nlist)
        self.nprobe = int(nprobe) if nprobe else max(16, self.nlist // 8)
        self.index = _index
        self.n_items, self.dim = int(_index.ntotal), int(_index.d)

    def _tune(self, k: int) -> None:
        self.index.nprobe = min(self.nprobe, self.nlist)

    def _params(self) -> dict[str, Any]:
        return {"nlist": self.nlist, "nprobe": self.nprobe, "seed": self.seed}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_quantizer", None)
        return state


class HNSWLibIndex:
    """Approximate inner-product search with hnswlib (optional: ``pip install hnswlib``).

    Same parameters as :class:`HNSWIndex`; kept to measure against faiss
    (``benchmarks/scale.py``). hnswlib's ``ip`` space returns ``1 - u.v``; scores here are
    ``u.v``.
    """

    kind = "hnswlib"

    def __init__(self, vectors: np.ndarray | None = None, m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128, seed: int = DEFAULT_SEED,
                 *, _index: Any = None, threads: int = -1) -> None:
        hnswlib = _hnswlib()
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        self.seed = int(seed)
        if _index is None:
            v = _vectors(vectors)  # type: ignore[arg-type]
            _index = hnswlib.Index(space="ip", dim=v.shape[1])
            _index.init_index(max_elements=len(v), M=self.m, ef_construction=self.ef_construction,
                              random_seed=self.seed)
            _index.add_items(v, np.arange(len(v)), num_threads=threads)
        self.index = _index
        self.n_items, self.dim = int(_index.get_current_count()), int(_index.dim)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = _queries(queries, self.dim)
        w = min(k, self.n_items)
        self.index.set_ef(max(self.ef_search, w))
        if not len(q):
            return np.zeros((0, w), np.int64), np.zeros((0, w))
        labels, dist = self.index.knn_query(q, k=w)
        return labels.astype(np.int64), 1.0 - dist.astype(np.float64)

    def meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "m": self.m,
                "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                "seed": self.seed}

    def to_bytes(self) -> np.ndarray:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "index.hnsw"
            self.index.save_index(str(f))
            return np.frombuffer(f.read_bytes(), dtype=np.uint8).copy()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "index.hnsw") as tmp:
            self.index.save_index(str(tmp))
        _write_manifest(path, self.meta(), ["index.hnsw"])
        return path


def _hnswlib() -> Any:
    return require("hnswlib", "index kind 'hnswlib'",
                   "pip install hnswlib (built from source; needs a C++ compiler)")


def _hnswlib_from_file(f: Path, meta: dict[str, Any]) -> HNSWLibIndex:
    index = _hnswlib().Index(space="ip", dim=int(meta["dim"]))
    index.load_index(str(f))
    return HNSWLibIndex(m=meta["m"], ef_construction=meta["ef_construction"],
                        ef_search=meta["ef_search"], seed=meta.get("seed", DEFAULT_SEED),
                        _index=index)


def _faiss() -> Any:
    return require("faiss", "the faiss indexes (hnsw, ivf)", "pip install 'explorec[scale]'")


def _write_manifest(path: Path, meta: dict[str, Any], files: list[str]) -> None:
    meta = {**meta, "files": {f: sha256_file(path / f) for f in files}}
    atomic_write_text(path / MANIFEST, json.dumps(meta, indent=2, sort_keys=True) + "\n")


AnyIndex = ExactIndex | HNSWIndex | IVFIndex | HNSWLibIndex

#: index kinds :func:`build_index` accepts
INDEX_KINDS = ("auto", "exact", "ivf", "hnsw", "hnswlib")


def load_index(path: str | Path) -> AnyIndex:
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
    if meta.get("kind") in ("hnsw", "ivf"):
        return _faiss_from(_faiss().read_index(str(path / "index.faiss")), meta)
    if meta.get("kind") == "hnswlib":
        return _hnswlib_from_file(path / "index.hnsw", meta)
    raise ArtifactError(f"{path}: unknown index kind {meta.get('kind')!r}")


def _faiss_from(index: Any, meta: dict[str, Any]) -> HNSWIndex | IVFIndex:
    if meta["kind"] == "hnsw":
        return HNSWIndex(m=meta["m"], ef_construction=meta["ef_construction"],
                         ef_search=meta["ef_search"], _index=index)
    return IVFIndex(nprobe=meta["nprobe"], seed=meta.get("seed", DEFAULT_SEED), _index=index)


def index_from_bytes(meta: dict[str, Any], blob: np.ndarray) -> AnyIndex:
    """An index from :meth:`to_bytes` and :meth:`meta` (its caller checked the sha256)."""
    kind = meta.get("kind")
    blob = np.ascontiguousarray(blob, dtype=np.uint8)
    if kind == "exact":
        vectors = np.frombuffer(blob.tobytes(), dtype=np.float32).reshape(-1, int(meta["dim"]))
        return ExactIndex(vectors, seed=int(meta.get("seed", DEFAULT_SEED)))
    if kind in ("hnsw", "ivf"):
        return _faiss_from(_faiss().deserialize_index(blob), meta)
    if kind == "hnswlib":
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "index.hnsw"
            f.write_bytes(blob.tobytes())
            return _hnswlib_from_file(f, meta)
    raise ArtifactError(f"unknown index kind {kind!r}")


def build_index(vectors: np.ndarray, kind: str = "auto", **params: Any) -> AnyIndex:
    """``"exact"``, ``"ivf"``, ``"hnsw"``, ``"hnswlib"``, or ``"auto"``: faiss HNSW from
    :data:`ANN_MIN_ITEMS` items when faiss is installed, exact below (and without faiss).
    HNSW is the default because it measured best (``benchmarks/results/scale.md``: on iALS
    vectors of 100,000 items, recall@100 0.947 at ``ef_search`` 200 where IVF scanning a
    quarter of its cells reached 0.861).

    The approximate kinds refuse, before building, when their estimate
    (:func:`index_memory`) does not fit in the memory available (:mod:`explorec.memory`).
    """
    if kind not in INDEX_KINDS:
        raise ExploRecError(f"unknown index kind {kind!r}: use {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        try:
            _faiss()
            kind = "hnsw" if len(vectors) >= ANN_MIN_ITEMS else "exact"
        except ImportError:
            kind = "exact"
    if kind == "exact":
        return ExactIndex(vectors, **params)
    from explorec.memory import check_memory, format_bytes

    v = np.asarray(vectors)
    need = index_memory(kind, *v.shape, m=int(params.get("m", 32)))
    check_memory(f"a {kind} index needs ~{format_bytes(need)} for {len(v):,} items", need,
                 alternative="use --index exact, or fewer item vectors")
    if kind == "hnsw":
        return HNSWIndex(v, **params)
    if kind == "ivf":
        return IVFIndex(v, **params)
    return HNSWLibIndex(v, **params)


def index_memory(kind: str, n_items: int, dim: int, m: int = 32) -> int:
    """Bytes an index of ``n_items`` ``dim``-dimensional vectors needs while it is built."""
    vectors = 4 * n_items * dim
    if kind == "exact":
        return vectors
    if kind == "ivf":  # the vectors in the cells, a copy for training, the assignment
        return 2 * vectors + 16 * n_items
    return vectors + 2 * 4 * m * n_items + 64 * n_items  # graph links, two levels' worth


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
