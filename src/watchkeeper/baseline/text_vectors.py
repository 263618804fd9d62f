"""Free text as vectors, with no model to download: hashed word n-grams → TF-IDF → a
projection fitted on the reference (a truncated SVD, as latent semantic analysis does).

Words and word pairs are hashed (CRC-32) into buckets, so the suite file holds bucket
numbers, never a word of the reference; the most common buckets (by documents) are kept,
weighted by their inverse document frequency, and projected on the leading singular
vectors of the reference's TF-IDF matrix. Vectors are L2-normalised: a text's direction
(what it is about), not its length, places it in the codebook.
"""

from __future__ import annotations

import base64
import itertools
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import sparse

from watchkeeper.io.values import type_class


@dataclass
class Vectors:
    """The valid vectors of a column (one row each, in row order) and the counts of rows
    that are missing (null) or invalid (wrong length, NaN/inf, not numbers)."""

    matrix: np.ndarray
    rows: int
    missing: int
    invalid: int
    types: dict[str, int]
    kept: np.ndarray  # which rows hold a valid vector (boolean, one per row)


#: Hash space of word n-grams.
BUCKETS = 1 << 20
#: Buckets kept (the most common by documents) and dimensions of the projection.
MAX_FEATURES, DIMENSIONS = 1024, 32
#: Reference texts the encoder is fitted on at most (a seeded sample beyond).
SAMPLE_TEXTS = 20_000
#: Words in more than this share of texts (function words) are left out, unless fewer
#: than MIN_FEATURES buckets remain (then only those in more than half of the texts).
MAX_DF, MIN_FEATURES = 0.05, 64
_WORD = re.compile(r"\w\w+")


def _features(text: str, cache: dict[str, int]) -> list[int]:
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    out = []
    for g in grams:
        h = cache.get(g)
        if h is None:
            h = cache[g] = zlib.crc32(g.encode("utf-8")) % BUCKETS
        out.append(h)
    return out


def _counts(texts: list[str], lookup: np.ndarray | None, width: int) -> sparse.csr_matrix:
    """Term counts of ``texts`` (rows) over buckets (``lookup``: bucket → column, -1 for a
    bucket not kept; None: every bucket)."""
    cache: dict[str, int] = {}
    indptr, indices = [0], []
    for text in texts:
        ids = np.asarray(_features(text, cache), dtype=np.int64)
        if lookup is not None and ids.size:
            ids = lookup[ids]
            ids = ids[ids >= 0]
        indices.append(ids)
        indptr.append(indptr[-1] + ids.size)
    cols = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    data = np.ones(cols.size)
    m = sparse.csr_matrix((data, cols, np.asarray(indptr)), shape=(len(texts), width))
    m.sum_duplicates()
    return m


@dataclass
class TextEncoder:
    """Hashed word and word-pair counts → TF-IDF → the reference's leading directions.

    >>> texts = ["the cat sat on the mat", "a dog sat on a log", "stocks fell on monday",
    ...          "markets rose as stocks rallied", "the cat chased the dog"] * 20
    >>> enc = TextEncoder.fit(pa.array(texts), dim=3)  # words in >5% of texts kept: few words
    >>> v = enc.vectors(pa.array(["the cat sat", None]))
    >>> v.matrix.shape, v.missing, v.invalid, enc.vectors(pa.array([1, 2])).invalid
    ((1, 3), 1, 0, 2)
    """

    buckets: np.ndarray  # kept hash buckets, increasing
    idf: np.ndarray  # (features,)
    components: np.ndarray  # (dim, features)

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    def _lookup(self) -> np.ndarray:
        lookup = getattr(self, "_lookup_cache", None)
        if lookup is None:
            lookup = np.full(BUCKETS, -1, dtype=np.int32)
            lookup[self.buckets] = np.arange(self.buckets.size)
            self._lookup_cache = lookup
        return lookup

    def transform(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised vector per text (zero for a text with no known word)."""
        counts = _counts(texts, self._lookup(), self.buckets.size)
        return _project(counts, self.idf, self.components)

    def vectors(self, column: pa.ChunkedArray | pa.Array) -> Vectors:
        """The vectors of a text column; values that are not text are invalid."""

        return text_column_vectors(column, self.transform)

    @classmethod
    def fit(cls, column: pa.ChunkedArray | pa.Array, *, dim: int = DIMENSIONS,
            max_features: int = MAX_FEATURES, seed: int = 0) -> TextEncoder | None:
        """Fit on a text column (a seeded sample of at most :data:`SAMPLE_TEXTS`); None
        when it has too few texts or words to project."""
        texts = [v for v in column.to_pylist() if isinstance(v, str)]
        if len(texts) > SAMPLE_TEXTS:
            rng = np.random.default_rng([seed, 16])
            texts = [texts[i] for i in np.sort(rng.choice(len(texts), SAMPLE_TEXTS,
                                                          replace=False))]
        n = len(texts)
        if n < 10:
            return None
        counts = _counts(texts, None, BUCKETS)
        df = np.bincount(counts.indices, minlength=BUCKETS)
        usable = np.flatnonzero((df >= 2) & (df <= max(MAX_DF * n, 2)))
        if usable.size < MIN_FEATURES:  # a small vocabulary: keep its common words too
            usable = np.flatnonzero((df >= 2) & (df <= max(0.5 * n, 2)))
        if usable.size < 2:
            return None
        top = usable[np.argsort(-df[usable], kind="stable")[:max_features]]
        buckets = np.sort(top)
        idf = (np.log((1 + n) / (1 + df[buckets])) + 1.0).astype(np.float32).astype(float)
        x = _tfidf(counts[:, buckets], idf)
        dim = max(1, min(dim, buckets.size - 1, n - 1))
        gram = (x.T @ x).toarray()
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(-values, kind="stable")[:dim]
        components = vectors[:, order].T
        signs = np.sign(components[np.arange(dim), np.argmax(np.abs(components), axis=1)])
        components = (components * signs[:, None]).astype(np.float16).astype(float)
        return cls(buckets.astype(np.int64), idf, components)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "hashed words and word pairs (crc32), tf-idf, reference svd",
            "buckets": base64.b64encode(self.buckets.astype("<i4").tobytes()).decode("ascii"),
            "idf": base64.b64encode(self.idf.astype("<f4").tobytes()).decode("ascii"),
            "dim": self.dim,
            "components": base64.b64encode(self.components.astype("<f2").tobytes()
                                           ).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextEncoder:
        buckets = np.frombuffer(base64.b64decode(d["buckets"]), dtype="<i4").astype(np.int64)
        idf = np.frombuffer(base64.b64decode(d["idf"]), dtype="<f4").astype(float)
        comps = np.frombuffer(base64.b64decode(d["components"]), dtype="<f2").astype(float)
        dim = int(d["dim"])
        if idf.size != buckets.size or comps.size != dim * buckets.size:
            raise ValueError("text encoder: buckets, idf and components disagree in size")
        return cls(buckets, idf, comps.reshape(dim, buckets.size))


def text_column_vectors(column: pa.ChunkedArray | pa.Array,
                        transform: Callable[[list[str]], np.ndarray]) -> Vectors:
    """The vectors ``transform`` gives the strings of a column; other values are invalid."""
    values = column.to_pylist()
    kept = np.array([isinstance(v, str) for v in values], dtype=bool)
    missing = sum(v is None for v in values)
    texts = [v for v in values if isinstance(v, str)]
    return Vectors(transform(texts), len(values), missing, len(values) - missing - len(texts),
                   {type_class(column.type): len(values)}, kept)


def _tfidf(counts: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    x = counts.astype(float).tocsr()
    x.data = 1.0 + np.log(x.data)  # sublinear term frequency
    x = x.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ x


def _project(counts: sparse.csr_matrix, idf: np.ndarray, components: np.ndarray) -> np.ndarray:
    out = np.asarray(_tfidf(counts, idf) @ components.T)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return out / norms
