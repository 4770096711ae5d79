"""Interest taxonomy: items grouped into *interests* at two levels, from their text vectors.

Fine clusters are k-means clusters (scikit-learn ``MiniBatchKMeans``) of the items' LM vectors,
joined by their genres/categories where the catalog has a list column of them; coarse clusters
are k-means clusters of the fine centroids, so every fine interest lies in exactly one coarse
one. Sizes are chosen by a measured criterion unless given: the silhouette score (cosine) on a
seeded sample of items, over a grid around ``2.5 sqrt(n_items)`` (fine) and ``2 sqrt(n_fine)``
(coarse); the grid and its scores are kept in :attr:`InterestTaxonomy.selection`.

Each cluster is described by its most distinctive words (class-based TF-IDF: one document per
cluster, the texts of its items), its most central titles, and its own text embedding (the
description read by the same text encoder). A user's interest profile is their history's
distribution over the fine clusters.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> vecs = np.vstack([rng.normal(c, 0.05, (20, 4)) for c in np.eye(4)])
>>> texts = [f"{w} film {i}" for w in ("space", "love", "war", "ghost") for i in range(20)]
>>> tax = build_taxonomy([str(i) for i in range(80)], vecs, texts, n_fine=4, n_coarse=2, seed=1)
>>> sorted(np.bincount(tax.fine).tolist())
[20, 20, 20, 20]
>>> sorted(kw[0] for kw in tax.fine_keywords)
['ghost', 'love', 'space', 'war']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.artifacts import load_artifact, save_artifact
from explorec.errors import ExploRecError

DEFAULT_SEED = 2020
KIND = "explorec-interests"


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


@dataclass
class InterestTaxonomy:
    """Two-level interest clusters of a catalog (``item_ids[i]`` is in fine cluster
    ``fine[i]``, which is in coarse cluster ``coarse_of_fine[fine[i]]``)."""

    item_ids: np.ndarray          # (n_items,) external ids, object
    fine: np.ndarray              # (n_items,) int64 fine cluster of each item
    coarse_of_fine: np.ndarray    # (n_fine,) int64
    fine_centroids: np.ndarray    # (n_fine, d) float32, unit norm
    fine_keywords: list[list[str]]
    coarse_keywords: list[list[str]]
    fine_titles: list[list[str]]  # the most central items' titles
    fine_embeddings: np.ndarray   # (n_fine, e) float32: the descriptions, encoded
    encoder: str = ""
    seed: int = DEFAULT_SEED
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def n_fine(self) -> int:
        return len(self.coarse_of_fine)

    @property
    def n_coarse(self) -> int:
        return int(self.coarse_of_fine.max()) + 1 if len(self.coarse_of_fine) else 0

    @property
    def coarse(self) -> np.ndarray:
        """(n_items,) coarse cluster of each item."""
        return self.coarse_of_fine[self.fine]

    def sizes(self) -> np.ndarray:
        return np.bincount(self.fine, minlength=self.n_fine)

    def description(self, c: int) -> str:
        """The fine cluster's text: its words and its central titles (what the encoder reads)."""
        return (f"Interest: {', '.join(self.fine_keywords[c])}. Examples: "
                f"{'; '.join(self.fine_titles[c])}.")

    def profile(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(n_fine,) share of a history (internal item ids) in each fine cluster."""
        items = np.asarray(items, dtype=np.int64)
        p = np.bincount(self.fine[items], weights=weights, minlength=self.n_fine).astype(np.float64)
        s = p.sum()
        return p / s if s > 0 else p

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """An artifact directory (JSON manifest + arrays, each with its sha256), atomically."""
        meta = {"kind": KIND, "encoder": self.encoder, "seed": self.seed, "selection": self.selection,
                "fine_keywords": self.fine_keywords, "coarse_keywords": self.coarse_keywords,
                "fine_titles": self.fine_titles}
        return save_artifact(path, meta, {
            "item_ids": np.asarray(self.item_ids, dtype=object), "fine": self.fine,
            "coarse_of_fine": self.coarse_of_fine, "fine_centroids": self.fine_centroids,
            "fine_embeddings": self.fine_embeddings})

    @classmethod
    def load(cls, path: str | Path) -> InterestTaxonomy:
        meta, arrays = load_artifact(path)
        if meta.get("kind") != KIND:
            raise ExploRecError(f"{path} is not an interest taxonomy (kind {meta.get('kind')!r}); "
                                "make one with `explorec interests build`")
        return cls(item_ids=np.asarray(arrays["item_ids"], dtype=object),
                   fine=np.asarray(arrays["fine"], dtype=np.int64),
                   coarse_of_fine=np.asarray(arrays["coarse_of_fine"], dtype=np.int64),
                   fine_centroids=np.asarray(arrays["fine_centroids"], dtype=np.float32),
                   fine_keywords=meta["fine_keywords"], coarse_keywords=meta["coarse_keywords"],
                   fine_titles=meta["fine_titles"],
                   fine_embeddings=np.asarray(arrays["fine_embeddings"], dtype=np.float32),
                   encoder=meta.get("encoder", ""), seed=int(meta.get("seed", DEFAULT_SEED)),
                   selection=meta.get("selection", {}))

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """The clusters as JSON-ready rows (largest first), for `interests show`."""
        sizes = self.sizes()
        order = np.argsort(-sizes, kind="stable")[: top or None]
        return {"n_items": len(self.fine), "n_fine": self.n_fine, "n_coarse": self.n_coarse,
                "encoder": self.encoder, "seed": self.seed, "selection": self.selection,
                "clusters": [{"fine": int(c), "coarse": int(self.coarse_of_fine[c]),
                              "size": int(sizes[c]), "keywords": self.fine_keywords[c],
                              "coarse_keywords": self.coarse_keywords[int(self.coarse_of_fine[c])],
                              "titles": self.fine_titles[c]} for c in order]}


# ------------------------------------------------------------------ building
def reduce_dims(x: np.ndarray, dim: int = 128, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Rows of ``x`` in at most ``dim`` dimensions (seeded truncated SVD, re-normalised);
    unchanged when already that small. Sparse-word vectors (TF-IDF) have thousands."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1] <= dim or x.shape[0] <= dim:
        return x
    from sklearn.decomposition import TruncatedSVD

    return _normalise(TruncatedSVD(dim, random_state=seed).fit_transform(x))


def _kmeans(x: np.ndarray, k: int, seed: int, weights: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=min(4096, max(256, len(x))),
                         max_iter=200)
    labels = km.fit_predict(x, sample_weight=weights)
    return labels.astype(np.int64), _normalise(km.cluster_centers_)


def _relabel(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop empty clusters: (labels 0..k'-1, kept old ids)."""
    used = np.flatnonzero(np.bincount(labels, minlength=k) > 0)
    new = np.full(k, -1, dtype=np.int64)
    new[used] = np.arange(len(used))
    return new[labels], used


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int, sample: int = 3000) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return -1.0
    n = min(sample, len(x))
    return float(silhouette_score(x, labels, metric="cosine", sample_size=n, random_state=seed))


def _grid(center: float, lo: int, hi: int) -> list[int]:
    ks = sorted({round(center * f) for f in (0.5, 0.75, 1.0, 1.5, 2.0)})
    return [k for k in ks if lo <= k <= hi] or [max(lo, min(hi, round(center)))]


def _choose(x: np.ndarray, ks: Sequence[int], seed: int, weights: np.ndarray | None = None
            ) -> tuple[int, dict[str, float]]:
    scores = {}
    for k in ks:
        labels, _ = _kmeans(x, k, seed, weights)
        scores[str(k)] = round(_silhouette(x, labels, seed), 4)
    best = max(ks, key=lambda k: (scores[str(k)], -k))
    return int(best), scores


def cluster_keywords(texts: Sequence[str], labels: np.ndarray, k: int, top: int = 6) -> list[list[str]]:
    """Class-based TF-IDF (as BERTopic's c-TF-IDF): a word's weight in a cluster is the share
    of the cluster's items that use it times ``log(1 + mean items per cluster / items using it
    anywhere)``: words common in the cluster and rare elsewhere. Words of one item only are
    left out (they describe an item, not an interest) unless the cluster has no other."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_][\w'-]{2,}\b",
                          binary=True, lowercase=True, max_df=0.5 if len(texts) >= 20 else 1.0)
    try:
        m = vec.fit_transform(texts).tocsc()
    except ValueError:  # no words at all
        return [[] for _ in range(k)]
    vocab = np.asarray(vec.get_feature_names_out(), dtype=object)
    onehot = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    per = np.asarray((onehot @ m).todense(), dtype=np.float64)  # (k, V) items using each word
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    total = per.sum(axis=0)
    weight = (per / np.maximum(sizes, 1)[:, None]) * np.log1p(sizes.mean() / np.maximum(total, 1))[None, :]
    out = []
    for c in range(k):
        w = np.where(per[c] >= 2, weight[c], 0.0)
        if not (w > 0).any():
            w = weight[c]
        cand = np.flatnonzero(w > 0)
        order = cand[np.lexsort((vocab[cand], -w[cand]))][:top]  # ties: alphabetical
        out.append([str(x) for x in vocab[order]])
    return out


def genre_matrix(lists: Sequence[Any]) -> np.ndarray:
    """(n_items, n_genres) one-hot rows, L2-normalised, from per-item lists of labels."""
    labels = sorted({str(g) for gs in lists if isinstance(gs, list | tuple | np.ndarray) for g in gs})
    if not labels:
        return np.zeros((len(lists), 0), np.float32)
    col = {g: j for j, g in enumerate(labels)}
    out = np.zeros((len(lists), len(labels)), np.float32)
    for i, gs in enumerate(lists):
        if isinstance(gs, list | tuple | np.ndarray):
            for g in gs:
                out[i, col[str(g)]] = 1.0
    return _normalise(out)


def cluster_items(item_vectors: np.ndarray, n_clusters: int | None = None, *, seed: int = DEFAULT_SEED
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Fine interests of a catalog known only by its item vectors (no texts to describe them):
    ``(labels (n_items,) int64, centroids (n_clusters, d) float32, unit norm)``, the same
    k-means as :func:`build_taxonomy`'s fine level, ``n_clusters`` chosen by silhouette when
    not given. Items with a zero vector (no text) form no cluster of their own: they join
    the largest one. A new item joins the cluster of its nearest centroid
    (:func:`nearest_cluster`).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> vecs = np.vstack([rng.normal(c, 0.05, (10, 3)) for c in np.eye(3)])
    >>> labels, cent = cluster_items(vecs, 3, seed=1)
    >>> sorted(np.bincount(labels).tolist()), cent.shape
    ([10, 10, 10], (3, 3))
    >>> bool((nearest_cluster(vecs, cent) == labels).all())
    True
    """
    vecs = _normalise(item_vectors)
    if vecs.ndim != 2 or len(vecs) < 2:
        raise ExploRecError(f"cluster_items needs at least 2 item vectors, got shape {vecs.shape}")
    live = np.linalg.norm(vecs, axis=1) > 0
    n = int(live.sum())
    if n < 2:
        return np.zeros(len(vecs), np.int64), np.zeros((1, vecs.shape[1]), np.float32)
    x = reduce_dims(vecs[live], seed=seed)
    distinct = len(np.unique(x, axis=0))
    if n_clusters is None:
        ks = _grid(2.5 * math.sqrt(n), 2, max(2, min(n // 5, distinct)))
        n_clusters, _ = _choose(x, ks, seed)
    n_clusters = max(1, min(int(n_clusters), distinct))
    if n_clusters == 1:
        labels_live = np.zeros(n, np.int64)
    else:
        labels_live, _ = _kmeans(x, n_clusters, seed)
        labels_live, _ = _relabel(labels_live, n_clusters)
    k = int(labels_live.max()) + 1
    v = vecs[live]
    cent = _normalise(np.vstack([v[labels_live == c].mean(axis=0) for c in range(k)]))
    labels = np.full(len(vecs), int(np.argmax(np.bincount(labels_live, minlength=k))), np.int64)
    labels[live] = labels_live
    return labels, cent


def nearest_cluster(item_vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n,) index of each vector's nearest centroid by cosine (0 for a zero vector)."""
    v = _normalise(np.atleast_2d(item_vectors))
    if v.shape[1] != centroids.shape[1]:
        raise ExploRecError(f"item vectors have {v.shape[1]} dimensions, the centroids "
                            f"{centroids.shape[1]}")
    return np.argmax(v @ np.asarray(centroids, np.float32).T, axis=1).astype(np.int64)


def build_taxonomy(item_ids: Sequence[str], item_vectors: np.ndarray, texts: Sequence[str], *,
                   titles: Sequence[str] | None = None, genres: np.ndarray | None = None,
                   genre_weight: float = 0.5, n_fine: int | None = None, n_coarse: int | None = None,
                   encode: Callable[[list[str]], np.ndarray] | None = None, encoder: str = "",
                   n_keywords: int = 6, n_titles: int = 3, seed: int = DEFAULT_SEED,
                   progress: Callable[[str], None] | None = None) -> InterestTaxonomy:
    """Cluster items (``item_vectors`` in internal id order) into a two-level taxonomy.

    ``genres``: optional (n_items, g) L2-normalised label rows (:func:`genre_matrix`), joined
    to the text vectors with weight ``genre_weight``. ``encode``: reads the cluster
    descriptions (default: the mean item vector of each cluster stands in for it).
    """
    say = progress or (lambda _s: None)
    vecs = _normalise(item_vectors)
    n = len(vecs)
    if n != len(item_ids) or n != len(texts):
        raise ExploRecError(f"taxonomy: {len(item_ids)} ids, {n} vectors and {len(texts)} texts differ")
    if n < 4:
        raise ExploRecError(f"taxonomy: {n} items are too few to cluster (at least 4)")
    if not 0 <= genre_weight <= 1:
        raise ExploRecError(f"genre_weight={genre_weight} must be in [0, 1]")
    x = reduce_dims(vecs, seed=seed)  # k-means and silhouettes in <= 128 dimensions
    if genres is not None and genres.shape[1] and genre_weight > 0:
        x = _normalise(np.hstack([x * math.sqrt(1 - genre_weight),
                                  np.asarray(genres, np.float32) * math.sqrt(genre_weight)]))
    selection: dict[str, Any] = {"criterion": "silhouette (cosine, sample of 3000 items)"}
    if n_fine is None:
        ks = _grid(2.5 * math.sqrt(n), 2, max(2, n // 5))
        say(f"choosing the number of fine interests among {ks}")
        n_fine, selection["fine"] = _choose(x, ks, seed)
    if not 2 <= n_fine <= n:
        raise ExploRecError(f"n_fine={n_fine} must be between 2 and the number of items ({n})")
    say(f"clustering {n:,} items into {n_fine} fine interests")
    fine, _ = _kmeans(x, n_fine, seed)
    fine, _ = _relabel(fine, n_fine)
    k_f = int(fine.max()) + 1
    # centroids in the text space (what descriptions and new items are compared with)
    cent = _normalise(np.vstack([vecs[fine == c].mean(axis=0) for c in range(k_f)]))
    sizes = np.bincount(fine, minlength=k_f).astype(np.float64)
    xc = _normalise(np.vstack([x[fine == c].mean(axis=0) for c in range(k_f)]))
    if n_coarse is None:
        ks = _grid(2 * math.sqrt(k_f), 2, max(2, k_f // 2))
        say(f"choosing the number of coarse interests among {ks}")
        n_coarse, selection["coarse"] = _choose(xc, ks, seed, sizes)
    if not 1 <= n_coarse <= k_f:
        raise ExploRecError(f"n_coarse={n_coarse} must be between 1 and n_fine ({k_f})")
    if n_coarse == 1:
        coarse_of_fine = np.zeros(k_f, np.int64)
    else:
        coarse_of_fine, _ = _kmeans(xc, n_coarse, seed, sizes)
        coarse_of_fine, _ = _relabel(coarse_of_fine, n_coarse)
    texts = [str(t) for t in texts]
    titles = [str(t) for t in (titles if titles is not None else texts)]
    say("describing the interests")
    fine_kw = cluster_keywords(texts, fine, k_f, n_keywords)
    k_c = int(coarse_of_fine.max()) + 1
    coarse_kw = cluster_keywords(texts, coarse_of_fine[fine], k_c, n_keywords)
    sims = np.einsum("ij,ij->i", vecs, cent[fine])
    fine_titles = []
    for c in range(k_f):
        members = np.flatnonzero(fine == c)
        best = members[np.lexsort((members, -sims[members]))[:n_titles]]
        fine_titles.append([titles[i] for i in best])
    tax = InterestTaxonomy(np.asarray(list(item_ids), dtype=object), fine, coarse_of_fine, cent, fine_kw,
                           coarse_kw, fine_titles, cent.copy(), encoder=encoder, seed=seed,
                           selection=selection)
    if encode is not None:
        say("encoding the interest descriptions")
        tax.fine_embeddings = _normalise(encode([tax.description(c) for c in range(k_f)]))
    return tax


def taxonomy_from_dataset(dataset: Any, *, encoder: str = "minilm", n_fine: int | None = None,
                          n_coarse: int | None = None, genre_weight: float = 0.5,
                          seed: int = DEFAULT_SEED, progress: Callable[[str], None] | None = None
                          ) -> InterestTaxonomy:
    """:func:`build_taxonomy` for a loaded dataset: its catalog's texts, encoded by
    ``encoder`` (``minilm``, ``tfidf``, ``mpnet`` or a local model directory), and its genre
    column when there is a list-valued one (``genres``, ``categories``, ``tags``)."""
    from explorec.encoders import get_encoder
    from explorec.encoders.items import encode_items, item_texts

    inter = dataset.interactions
    catalog = dataset.catalog
    texts = item_texts(inter.items, catalog)
    enc = get_encoder(encoder)
    say = progress or (lambda _s: None)
    say(f"encoding {len(texts):,} item texts with {encoder}")
    vecs = encode_items(inter.items, catalog, enc)
    frame = catalog.frame.reindex(inter.items.ids)
    name_col = next((c for c in ("title", "name") if c in frame.columns), None)
    titles = [str(t) for t in frame[name_col]] if name_col else None  # else the item texts
    genres = None
    for col in ("genres", "categories", "tags"):
        if col in frame.columns:
            genres = genre_matrix(list(frame[col]))
            break
    return build_taxonomy(list(inter.items.ids), vecs, texts, titles=titles, genres=genres,
                          genre_weight=genre_weight, n_fine=n_fine, n_coarse=n_coarse,
                          encode=lambda t: np.asarray(enc.encode(t), np.float32), encoder=encoder,
                          seed=seed, progress=progress)

