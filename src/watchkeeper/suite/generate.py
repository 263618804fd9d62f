"""Which monitors a suite gets: those generated from its schema and those asked for, each
family's and monitor's share of the alert budget, and why a monitor may have nothing to
watch (an idle monitor is kept in the suite file with its reason)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pyarrow as pa

from watchkeeper.baseline.expressions import Rule
from watchkeeper.baseline.multiclass import multiclass_left_out
from watchkeeper.baseline.multivariate import GROUP_NAME, JointModel
from watchkeeper.baseline.multivariate import fit as fit_joint
from watchkeeper.baseline.schema import Kind, Role, Schema
from watchkeeper.baseline.task import TaskType
from watchkeeper.errors import SuiteError
from watchkeeper.io.names import did_you_mean
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
from watchkeeper.profiles.core import Profile
from watchkeeper.profiles.service import SERVICE_TALLY
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
