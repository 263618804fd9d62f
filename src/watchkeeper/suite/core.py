"""Suite = schema + binning plan + monitors with calibrated thresholds + reference profile.

``init()`` (:mod:`watchkeeper.suite.build`) builds one from reference data;
``Suite.save``/``load`` keep it in a readable, editable YAML file (its parts:
:mod:`watchkeeper.suite.document`); ``Suite.check`` evaluates new data against it, with the
monitors of :mod:`watchkeeper.suite.generate`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchkeeper.alerts import Rules
from watchkeeper.baseline.expressions import parse_rules
from watchkeeper.baseline.multivariate import JointModel
from watchkeeper.baseline.ood import SecurityModel
from watchkeeper.baseline.schema import Role, Schema
from watchkeeper.baseline.task import Task
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.delimited import CsvLayout
from watchkeeper.io.display import html_of, progress_bar
from watchkeeper.io.files import write_atomic
from watchkeeper.io.tables import to_table
from watchkeeper.monitors import (
    FAMILIES,
    Finding,
    Monitor,
)
from watchkeeper.profiles.core import Profile, profile
from watchkeeper.profiles.segments import record_codes, segment_labels
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
from watchkeeper.suite.document import (
    column_from_fields,
    column_to_dict,
    monitor_from_fields,
    profile_from_fields,
    rules_from_fields,
    task_from_fields,
    weights_from_fields,
)
from watchkeeper.suite.embeddings import (
    embedding_groups,
    set_embedding_groups,
)
from watchkeeper.suite.generate import (
    DEFAULT_BUDGET,
    DEFAULT_WEIGHTS,
    check_rules,
    idle_reason,
)
from watchkeeper.suite.segments import Segments, assess_segments, segments_from_fields


@dataclass
class Suite:
    """A calibrated monitor suite. Build one with :func:`~watchkeeper.suite.build.init`, or
    :meth:`load` a file.

    >>> from watchkeeper.io.datasets import synthetic_drift_pair
    >>> ref, cur = synthetic_drift_pair(5_000, seed=1)
    >>> from watchkeeper.suite.build import init
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
                              progress=progress, leave=False):
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
                              progress=progress, leave=False) as bar:
                def advance(done: int) -> None:
                    bar.update(max(done - bar.n, 0))

                jobs = jobs or cores()
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
            "columns": {c.name: column_to_dict(c) for c in self.schema},
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
            schema.columns[str(name)] = column_from_fields(columns.mapping(name), str(name))
        set_embedding_groups(schema, top)
        if "task" in top.data:
            schema.task = task_from_fields(top.mapping("task"), schema)
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
            monitors.append(monitor_from_fields(suitefile.Fields(raw, f"monitors[{i}]", source),
                                                 schema))
        reference = profile_from_fields(top.mapping("reference_profile"), schema)
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
            rules=rules_from_fields(top),
            weights=weights_from_fields(top),
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


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load(path: str | os.PathLike[str]) -> Suite:
    """Load a suite file (see :meth:`Suite.load`)."""
    return Suite.load(path)
