"""Multivariate drift: have the inputs changed how they move together?

The suite's :class:`~watchkeeper.baseline.multivariate.JointModel` scores every row by its
reconstruction error from the reference's principal components; the profile keeps the
scores' bins. :class:`MultivariateDrift` judges those bins exactly as :class:`FeatureDrift`
judges a column's (the same resampled null, chunk overdispersion and share of the budget),
seeing them as one numeric column, ``(joint)``. Its evidence names the column pairs whose
joint distribution moved most beyond what their own marginals explain.

A monitor of a declared column group (``init(multivariate_groups={"name": [...]})``) has
the group's name as its ``column`` and judges the group's own model the same way; its
findings carry the group (``evidence.group``, metric ``reconstruction_error:NAME``) and its
measures go under ``(joint:NAME)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from scipy import special

from watchkeeper.baseline.multivariate import COARSE, JointModel, tally_keys
from watchkeeper.baseline.schema import Column, Kind, Role, Schema
from watchkeeper.errors import SuiteError
from watchkeeper.monitors.base import Family, Finding, Monitor, ReferenceData, Severity
from watchkeeper.monitors.drift import FeatureDrift
from watchkeeper.profiles.column import ColumnProfile
from watchkeeper.profiles.core import Profile
from watchkeeper.stats.calibration import TAIL_MARGIN
from watchkeeper.stats.distance import js_distance

#: The name the per-row score goes by when judged as a column (and in ``metrics.drift``).
JOINT = "(joint)"
#: Pairs named in a finding's evidence.
PAIRS_NAMED = 3
#: Consecutive reference chunks whose pair dependence tells the natural variation.
PAIR_CHUNKS = 10
#: Rows a pair's window table needs to be tested.
PAIR_MIN_ROWS = 100


def joint_name(group: str | None = None) -> str:
    """The name the per-row score of the suite's model (or of a group's) is judged under."""
    return JOINT if group is None else f"(joint:{group})"


def _view(window: Profile, group: str | None = None) -> Profile:
    """A window as one numeric column: its rows per score bin."""
    bins = window.joint.get(tally_keys(group)[0])
    columns = {} if bins is None else {
        joint_name(group): ColumnProfile(count=window.rows,
                                         bins=np.asarray(bins, dtype=np.int64))}
    return Profile(rows=window.rows, start=window.start, end=window.end, columns=columns)


def pair_changes(model: JointModel, window: Profile, reference: Profile,
                 group: str | None = None) -> list[tuple[str, float]]:
    """Tracked column pairs by how far the window's coarse co-occurrence is from the
    reference's, once the reference table is fitted to the window's own marginals (so a
    pair moves only when its joint distribution changed, not one of its columns): the
    Jensen–Shannon distance, largest first."""
    key = tally_keys(group)[1]
    cur, ref = window.joint.get(key), reference.joint.get(key)
    if cur is None or ref is None or len(cur) != len(model.pairs) or len(ref) != len(cur):
        return []
    names = model.columns
    out = []
    for (a, b), w, r in zip(model.pairs, cur, ref, strict=True):
        if w.sum() < 30 or r.sum() < 30:
            continue
        expected = _fit_margins(np.asarray(r, dtype=float) + 0.5, w.sum(axis=1), w.sum(axis=0))
        out.append((f"{names[a]} × {names[b]}", float(js_distance(expected.ravel(), w.ravel()))))
    return sorted(out, key=lambda kv: -kv[1])


def _fit_margins(table: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 rounds: int = 50) -> np.ndarray:
    """Iterative proportional fitting: ``table`` rescaled to the given margins, keeping its
    odds ratios (its dependence). Tables may be stacked (``(..., r, c)``, margins
    ``(..., r)`` and ``(..., c)``)."""
    out = np.array(table, dtype=float)
    for _ in range(rounds):
        out *= (rows / np.maximum(out.sum(axis=-1), 1e-12))[..., :, None]
        out *= (cols / np.maximum(out.sum(axis=-2), 1e-12))[..., None, :]
    return out


def dependence_change(window: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per pair (stacked ``(pairs, r, c)`` tables), the likelihood-ratio statistic G of the
    window's co-occurrence against the reference's dependence fitted to the window's own
    margins: about χ² with :func:`pair_df` degrees of freedom (times 1 + n/n_ref, the
    reference's own noise) when the dependence did not change, whatever the marginals
    did."""
    w = np.asarray(window, dtype=float)
    expected = _fit_margins(np.asarray(reference, dtype=float) + 0.5, w.sum(axis=-1),
                            w.sum(axis=-2))
    ok = (w > 0) & (expected > 0)
    terms = np.where(ok, w * np.log(np.where(ok, w, 1.0) / np.where(ok, expected, 1.0)), 0.0)
    return np.maximum(2.0 * terms.sum(axis=(-2, -1)), 0.0)


def pair_df(reference: np.ndarray) -> np.ndarray:
    """Degrees of freedom of each pair's dependence: (levels seen − 1) per column, multiplied
    (0: a column with a single level cannot depend on anything)."""
    r = np.asarray(reference)
    rows = (r.sum(axis=-1) > 0).sum(axis=-1)
    cols = (r.sum(axis=-2) > 0).sum(axis=-1)
    return np.maximum(rows - 1, 0) * np.maximum(cols - 1, 0)


def pair_overdispersion(codes: np.ndarray, pairs: list[list[int]], chunks: int = PAIR_CHUNKS
                        ) -> list[float]:
    """Per pair, how much more consecutive reference chunks' dependence differs from the
    rest's than sampling explains: the mean of G / (df · (1 + m / (n − m))) over chunks of
    m rows, floored at 1 (1 with fewer than 5 chunks of 500 rows)."""
    n = codes.shape[0]
    chunks = min(chunks, n // 500)
    if chunks < 5 or not pairs:
        return [1.0] * len(pairs)
    size = n // chunks
    tables = np.zeros((chunks, len(pairs), COARSE, COARSE))
    for k in range(chunks):
        part = codes[k * size:(k + 1) * size]
        for i, (a, b) in enumerate(pairs):
            ok = (part[:, a] >= 0) & (part[:, b] >= 0)
            cell = part[ok, a].astype(np.int64) * COARSE + part[ok, b]
            tables[k, i] = np.bincount(cell, minlength=COARSE * COARSE).reshape(COARSE, COARSE)
    total = tables.sum(axis=0)
    df = pair_df(total)
    ratios = np.zeros(len(pairs))
    for k in range(chunks):
        m = tables[k].sum(axis=(-2, -1))
        rest = total - tables[k]
        g = dependence_change(tables[k], rest)
        inflation = 1.0 + m / np.maximum(rest.sum(axis=(-2, -1)), 1.0)
        ratios += g / np.maximum(df, 1) / inflation
    return [round(max(1.0, float(r)), 4) for r in ratios / chunks]


class MultivariateDrift(Monitor):
    """Drift of the inputs' joint distribution, tested two ways, each on half the monitor's
    α: the calibrated Jensen–Shannon distance between the window's bins of per-row PCA
    reconstruction error and the reference's (a change spread over many columns), and per
    tracked column pair the change of its dependence (:func:`dependence_change`, a χ² tail
    with the pair's chunk overdispersion, Bonferroni over the pairs: one pair whose tie
    broke is enough, even when the per-row score barely moves). A correlation that breaks
    while every column keeps its own distribution moves them."""

    type = "multivariate_drift"
    family = Family.DRIFT
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.03, "critical_effect": 0.1,
                                        "min_rows": 100}

    @classmethod
    def knows_column(cls, schema: Schema, name: str) -> bool:
        return name in schema.multivariate_groups  # a declared group, not a column

    @property
    def group(self) -> str | None:
        """The declared column group judged, or None for the suite's own model."""
        return self.column

    def model(self) -> JointModel:
        schema = self.bound_schema()
        model = schema.multivariate if self.group is None else \
            schema.multivariate_groups.get(self.group)
        if model is None:
            raise SuiteError(self.id, "needs the suite's multivariate model, and the suite "
                                      "has none; remove the monitor, or re-run init()")
        return model

    def part(self) -> FeatureDrift:
        """The :class:`FeatureDrift` that judges the score bins, with half this monitor's α
        (the pair test has the other half) and its calibration."""
        name = joint_name(self.group)
        spec = Column(name, Kind.NUMERIC, Role.FEATURE, edges=list(self.model().error_edges))
        m = FeatureDrift(name, alpha=self.alpha / 2, calibration=self.calibration,
                         **self.settings)
        m.bind(Schema({name: spec}))
        return m

    def calibrate(self, reference: ReferenceData) -> None:
        model = self.model()
        error, codes = model.scores(reference.table)
        part = self.part()
        part.calibrate(ReferenceData(pa.table({joint_name(self.group): error}),
                                     part.bound_schema(), _view(reference.profile, self.group),
                                     reference.seed))
        self.calibration = {**part.calibration}
        if "null" in self.calibration:
            self.calibration["method"] = ("per-row reconstruction error of the suite's "
                                          "multivariate model, binned; then "
                                          + str(part.calibration["method"]))
        pairs = reference.profile.joint.get(tally_keys(self.group)[1])
        if pairs is not None and len(pairs) == len(model.pairs) and model.pairs:
            self.calibration["pairs"] = {
                "method": "per tracked pair: G statistic of the window's coarse co-occurrence "
                          "against the reference's fitted to the window's margins, over "
                          "df x (1 + n/n_ref) x the overdispersion of consecutive reference "
                          "chunks, chi-square tail, Bonferroni over the pairs",
                "df": [int(v) for v in pair_df(np.asarray(pairs))],
                "overdispersion": pair_overdispersion(codes, model.pairs),
            }

    def not_evaluated(self, window: Profile) -> str | None:
        if tally_keys(self.group)[0] not in window.joint or "null" not in self.calibration:
            return None
        return self.part().not_evaluated(_view(window, self.group))

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        return self.assess(window, reference)[0]

    def pair_test(self, window: Profile, reference: Profile) -> dict[str, Any] | None:
        """The pair test of a window: the pair whose dependence changed most surely
        (``pair``, its scaled statistic ``g``, ``df``, Bonferroni ``p`` over the ``tested``
        pairs and effect ``js``: the JS distance of its table from the reference's fitted to
        the window's margins); None when no pair could be tested."""
        cal = self.calibration.get("pairs")
        key = tally_keys(self.group)[1]
        cur, ref = window.joint.get(key), reference.joint.get(key)
        if not isinstance(cal, dict) or cur is None or ref is None or \
                window.rows < self.settings["min_rows"]:
            return None
        df, phi = np.asarray(cal["df"], dtype=float), np.asarray(cal["overdispersion"])
        if not len(cur) == len(ref) == len(df) == len(phi) == len(self.model().pairs):
            return None
        cur, ref = np.asarray(cur, dtype=float), np.asarray(ref, dtype=float)
        n, n_ref = cur.sum(axis=(-2, -1)), ref.sum(axis=(-2, -1))
        tested = (df > 0) & (n >= PAIR_MIN_ROWS) & (n_ref >= PAIR_MIN_ROWS)
        if not tested.any():
            return None
        g = dependence_change(cur, ref) / (phi * (1.0 + n / np.maximum(n_ref, 1.0)))
        p = np.where(tested, special.chdtrc(np.maximum(df, 1.0), g), 1.0)
        i = int(np.lexsort((-g / np.maximum(df, 1.0), p))[0])  # least p, then largest g/df
        expected = _fit_margins(ref[i] + 0.5, cur[i].sum(axis=1), cur[i].sum(axis=0))
        a, b = self.model().pairs[i]
        names = self.model().columns
        return {"pair": f"{names[a]} × {names[b]}", "g": float(g[i]), "df": int(df[i]),
                "p": min(1.0, float(p[i]) * int(tested.sum())), "tested": int(tested.sum()),
                "js": float(js_distance(expected.ravel(), cur[i].ravel()))}

    def pair_severity(self, test: dict[str, Any] | None) -> Severity | None:
        """Warning when the pair test's Bonferroni p is below its half of α (over the tail
        margin) and the pair moved by ``min_effect``; critical at a hundredth of that α
        and ``critical_effect``."""
        if test is None:
            return None
        line = self.alpha / 2 / TAIL_MARGIN
        if test["p"] < line / 100 and test["js"] >= self.settings["critical_effect"]:
            return Severity.CRITICAL
        if test["p"] < line and test["js"] >= self.settings["min_effect"]:
            return Severity.WARNING
        return None

    def assess(self, window: Profile, reference: Profile) -> tuple[list[Finding], dict[str, Any]]:
        key = tally_keys(self.group)[0]
        if key not in window.joint or key not in reference.joint:
            return [], {}
        found, measures = self.part().assess(_view(window, self.group),
                                             _view(reference, self.group))
        test = self.pair_test(window, reference)
        for entry in (measures.get("drift") or {}).values():
            entry["monitor"] = self.type
            if self.group is not None:
                entry["group"] = self.group
            if test is not None:
                entry["pair_p"] = float(f"{test['p']:.3g}")
        by_pairs = self.pair_severity(test)
        if not found and by_pairs is not None and test is not None:
            line = self.alpha / 2 / TAIL_MARGIN / test["tested"]
            found = [self.finding(test["g"], float(special.chdtri(max(test["df"], 1), line)),
                                  by_pairs, "")]
            found[0].metric = "pair_dependence"
        for f in found:
            f.monitor, f.column = self.type, None
            f.metric = f.metric or "reconstruction_error"
            bins = window.joint[key]
            f.evidence = {**({"psi": f.evidence["psi"]} if "psi" in f.evidence else {}),
                          "rows": window.rows,
                          "beyond_reference_max": float(bins[-1] / max(bins.sum(), 1))}
            if test is not None:
                f.evidence.update(pair_p=test["p"], pair_g=test["g"], pair_df=test["df"],
                                  pair_tested=test["tested"])
                if by_pairs is not None and by_pairs.rank > f.severity.rank:
                    f.severity = by_pairs
            moved = pair_changes(self.model(), window, reference, self.group)[:PAIRS_NAMED]
            if moved:
                f.evidence["pairs"] = ", ".join(f"{p} ({d:.3f})" for p, d in moved)
                f.evidence["top_pair"], f.evidence["top_pair_change"] = moved[0]
            named = f"; most moved: {moved[0][0]}" if moved else ""
            whose = "the features'" if self.group is None else f"group {self.group}:"
            if f.metric == "pair_dependence":
                assert test is not None
                f.message = (f"{whose} joint distribution changed (dependence of "
                             f"{test['pair']}: G {f.value:.1f} > {f.threshold:.1f}, "
                             f"p {test['p']:.2g} over {test['tested']} pairs){named}")
            else:
                f.message = (f"{whose} joint distribution changed (reconstruction-error "
                             f"JS distance {f.value:.3f} > {f.threshold:.3f}){named}")
            if self.group is not None:  # one alert per group (the fingerprint has metric)
                f.metric = f"{f.metric}:{self.group}"
                f.evidence["group"] = self.group
        return found, measures
