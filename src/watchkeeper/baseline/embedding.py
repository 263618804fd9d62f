"""Embeddings: a codebook fitted to the reference vectors, so a window of vectors is
summarised by how many fall in each region (code) of the reference, like bins.

A vector column is a list / fixed-size-list column of numbers (Arrow, a pandas column of
arrays, a polars list), a group of numeric columns declared as one embedding
(``embeddings={"emb": ["e0", "e1", ...]}``), or a free-text column turned into vectors by
a reference-fitted text encoder (:mod:`watchkeeper.baseline.text_vectors`).

``init`` fits k-means (k from the reference size, a seeded k-means++ start) and, for text,
the encoder on a seeded half of the reference (at most :data:`SAMPLE_ROWS`), and records,
per code, its centroid, its radius (the 99th percentile of the fitted rows' distances to
it) and a reference example row. A window's vector falls in its nearest code, or in the
last, "outside" code when it is farther from that centroid
than the radius: new content that the reference has no region for. The reference's code
counts come from the other half (cross-fitting): rows the fit has seen sit nearer their
centroids and in a slightly different mix than fresh rows from the same source do.
"""

from __future__ import annotations

import base64
import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.baseline.text_model import PretrainedTextEncoder
from watchkeeper.baseline.text_vectors import TextEncoder, Vectors
from watchkeeper.errors import SuiteError
from watchkeeper.io.names import unknown_column
from watchkeeper.io.values import numbers, type_class

if TYPE_CHECKING:
    from watchkeeper.baseline.schema import Column, Schema

#: Reference rows k-means is fitted on at most (a seeded sample of a bigger reference).
SAMPLE_ROWS = 20_000
#: Bounds of the number of codes; in between, sqrt(rows / ROWS_PER_CODE_SQ).
MIN_CODES, MAX_CODES = 8, 64
ROWS_PER_CODE_SQ = 50
#: Share of a code's reference vectors inside its radius.
RADIUS_QUANTILE = 0.99
#: Lloyd iterations at most, and the relative change of inertia that stops them.
MAX_ITER, TOLERANCE = 60, 1e-5
#: Valid reference rows below which the encoder and codebook are fitted on every row
#: (no cross-fitting: too few rows to spare half).
MIN_CROSS_FIT_ROWS = 200
#: Share of the valid reference rows the encoder and codebook are fitted on (cross-fitting).
FIT_SHARE = 0.5


def n_codes(rows: int) -> int:
    """Codes for a reference of ``rows`` vectors: clamp(sqrt(rows / 50), 8, 64), and no
    more than one per 10 rows.

    >>> n_codes(1_000), n_codes(50_000), n_codes(1_000_000), n_codes(40)
    (8, 32, 64, 4)
    """
    k = round(math.sqrt(rows / ROWS_PER_CODE_SQ))
    return max(1, min(max(MIN_CODES, min(k, MAX_CODES)), rows // 10))


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _from_b64(text: str, shape: tuple[int, ...]) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(text), dtype="<f4")
    return raw.astype(np.float64).reshape(shape)


@dataclass
class Codebook:
    """Centroids of the reference vectors, each code's radius and a reference example.

    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.normal(c, 0.1, (200, 2)) for c in (0.0, 5.0)])
    >>> book = Codebook.fit(x, k=2, seed=0)
    >>> codes, _ = book.assign(np.array([[0.0, 0.0], [5.0, 5.0], [50.0, 50.0]]))
    >>> sorted(codes[:2].tolist()), int(codes[2]) == book.k  # the last: outside every code
    ([0, 1], True)
    """

    centroids: np.ndarray  # (k, dim), float32 values held as float64
    radii: np.ndarray  # (k,)
    examples: list[str]  # a reference row (id or index) near each centroid
    encoder: Any = None  # a (Pretrained)TextEncoder for a text column, else None
    #: At ``init`` only (never saved): which reference rows the encoder and codebook were
    #: fitted on; the reference's code counts come from the other rows (cross-fitting).
    fitted_on: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_bins(self) -> int:
        """Codes plus the "outside" code."""
        return self.k + 1

    def labels(self) -> list[str]:
        return [*(f"code {i}" for i in range(self.k)), "(outside)"]

    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Code of each row of ``x`` (``k`` when outside its nearest code's radius) and its
        distance to the nearest centroid."""
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        nearest, dist = _nearest(x, self.centroids)
        outside = dist > self.radii[nearest]
        return np.where(outside, self.k, nearest).astype(np.int64), dist

    @classmethod
    def fit(cls, x: np.ndarray, *, k: int | None = None, seed: int = 0,
            ids: list[str] | None = None) -> Codebook:
        """k-means on the rows of ``x`` (a seeded sample of at most :data:`SAMPLE_ROWS`)."""
        rng = np.random.default_rng([seed, 15])
        if x.shape[0] > SAMPLE_ROWS:
            at = np.sort(rng.choice(x.shape[0], SAMPLE_ROWS, replace=False))
            sample = x[at]
        else:
            at, sample = np.arange(x.shape[0]), x
        k = n_codes(x.shape[0]) if k is None else k
        distinct = np.unique(sample, axis=0).shape[0]
        centroids = _kmeans(sample, max(1, min(k, distinct)), rng)
        centroids = centroids.astype(np.float32).astype(np.float64)  # as the file keeps them
        nearest, dist = _nearest(sample, centroids)
        used = np.unique(nearest)
        centroids = centroids[used]
        nearest = np.searchsorted(used, nearest)
        radii = np.zeros(len(used))
        examples = []
        for c in range(len(used)):
            mine = dist[nearest == c]
            radii[c] = float(np.float32(np.quantile(mine, RADIUS_QUANTILE)))
            row = int(at[nearest == c][np.argmin(mine)])
            examples.append(ids[row] if ids is not None else f"row {row}")
        return cls(centroids, radii, examples)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.k, "dim": self.dim, "centroids": _b64(self.centroids),
                               "radii": [float(r) for r in self.radii],
                               "examples": list(self.examples)}
        if self.encoder is not None:
            out["text"] = self.encoder.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Codebook:
        k, dim = int(d["k"]), int(d["dim"])
        radii = np.asarray(d["radii"], dtype=float)
        examples = [str(e) for e in d["examples"]]
        if radii.shape != (k,) or len(examples) != k:
            raise ValueError(f"{k} codes but {radii.size} radii and {len(examples)} examples")
        encoder = None
        if d.get("text") is not None:
            text = d["text"]
            encoder = (PretrainedTextEncoder.from_dict(text) if text.get("model") is not None
                       else TextEncoder.from_dict(text))
        return cls(_from_b64(str(d["centroids"]), (k, dim)), radii, examples, encoder)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = (np.einsum("ij,ij->i", x, x)[:, None] - 2.0 * (x @ centroids.T)
          + np.einsum("ij,ij->i", centroids, centroids)[None, :])
    nearest = np.argmin(d2, axis=1)
    best = np.maximum(d2[np.arange(x.shape[0]), nearest], 0.0)
    return nearest, np.sqrt(best)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means from a k-means++ start; deterministic for a given generator."""
    n = x.shape[0]
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(n)]
    closest = np.sum((x - centroids[0]) ** 2, axis=1)
    for j in range(1, k):
        total = closest.sum()
        pick = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centroids[j] = x[pick]
        closest = np.minimum(closest, np.sum((x - centroids[j]) ** 2, axis=1))
    previous = np.inf
    for _ in range(MAX_ITER):
        nearest, dist = _nearest(x, centroids)
        inertia = float(np.sum(dist ** 2))
        counts = np.bincount(nearest, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        if previous - inertia <= TOLERANCE * max(inertia, 1e-12):
            break
        previous = inertia
    return centroids


# -- reading vectors ------------------------------------------------------------------
def _list_vectors(column: pa.ChunkedArray | pa.Array, dim: int | None,
                  types: dict[str, int]) -> tuple[list[np.ndarray], int, int, np.ndarray]:
    """Vectors of a list column: (blocks of valid rows, missing, invalid, rows kept)."""
    blocks, missing, invalid, kept = [], 0, 0, []
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        kind = "vector" if _is_list(chunk.type) else type_class(chunk.type)
        types[kind] = types.get(kind, 0) + len(chunk)
        nulls = chunk.null_count
        missing += nulls
        good = np.zeros(len(chunk), dtype=bool)
        kept.append(good)
        if not _is_list(chunk.type) or not _numeric_values(chunk.type):
            invalid += len(chunk) - nulls
            continue
        lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_numpy(zero_copy_only=False)
        lengths = lengths.astype(np.int64)
        present = ~np.asarray(chunk.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        flat = pc.list_flatten(chunk)
        values = pc.cast(flat, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        if dim is None:
            seen = lengths[present & (lengths > 0)]
            if seen.size == 0:
                invalid += int(np.count_nonzero(present))
                continue
            dim = int(np.bincount(seen).argmax())
        starts = np.cumsum(lengths) - lengths
        right = present & (lengths == dim)
        if dim == 0 or not right.any():
            invalid += int(np.count_nonzero(present))
            continue
        block = values[starts[right][:, None] + np.arange(dim)[None, :]]
        finite = np.isfinite(block).all(axis=1)
        good[np.flatnonzero(right)[finite]] = True
        invalid += int(np.count_nonzero(present)) - int(np.count_nonzero(finite))
        blocks.append(block[finite])
    rows = np.concatenate(kept) if kept else np.zeros(0, dtype=bool)
    return blocks, missing, invalid, rows


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _numeric_values(t: pa.DataType) -> bool:
    value = t.value_type
    return pa.types.is_integer(value) or pa.types.is_floating(value) or \
        pa.types.is_boolean(value) or pa.types.is_null(value)


def vectors(table: pa.Table, spec: Column) -> Vectors | None:
    """The vectors of an embedding or embedded-text column of ``table``, None when the
    table carries none of its columns (an absent column)."""
    book = spec.codebook
    dim = book.dim if book is not None else None
    types: dict[str, int] = {}
    if spec.members:
        present = [m for m in spec.members if m in table.column_names]
        if not present:
            return None
        columns = []
        for m in spec.members:
            if m in table.column_names:
                nums = numbers(table.column(m))
                values = nums.values if nums.values is not None else np.zeros(0)
                columns.append(values if values.size else np.full(table.num_rows, np.nan))
            else:
                columns.append(np.full(table.num_rows, np.nan))
        block = np.column_stack(columns) if columns else np.zeros((table.num_rows, 0))
        finite = np.isfinite(block)
        whole: np.ndarray = np.asarray(finite.all(axis=1), dtype=bool)
        none = ~finite.any(axis=1)
        types["numeric"] = table.num_rows
        return Vectors(block[whole], table.num_rows, int(none.sum()),
                       int(table.num_rows - whole.sum() - none.sum()), types, whole)
    if spec.name not in table.column_names:
        return None
    column = table.column(spec.name)
    if book is not None and book.encoder is not None:
        return book.encoder.vectors(column)
    blocks, missing, invalid, kept = _list_vectors(column, dim, types)
    matrix = np.vstack(blocks) if blocks else np.zeros((0, dim or 0))
    return Vectors(matrix, len(column), missing, invalid, types, kept)


# -- planning at init ---------------------------------------------------------------------
def resolve_members(name: str, given: str | Iterable[str], columns: list[str]) -> list[str]:
    """The columns of an embedding group: a list of names, "c1,c2,…", or a glob/prefix
    ("emb_*" or "emb_"), in the reference's column order."""
    if isinstance(given, str):
        parts = [p.strip() for p in given.split(",") if p.strip()]
    else:
        parts = [str(p) for p in given]
    if len(parts) == 1 and parts[0] not in columns:
        pattern = parts[0] if any(ch in parts[0] for ch in "*?[") else parts[0] + "*"
        parts = [c for c in columns if fnmatch.fnmatchcase(c, pattern)]
        if not parts:
            raise SuiteError(f"embeddings.{name}", f"no column matches {pattern!r}")
    for p in parts:
        if p not in columns:
            raise SuiteError(f"embeddings.{name}", unknown_column(p, columns, "in the reference"))
    if len(parts) < 2:
        raise SuiteError(f"embeddings.{name}", "an embedding group needs at least 2 columns")
    return parts


def plan_embeddings(schema: Schema, table: pa.Table, *, seed: int = 0,
                    embeddings: Mapping[str, str | Iterable[str]] | None = None,
                    text: str | Iterable[str] | None = None,
                    id_column: str | None = None, text_model: str | None = None) -> None:
    """Fit the codebook of every vector column, of every declared group of columns
    (``embeddings``: name → columns; the members are then not monitored one by one) and of
    the free-text columns named in ``text`` (embedding text costs ~0.15 ms a value, so it
    is asked for; an embedded text column is judged by its topic mix instead of its
    descriptors). ``text_model`` names a pretrained model to embed the text with (see
    :mod:`watchkeeper.baseline.text_model`; ``"minilm"``, needs the ``text-model`` extra)
    instead of fitting a word-count projection on the reference."""
    from watchkeeper.baseline.schema import Column, Kind, Role

    pretrained = PretrainedTextEncoder(text_model) if text_model is not None else None

    ids = None
    if id_column is not None and id_column in table.column_names:
        ids = [str(v) for v in table.column(id_column).to_pylist()]
    taken: dict[str, str] = {}
    for name, given in (embeddings or {}).items():
        if name in schema.columns:
            raise SuiteError(f"embeddings.{name}", "is already a column; name the group "
                                                   "something else")
        members = resolve_members(name, given, table.column_names)
        for m in members:
            if m in taken:
                raise SuiteError(f"embeddings.{name}", f"{m!r} is already in {taken[m]!r}")
            taken[m] = name
            spec = schema.columns.get(m)
            if spec is not None:
                spec.role, spec.edges, spec.categories = Role.IGNORE, None, None
                spec.note = f"part of the embedding {name}"
        schema.columns[name] = Column(name=name, kind=Kind.EMBEDDING, dtype="numeric",
                                      members=members,
                                      note=f"embedding of {len(members)} columns")
    named = set(_text_names(text))
    if pretrained is not None and not named:
        raise SuiteError("text_model", "a text model embeds the text columns named in "
                                       "embed_text (--embed-text), and none is named")
    for n in sorted(named - set(schema.columns)):
        raise SuiteError("embed_text", unknown_column(n, list(schema.columns), "in the reference"))
    for n in sorted(named):
        _check_embeddable(schema.columns[n])
    for spec in schema:
        if spec.role == Role.IGNORE:
            continue
        if spec.kind == Kind.EMBEDDING:
            found = vectors(table, spec)
            if found is None or found.matrix.shape[0] < 2:
                spec.note = "; ".join(n for n in (spec.note, "too few valid vectors in the "
                                                  "reference: not monitored as a distribution")
                                      if n)
                continue
            fit = fit_rows(found.kept, seed)
            spec.codebook = Codebook.fit(found.matrix[fit[found.kept]], seed=seed,
                                         k=n_codes(found.matrix.shape[0]),
                                         ids=_valid_ids(ids, fit))
            spec.codebook.fitted_on = _cross_fitted(fit, found.kept)
            spec.note = "; ".join(n for n in (spec.note, f"{found.matrix.shape[1]}-dimensional "
                                              f"vectors, {spec.codebook.k} codes") if n)
        elif spec.name in named:  # a string feature or prediction (_check_embeddable)
            texts = table.column(spec.name)
            present = np.asarray(texts.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            fit = fit_rows(present, seed)
            fit_texts = texts.take(pa.array(np.flatnonzero(fit)))
            encoder: TextEncoder | PretrainedTextEncoder | None = (
                pretrained if pretrained is not None else TextEncoder.fit(fit_texts, seed=seed))
            if encoder is None:
                count = int(fit.sum())
                few = f"only {count} texts" if count < 10 else \
                    f"too few distinct words across its {count} texts"
                raise SuiteError("embed_text", f"{spec.name!r} has {few} in the reference "
                                 f"to fit an embedding on: leave it out, or embed it with "
                                 f"a pretrained model (text_model=)")
            if spec.kind == Kind.CATEGORICAL:  # asked for by name: embedded all the same
                spec.kind, spec.categories, spec.truncated = Kind.TEXT, None, False
                spec.note = "; ".join(n for n in (spec.note, "judged categorical (few "
                                                  "distinct values in the reference), "
                                                  "embedded as asked") if n)
            found = encoder.vectors(fit_texts)  # every fitted text is a string: all kept
            spec.codebook = Codebook.fit(found.matrix, seed=seed,
                                         k=n_codes(int(present.sum())),
                                         ids=_valid_ids(ids, fit))
            spec.codebook.encoder = encoder
            spec.text = None  # judged by its topic mix, not by its descriptors
            spec.codebook.fitted_on = _cross_fitted(fit, present)
            spec.note = "; ".join(n for n in (spec.note, f"free text, embedded "
                                              f"({encoder.dim} dimensions, "
                                              f"{spec.codebook.k} codes)") if n)


def _check_embeddable(spec: Column) -> None:
    """A column named in ``embed_text`` is embedded: free text, or a string feature judged
    categorical (a short or repetitive answer looks categorical in a small reference, and
    its user named it); anything that is not text raises, never is skipped."""
    from watchkeeper.baseline.schema import Kind, Role

    why = None
    if spec.role == Role.IGNORE:
        why = "is not monitored" + (f" ({spec.note})" if spec.note else "")
    elif spec.pii:
        why = ("is personal data: no value of it is kept, so none is embedded (if it is "
               "not personal data, name it in not_pii=)")
    elif spec.dtype != "string":
        why = f"holds {spec.dtype} values, not text"
    elif spec.kind == Kind.DATETIME:
        why = "holds dates, not text"
    elif spec.kind == Kind.CATEGORICAL and spec.role != Role.FEATURE:
        why = f"is the {spec.role.value} column: its classes are monitored as categories"
    elif spec.kind not in (Kind.TEXT, Kind.CATEGORICAL):
        why = f"is {spec.kind.value}, not text"
    if why is not None:
        raise SuiteError("embed_text", f"{spec.name!r} {why}; only text columns are embedded")


def _text_names(text: str | Iterable[str] | None) -> list[str]:
    if text is None:
        return []
    if isinstance(text, str):
        return [t.strip() for t in text.split(",") if t.strip()]
    return [str(t) for t in text]


def fit_rows(valid: np.ndarray, seed: int) -> np.ndarray:
    """Which reference rows to fit an encoder and codebook on: a seeded half of the valid
    rows (at most :data:`SAMPLE_ROWS`), so that the other valid rows, which the fit never
    saw, give the reference's code counts as fresh data from the same source would fall;
    every valid row when there are fewer than :data:`MIN_CROSS_FIT_ROWS`.

    >>> fit = fit_rows(np.ones(1_000, dtype=bool), seed=0)
    >>> int(fit.sum()), bool((fit == fit_rows(np.ones(1_000, dtype=bool), seed=0)).all())
    (500, True)
    """
    valid = np.asarray(valid, dtype=bool)
    at = np.flatnonzero(valid)
    if at.size < MIN_CROSS_FIT_ROWS:
        return valid.copy()
    rng = np.random.default_rng([seed, 17])
    out = np.zeros(valid.size, dtype=bool)
    out[rng.choice(at, min(int(at.size * FIT_SHARE), SAMPLE_ROWS), replace=False)] = True
    return out


def _cross_fitted(fit: np.ndarray, valid: np.ndarray) -> np.ndarray | None:
    """The fitted rows when some valid rows were held out, else None (fitted on all)."""
    return fit if bool((valid & ~fit).any()) else None


def _valid_ids(ids: list[str] | None, kept: np.ndarray) -> list[str]:
    """The id (or ``row N``) of each valid vector of the reference, in order."""
    return [ids[i] if ids is not None else f"row {i}" for i in np.flatnonzero(kept)]
