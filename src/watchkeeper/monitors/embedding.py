"""Embedding drift: has the mix of regions (codes) of a vector or text column moved?

The statistic and its threshold are :class:`~watchkeeper.monitors.drift.FeatureDrift`'s:
the Jensen–Shannon distance between the window's code counts and the reference's,
against the (1 − α) quantile of that distance on windows resampled from the reference
at the window's size, widened by the variation between chunks of the reference. Only
what is particular to codes differs: their null proportions (no tails, no unseen
levels: the "outside" code is a share seen in the reference like any other) and the
evidence, which names the codes that gained and lost the most mass, each with a
reference example row, and how far the window's vectors lie from their centroids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from watchkeeper.monitors.base import ReferenceData
from watchkeeper.monitors.drift import FeatureDrift
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.embedding import DISTANCE_TALLY, codes, held_out

#: Codes named in a finding's evidence on each side (gained, lost).
NAMED_CODES = 3


class EmbeddingDrift(FeatureDrift):
    """Jensen–Shannon distance between a vector column's code counts and the reference's.

    >>> import pyarrow as pa, watchkeeper as wk
    >>> rng = np.random.default_rng(0)
    >>> ref = pa.table({"emb": list(rng.normal(0, 1, (2_000, 8)))})
    >>> suite = wk.init(ref)
    >>> [m.id for m in suite.monitors if m.type == "embedding_drift"]
    ['embedding_drift:emb']
    """

    type = "embedding_drift"

    def _null_proportions(self, reference: Profile) -> tuple[np.ndarray, int]:
        counts = np.asarray(reference.columns[self.column_name].bins, dtype=float)
        n_ref = int(counts.sum())
        p = counts / max(n_ref, 1)
        return np.maximum(p, 0.5 / max(n_ref, 1)), n_ref

    def reference_codes(self, reference: ReferenceData) -> np.ndarray:
        """Codes of the reference rows the codebook was not fitted on (all, once loaded)."""
        return codes(held_out(reference.table, self.spec), self.spec)

    def _top_level_changes(self, ref: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
        book = self.spec.codebook
        assert book is not None
        labels = book.labels()
        examples = [*book.examples, "(none: outside every code)"]
        p = ref / max(ref.sum(), 1)
        q = cur / max(cur.sum(), 1)
        change = q - p
        order = np.argsort(change, kind="stable")
        gained = [int(i) for i in order[::-1][:NAMED_CODES] if change[i] > 0]
        lost = [int(i) for i in order[:NAMED_CODES] if change[i] < 0]

        def describe(at: list[int]) -> str:
            return "; ".join(f"{labels[i]} {p[i]:.1%} → {q[i]:.1%} (e.g. {examples[i]})"
                             for i in at)

        out: dict[str, Any] = {
            "gained": describe(gained), "lost": describe(lost),
            "gained_codes": [labels[i] for i in gained],
            "lost_codes": [labels[i] for i in lost],
            "gained_examples": [examples[i] for i in gained],
            "lost_examples": [examples[i] for i in lost],
            "outside_share": float(q[-1]), "reference_outside_share": float(p[-1]),
        }
        if gained:
            out["largest_change"] = labels[gained[0]]
            out["reference_share"], out["window_share"] = float(p[gained[0]]), float(q[gained[0]])
        return out

    def assess(self, window: Profile, reference: Profile) -> tuple[list[Any], dict[str, Any]]:
        found, measures = super().assess(window, reference)
        key = DISTANCE_TALLY.format(self.column_name)
        now, ref = window.joint.get(key), reference.joint.get(key)
        for f in found:
            if now is not None and ref is not None and now[0] > 0 and ref[0] > 0 and ref[1] > 0:
                f.evidence["mean_distance_ratio"] = float((now[1] / now[0]) / (ref[1] / ref[0]))
        return found, measures
