"""Fairness: per sensitive attribute and per pair's intersection, is any group treated
differently from the rest than it was in the reference?

For every group: size, selection rate and, with labels, TPR, FPR, precision and accuracy.
Per grouping: demographic-parity difference, disparate-impact ratio (four-fifths rule) and
equalised-odds difference, with confidence intervals from the group sizes, the groups each
is between, and the reference's values beside them.

Alerts come from the *gap* between a group and the rest of the rows (so a change that
lifts everyone alike is not a fairness change): when the gap moves away from parity by
more than sampling noise at the window's group sizes (calibrated, α split across all
group tests) and by at least ``min_effect``, and the group's own rate moved with it (so
the majority is not blamed when a minority changes). Where one change shows in several
overlapping groups (a group, its attribute, an intersection with a third attribute), the
group where it is most concentrated is reported and the others are listed with it.
A reference that already breaks a policy (disparate impact below ``min_di_ratio``) is
reported, not alerted on every window; a new break is alerted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from scipy import special

from watchkeeper.baseline.task import Task
from watchkeeper.monitors.base import Family, Finding, Monitor, ReferenceData, Severity, absent
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.task import fairness_key
from watchkeeper.stats.calibration import TAIL_MARGIN

RATES = ("selection_rate", "tpr", "fpr")


def group_rates(t: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group counts and rates from a (group, predicted neg/pos, label neg/pos/none) tally;
    each rate comes with the count it is a share of."""
    t = np.asarray(t, dtype=float)
    n = t.sum(axis=(1, 2))
    pos, neg = t[:, :, 1].sum(axis=1), t[:, :, 0].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "n": n,
            "selection_rate": t[:, 1, :].sum(axis=1) / n, "selection_rate_n": n,
            "tpr": t[:, 1, 1] / pos, "tpr_n": pos,
            "fpr": t[:, 1, 0] / neg, "fpr_n": neg,
            "precision": t[:, 1, 1] / (t[:, 1, 0] + t[:, 1, 1]),
            "accuracy": (t[:, 1, 1] + t[:, 0, 0]) / (pos + neg),
        }


def _rest(t: np.ndarray) -> np.ndarray:
    """For every group, the tally of all other rows."""
    return t.sum(axis=0, keepdims=True) - t


def _parts(segment: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in segment.split(" & "))


def overlap(a: str, b: str) -> bool:
    """Two groups share rows unless they fix one attribute to different values."""
    pa, pb = _parts(a), _parts(b)
    return all(pa[k] == pb[k] for k in pa.keys() & pb.keys())


def concentrated(ordered: list[Finding], same: Callable[[Finding, Finding], bool]
                 ) -> list[Finding]:
    """Of findings strongest first, those that no stronger finding of the ``same`` change
    in an overlapping segment covers; each kept one lists the segments it covers in its
    evidence (``also_affected``). Fairness groups and segments both report a change once,
    where it is most concentrated."""
    kept: list[Finding] = []
    for f in ordered:
        owner = next((k for k in kept if same(k, f)
                      and overlap(k.segment or "", f.segment or "")), None)
        if owner is None:
            kept.append(f)
        else:
            owner.evidence.setdefault("also_affected", []).append(f.segment)
    for f in kept:
        if "also_affected" in f.evidence:
            f.evidence["also_affected"] = ", ".join(f.evidence["also_affected"])
    return kept


class Fairness(Monitor):
    """Group gaps in selection rate, TPR and FPR against the reference, for every sensitive
    attribute and pairwise intersection; plus a disparate-impact policy."""

    type = "fairness"
    family = Family.FAIRNESS
    params: ClassVar[dict[str, Any]] = {"min_effect": 0.05, "critical_effect": 0.15,
                                        "min_group": 100, "min_di_ratio": 0.8}

    needs_task = True

    @property
    def task(self) -> Task:
        return self.bound_task()

    def calibrate(self, reference: ReferenceData) -> None:
        task = self.task
        groupings = [g for g in task.groupings() if fairness_key(g) in reference.profile.joint]
        tests = 0
        policy: dict[str, float] = {}
        for grouping in groupings:
            t = reference.profile.joint[fairness_key(grouping)]
            enough = t.sum(axis=(1, 2)) >= self.settings["min_group"]
            tests += int(enough.sum()) * len(RATES)
            if len(grouping) == 1:
                policy[grouping[0]] = self._di_ratio(t)[0]
        self.calibration = {
            "method": "two-proportion normal test of the change in (group − rest) gap, "
                      "reference rates as the null, α split over the group tests",
            "tests": max(tests, 1),
            "reference_di_ratio": {k: round(v, 6) for k, v in policy.items() if np.isfinite(v)},
        }

    def _di_ratio(self, t: np.ndarray) -> tuple[float, float]:
        """(disparate-impact ratio, its upper 95% bound) over groups of sufficient size."""
        r = group_rates(t)
        ok = r["n"] >= self.settings["min_group"]
        if ok.sum() < 2:
            return float("nan"), float("nan")
        s, n = r["selection_rate"][ok], r["n"][ok]
        lo_i, hi_i = int(np.argmin(s)), int(np.argmax(s))
        if s[hi_i] <= 0:
            return float("nan"), float("nan")
        se = np.sqrt(s * (1 - s) / n)
        upper = (s[lo_i] + 1.96 * se[lo_i]) / max(s[hi_i] - 1.96 * se[hi_i], 1e-12)
        return float(s[lo_i] / s[hi_i]), float(upper)

    def measure(self, window: Profile) -> dict[str, Any]:
        """Per grouping its :meth:`_summary` and the policy's ``min_di_ratio``, so that a
        report draws the disparate-impact line where the suite does."""
        out: dict[str, Any] = {}
        for grouping in self.task.groupings():
            t = window.joint.get(fairness_key(grouping))
            if t is not None:
                out["*".join(grouping)] = {**self._summary(t, self.task.group_labels(grouping)),
                                           "min_di_ratio": float(self.settings["min_di_ratio"])}
        return {"fairness": out} if out else {}

    def assess(self, window: Profile, reference: Profile) -> tuple[list[Finding], dict[str, Any]]:
        """Findings and measures, each grouping's measures with the reference's beside them
        (``reference``: its DP difference, DI ratio and EO difference), so that a gap the
        model already had when the suite was made reads differently from a new one."""
        measured = self.measure(window)
        summaries = measured.get("fairness", {})
        for grouping in self.task.groupings():
            summary = summaries.get("*".join(grouping))
            t = reference.joint.get(fairness_key(grouping))
            if summary is None or t is None:
                continue
            ref = self._summary(t, self.task.group_labels(grouping), groups=False)
            ref = {k: v[0] if k == "dp_difference" else v for k, v in ref.items()
                   if k in ("dp_difference", "di_ratio", "eo_difference")}
            if ref:
                summary["reference"] = ref
        return ([] if self.not_evaluated(window) else self.evaluate(window, reference)), measured

    def _summary(self, t: np.ndarray, labels: list[str], groups: bool = True) -> dict[str, Any]:
        """Per group n and rates (``groups``), and over the groups of sufficient size the
        DP difference with its 95% interval, DI ratio and EO difference, each with the two
        groups it is between (highest first) and, for EO, the rate it is measured on."""
        r = group_rates(t)
        ok = r["n"] >= self.settings["min_group"]
        summary: dict[str, Any] = {}
        if groups:
            table: dict[str, Any] = {}
            for i, label in enumerate(labels):
                if r["n"][i] == 0:
                    continue
                if not ok[i]:
                    table[label] = {"n": int(r["n"][i]), "status": "insufficient data"}
                    continue
                table[label] = {"n": int(r["n"][i]), **{
                    k: float(r[k][i]) for k in ("selection_rate", "tpr", "fpr", "precision",
                                                "accuracy") if np.isfinite(r[k][i])}}
            summary["groups"] = table
        if ok.sum() < 2:
            return summary
        index = np.flatnonzero(ok)
        s, n = r["selection_rate"][ok], r["n"][ok]
        hi, lo = int(np.argmax(s)), int(np.argmin(s))
        diff = float(s[hi] - s[lo])
        se = float(np.sqrt(s[hi] * (1 - s[hi]) / n[hi] + s[lo] * (1 - s[lo]) / n[lo]))
        summary["dp_difference"] = [diff, diff - 1.96 * se, diff + 1.96 * se]
        summary["dp_groups"] = [labels[index[hi]], labels[index[lo]]]  # also DI's groups
        summary["di_ratio"] = self._di_ratio(t)[0]
        gaps = []
        for k in ("tpr", "fpr"):
            v = r[k][ok]
            if np.isfinite(v).sum() >= 2:
                top, bottom = int(np.nanargmax(v)), int(np.nanargmin(v))
                gaps.append((float(v[top] - v[bottom]), k, top, bottom))
        if gaps:
            gap, k, top, bottom = max(gaps, key=lambda g: g[0])
            summary["eo_difference"] = gap
            summary["eo_metric"] = k
            summary["eo_groups"] = [labels[index[top]], labels[index[bottom]]]
        return summary

    def not_evaluated(self, window: Profile) -> str | None:
        """Not evaluated without the prediction, or when no grouping has two groups of
        ``min_group`` rows."""
        if "tests" not in self.calibration:
            return None
        missing = absent(window, [self.task.prediction])
        if missing:
            return f"{missing[0]} missing"
        floor = self.settings["min_group"]
        for grouping in self.task.groupings():
            t = window.joint.get(fairness_key(grouping))
            if t is not None and int((group_rates(t)["n"] >= floor).sum()) >= 2:
                return None
        return f"groups n < {floor}"

    def evaluate(self, window: Profile, reference: Profile) -> list[Finding]:
        if "tests" not in self.calibration:
            return []
        alpha = self.alpha / float(self.calibration["tests"])
        z = float(special.ndtri(1 - alpha / 2 / TAIL_MARGIN))
        z_crit = float(special.ndtri(1 - alpha / 200 / TAIL_MARGIN))
        candidates: list[tuple[float, Finding]] = []
        for grouping in self.task.groupings():
            key = fairness_key(grouping)
            if key not in window.joint or key not in reference.joint:
                continue
            candidates += self._gap_findings(grouping, window.joint[key], reference.joint[key],
                                             z, z_crit)
        found = self._most_concentrated(candidates)
        found += self._policy(window)
        return found

    def _gap_findings(self, grouping: list[str], w: np.ndarray, ref: np.ndarray, z: float,
                      z_crit: float) -> list[tuple[float, Finding]]:
        rw, rr = group_rates(w), group_rates(ref)
        restw, restr = group_rates(_rest(w)), group_rates(_rest(ref))
        labels = self.task.group_labels(grouping)
        small = self.settings["min_group"]
        out = []
        for metric in RATES:
            nk = f"{metric}_n"
            for i, label in enumerate(labels):
                if min(rw[nk][i], rr[nk][i], restw[nk][i], restr[nk][i]) < small:
                    continue
                gap_w = rw[metric][i] - restw[metric][i]
                gap_r = rr[metric][i] - restr[metric][i]
                change = gap_w - gap_r
                p, q = rr[metric][i], restr[metric][i]
                sd = np.sqrt(p * (1 - p) * (1 / rw[nk][i] + 1 / rr[nk][i])
                             + q * (1 - q) * (1 / restw[nk][i] + 1 / restr[nk][i]))
                warning = max(z * sd, self.settings["min_effect"])
                if abs(change) <= warning or abs(gap_w) <= abs(gap_r):
                    continue
                # The group itself must have changed, not only the rest of the rows: when a
                # minority changes, the majority's gap to "the rest" moves too.
                own = rw[metric][i] - p
                own_sd = np.sqrt(p * (1 - p) * (1 / rw[nk][i] + 1 / rr[nk][i]))
                if abs(own) <= z * own_sd or np.sign(own) != np.sign(change):
                    continue
                critical = max(z_crit * sd, self.settings["critical_effect"])
                f = self.finding(
                    gap_w, gap_r + np.sign(change) * warning,
                    Severity.CRITICAL if abs(change) > critical else Severity.WARNING,
                    f"{label}: {metric.replace('_', ' ')} gap to the rest {gap_r:+.3f} → "
                    f"{gap_w:+.3f} ({int(rw[nk][i])} rows)",
                    reference_gap=gap_r, change=change, group_rate=rw[metric][i],
                    rest_rate=restw[metric][i], reference_group_rate=p,
                    group_rows=int(rw["n"][i]), sd=sd,
                )
                f.metric, f.segment = f"{metric}_gap", label
                out.append((abs(change), f))
        return out

    @staticmethod
    def _most_concentrated(candidates: list[tuple[float, Finding]]) -> list[Finding]:
        return concentrated([f for _, f in sorted(candidates, key=lambda c: -c[0])],
                            lambda k, f: k.metric == f.metric)

    def _policy(self, window: Profile) -> list[Finding]:
        floor = self.settings["min_di_ratio"]
        known = self.calibration.get("reference_di_ratio", {})
        found = []
        for a in self.task.attributes:
            t = window.joint.get(fairness_key([a.column]))
            if t is None or known.get(a.column, 1.0) < floor:
                continue  # a reference that already breaks the policy is reported, not alerted
            ratio, upper = self._di_ratio(t)
            if np.isfinite(upper) and upper < floor:
                f = self.finding(ratio, floor, Severity.WARNING,
                                 f"{a.column}: disparate-impact ratio {ratio:.2f} below "
                                 f"{floor:g} (four-fifths rule)", upper_bound=upper)
                f.metric, f.column = "di_ratio", a.column
                found.append(f)
        return found
