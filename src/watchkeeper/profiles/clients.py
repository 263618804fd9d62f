"""Per-client tallies for the security monitors: row counts, near-decision-boundary counts,
OOD counts, moments of each numeric feature and a k-minimum-values sketch of distinct
(rounded) inputs, per client (the ``_client`` column, or the column with the client role).
Mergeable like the rest of a profile; bounded: past ``MAX_CLIENTS`` the lightest clients
are pooled into ``(other)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from watchkeeper.baseline.ood import SecurityModel
from watchkeeper.io.values import numbers_with_nan
from watchkeeper.stats.moments import Moments

MAX_CLIENTS = 1_000
OTHER = "(other)"
KMV = 256  # hashes kept per client: distinct counts exact below this, ~6% error above


def moments(columns: list[np.ndarray], group: np.ndarray,
            groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (rows) and column: finite values, their mean and sum of squared deviations
    (the :class:`ClientStats` fields), with NaN and ±inf left out."""
    n, s1, s2 = (np.zeros((groups, len(columns))) for _ in range(3))
    for j, x in enumerate(columns):
        ok = np.isfinite(x)
        xs = np.where(ok, x, 0.0)
        n[:, j] = np.bincount(group, weights=ok, minlength=groups)
        s1[:, j] = np.bincount(group, weights=xs, minlength=groups)
        s2[:, j] = np.bincount(group, weights=xs * xs, minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s1 / np.where(n > 0, n, 1), 0.0)
    return n, mean, np.maximum(s2 - n * mean**2, 0.0)


@dataclass
class ClientStats:
    """One client's activity in a window (mergeable)."""

    rows: int
    boundary: int
    ood: int
    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    kmv: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    def merge(self, other: ClientStats) -> ClientStats:
        moments = [Moments(int(a), b, c).merge(Moments(int(d), e, f)) for a, b, c, d, e, f in
                   zip(self.n, self.mean, self.m2, other.n, other.mean, other.m2, strict=True)]
        kmv = np.unique(np.concatenate([self.kmv, other.kmv]))[:KMV]
        return ClientStats(self.rows + other.rows, self.boundary + other.boundary,
                           self.ood + other.ood, np.array([m.n for m in moments], dtype=float),
                           np.array([m.mean for m in moments]), np.array([m.m2 for m in moments]),
                           kmv)

    @property
    def distinct(self) -> float:
        """Distinct rounded inputs (exact below KMV, a KMV estimate above)."""
        if len(self.kmv) < KMV:
            return float(len(self.kmv))
        return (KMV - 1) / (float(self.kmv[-1]) / 2.0**64)

    def sd(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.where(self.n > 1, self.m2 / np.maximum(self.n - 1, 1), np.nan))

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "boundary": self.boundary, "ood": self.ood,
                "n": self.n.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist(),
                "kmv": [int(v) for v in self.kmv]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClientStats:
        return cls(int(d["rows"]), int(d["boundary"]), int(d["ood"]), np.asarray(d["n"], float),
                   np.asarray(d["mean"], float), np.asarray(d["m2"], float),
                   np.asarray(d["kmv"], dtype=np.uint64))


def merge_clients(a: dict[str, ClientStats], b: dict[str, ClientStats]) -> dict[str, ClientStats]:
    out = dict(a)
    for name, stats in b.items():
        out[name] = out[name].merge(stats) if name in out else stats
    return bound_clients(out)


def bound_clients(clients: dict[str, ClientStats]) -> dict[str, ClientStats]:
    """Keep the MAX_CLIENTS busiest clients; pool the rest (so memory stays bounded)."""
    if len(clients) <= MAX_CLIENTS:
        return clients
    ranked = sorted(clients, key=lambda c: (c == OTHER, -clients[c].rows))
    kept = {c: clients[c] for c in ranked[: MAX_CLIENTS - 1]}
    pooled = [clients[c] for c in ranked[MAX_CLIENTS - 1:]]
    other = pooled[0]
    for s in pooled[1:]:
        other = other.merge(s)
    kept[OTHER] = other
    return kept


def client_stats(model: SecurityModel, table: pa.Table, ood: np.ndarray,
                 aligned: dict[str, np.ndarray] | None = None) -> dict[str, ClientStats]:
    """Per client of a batch (the model's client column): its :class:`ClientStats`, given
    which rows are out of distribution; {} without the column."""
    if model.client not in table.column_names or table.num_rows == 0:
        return {}
    encoded = pa.chunked_array(table.column(model.client)).cast(pa.string()) \
        .combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    idx = encoded.indices.to_numpy(zero_copy_only=False)
    idx = np.where(np.isnan(idx), len(names), idx).astype(np.int64) \
        if idx.dtype.kind == "f" else idx.astype(np.int64)
    names = [*names, "(unknown)"]
    k = len(names)
    rows = np.bincount(idx, minlength=k)
    ood_n = np.bincount(idx, weights=ood, minlength=k)
    near: np.ndarray = np.zeros(k)
    if model.proba and model.proba in table.column_names and model.boundary_width > 0:
        p = numbers_with_nan(table.column(model.proba))
        near = np.bincount(idx, weights=np.abs(p - model.boundary) < model.boundary_width,
                           minlength=k)
    n, mean, m2 = moments([model.values(table, name, aligned) for name in model.numeric],
                          idx, k)
    hashes = model.row_hashes(table, aligned)
    order = np.lexsort((hashes, idx))
    pairs = np.stack([idx[order], hashes[order].view(np.int64)], axis=1)
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    client_of, hash_of = idx[order][keep], hashes[order][keep]
    starts = np.searchsorted(client_of, np.arange(k))
    out = {}
    for c in np.flatnonzero(rows):
        lo = starts[c]
        hi = starts[c + 1] if c + 1 < k else len(client_of)
        out[names[c]] = ClientStats(int(rows[c]), int(near[c]), int(ood_n[c]), n[c].copy(),
                                    mean[c].copy(), m2[c].copy(),
                                    hash_of[lo:min(hi, lo + KMV)].copy())
    return bound_clients(out)
