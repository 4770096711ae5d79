"""Text encoders: TF-IDF, the packaged all-MiniLM-L6-v2, the on-disk embedding cache, item texts
and the ``embed`` command. Real encoders and real weights throughout (MiniLM loaded once)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from explorec.artifacts import load_artifact
from explorec.data.synthetic import generate
from explorec.encoders import TextEncoder, TfidfEncoder, encode_cached, get_encoder, l2_normalise
from explorec.encoders.cache import EmbeddingCache, text_key
from explorec.encoders.items import encode_items, item_texts
from explorec.errors import ChecksumError, DataError

MINILM_SHA_PREFIX = "53aa51172d14"


class CountingTfidf(TfidfEncoder):
    """A real TF-IDF encoder that records what it was asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts, *, batch_size=4096, progress=None):  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        return super().encode(texts, batch_size=batch_size, progress=progress)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: stable timings when other jobs share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synthetic():
    return generate(n_users=60, n_items=50, n_interactions=600, seed=5)


# ------------------------------------------------------------------ TF-IDF
def test_tfidf_shape_dtype_and_normalised():
    enc = TfidfEncoder()
    assert isinstance(enc, TextEncoder)
    texts = ["space alien robot", "love romance in paris", "a detective solves a murder",
             "war soldier battle army front"]
    v = enc.encode(texts)
    assert v.shape == (4, enc.dim) == (4, 2048)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    # small batches give the same rows as one batch
    np.testing.assert_array_equal(enc.encode(texts, batch_size=1), v)
    assert enc.encode([]).shape == (0, 2048)


def test_tfidf_identical_and_similar_texts():
    enc = TfidfEncoder().fit(["space alien robot galaxy", "love romance wedding paris",
                              "murder detective crime clue", "space robot future"])
    a, b, c, d = enc.encode(["Space alien robot", "space alien robot", "alien robot in space galaxy",
                             "a romantic wedding in paris"])
    np.testing.assert_array_equal(a, b)  # case-insensitive tokens, same vector
    assert a @ c > 0.3
    assert a @ c > a @ d + 0.2
    assert a @ d == pytest.approx(0.0, abs=1e-6)  # no shared word at all


def test_tfidf_fit_changes_model_id_deterministically():
    corpus = ["space alien robot", "love romance wedding", "space war"]
    enc = TfidfEncoder()
    before = enc.model_id
    assert before.startswith("tfidf2-hash2048-bi-")
    enc.fit(corpus)
    assert enc.model_id != before
    assert TfidfEncoder().fit(corpus).model_id == enc.model_id
    assert TfidfEncoder().fit([*corpus, "murder"]).model_id != enc.model_id
    assert TfidfEncoder(bigrams=False).model_id != before
    assert TfidfEncoder(dim=512).model_id.startswith("tfidf2-hash512-bi-")
    # fitted IDF weights rare words more than common ones
    v = enc.encode(["space alien"])[0]
    nz = v[v > 0]
    assert len(nz) >= 2 and not np.allclose(nz, nz[0])


def test_tfidf_is_stateless_for_unseen_words():
    enc = TfidfEncoder().fit(["space alien robot", "love romance wedding"])
    mid, idf = enc.model_id, enc.idf.copy()
    text = "zyzzyva quokka marmalade"  # no word of the fitted corpus
    v = enc.encode([text])
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
    # a text's vector does not depend on what else is encoded, nor on earlier calls
    np.testing.assert_array_equal(enc.encode(["love story", text, "robot"])[1], v[0])
    np.testing.assert_array_equal(enc.encode([text]), v)
    assert enc.model_id == mid
    np.testing.assert_array_equal(enc.idf, idf)


def test_tfidf_non_ascii_text_gets_a_vector():
    enc = TfidfEncoder()
    v = enc.encode(["東京物語", "Amélie"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert not np.array_equal(enc.encode(["Amélie"]), enc.encode(["am lie"]))


def test_l2_normalise_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalise(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


# ------------------------------------------------------------------ all-MiniLM-L6-v2
@pytest.fixture(scope="module")
def minilm():
    enc = get_encoder("minilm")
    enc.dim  # noqa: B018 - loads the weights once for the module
    return enc


def test_minilm_identity_and_dim(minilm):
    from explorec.encoders.sentence import SentenceTransformerEncoder

    assert isinstance(minilm, SentenceTransformerEncoder)
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384
    assert minilm.model_id == f"sentence-transformers/all-MiniLM-L6-v2@{MINILM_SHA_PREFIX}"


def test_minilm_vectors_are_normalised_and_semantic(minilm):
    texts = ["a space alien movie", "science fiction about aliens", "a romantic wedding comedy"]
    v = minilm.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1
    seen = []
    np.testing.assert_allclose(minilm.encode(texts, batch_size=1, progress=seen.append), v, atol=1e-5)
    assert seen == [1, 1, 1]
    assert minilm.encode([]).shape == (0, 384)


def test_default_model_path_is_verified():
    from explorec._io import sha256_file
    from explorec.encoders.sentence import MINILM_SHA256, SentenceTransformerEncoder, default_model_path

    path = default_model_path()
    weights = path / "model.safetensors"
    assert weights.is_file()
    assert sha256_file(weights) == MINILM_SHA256
    assert MINILM_SHA256.startswith(MINILM_SHA_PREFIX)
    # the hub-style name maps to the same packaged, verified copy (nothing is loaded yet)
    same = SentenceTransformerEncoder("sentence-transformers/all-MiniLM-L6-v2")
    assert same.path == str(path)
    assert same.model_id.endswith(f"@{MINILM_SHA_PREFIX}")


def test_local_model_dir_id_carries_its_weights_hash(tmp_path):
    from explorec.encoders.sentence import SentenceTransformerEncoder, default_model_path

    src = default_model_path()
    local = tmp_path / "my-minilm"
    local.mkdir()
    for f in src.iterdir():
        (local / f.name).symlink_to(f)
    enc = SentenceTransformerEncoder(str(local))
    assert enc.model_id == f"my-minilm@{MINILM_SHA_PREFIX}"


# ------------------------------------------------------------------ embedding cache
def _cache_files(home: Path) -> list[Path]:
    return [p for p in (home / "embeddings").rglob("*") if p.is_file()]


def test_encode_cached_second_call_hits_cache(isolated_home):
    enc = CountingTfidf()
    texts = ["space alien robot", "love romance", "murder detective"]
    first = encode_cached(enc, texts)
    assert len(enc.calls) == 1 and sorted(enc.calls[0]) == sorted(texts)
    ticks: list[int] = []
    second = encode_cached(enc, texts, progress=ticks.append)
    assert len(enc.calls) == 1  # nothing encoded again
    assert sum(ticks) == 3
    np.testing.assert_array_equal(first, second)
    # a fresh encoder object with the same model id reads the same cache from disk
    other = CountingTfidf()
    np.testing.assert_array_equal(encode_cached(other, texts[::-1]), first[::-1])
    assert other.calls == []


def test_encode_cached_mixed_hits_and_misses_keep_order(isolated_home):
    enc = CountingTfidf()
    encode_cached(enc, ["alpha beta", "gamma delta"])
    texts = ["new one", "alpha beta", "another new", "gamma delta", "new one"]
    out = encode_cached(enc, texts)
    assert len(enc.calls) == 2
    assert sorted(enc.calls[1]) == ["another new", "new one"]  # only the misses, once each
    np.testing.assert_array_equal(out, TfidfEncoder().encode(texts))


def test_encode_cached_duplicates_encoded_once(isolated_home):
    enc = CountingTfidf()
    texts = ["x ray", "yankee", "x ray", "x ray", "yankee", "zulu"]
    out = encode_cached(enc, texts)
    assert len(enc.calls) == 1 and sorted(enc.calls[0]) == ["x ray", "yankee", "zulu"]
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[0], out[3])
    np.testing.assert_array_equal(out[1], out[4])
    np.testing.assert_array_equal(out, enc.encode(texts))


def test_cache_files_are_npy_without_pickle(isolated_home):
    enc = TfidfEncoder().fit(["space alien", "love story"])
    texts = ["space alien", "love story", "war film"]
    encode_cached(enc, texts)
    files = _cache_files(isolated_home)
    assert files, "nothing written under $EXPLOREC_HOME/embeddings"
    assert all(f.name.endswith(".npy") for f in files), files
    assert {f.parent.name for f in files} == {enc.model_id}
    keys = [np.load(f, allow_pickle=False) for f in files if f.name.endswith(".keys.npy")]
    vecs = [np.load(f, allow_pickle=False) for f in files if f.name.endswith(".vecs.npy")]
    assert len(keys) == len(vecs) == 1
    assert keys[0].dtype.kind == "U" and vecs[0].dtype == np.float32
    assert sorted(keys[0]) == sorted(text_key(t) for t in texts)
    assert text_key("space alien") == hashlib.sha256(b"space alien").hexdigest()


def test_cached_and_uncached_vectors_identical(isolated_home):
    enc = TfidfEncoder().fit(["space alien robot", "love romance wedding", "crime clue"])
    texts = ["space alien robot", "wedding in paris", "a clue", "space alien robot"]
    plain = encode_cached(enc, texts, cache=False)
    assert _cache_files(isolated_home) == []  # cache=False writes nothing
    np.testing.assert_array_equal(plain, enc.encode(texts))
    np.testing.assert_array_equal(encode_cached(enc, texts), plain)  # misses
    np.testing.assert_array_equal(encode_cached(enc, texts), plain)  # hits


def test_cache_never_mixes_fits(isolated_home):
    enc = CountingTfidf()
    texts = ["space alien robot", "love romance"]
    unfitted = encode_cached(enc, texts)
    enc.fit(["space space space", "alien", "love romance wedding"])
    fitted = encode_cached(enc, texts)
    assert len(enc.calls) == 2  # a new model id is a cache miss
    assert not np.allclose(unfitted, fitted)
    assert len({p.parent.name for p in _cache_files(isolated_home)}) == 2


def test_embedding_cache_explicit_root(tmp_path):
    cache = EmbeddingCache("some/model id", root=tmp_path)
    assert cache.dir.parent == tmp_path and "/" not in cache.dir.name and " " not in cache.dir.name
    pos, mat = cache.lookup(["k1"])
    assert list(pos) == [-1] and mat is None
    cache.add(["k1", "k2"], np.eye(2, dtype=np.float32))
    pos, mat = EmbeddingCache("some/model id", root=tmp_path).lookup(["k2", "k3", "k1"])
    assert list(pos[[0, 2]] >= 0) == [True, True] and pos[1] == -1
    np.testing.assert_array_equal(mat[pos[0]], [0, 1])
    np.testing.assert_array_equal(mat[pos[2]], [1, 0])


def test_encode_cached_empty_input(tmp_path):
    out = encode_cached(TfidfEncoder(), [], cache_root=tmp_path)
    assert out.shape == (0, 2048)


# ------------------------------------------------------------------ item texts
def test_encode_items_in_internal_order(synthetic, isolated_home):
    items, catalog = synthetic.interactions.items, synthetic.catalog
    enc = TfidfEncoder()
    unfitted = enc.model_id
    vecs = encode_items(items, catalog, enc)
    assert enc.model_id != unfitted  # fitted on the catalog texts
    assert vecs.shape == (len(items), 2048) and vecs.dtype == np.float32
    texts = item_texts(items, catalog)
    assert texts[0].endswith(f"Genres: {catalog.frame.loc[items.ids[0], 'genres'][0]}.")
    np.testing.assert_array_equal(vecs, enc.encode(texts))
    np.testing.assert_array_equal(encode_items(items, catalog, enc, cache=False), vecs)


def test_encode_items_without_catalog_is_a_clear_error(synthetic):
    with pytest.raises(DataError, match="no item catalog"):
        encode_items(synthetic.interactions.items, None, TfidfEncoder())


def test_template_with_unknown_field_names_it(synthetic):
    with pytest.raises(DataError, match="director"):
        encode_items(synthetic.interactions.items, synthetic.catalog, TfidfEncoder(),
                     template="{title} by {director}")
    texts = item_texts(synthetic.interactions.items, synthetic.catalog, template="{title} [{year}]")
    assert texts[0].startswith("The ") and texts[0].endswith("]")


# ------------------------------------------------------------------ CLI embed
def test_cli_embed_ml100k_tfidf(ml100k, tmp_path):
    from explorec.data.fetch import cache_home

    # an empty embedding cache, but the already-fetched ML-100K files
    home = tmp_path / "home"
    home.mkdir()
    (home / "datasets").symlink_to(cache_home() / "datasets", target_is_directory=True)
    out = tmp_path / "vectors"
    env = {**os.environ, "EXPLOREC_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "explorec.cli.main", "embed", "--dataset", "ml-100k",
                           "--encoder", "tfidf", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    texts = ml100k.catalog.texts(ml100k.interactions.items)
    expected_id = TfidfEncoder().fit(texts).model_id
    assert manifest["kind"] == "item-vectors"
    assert manifest["model_id"] == expected_id
    assert manifest["dim"] == 2048
    assert expected_id in proc.stdout
    assert not [p for p in out.iterdir() if p.suffix not in (".npy", ".json")]

    manifest_again, arrays = load_artifact(out)
    assert manifest_again["model_id"] == expected_id
    vecs = arrays["item_vectors"]
    assert vecs.shape == (1682, manifest["dim"]) and vecs.dtype == np.float32
    assert list(arrays["item_ids"]) == list(ml100k.interactions.items.ids)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # the vectors went into the (isolated) embedding cache, keyed by the fitted model id
    assert (home / "embeddings" / expected_id).is_dir()

    # a flipped byte in an array is caught by the sha256 check
    f = out / "item_vectors.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"item_vectors\.npy"):
        load_artifact(out)
