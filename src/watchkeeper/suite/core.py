"""Suite = schema + binning plan + monitors with calibrated thresholds + reference profile.

``init()`` builds one from reference data; ``Suite.save``/``load`` keep it in a readable,
editable YAML file; ``Suite.check`` evaluates new data against it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from watchkeeper.alerts import Rules
from watchkeeper.baseline.binning import DEFAULT_BINS
from watchkeeper.baseline.embedding import plan_embeddings
from watchkeeper.baseline.estimators import LabelModel, LossModel
from watchkeeper.baseline.expressions import Rule, parse_rules
from watchkeeper.baseline.importance import importance
from watchkeeper.baseline.multiclass import fit_class_calibration, multiclass_left_out
from watchkeeper.baseline.multivariate import GROUP_NAME, JointModel
from watchkeeper.baseline.multivariate import fit as fit_joint
from watchkeeper.baseline.ood import SecurityModel
from watchkeeper.baseline.ood import fit as fit_security
from watchkeeper.baseline.schema import Column, Kind, Role, Schema, infer_schema
from watchkeeper.baseline.segments import fit_segments, segment_names
from watchkeeper.baseline.task import Task, TaskType, infer_task
from watchkeeper.baseline.text import TextPlan
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.display import html_of, progress_bar
from watchkeeper.io.files import write_atomic
from watchkeeper.io.pii import MODES
from watchkeeper.io.tables import CsvLayout, did_you_mean, to_table
from watchkeeper.monitors import (
    FAMILIES,
    BoundaryProbing,
    ClientVolume,
    EmbeddingDrift,
    ErrorRate,
    EstimatedPerformance,
    ExtractionCoverage,
    Fairness,
    FeatureDrift,
    Finding,
    InvalidRate,
    LabelCoverage,
    Latency,
    MissingRate,
    Monitor,
    MultivariateDrift,
    NearDuplicates,
    OODShare,
    OutOfRange,
    PredictionDrift,
    RealisedPerformance,
    ReferenceData,
    RejectedRequests,
    RuleViolations,
    SchemaChange,
    TargetDrift,
    TextDrift,
    TextRange,
    Throughput,
    UnseenCategory,
    Volume,
    monitor_class,
)
from watchkeeper.monitors.security import ClientMonitor
from watchkeeper.profiles.column import ColumnProfile
from watchkeeper.profiles.core import Profile, profile
from watchkeeper.profiles.embedding import cross_fit
from watchkeeper.profiles.segments import record_codes, segment_labels
from watchkeeper.profiles.service import SERVICE_TALLY
from watchkeeper.profiles.task import row_codes
from watchkeeper.run.check import (
    CheckResult,
    WindowLength,
    WindowResult,
    group_windows,
    row_windows,
    time_windows,
)
from watchkeeper.run.label_join import LabelJoin, join_labels
from watchkeeper.suite import file as suitefile
from watchkeeper.suite.embeddings import (
    bins_of,
    codebook_from_fields,
    embedding_groups,
    set_embedding_groups,
)
from watchkeeper.suite.segments import Segments, assess_segments, segments_from_fields
from watchkeeper.wire import CLIENT, ERROR

#: Default alert budget: expected false alerts per window, for the whole suite.
DEFAULT_BUDGET = 0.01
#: Default share of the alert budget per monitor family (``budget:`` in the suite file).
#: Weights are normalised over the families that have a monitor able to run, and a
#: family's share is split evenly over those of its monitors. Performance and fairness
#: get more per monitor than the dozens of per-column quality and drift monitors: each is
#: one monitor testing several metrics or groups.
DEFAULT_WEIGHTS: dict[str, float] = {
    "quality": 0.2, "drift": 0.3, "performance": 0.15, "estimated_performance": 0.1,
    "fairness": 0.1, "service": 0.05, "security": 0.1,
}

_DRIFT_BY_ROLE: dict[Role, type[Monitor]] = {
    Role.FEATURE: FeatureDrift,
    Role.PREDICTION: PredictionDrift,
    Role.PROBA: PredictionDrift,
    Role.TARGET: TargetDrift,
}


def generate_monitors(schema: Schema) -> list[Monitor]:
    """Every monitor that applies to the schema's columns, roles and task."""
    monitors: list[Monitor] = [SchemaChange()]
    task = schema.task
    if task is not None:
        if task.target is not None:
            monitors += [RealisedPerformance(), LabelCoverage()]
        if ((task.type == TaskType.BINARY and task.score_edges) or task.loss_model is not None
                or task.class_calibration is not None):
            monitors.append(EstimatedPerformance())
        if task.type == TaskType.BINARY and task.attributes:
            monitors.append(Fairness())
    monitors += [Latency(), ErrorRate(), Throughput()]
    if schema.security is not None:
        monitors.append(OODShare())
        monitors += [ClientVolume(), NearDuplicates(), ExtractionCoverage(),
                     RejectedRequests()]
        if schema.security.proba:
            monitors.append(BoundaryProbing())
    for col in schema:
        if col.role in (Role.IGNORE, Role.ID):
            continue
        if col.role != Role.TARGET:
            monitors.append(MissingRate(col.name))
        if col.kind == Kind.NUMERIC and col.edges:
            monitors += [InvalidRate(col.name), OutOfRange(col.name)]
        if col.categories is not None and not col.truncated:
            monitors.append(UnseenCategory(col.name))
        if col.codebook is not None:  # an embedding, or embedded text
            monitors += [InvalidRate(col.name), EmbeddingDrift(col.name)]
        drift = _DRIFT_BY_ROLE.get(col.role)
        if drift is not None and col.n_bins:
            monitors.append(drift(col.name))
        if col.role == Role.TIMESTAMP:
            monitors.append(Volume(col.name))
        if col.text is not None:
            monitors += [InvalidRate(col.name), TextDrift(col.name), TextRange(col.name)]
    if schema.rules:
        monitors.append(RuleViolations())
    if schema.multivariate is not None:
        monitors.append(MultivariateDrift())
    monitors += [MultivariateDrift(group) for group in schema.multivariate_groups]
    return monitors


def fit_groups(table: pa.Table, schema: Schema,
               groups: Mapping[str, str | Iterable[str]] | None, *,
               seed: int = 0) -> dict[str, JointModel]:
    """A joint model per declared column group (name → columns); an error names a bad
    name, a column that is not a binned input, or a group too small or too short to fit."""
    out: dict[str, JointModel] = {}
    for name, given in (groups or {}).items():
        where = f"multivariate_groups.{name}"
        if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
            raise SuiteError(where, "a group name is letters, digits, _ and -")
        names = [c.strip() for c in (given.split(",") if isinstance(given, str) else given)]
        names = list(dict.fromkeys(c for c in names if c))
        numeric, categorical = [], []
        for column in names:
            col = schema.columns.get(column)
            if col is None:
                raise SuiteError(where, f"no column {column!r} in the reference"
                                        f"{did_you_mean(column, schema.columns)}")
            if col.kind == Kind.NUMERIC and col.edges:
                numeric.append(column)
            elif col.categories is not None and not col.truncated:
                categorical.append((column, col.categories))
            else:
                raise SuiteError(where, f"column {column!r} is not a numeric or categorical "
                                        "input with bins (ids, text and free labels are not)")
        if len(names) < 2:
            raise SuiteError(where, "a group needs two columns or more")
        model = fit_joint(table, numeric, categorical, seed=seed)
        if model is None:
            raise SuiteError(where, f"too few reference rows ({table.num_rows}) to fit the "
                                    "group's joint model (50 per encoded dimension)")
        out[name] = model
    return out


def check_rules(rules: list[Rule], schema: Schema, where: str = "rules",
                source: str | None = None) -> None:
    """Every column a rule reads must be a column of the suite (the profile only sees
    those); an error names the rule and the column."""
    for i, rule in enumerate(rules):
        for name in sorted(rule.columns):
            if name not in schema.columns:
                raise SuiteError(f"{where}[{i}].expr", f"rule {rule.name}: no column {name!r} "
                                 f"in the suite{did_you_mean(name, schema.columns)}", source)


def extra_monitors(monitors: Iterable[Monitor | str] | None) -> list[Monitor]:
    """Monitors given to :func:`init` besides the generated ones: instances, or type names
    (``"too_many_zeros"``, ``"too_many_zeros:amount"`` for a column) of registered or
    installed monitor types (see :func:`watchkeeper.register_monitor`)."""
    out: list[Monitor] = []
    for i, m in enumerate(monitors or ()):
        if isinstance(m, str):
            kind, _, column = m.partition(":")
            try:
                cls = monitor_class(kind)
            except SuiteError as exc:
                raise SuiteError(f"monitors[{i}]", exc.problem) from None
            out.append(cls(column or None))
        elif isinstance(m, Monitor):
            out.append(m)
        else:
            raise SuiteError(f"monitors[{i}]", "expected a Monitor or a monitor type name, "
                                               f"got {type(m).__name__}")
    return out


def not_generated(schema: Schema) -> dict[str, str]:
    """The task monitors :func:`generate_monitors` left out, each with the reason."""
    task = schema.task
    if task is None:
        return {t: "no target or prediction column (name them with target=, prediction=)"
                for t in ("performance", "estimated_performance", "fairness")}
    out: dict[str, str] = {}
    if task.target is None:
        out["performance"] = "no target column (target=)"
    if not ((task.type == TaskType.BINARY and task.score_edges) or task.loss_model is not None
            or task.class_calibration is not None):
        out["estimated_performance"] = (
            multiclass_left_out(task) if task.type == TaskType.MULTICLASS
            else "no score column (proba=)"
            if task.type == TaskType.BINARY else "needs a labeled reference with predictions")
    if task.type != TaskType.BINARY:
        out["fairness"] = f"the task is {task.type}: fairness needs a binary classifier"
    elif not task.attributes:
        out["fairness"] = "no sensitive column (sensitive=)"
    return out


def idle_reason(monitor: Monitor, schema: Schema, reference: Profile,
                serving: bool = False) -> str | None:
    """Why a monitor cannot run on data shaped like the reference, or None when it can.

    Calibration may have skipped it (no labeled rows, no score…), or it reads a serving
    input the reference lacks: the ``_error`` flag, clients, a timestamp for time windows.
    The SDK and the server add those online, so such monitors stay in the suite, on
    standby, with the share they would get in a suite where every family runs; only the
    monitors that can run share the budget (``serving=True`` counts serving inputs as
    present, for a suite meant for the server)."""
    skipped = monitor.calibration.get("skipped")
    if skipped:
        return str(skipped)
    if serving:
        return None
    if monitor.type == "error_rate" and SERVICE_TALLY not in reference.joint:
        return f"no {ERROR} column"
    if monitor.type == "throughput" and not schema.by_role(Role.TIMESTAMP):
        return "no timestamp column"
    if isinstance(monitor, ClientMonitor) and not reference.clients:
        return f"no client column ({CLIENT} or client=)"
    return None


def split_budget(monitors: list[Monitor], budget: float, weights: dict[str, float],
                 idle: dict[str, str]) -> dict[str, float]:
    """Set each calibrated monitor's α; return the α each family got.

    Families with a monitor that can run share ``budget`` by their weights (normalised
    over those families); a family's α is split evenly over its running monitors. A
    monitor in ``idle`` (by id: it cannot run on the reference's columns) takes no share:
    it gets what it would in a suite where every family runs, used only if its inputs
    arrive (see :func:`idle_reason`)."""
    calibrated = [m for m in monitors if m.calibrated]
    running = [m for m in calibrated if m.id not in idle]
    # in FAMILIES order, not set order: float sums depend on the order of their terms,
    # and a set of strings iterates by PYTHONHASHSEED, so α would differ between runs
    present = sorted({m.family for m in running}, key=FAMILIES.index)
    total = sum(weights.get(f, 0.0) for f in present)
    if present and total <= 0:
        raise SuiteError("budget_weights", "the families that can run all have weight 0; "
                         "give at least one of them a weight > 0")
    out: dict[str, float] = {}
    for family in present:
        out[family] = budget * weights.get(family, 0.0) / total
        members = [m for m in running if m.family == family]
        for m in members:
            m.alpha = out[family] / len(members)
    nominal = sum(weights.get(f, 0.0) for f in FAMILIES) or 1.0
    for m in calibrated:
        if m.id in idle:
            n = sum(1 for other in calibrated if other.family == m.family)
            m.alpha = budget * weights.get(m.family, 0.0) / nominal / n
    for m in calibrated:  # a zero weight still needs an α in (0, 1): it never alerts
        m.alpha = m.alpha if m.alpha > 0 else 1e-12
    return out


def family_weights(weights: dict[str, float] | None,
                   field: str = "budget_weights") -> dict[str, float]:
    """Every family's weight: the defaults, overridden by ``weights``; unknown families
    and negative weights are errors naming ``field``: the parameter (``budget_weights``)
    or, with ``field="budget"``, the suite file's ``budget.FAMILY``."""
    out = dict(DEFAULT_WEIGHTS)
    for family, value in (weights or {}).items():
        where, what = (f"{field}.{family}", "") if field == "budget" else (field, f"{family!r}: ")
        if family not in FAMILIES:
            raise SuiteError(where, f"{what}not a monitor family; one of {', '.join(FAMILIES)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
                math.isfinite(value) and value >= 0):
            raise SuiteError(where, f"{what}must be a number ≥ 0, got {value!r}")
        out[family] = float(value)
    return out


@dataclass
class Suite:
    """A calibrated monitor suite. Build one with :func:`init`, or :meth:`load` a file.

    >>> from watchkeeper.io.datasets import synthetic_drift_pair
    >>> ref, cur = synthetic_drift_pair(5_000, seed=1)
    >>> suite = init(ref)
    >>> result = suite.check(cur)
    >>> sorted({f.column for f in result.findings if f.family == "drift"})
    ['cat_00', 'num_00', 'num_01', 'num_02']
    """

    schema: Schema
    monitors: list[Monitor]
    reference: Profile
    budget: float = DEFAULT_BUDGET
    name: str = "watchkeeper"
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    source: str | None = None
    seed: int = 0
    path: str | None = None
    #: Features' importance to the model (normalised mutual information with the prediction
    #: on the reference), used to rank causes in advice.
    importance: dict[str, float] = field(default_factory=dict)
    #: How findings become alerts and incidents: persistence, hysteresis, inhibition and
    #: grouping rules (listed in the suite file with their defaults, to read and edit).
    rules: Rules = field(default_factory=Rules)
    #: Share of the budget per monitor family (see :data:`DEFAULT_WEIGHTS`).
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    #: Serving inputs (``_error``, clients, time) count as present although the reference
    #: lacks them: the suite is meant for the server or SDK (see :func:`idle_reason`).
    serving: bool = False
    #: Slices of rows judged on their own, with their share of the budget (segments.py).
    segments: Segments | None = None

    def __post_init__(self) -> None:
        for m in self.monitors:
            m.bind(self.schema)

    def _repr_html_(self) -> str | None:
        """The suite's columns, monitors, budget and rules (in Jupyter)."""
        return html_of(self)

    def idle(self) -> dict[str, str]:
        """Calibrated monitors that cannot run on data like the reference, by id, with the
        reason; they take no share of the budget."""
        out = {}
        for m in (m for m in self.monitors if m.calibrated):
            why = idle_reason(m, self.schema, self.reference, self.serving)
            if why is not None:
                out[m.id] = why
        return out

    def family_alpha(self) -> dict[str, tuple[float, int]]:
        """The α each family holds and over how many monitors (those able to run)."""
        idle = self.idle()
        out: dict[str, tuple[float, int]] = {}
        for m in self.monitors:
            if m.calibrated and m.id not in idle:
                total, n = out.get(m.family, (0.0, 0))
                out[m.family] = (total + m.alpha, n + 1)
        return dict(sorted(out.items(), key=lambda kv: FAMILIES.index(kv[0])))

    # -- use -----------------------------------------------------------------------------
    def profile(self, data: Any) -> Profile:
        """Profile a batch of rows against this suite's binning plan."""
        return profile(data, self.schema)

    def evaluate(self, window: Profile) -> list[Finding]:
        """Run every enabled monitor on one window profile."""
        found: list[Finding] = []
        for m in self.monitors:
            if m.enabled:
                found += m.evaluate(window, self.reference)
        return found

    def measure(self, window: Profile) -> dict[str, Any]:
        """What the monitors report for every window, alert or not (metrics, drift per
        column, fairness)."""
        return self.assess(window)[1]

    def assess(self, window: Profile) -> tuple[list[Finding], dict[str, Any]]:
        """Findings and measures of one window, each monitor run once. Monitors that report
        under the same key (every drift monitor under ``drift``) are merged by key."""
        found: list[Finding] = []
        measures: dict[str, Any] = {}
        for m in self.monitors:
            if not m.enabled:
                continue
            findings, measured = m.assess(window, self.reference)
            found += findings
            for key, value in measured.items():
                if isinstance(value, dict) and isinstance(measures.get(key), dict):
                    measures[key].update(value)
                else:
                    measures[key] = dict(value) if isinstance(value, dict) else value
        _expected_from_inputs(found, measures.get("estimated") or {})
        if self.segments is not None:
            more, measured = assess_segments(self.segments, self.monitors, self.schema, window,
                                             self.reference)
            found += more
            measures.update(measured)
        return found, measures

    def evaluate_sequence(self, result: CheckResult) -> None:
        """Monitors that judge a sequence of windows (label coverage, throughput)."""
        profiles = [w.profile for w in result.windows]
        for m in self.monitors:
            per_window = m.evaluate_sequence(profiles) if m.enabled else None
            if per_window is not None:
                for w, found in zip(result.windows, per_window, strict=True):
                    w.findings = [f for f in w.findings if f.monitor != m.type]
                    for f in found:
                        f.window = w.label
                    w.findings += found

    def check(
        self,
        data: Any,
        *,
        window_rows: int | None = None,
        window: str | None = None,
        window_by: str | None = None,
        labels: Any = None,
        progress: bool | None = None,
        tz: str | None = None,
    ) -> CheckResult:
        """Split ``data`` into windows and profile and evaluate each: by row count
        (``window_rows=10_000``), by the timestamp column (``window="1d"``) or by the values
        of a batch column (``window_by="year"``). One window of all rows by default.
        Time windows (``1min``, ``1h``, ``1d``, ``1w``, ``1mo``) align to calendar
        boundaries; days, weeks (from Monday) and months in ``tz`` (UTC by default).

        ``labels`` (a table with the id and target columns) are joined to the rows by id, so
        they count toward the window of the prediction; labels that come later can be
        added to the result with :meth:`CheckResult.add_labels`.

        A Parquet or CSV file given by its path is read batch by batch
        (:meth:`check_stream`, the same result) unless it may hold the prediction ids, which
        :meth:`CheckResult.add_labels` needs and only this in-memory check keeps (a Parquet
        file with the suite's id column; a CSV file when the suite has an id)."""
        from watchkeeper.run.stream import streamable_file

        task = self.schema.task
        if streamable_file(data, task.id if task is not None else None):
            return self.check_stream(data, window_rows=window_rows, window=window,
                                     window_by=window_by, labels=labels, progress=progress,
                                     tz=tz)
        table = to_table(data)
        if table.num_rows == 0:
            where = f"{data}: " if isinstance(data, (str, os.PathLike)) else ""
            raise DataError(f"{where}no rows to check")
        result = CheckResult(suite=self.path or self.name, evaluator=self)
        if labels is not None:
            table, result.unmatched_labels = join_labels(table, labels, assert_task(task))
        _check_windowing(window_rows, window, window_by, tz)
        if window_by is not None:
            windows = group_windows(table, window_by)
        elif window is not None:
            length = WindowLength.parse(window)
            windows = time_windows(table, self._time_column(), length, tz)
        else:
            windows = row_windows(table, window_rows)
        if task is not None and task.id is not None and task.id in table.column_names:
            result.label_join = LabelJoin(task, segments=segment_labels(self.schema))
        total = (table.num_rows // window_rows + 1) if window_rows else None
        # A batch column named by the user is how windows are cut, not an unknown column.
        drop = [window_by] if window_by and window_by not in self.schema.columns else []
        for w in progress_bar(windows, total=total, desc="checking", unit="window",
                              disable=_quiet(progress), leave=False):
            p = self.profile(w.table.drop_columns(drop) if drop else w.table)
            p.start, p.end = w.start, w.end
            if result.label_join is not None:
                assert task is not None
                result.label_join.add_window(
                    w.table.column(task.id).to_numpy(zero_copy_only=False),
                    record_codes(w.table, self.schema))
            result.windows.append(WindowResult(w.label, p.rows, [], p, w.start, w.end))
            result.refresh(len(result.windows) - 1)
        self.evaluate_sequence(result)
        return result

    def check_stream(
        self,
        source: str | os.PathLike[str],
        *,
        window_rows: int | None = None,
        window: str | None = None,
        window_by: str | None = None,
        labels: Any = None,
        progress: bool | None = None,
        tz: str | None = None,
        jobs: int | None = None,
        memory: int | str | None = None,
        layout: CsvLayout | None = None,
        notes: Callable[[Path, str], None] | None = None,
    ) -> CheckResult:
        """:meth:`check` of Parquet or CSV files read batch by batch, with memory flat in
        the number of rows: ``source`` is a file, a directory of them (hive partitions
        ``key=value`` read as columns) or a glob. Batches are profiled ``jobs`` at a time
        (default: every core) and merged into their window in input order, so the result
        is the one :meth:`check` gives on the same rows, whatever ``jobs``.

        ``memory`` (``"2GB"``) bounds the batches in flight; one batch over it is an error.
        Labels (``labels``) are joined by id batch by batch; labels (a file or a table) that
        outgrow a quarter of ``memory`` are spilled to a temporary SQLite file
        (:mod:`watchkeeper.run.label_spill`), with the same result. The result
        keeps no prediction ids: :meth:`CheckResult.add_labels` needs :meth:`check`."""
        from watchkeeper.run import stream, stream_pool
        from watchkeeper.run.stream import (
            Windowing,
            batches,
            inputs,
            parse_memory,
        )

        _check_windowing(window_rows, window, window_by, tz)
        if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
            raise DataError(f"jobs: must be a positive integer, got {jobs!r}")
        budget = parse_memory(memory)
        if window_rows is not None and window_rows < 1:
            raise DataError(f"window_rows: must be a positive integer, got {window_rows!r}")
        windowing = Windowing(rows=window_rows, by=window_by, tz=tz)
        if window is not None:
            windowing.length = WindowLength.parse(window)
            windowing.time = self._time_column()
        if window_by and window_by not in self.schema.columns:
            windowing.drop = (window_by,)
        task = self.schema.task
        by_id = None
        if labels is not None:
            from watchkeeper.run.label_spill import read_labels

            by_id = read_labels(labels, assert_task(task), budget,
                                stream.label_batches(labels, layout, budget))
        files = inputs(source)
        reading = batches(files, batch_rows=stream.BATCH_ROWS, layout=layout, notes=notes,
                          memory=budget,
                          names_if_headerless=tuple(c.name for c in self.schema))
        try:
            with progress_bar(total=files.bytes, desc="checking", unit="B", unit_scale=True,
                              disable=_quiet(progress), leave=False) as bar:
                def advance(done: int) -> None:
                    bar.update(max(done - bar.n, 0))

                jobs = jobs or _cores()
                windows, unmatched = stream_pool.profiles(
                    files, reading, windowing, self.schema, jobs=jobs, memory=budget,
                    labels=by_id, task=task, progress=advance)
        finally:
            from watchkeeper.run.label_spill import SpilledLabels

            if isinstance(by_id, SpilledLabels):
                by_id.close()
        if not windows:
            raise DataError(f"{source}: no rows to check")
        result = CheckResult(suite=self.path or self.name, evaluator=self,
                             unmatched_labels=unmatched)
        for w in windows:
            p = w.profile
            result.windows.append(WindowResult(w.label, p.rows, [], p, p.start, p.end))
            result.refresh(len(result.windows) - 1)
        self.evaluate_sequence(result)
        return result

    def _time_column(self) -> str:
        stamps = self.schema.by_role(Role.TIMESTAMP)
        if not stamps:
            raise SuiteError(
                "window", "time windows need a timestamp column; re-run init() with "
                "timestamp=COLUMN, or use window_rows="
            )
        return stamps[0].name

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "watchkeeper": suitefile.FORMAT_VERSION,
            "name": self.name,
            "created": self.created,
            "source": self.source,
            "alert_budget": self.budget,
            "budget": self.weights,
            **({"serving": True} if self.serving else {}),
            "seed": self.seed,
            "columns": {c.name: _column_to_dict(c) for c in self.schema},
            **({"task": self.schema.task.to_dict()} if self.schema.task else {}),
            **({"security": self.schema.security.to_dict()} if self.schema.security else {}),
            **({"rules": [r.to_dict() for r in self.schema.rules]} if self.schema.rules else {}),
            **({"segments": self.segments.to_dict()} if self.segments else {}),
            **({"multivariate": self.schema.multivariate.to_dict()}
               if self.schema.multivariate else {}),
            **({"multivariate_groups": {name: model.to_dict() for name, model
                                        in self.schema.multivariate_groups.items()}}
               if self.schema.multivariate_groups else {}),
            **({"embeddings": groups} if (groups := embedding_groups(self.schema)) else {}),
            "monitors": [m.to_dict() for m in self.monitors],
            **({"importance": self.importance} if self.importance else {}),
            "alerts": self.rules.to_dict(),
            "reference_profile": self.reference.to_dict(),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the suite as YAML (atomically: a crash never leaves half a file)."""
        write_atomic(path, suitefile.dump(self.to_dict()))
        self.path = str(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Suite:
        """Read and validate a suite file; errors name the field that is wrong."""
        p = Path(path)
        if not p.exists():
            raise SuiteError("path", f"{p}: no such file; create one with init()")
        suite = cls.from_dict(suitefile.parse(p.read_text(encoding="utf-8"), str(p)), str(p))
        suite.path = str(p)
        return suite

    @classmethod
    def from_dict(cls, document: dict[str, Any], source: str | None = None) -> Suite:
        top = suitefile.Fields(document, "", source)
        version = top.integer("watchkeeper")
        if version not in suitefile.READS:
            raise top.error("watchkeeper", f"file format {version} is not supported by this "
                            f"version (reads {', '.join(map(str, suitefile.READS))})")
        schema = Schema()
        columns = top.mapping("columns")
        for name in columns.data:
            schema.columns[str(name)] = _column_from_fields(columns.mapping(name), str(name))
        set_embedding_groups(schema, top)
        if "task" in top.data:
            schema.task = _task_from_fields(top.mapping("task"), schema)
        if "security" in top.data:
            try:
                schema.security = SecurityModel.from_dict(top.mapping("security").data)
            except (TypeError, KeyError) as exc:
                raise top.error("security", f"malformed ({exc})") from None
        if "multivariate" in top.data:
            try:
                schema.multivariate = JointModel.from_dict(top.mapping("multivariate").data)
            except (TypeError, KeyError, ValueError) as exc:
                raise top.error("multivariate", f"malformed ({exc})") from None
        for group, entry in top.mapping("multivariate_groups", {}).data.items():
            try:
                schema.multivariate_groups[str(group)] = JointModel.from_dict(entry)
            except (TypeError, KeyError, ValueError, AttributeError) as exc:
                raise top.error(f"multivariate_groups.{group}",
                                f"malformed ({exc})") from None
        if "rules" in top.data:
            try:
                schema.rules = parse_rules(top.items("rules"))
            except SuiteError as exc:
                raise SuiteError(exc.field, exc.problem, source) from None
            check_rules(schema.rules, schema, source=source)
        segments = segments_from_fields(top, schema) if "segments" in top.data else None
        monitors = []
        for i, raw in enumerate(top.items("monitors")):
            monitors.append(_monitor_from_fields(suitefile.Fields(raw, f"monitors[{i}]", source),
                                                 schema))
        reference = _profile_from_fields(top.mapping("reference_profile"), schema)
        return cls(
            schema=schema,
            monitors=monitors,
            reference=reference,
            budget=top.number("alert_budget", DEFAULT_BUDGET, 0.0, 1.0, open_interval=True),
            name=top.text("name", "watchkeeper"),
            created=top.text("created", ""),
            source=top.text("source", None),
            seed=top.integer("seed", 0),
            importance={str(k): float(v) for k, v in top.mapping("importance", {}).data.items()},
            rules=_rules_from_fields(top),
            weights=_weights_from_fields(top),
            serving=top.flag("serving", False),
            segments=segments,
        )


def _expected_from_inputs(found: list[Finding], estimated: dict[str, Any]) -> None:
    """Give each realised-performance finding the label-free estimate of the same metric
    (what the window's inputs lead one to expect): when it fell as far as the realised
    value, the window holds more of the rows the model handles worse, and the model is as
    right as before on each kind of row (see :mod:`watchkeeper.alerts.advice`)."""
    for f in found:
        value = estimated.get(f.metric or "")
        if f.monitor == "performance" and value is not None and math.isfinite(value):
            f.evidence["expected"] = round(float(value), 6)


def assert_task(task: Task | None) -> Task:
    if task is None or task.target is None or task.id is None:
        raise SuiteError("labels", "need a suite with a target and an id column; "
                         "re-run init() with target= and id=")
    return task


def _check_windowing(window_rows: int | None, window: str | None, window_by: str | None,
                     tz: str | None) -> None:
    if sum(x is not None for x in (window_rows, window, window_by)) > 1:
        raise SuiteError("window", "give one of window_rows=, window= or window_by=, "
                                   "not several")
    if tz is not None and window is None:
        raise SuiteError("tz", "a time zone applies to time windows only; give window= "
                               "too, or drop tz=")


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _quiet(progress: bool | None) -> bool | None:
    """A progress bar's ``disable``: None means "only when stderr is a terminal"."""
    if progress is None:
        return None
    return not progress


def _column_to_dict(c: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": c.kind.value, "role": c.role.value, "dtype": c.dtype}
    if c.sensitive:
        out["sensitive"] = True
    if c.edges is not None:
        out["edges"] = c.edges
    if c.categories is not None:
        out["categories"] = c.categories
        if c.truncated:
            out["truncated"] = True
    if c.pii:
        out["pii"] = c.pii
    if c.text is not None:
        out["text"] = c.text.to_dict()
    if c.codebook is not None:
        out["codebook"] = c.codebook.to_dict()
    if c.note:
        out["note"] = c.note
    return out


def _column_from_fields(f: suitefile.Fields, name: str) -> Column:
    column = Column(
        name=name,
        kind=Kind(f.choice("kind", [k.value for k in Kind])),
        role=Role(f.choice("role", [r.value for r in Role], Role.FEATURE.value)),
        dtype=f.text("dtype", "numeric"),
        sensitive=f.flag("sensitive", False),
        edges=f.numbers("edges", None),
        categories=None,
        truncated=f.flag("truncated", False),
        note=f.text("note", None),
        pii=f.choice("pii", list(MODES), None),
    )
    if column.edges is not None:
        if len(column.edges) < 2:
            raise f.error("edges", "needs at least the reference min and max")
        if any(b < a for a, b in zip(column.edges, column.edges[1:], strict=False)):
            raise f.error("edges", "must be in increasing order")
    if "text" in f.data:
        try:
            column.text = TextPlan.from_dict(f.mapping("text").data)
        except (ValueError, TypeError) as exc:
            raise f.error("text", str(exc)) from None
    if f.data.get("codebook") is not None:
        column.codebook = codebook_from_fields(f)
    cats = f.items("categories", None)
    if cats is not None:
        column.categories = [str(c) for c in cats]
        if len(set(column.categories)) != len(column.categories):
            raise f.error("categories", "has duplicates")
    return column


def _weights_from_fields(top: suitefile.Fields) -> dict[str, float]:
    try:
        return family_weights(top.mapping("budget", {}).data, "budget")
    except SuiteError as exc:
        raise SuiteError(exc.field, exc.problem, top.source) from None


def _rules_from_fields(top: suitefile.Fields) -> Rules:
    if "alerts" not in top.data:
        return Rules()
    try:
        return Rules.from_dict(top.mapping("alerts").data)
    except (ValueError, KeyError, TypeError) as exc:
        raise top.error("alerts", str(exc)) from None


def _task_from_fields(f: suitefile.Fields, schema: Schema) -> Task:
    try:
        task = Task.from_dict(f.data, f.path)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SuiteError):
            raise SuiteError(exc.field, exc.problem, f.source) from None
        raise f.error("sensitive", f"malformed ({exc})") from None
    for key in ("target", "prediction", "proba", "id"):
        name = getattr(task, key)
        if name is not None and name not in schema.columns:
            raise f.error(key, f"no column {name!r} in columns"
                                 f"{did_you_mean(name, schema.columns)}")
    for a in task.attributes:
        if a.column not in schema.columns:
            raise f.error(f"sensitive.{a.column}", "no such column in columns")
    return task


def _monitor_from_fields(f: suitefile.Fields, schema: Schema) -> Monitor:
    try:
        cls = monitor_class(f.text("type"))
    except SuiteError as exc:
        raise f.error("type", exc.problem) from None
    column = f.text("column", None)
    if column is not None and not cls.knows_column(schema, column):
        raise f.error("column", f"no column {column!r} in columns"
                               f"{did_you_mean(column, schema.columns)}")
    params = {}
    for key, default in cls.params.items():
        params[key] = type(default)(f.number(key, default, lo=0.0))
    unknown = set(f.data) - {"type", "column", "alpha", "enabled", "calibration", *cls.params}
    if unknown:
        raise f.error(sorted(unknown)[0], f"unknown field for a {cls.type} monitor")
    monitor = cls(
        column,
        alpha=f.number("alpha", 0.01, 0.0, 1.0, open_interval=True),
        enabled=f.flag("enabled", True),
        calibration=f.mapping("calibration", {}).data,
        **params,
    )
    try:
        monitor.bind(schema)  # a monitor of a task the suite lacks, say
    except SuiteError as exc:
        raise SuiteError(f.path, f"{monitor.id} {exc.problem}", f.source) from None
    return monitor


def _profile_from_fields(f: suitefile.Fields, schema: Schema) -> Profile:
    try:
        reference = Profile.from_dict(f.data)
    except (KeyError, TypeError, ValueError) as exc:
        raise f.error("columns", f"malformed profile ({exc})") from None
    for name, cp in reference.columns.items():
        spec = schema.columns.get(name)
        if spec is None:
            raise f.error(f"columns.{name}", "column is not in the suite's columns")
        if cp.bins is not None and len(cp.bins) != bins_of(spec):
            raise f.error(f"columns.{name}.bins",
                          f"has {len(cp.bins)} bins, the column's plan has {bins_of(spec)}")
    for spec in schema:
        if spec.role != Role.IGNORE and spec.name not in reference.columns:
            reference.columns[spec.name] = ColumnProfile()
    return reference


def init(
    reference: Any,
    *,
    target: str | None = None,
    prediction: str | Iterable[str] | None = None,
    proba: str | Iterable[str] | None = None,
    id: str | None = None,
    timestamp: str | None = None,
    client: str | None = None,
    sensitive: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    pii: str | Iterable[str] | None = None,
    not_pii: str | Iterable[str] | None = None,
    positive_class: str | None = None,
    allow_inverted_score: bool = False,
    budget: float = DEFAULT_BUDGET,
    budget_weights: dict[str, float] | None = None,
    serving: bool = False,
    rules: Any = None,
    monitors: Iterable[Monitor | str] | None = None,
    segments: str | Iterable[str | Iterable[str]] | None = None,
    bins: int = DEFAULT_BINS,
    name: str | None = None,
    seed: int = 0,
    progress: bool | None = None,
    positive: str | None = None,
    memory: int | str | None = None,
    stream: bool | None = None,
    jobs: int | None = None,
    layout: CsvLayout | None = None,
    notes: Callable[[Path, str], None] | None = None,
    embeddings: Mapping[str, str | Iterable[str]] | None = None,
    embed_text: str | Iterable[str] | None = None,
    text_model: str | None = None,
    multivariate: bool = False,
    multivariate_groups: Mapping[str, str | Iterable[str]] | None = None,
) -> Suite:
    """Infer the schema of reference data, generate every monitor that applies, and
    calibrate each threshold so the whole suite stays within ``budget`` false alerts per
    window. Roles can be named explicitly; the rest are inferred from names and data.

    ``positive_class`` overrides the positive class of a binary classifier (by default
    the one its score ranks highest); one the score ranks lowest is an error unless
    ``allow_inverted_score``. ``budget_weights`` overrides the share of the budget per
    monitor family (:data:`DEFAULT_WEIGHTS`); ``serving=True`` gives a share to the
    monitors of serving inputs (``_error``, clients, time) the reference lacks (see
    :func:`idle_reason`). ``positive`` is the former name of ``positive_class``.

    ``rules`` are declarative rules every row should meet, as a mapping of name to
    expression (``{"amount_within_limit": "amount <= limit"}``) or the suite file's list of
    ``{"name", "expr"}`` (see :mod:`watchkeeper.baseline.expressions`); their violation
    rate is calibrated against the reference's own. ``monitors`` adds monitors of your own
    (instances, or registered type names such as ``"too_many_zeros:amount"``): they are
    calibrated and share the alert budget like the generated ones. ``segments`` names
    columns, or pairs ``"region,plan"``, whose values are monitored as slices of their own
    (drift, quality and performance per segment; see :mod:`watchkeeper.suite.segments`).

    A big Parquet or CSV reference (a file, directory or glob of more than
    :data:`~watchkeeper.suite.streamed.STREAM_ROWS` rows, or one an in-memory init would
    not fit in ``memory``, e.g. ``"2GB"``) is read batch by batch and never whole: bins
    from a quantile sketch, exact categories and reference profile, models and calibration
    on a seeded sample (see :mod:`watchkeeper.suite.streamed`). ``stream=True`` or
    ``False`` forces the choice; ``jobs`` reads its batches on that many cores (default
    all); ``layout`` says how to read CSV files and ``notes`` hears what was guessed. A
    :class:`~watchkeeper.suite.streamed.TwoPass` reference (a Spark DataFrame from
    :func:`watchkeeper.spark.init`) is read the same way, by its own passes.

    ``embeddings`` declares groups of numeric columns that are one vector each (name →
    columns, "c1,c2,…" or a prefix such as "emb_"); list columns of numbers are vectors
    by themselves. ``embed_text`` names the text columns to embed (none by default: other
    text columns are monitored through their descriptors); ``text_model="minilm"`` embeds
    them with a pretrained sentence model (the ``text-model`` extra) instead of a
    projection fitted on the reference. See :mod:`watchkeeper.baseline.embedding`.

    ``multivariate=True`` adds ``multivariate_drift`` (a reference-fitted PCA of the
    features, see :mod:`watchkeeper.baseline.multivariate`): it sees a broken correlation
    no single column shows, at the price of profiling several times slower (each row is
    scored), so it is not added by default. ``multivariate_groups`` declares column groups
    (name → columns, a list or "c1,c2,…"), each with a model and a ``multivariate_drift``
    monitor of its own (its findings name the group), sharing the drift family's budget.
    """
    if not 0.0 < budget < 1.0:
        raise SuiteError("budget", f"must be in (0, 1), got {budget!r}")
    weights = family_weights(budget_weights)
    source = str(reference) if isinstance(reference, (str, os.PathLike)) else None
    from watchkeeper.run.stream import inputs as stream_inputs
    from watchkeeper.run.stream import parse_memory
    from watchkeeper.suite import streamed

    limit = parse_memory(memory)
    if stream is None and not isinstance(reference, streamed.TwoPass):
        stream = streamed.should_stream(reference, limit)
    found: streamed.Scan | None = None
    two_pass: streamed.TwoPass | None = None
    if isinstance(reference, streamed.TwoPass):  # read in two passes elsewhere (Spark)
        two_pass, source = reference, reference.source
    elif stream:
        if source is None:
            raise DataError("stream: only a Parquet or CSV file, directory or glob streams")
        two_pass = streamed.Files(stream_inputs(source), source, layout, limit,
                                  jobs or _cores(), notes)
    if two_pass is not None:
        with progress_bar(desc="reading reference", unit="B", unit_scale=True,
                          disable=_quiet(progress), leave=False) as bar:
            found = two_pass.scan(seed=seed,
                                  progress=lambda done: bar.update(max(done - bar.n, 0)))
        assert found.sample is not None
        table: pa.Table = found.sample
    else:
        table = to_table(reference, "reference")
    schema = infer_schema(table, target=target, prediction=prediction, proba=proba, id=id,
                          timestamp=timestamp, client=client, sensitive=sensitive,
                          ignore=ignore, pii=pii, not_pii=not_pii, bins=bins)
    if found is not None:
        found.replan(schema, bins)
    plan_embeddings(schema, table, seed=seed, embeddings=embeddings, text=embed_text,
                    id_column=next((c.name for c in schema.by_role(Role.ID)), None),
                    text_model=text_model)
    first = {r: next((c.name for c in schema.by_role(r)), None)
             for r in (Role.TARGET, Role.PREDICTION, Role.PROBA, Role.ID)}
    schema.task = infer_task(
        table, target=first[Role.TARGET], prediction=first[Role.PREDICTION],
        proba=first[Role.PROBA], id=first[Role.ID], positive=positive_class or positive,
        allow_inverted_score=allow_inverted_score,
        sensitive=[c.name for c in schema if c.sensitive and c.role == Role.FEATURE],
        probas=[c.name for c in schema.by_role(Role.PROBA)],
    )
    schema.rules = parse_rules(rules if rules is not None else [])
    check_rules(schema.rules, schema)
    schema.segments = fit_segments(table, segment_names(segments))
    added = extra_monitors(monitors)
    task = schema.task
    inputs = {c.name: (c.edges if c.edges else tuple(c.categories or ()))
              for c in schema if c.role == Role.FEATURE and c.n_bins}
    if task is not None and task.type == TaskType.REGRESSION and task.target and task.prediction:
        task.loss_model = LossModel.fit(table, task, inputs)
    if task is not None and task.type == TaskType.BINARY and task.target and task.score_edges:
        task.label_model = LabelModel.fit(table, row_codes(table, task), task, inputs,
                                          progress=progress)
    if task is not None and task.type == TaskType.MULTICLASS and task.target and \
            task.class_probas:
        task.class_calibration = fit_class_calibration(table, task.target, task.classes,
                                                       task.class_probas)
    if task is not None and task.type == TaskType.MULTICLASS:
        if task.class_probas and task.proba in schema.columns and \
                schema.columns[task.proba].role != Role.PROBA:  # inferred: a list column
            schema.columns[task.proba].role = Role.PROBA
            schema.columns[task.proba].note = "class scores (inferred)"
        if task.class_calibration is None:
            task.estimation_skipped = multiclass_left_out(task)
    clients = schema.by_role(Role.CLIENT)
    features = [c for c in schema if c.role == Role.FEATURE and c.n_bins]
    schema.security = fit_security(
        table, [c.name for c in features if c.kind == Kind.NUMERIC],
        [(c.name, c.categories or []) for c in features
         if c.categories is not None and not c.truncated],
        client=clients[0].name if clients else CLIENT,
        proba=task.proba if task is not None and task.type == TaskType.BINARY else None,
        prediction=task.prediction if task is not None else None)
    if multivariate:
        schema.multivariate = fit_joint(
            table, [c.name for c in features if c.kind == Kind.NUMERIC and c.edges],
            [(c.name, c.categories or []) for c in features
             if c.categories is not None and not c.truncated], seed=seed)
    schema.multivariate_groups = fit_groups(table, schema, multivariate_groups, seed=seed)
    ref_profile = cross_fit(profile(table, schema), table, schema)
    context = ReferenceData(table, schema, ref_profile, seed)
    if two_pass is not None:  # exact, from every row; calibration keeps the sample's
        ref_profile = two_pass.profile(schema)
    generated = generate_monitors(schema) + added
    for m in generated:
        m.bind(schema)
    for m in progress_bar(generated, desc="calibrating", unit="monitor",
                          disable=_quiet(progress), leave=False):
        m.calibrate(context)
    label = name or (Path(source).stem if source else "watchkeeper")

    suite = Suite(schema, generated, ref_profile, budget, label, source=source, seed=seed,
                  importance=importance(table, schema), weights=weights, serving=serving,
                  segments=Segments(schema.segments) if schema.segments else None)
    split_budget(generated, budget, weights, suite.idle())
    if suite.segments is not None:
        suite.segments.split(generated)
        suite.segments.fit_nulls(generated, schema, ref_profile)
    return suite


def load(path: str | os.PathLike[str]) -> Suite:
    """Load a suite file (see :meth:`Suite.load`)."""
    return Suite.load(path)
