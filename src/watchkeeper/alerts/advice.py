"""Advice for an incident: ranked likely causes, a diagnosis, and actions with the numbers
behind them.

Causes are the incident's columns (drift or quality change × importance to the model,
the mutual information of the column with the prediction, measured on the reference),
groups (fairness and performance segments, by the size of the change) and clients; when
the change began is the first window an alert was seen in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.alerts import Alert, Incident
from watchkeeper.monitors.base import Family

DIAGNOSES = ("upstream data break", "abuse", "out-of-distribution inputs", "capacity/latency",
             "covariate drift", "fairness regression", "concept drift",
             "prediction/calibration shift", "other")


@dataclass
class Cause:
    kind: str  # column | segment | client | service
    name: str
    score: float
    detail: str


@dataclass
class Advice:
    diagnosis: str
    causes: list[Cause]
    actions: list[str]
    began: str | None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"diagnosis": self.diagnosis, "began": self.began, "actions": self.actions,
                "causes": [c.__dict__ for c in self.causes], "evidence": self.evidence}

    def to_text(self) -> str:
        lines = [f"diagnosis: {self.diagnosis} (since {self.began})", "likely causes:"]
        lines += [f"  {i}. {c.name}: {c.detail}" for i, c in enumerate(self.causes[:5], 1)]
        lines += ["actions:", *(f"  - {a}" for a in self.actions)]
        return "\n".join(lines)


def _diagnosis(alerts: list[Alert]) -> str:
    monitors = {a.monitor for a in alerts}
    families = {a.family for a in alerts}
    if monitors & {"missing_column", "type_change", "missing_rate", "invalid_rate"}:
        return "upstream data break"
    if any(a.family == Family.SECURITY and (a.segment or "").startswith("client=") for a in alerts):
        return "abuse"
    if "ood_share" in monitors:
        return "out-of-distribution inputs"
    if Family.SERVICE in families:
        return "capacity/latency"
    if monitors & {"feature_drift", "embedding_drift"}:  # inputs moved: the rest follows
        return "covariate drift"
    if Family.FAIRNESS in families and _concentrated(alerts):
        return "fairness regression"
    if "performance" in monitors:
        return "covariate drift" if _explained_by_inputs(alerts) else "concept drift"
    if Family.FAIRNESS in families:
        return "fairness regression"
    if monitors & {"prediction_drift", "estimated_performance"}:
        return "prediction/calibration shift"
    return "other"


def _change(a: Alert) -> float:
    return abs(float(a.evidence.get("change", 0.0) or 0.0))


def _concentrated(alerts: list[Alert]) -> bool:
    """A group's gap moved at least twice as much as the model's overall accuracy: the
    change is about that group, not a change everyone shares (as concept drift is)."""
    gap = max((_change(a) for a in alerts if a.family == Family.FAIRNESS), default=0.0)
    overall = max((_change(a) for a in alerts
                   if a.monitor == "performance" and a.metric == "accuracy"), default=0.0)
    return gap >= 2 * overall


#: Share of a realised drop that the label-free estimate must show too for the drop to be
#: put down to the mix of inputs rather than to the model.
EXPLAINED_SHARE = 0.5


def _explained(a: Alert) -> float | None:
    """Share of a realised-performance change that the label-free estimate (the window's
    inputs) shows as well; None without an estimate."""
    expected, reference = a.evidence.get("expected"), a.evidence.get("reference")
    if expected is None or reference is None or not a.evidence.get("change"):
        return None
    return (float(expected) - float(reference)) / float(a.evidence["change"])


def _explained_by_inputs(alerts: list[Alert]) -> bool:
    """The largest realised drop is mostly expected from the inputs alone: the window has
    more of the rows the model handles worse (a shift in the mix of inputs, which the
    label model follows), not a model that got worse on the same rows (concept drift)."""
    shares = sorted(((_change(a), share) for a in alerts if a.monitor == "performance"
                     and (share := _explained(a)) is not None), reverse=True)
    return bool(shares) and shares[0][1] >= EXPLAINED_SHARE


def _causes(alerts: list[Alert], weights: dict[str, float]) -> list[Cause]:
    causes: dict[tuple[str, str], Cause] = {}
    for a in alerts:
        ratio = abs(a.value / a.threshold) if a.threshold else abs(a.value)
        if a.segment:
            kind = "client" if a.segment.startswith("client=") else "segment"
            name, score = a.segment, abs(float(a.evidence.get("change", ratio)))
        elif a.column and a.family in (Family.DRIFT, Family.QUALITY):
            kind, name = "column", a.column
            score = ratio * (0.5 + weights.get(a.column, 0.0))
            if a.family == Family.QUALITY:
                score *= 10  # a break outranks the drift it causes
        elif a.family == Family.SERVICE:
            kind, name, score = "service", a.metric or a.monitor, ratio
        else:
            continue
        detail = a.message
        if kind == "column" and a.column in weights:
            detail += f" (importance {weights[a.column]:.2f})"
        key = (kind, name)
        if key not in causes or causes[key].score < score:
            causes[key] = Cause(kind, name, float(score), detail)
    return sorted(causes.values(), key=lambda c: -c.score)


def _actions(diagnosis: str, alerts: list[Alert], causes: list[Cause]) -> list[str]:
    top = causes[0] if causes else None
    first = {a.fingerprint: a.first_seen for a in alerts}

    def since(a: Alert) -> str:
        return f"from window {first[a.fingerprint]}"

    out: list[str] = []
    for a in sorted(alerts, key=lambda a: -(abs(a.value / a.threshold) if a.threshold else 0)):
        if "segment_rows" in a.evidence and a.segment:  # a segment's own finding
            out.append(f"{a.message} {since(a)}: the change is confined to {a.segment} "
                       f"({int(a.evidence['segment_rows'])} rows); compare its rows with its "
                       "reference rows and look for what differs in that segment only "
                       "(its upstream source, a local change, a new sub-population)")
        elif diagnosis == "upstream data break" and a.family == Family.QUALITY:
            out.append(f"{a.message} {since(a)}: check the upstream producer of "
                       f"{a.column}; do not retrain on this data")
        elif diagnosis == "abuse" and a.family == Family.SECURITY and a.segment:
            out.append(f"rate-limit or block {a.segment}: {a.message}")
        elif diagnosis == "out-of-distribution inputs" and a.monitor == "ood_share":
            out.append(f"route out-of-distribution inputs to a fallback or to human review: "
                       f"{a.message}")
        elif diagnosis == "capacity/latency" and a.family == Family.SERVICE:
            out.append(f"{a.message} {since(a)}: scale out, or roll back the latest deploy; "
                       "check the error rate and the host's saturation")
        elif diagnosis == "fairness regression" and a.family == Family.FAIRNESS:
            out.append(f"{a.message} {since(a)}: review how the model treats this group "
                       "(recent feature or threshold changes) before acting on its "
                       "predictions for it")
        elif diagnosis == "concept drift" and a.monitor == "performance":
            expected = a.evidence.get("expected")
            given = (f" (the inputs alone lead one to expect {float(expected):.3f})"
                     if expected is not None else "")
            out.append(f"{a.message}{given} while the inputs did not drift: the model is "
                       "less right on the same kind of rows; retrain on recent labeled data; "
                       "check the labels' quality")
        elif (diagnosis == "covariate drift" and a.monitor == "performance"
              and "expected" in a.evidence):
            out.append(f"{a.message} {since(a)}, and the label-free estimate from the inputs "
                       f"falls with it ({float(a.evidence['expected']):.3f}): the window holds "
                       "more of the rows the model handles worse, while it is as right as "
                       "before on each kind of row; find which inputs or combinations of them "
                       "moved (drift per column in the report) and retrain with such rows if "
                       "they are here to stay")
        elif diagnosis == "covariate drift" and a.monitor == "feature_drift":
            extra = ", ".join(f"{k} {float(v):+.2f}" for k, v in a.evidence.items()
                              if k in ("psi", "mean_shift_sd"))
            out.append(f"{a.message} {since(a)} ({extra}): confirm with the upstream owner of "
                       f"{a.column}; if the population really changed and (estimated) "
                       "performance drops, retrain on recent data")
        elif diagnosis == "covariate drift" and a.monitor == "embedding_drift":
            out.append(f"{a.message} {since(a)}: more of {a.evidence.get('gained') or '?'}; "
                       f"less of {a.evidence.get('lost') or '?'}; read those reference rows to "
                       "see what the regions hold, and retrain with such inputs if the new "
                       "mix is here to stay")
        elif diagnosis == "prediction/calibration shift":
            out.append(f"{a.message}: the outputs moved without input drift: check the "
                       "model version and recalibrate its scores")
        if len(out) == 3:
            break
    if not out and top is not None:
        out.append(f"investigate {top.name}: {top.detail}")
    return out


def incident_view(incident: Incident, weights: dict[str, float] | None = None
                  ) -> dict[str, Any]:
    """An incident as every output shows it (API, CLI, SDK, check's JSON, dashboard): its
    fields and its advice."""
    return {**incident.to_dict(), "advice": advise(incident, weights).to_dict()}


def incident_views(incidents: Iterable[Incident], weights: dict[str, float] | None = None,
                   *, is_open: bool | None = None) -> list[dict[str, Any]]:
    """A model's incidents as the API lists them, newest first, each with its advice; only
    the open (``is_open=True``) or the closed ones (``False``) when asked."""
    found = [incident_view(i, weights) for i in incidents
             if is_open is None or i.is_open == is_open]
    return sorted(found, key=lambda i: i["opened_at"], reverse=True)


def advise(incident: Incident, weights: dict[str, float] | None = None) -> Advice:
    """Diagnose an incident from its alerts; ``weights`` are feature importances."""
    alerts = list(incident.alerts.values())
    weights = weights or {}
    diagnosis = _diagnosis(alerts)
    causes = _causes(alerts, weights)
    began = min((a.first_seen_at, a.first_seen) for a in alerts if a.first_seen_at)[1] \
        if any(a.first_seen_at for a in alerts) else None
    return Advice(diagnosis, causes, _actions(diagnosis, alerts, causes), began,
                  {"alerts": len(alerts), "severity": incident.severity.value})
