"""Rules: how long a condition must hold, hysteresis, repeats, inhibition and grouping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from watchkeeper.alerts.labels import LABELS, check_matchers, matches

#: Windows a condition must hold before it fires, by monitor type or family (type first).
#: Deterministic breaks (schema), outages (volume) and service objectives fire on the first
#: window; calibrated statistical tests must hold two windows in a row, which turns a
#: monitor's per-window false-alert rate α into roughly α².
DEFAULT_FOR: dict[str, int] = {
    "missing_column": 1,
    "type_change": 1,
    "new_column": 1,
    "volume": 1,
    "service": 1,
    "security": 1,
    "quality": 2,
    "drift": 2,
    "performance": 2,
    "estimated_performance": 2,
    "fairness": 2,
}
#: For a monitor whose type and family are both absent from ``for_windows``.
FALLBACK_FOR = 2

_DRIFT = "=~feature_drift|prediction_drift|target_drift|text_drift|multivariate_drift"
_OUTCOME = "=~prediction_drift|performance|estimated_performance|fairness"
_STATISTICS = "=~drift|performance|estimated_performance|fairness"
_BREAK = "=~missing_column|type_change"
_OUTCOME_FAMILIES = "=~performance|estimated_performance|fairness"
_SEGMENTED = "=~quality|drift|performance|estimated_performance"
#: Roles of the columns the outcome monitors are computed from.
_MODEL_OUTPUT = "=~prediction|proba|target"


@dataclass
class InhibitRule:
    """While a finding matching ``source`` is present in a window, findings of that window
    matching ``target`` (and equal to the source on every ``equal`` label) do not alert:
    the cause is reported, not its echoes. Findings carry a ``direction`` label (``below``
    when the value is under its threshold), so a collapse can be told from a spike."""

    source: dict[str, str]
    target: dict[str, str]
    equal: list[str] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        self.source = check_matchers(self.source, f"inhibit {self.name}.source")
        self.target = check_matchers(self.target, f"inhibit {self.name}.target")
        _check_labels(self.equal, f"inhibit {self.name}.equal")

    def inhibits(self, source: dict[str, str], target: dict[str, str]) -> bool:
        return (source is not target and matches(self.source, source)
                and matches(self.target, target)
                and all(source.get(k, "") == target.get(k, "") for k in self.equal))

    def key(self, labels: dict[str, str]) -> tuple[str, ...]:
        """The values a source and its target must share (the ``equal`` labels)."""
        return tuple(labels.get(k, "") for k in self.equal)

    def inhibited(self, labels: list[dict[str, str]]) -> dict[int, dict[str, str]]:
        """Index of each finding this rule inhibits → its source (the first matching one in
        order), in linear time: sources are indexed by their ``equal`` labels."""
        sources: dict[tuple[str, ...], list[int]] = {}
        for i, s in enumerate(labels):
            if matches(self.source, s):
                first = sources.setdefault(self.key(s), [])
                if len(first) < 2:  # the first two: one of them is not the target itself
                    first.append(i)
        out: dict[int, dict[str, str]] = {}
        if not sources:
            return out
        for i, target in enumerate(labels):
            found = sources.get(self.key(target))
            if found and matches(self.target, target):
                source = next((j for j in found if j != i), None)
                if source is not None:
                    out[i] = labels[source]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": dict(self.source), "target": dict(self.target),
                "equal": list(self.equal)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InhibitRule:
        return cls(dict(d["source"]), dict(d["target"]), list(d.get("equal", [])),
                   str(d.get("name", "")))


@dataclass
class GroupRule:
    """Two firing alerts belong to one incident when one matches ``left`` and the other
    ``right`` (``right`` None: the same as ``left``), and they agree on every ``equal``
    label. With ``same_window``, only alerts that started firing in the same window
    relate (changes that began together, not one that came later). Relations chain: an
    alert related to any firing alert of an open incident joins it."""

    name: str
    left: dict[str, str]
    right: dict[str, str] | None = None
    equal: list[str] = field(default_factory=list)
    same_window: bool = False

    def __post_init__(self) -> None:
        self.left = check_matchers(self.left, f"group {self.name}.left")
        if self.right is not None:
            self.right = check_matchers(self.right, f"group {self.name}.right")
        _check_labels(self.equal, f"group {self.name}.equal")

    def key(self, labels: dict[str, str]) -> tuple[str, ...] | None:
        """The ``equal`` labels' values, which related alerts share; None when one is
        empty (such an alert relates to none by this rule)."""
        values = tuple(labels.get(k, "") for k in self.equal)
        return None if not all(values) else values

    def sides(self, labels: dict[str, str]) -> tuple[bool, bool]:
        """Whether the labels match ``left``, and ``right``."""
        right = self.left if self.right is None else self.right
        return matches(self.left, labels), matches(right, labels)

    def relates(self, a: dict[str, str], b: dict[str, str], same_window: bool = True) -> bool:
        """Whether two alerts share their :meth:`key` and one matches each side."""
        if self.same_window and not same_window:
            return False
        shared = self.key(a)
        if shared is None or shared != self.key(b):
            return False
        (a_left, a_right), (b_left, b_right) = self.sides(a), self.sides(b)
        return (a_left and b_right) or (b_left and a_right)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "left": dict(self.left),
               "right": None if self.right is None else dict(self.right),
               "equal": list(self.equal)}
        if self.same_window:
            out["same_window"] = True
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupRule:
        right = d.get("right")
        return cls(str(d["name"]), dict(d.get("left", {})),
                   None if right is None else dict(right), list(d.get("equal", [])),
                   bool(d.get("same_window", False)))


def default_inhibit() -> list[InhibitRule]:
    """A schema break or missing values on a column inhibit drift and value checks on it;
    a missing prediction or score column inhibits everything computed from the model's
    output; a volume collapse or throughput drop inhibits statistics computed on too few
    rows."""
    return [
        InhibitRule({"monitor": "=~missing_column|type_change|missing_rate"},
                    {"monitor": f"{_DRIFT}|out_of_range|unseen_category|invalid_rate"},
                    ["column"], "column break"),
        InhibitRule({"monitor": _BREAK, "role": _MODEL_OUTPUT},
                    {"family": _OUTCOME_FAMILIES}, [], "model output missing"),
        InhibitRule({"monitor": "volume", "direction": "below"}, {"family": _STATISTICS},
                    [], "volume collapse"),
        InhibitRule({"monitor": "throughput", "direction": "below"}, {"family": _STATISTICS},
                    [], "throughput drop"),
    ]


def default_group() -> list[GroupRule]:
    """Same column; drift with outcome changes (model degradation); outcome changes with
    each other; service alerts together, with volume; security by segment; drift, quality
    and performance of the same segment; security with the drift it causes."""
    return [
        GroupRule("column", {}, None, ["column"]),
        GroupRule("model degradation", {"monitor": _DRIFT}, {"monitor": _OUTCOME}),
        GroupRule("model outcome", {"monitor": _OUTCOME}),
        # several columns that start drifting, or break, in the same window: one change
        # upstream
        GroupRule("drift together", {"monitor": _DRIFT}, None, [], same_window=True),
        GroupRule("break together", {"monitor": _BREAK}, None, [], same_window=True),
        # a change in how the inputs move together comes with whatever changed them: a
        # column that broke, went missing or drifted in the same window
        GroupRule("joint change", {"monitor": "multivariate_drift"},
                  {"family": "=~quality|drift"}, [], same_window=True),
        GroupRule("service", {"family": "service"}),
        GroupRule("traffic", {"monitor": "volume"}, {"family": "service"}),
        GroupRule("security", {"family": "security"}, None, ["segment"]),
        # drift, quality and performance of one segment (region=north): one slice changed
        GroupRule("segment", {"family": _SEGMENTED}, None, ["segment"]),
        # abusive or out-of-distribution traffic distorts the input distributions it joins
        GroupRule("distorted inputs", {"family": "security"}, {"monitor": _DRIFT}),
    ]


@dataclass
class Rules:
    """How findings become alerts and alerts incidents; saved in the suite file.

    >>> Rules().for_window("feature_drift", "drift"), Rules().for_window("latency", "service")
    (2, 1)
    >>> Rules.from_dict({"for_windows": {"drift": 3}}).for_window("feature_drift", "drift")
    3
    """

    for_windows: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_FOR))
    clear_for: int = 2
    repeat_every: int = 12  # 0: never repeat
    inhibit: list[InhibitRule] = field(default_factory=default_inhibit)
    group: list[GroupRule] = field(default_factory=default_group)

    def __post_init__(self) -> None:
        self.for_windows = {**DEFAULT_FOR, **{str(k): int(v) for k, v in
                                              self.for_windows.items()}}
        bad = {k: v for k, v in self.for_windows.items() if v < 1}
        if bad:
            raise ValueError(f"for_windows: {sorted(bad)[0]} must be at least 1, got "
                             f"{bad[sorted(bad)[0]]}")
        if self.clear_for < 1:
            raise ValueError(f"clear_for: must be at least 1, got {self.clear_for}")
        if self.repeat_every < 0:
            raise ValueError(f"repeat_every: must be 0 (never) or positive, got "
                             f"{self.repeat_every}")

    def for_window(self, monitor: str, family: str) -> int:
        """Windows in a row a monitor's condition must hold before it fires."""
        return self.for_windows.get(monitor, self.for_windows.get(family, FALLBACK_FOR))

    def inhibited(self, labels: list[dict[str, str]]) -> dict[int, str]:
        """Index of each inhibited finding → ``"<rule>: <source alertname> on <column>"``
        (the first rule that inhibits it). Linear in the number of findings per rule."""
        out: dict[int, str] = {}
        for rule in self.inhibit:
            for i, source in rule.inhibited(labels).items():
                if i not in out:
                    on = f" on {source['column']}" if source.get("column") else ""
                    out[i] = f"{rule.name or 'inhibit'}: {source['alertname']}{on}"
        return out

    def related(self, a: dict[str, str], b: dict[str, str], same_window: bool = True) -> bool:
        """Whether two alerts belong in one incident; ``same_window``: they started firing
        in the same window."""
        return any(rule.relates(a, b, same_window) for rule in self.group)

    def to_dict(self) -> dict[str, Any]:
        return {
            "for_windows": dict(self.for_windows),
            "clear_for": self.clear_for,
            "repeat_every": self.repeat_every,
            "inhibit": [r.to_dict() for r in self.inhibit],
            "group": [r.to_dict() for r in self.group],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Rules:
        """Rules from a dict; absent keys keep their defaults, ``for_windows`` entries
        override the defaults one by one, ``inhibit``/``group`` lists replace them."""
        d = d or {}
        unknown = set(d) - {"for_windows", "clear_for", "repeat_every", "inhibit", "group"}
        if unknown:
            raise ValueError(f"alert rules: unknown key {sorted(unknown)[0]!r}")
        kw: dict[str, Any] = {}
        if "for_windows" in d:
            kw["for_windows"] = dict(d["for_windows"] or {})
        for key in ("clear_for", "repeat_every"):
            if key in d:
                kw[key] = int(d[key])
        if "inhibit" in d:
            kw["inhibit"] = [InhibitRule.from_dict(r) for r in d["inhibit"] or []]
        if "group" in d:
            kw["group"] = [GroupRule.from_dict(r) for r in d["group"] or []]
        return cls(**kw)


def _check_labels(names: list[str], where: str) -> None:
    for name in names:
        if name not in LABELS:
            raise ValueError(f"{where}: unknown label {name!r}; known: {', '.join(LABELS)}")
