"""Text descriptors: what ``init`` learns about a free-text column, and the per-row numbers
each window is profiled on.

A free-text column is not a distribution of values (nearly every value is new), so it is
monitored through descriptors computed per row, each binned and watched like a numeric
column: its length in characters, its token count, its share of non-ASCII characters, its
out-of-vocabulary rate against the reference vocabulary (the most frequent reference tokens,
kept in the suite) and whether it is empty (no word at all: punctuation, symbols; blank
text is a missing value, as everywhere in watchkeeper, reported by ``missing_rate``).
Tokens are runs of letters, digits and ``_``, lower-cased; everything is computed with
Arrow kernels, with no Python loop over rows.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.baseline.binning import DEFAULT_BINS, plan_numeric

#: The descriptors, in the order they are reported.
DESCRIPTORS: tuple[str, ...] = ("length", "tokens", "non_ascii", "oov_rate", "empty")
#: Descriptors whose range is watched (``empty`` is 0 or 1: only its share can move).
RANGED: tuple[str, ...] = ("length", "tokens", "non_ascii", "oov_rate")
#: Reference tokens kept as the vocabulary (the most frequent; the suite stays small).
VOCABULARY = 500
#: A token enters the vocabulary only when seen this often in the reference: identifiers
#: and rare words would make it a sample of the reference rows, not of its language.
MIN_TOKEN_ROWS = 3
#: Bin edges of the 0/1 ``empty`` descriptor: one bin for each value.
EMPTY_EDGES = [0.0, 0.5, 1.0]

_TOKEN_SEPARATOR = r"[^\p{L}\p{N}_]+"
_NON_ASCII = r"[^\x00-\x7f]"


@dataclass
class Descriptors:
    """A text column's descriptors per row (NaN where undefined: a missing or invalid value;
    ``non_ascii`` of an empty text, ``oov_rate`` of a text without tokens), with the
    column's missing and invalid (non-string) counts."""

    values: dict[str, np.ndarray]
    missing: int = 0
    invalid: int = 0


#: Words a value of a text column has on average, at least, for its descriptors to be
#: monitored (an identifier or a code has one).
MIN_MEAN_WORDS = 2.0


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _strings(chunk: pa.Array) -> pa.Array | None:
    """The chunk as strings, or None when its values are not strings (counted invalid)."""
    if pa.types.is_dictionary(chunk.type):
        chunk = chunk.cast(chunk.type.value_type)
    if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
        return chunk
    return None


def tokens(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Every token of a string column (lower-cased), and the row each one comes from."""
    words, rows, offset = [], [], 0
    for chunk in _chunks(column):
        text = _strings(chunk)
        if text is not None and len(text):
            split = pc.split_pattern_regex(pc.utf8_lower(text), pattern=_TOKEN_SEPARATOR)
            flat = pc.list_flatten(split)
            parents = pc.list_parent_indices(split).to_numpy(zero_copy_only=False)
            keep = pc.greater(pc.utf8_length(flat), 0)
            words.append(pc.filter(flat, keep))
            rows.append(parents[np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)]
                        + offset)
        offset += len(chunk)
    if not words:
        return pa.array([], type=pa.string()), np.zeros(0, dtype=np.int64)
    return (pa.concat_arrays([w.cast(pa.large_string()) for w in words]),
            np.concatenate(rows).astype(np.int64))


@dataclass
class TextPlan:
    """What a text column is checked against: the reference vocabulary and the bin edges of
    each descriptor (a descriptor with no reference values has none and is not watched).

    >>> t = pa.chunked_array([["the cat sat", "the dog ran", "a cat ran", ""] * 10])
    >>> plan = plan_text(t)
    >>> plan.vocabulary, plan.edges["empty"]
    (['a', 'cat', 'dog', 'ran', 'sat', 'the'], [0.0, 0.5, 1.0])
    >>> d = plan.describe(pa.chunked_array([["the zebra", "", None, "héllo"]]))
    >>> d.values["oov_rate"].tolist(), d.values["non_ascii"].tolist(), d.missing
    ([0.5, nan, nan, 1.0], [0.0, nan, nan, 0.2], 1)
    >>> plan.describe(pa.chunked_array([[7, None]])).invalid  # not strings
    1
    """

    vocabulary: list[str] = field(default_factory=list)
    edges: dict[str, list[float]] = field(default_factory=dict)

    def describe(self, column: pa.ChunkedArray | pa.Array) -> Descriptors:
        """Per-row descriptors of a column; values that are not strings are invalid (their
        descriptors NaN), never raised."""
        rows = len(column)
        out = {d: np.full(rows, np.nan) for d in DESCRIPTORS}
        missing = invalid = 0
        offset = 0
        for chunk in _chunks(column):
            n = len(chunk)
            text = _strings(chunk)
            if text is None:
                missing += chunk.null_count
                invalid += n - chunk.null_count
                offset += n
                continue
            missing += text.null_count
            at = slice(offset, offset + n)
            length = _floats(pc.utf8_length(text))
            out["length"][at] = length
            wide = _floats(pc.count_substring_regex(text, pattern=_NON_ASCII))
            with np.errstate(invalid="ignore", divide="ignore"):
                out["non_ascii"][at] = np.where(length > 0, wide / length, np.nan)
            offset += n
        words, parents = tokens(column)
        count = np.bincount(parents, minlength=rows).astype(float)
        known = np.asarray(pc.is_in(words, value_set=pa.array(self.vocabulary,
                                                              type=pa.large_string()))
                           .to_numpy(zero_copy_only=False), dtype=bool)
        unknown = np.bincount(parents[~known], minlength=rows).astype(float)
        present = ~np.isnan(out["length"])
        out["tokens"] = np.where(present, count, np.nan)
        out["empty"] = np.where(present, count == 0, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["oov_rate"] = np.where(present & (count > 0), unknown / count, np.nan)
        return Descriptors(out, missing, invalid)

    def to_dict(self) -> dict[str, Any]:
        return {"vocabulary": list(self.vocabulary),
                "edges": {d: list(e) for d, e in self.edges.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextPlan:
        """The plan of a suite file's ``text:`` entry; malformed entries raise ValueError."""
        vocabulary = d.get("vocabulary") or []
        edges = d.get("edges") or {}
        if not isinstance(vocabulary, list) or not isinstance(edges, dict):
            raise ValueError("text: expected vocabulary (a list) and edges (a mapping)")
        out = cls([str(v) for v in vocabulary], {})
        for name, e in edges.items():
            if name not in DESCRIPTORS:
                raise ValueError(f"text.edges: unknown descriptor {name!r}; one of "
                                 f"{', '.join(DESCRIPTORS)}")
            values = [float(v) for v in e]
            if len(values) < 2 or any(b < a for a, b in itertools.pairwise(values)):
                raise ValueError(f"text.edges.{name}: needs at least two numbers in "
                                 "increasing order")
            out.edges[str(name)] = values
        return out


def _floats(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=float)


def free_text(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether a reference text column is free text: :data:`MIN_MEAN_WORDS` words a value
    or more on average (not identifiers or codes, whose length and vocabulary say little).

    >>> free_text(pa.array(["u1", "u2", None])), free_text(pa.array(["too slow", "ok"]))
    (False, False)
    >>> free_text(pa.array(["too slow", "fine thanks", "broken"]))
    False
    >>> free_text(pa.array(["too slow to load", "fine thanks", "broken"]))
    True
    """
    present = len(column) - column.null_count
    return present > 0 and len(tokens(column)[0]) >= MIN_MEAN_WORDS * present


def plan_text(column: pa.ChunkedArray | pa.Array, bins: int = DEFAULT_BINS) -> TextPlan:
    """The vocabulary and descriptor bin edges of a reference text column."""
    words, _ = tokens(column)
    counts = pc.value_counts(words) if len(words) else None
    vocabulary: list[str] = []
    if counts is not None:
        frequent = Counter(dict(zip(counts.field("values").to_pylist(),
                                    counts.field("counts").to_pylist(), strict=True)))
        ranked = sorted(frequent.items(), key=lambda kv: (-kv[1], kv[0]))
        vocabulary = sorted(w for w, n in ranked[:VOCABULARY] if n >= MIN_TOKEN_ROWS)
    plan = TextPlan(vocabulary, {})
    described = plan.describe(column)
    for name in DESCRIPTORS:
        values = described.values[name]
        finite = values[np.isfinite(values)]
        if finite.size:
            plan.edges[name] = EMPTY_EDGES if name == "empty" else plan_numeric(finite, bins)
    return plan
