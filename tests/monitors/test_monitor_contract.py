"""One contract over every monitor type, as river's check_estimator does over detectors:

- on windows drawn from the reference distribution it stays within its share of the budget;
- evaluating two merged window profiles equals evaluating their union;
- bad values are counted, never raised;
- it round-trips through the suite file.

Each property of :mod:`watchkeeper.monitors.contract` runs on each monitor type, one test
per pair (``feature_drift-merge_equals_union``), so a failure names the monitor; the
whole-suite tests below check what only the suite as a whole can (the shared budget, the
suite file, what the profile counts).
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.monitors import Monitor, base, contract, monitor_types
from watchkeeper.monitors.contract import PROPERTIES, Case, check_monitor
from watchkeeper.profiles.core import merge
from watchkeeper.run.check import WindowResult

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
#: Centres of the embedding's four topics (8 dimensions).
TOPICS = np.random.default_rng(42).normal(0.0, 2.0, (4, 8))


def stream(hours: float, seed: int, rate_per_hour: int = 2_000) -> pa.Table:
    """Events of a model in production: a Poisson stream with fixed distributions."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate_per_hour * hours)
    ts = np.sort(rng.uniform(START, START + hours * 3600, n))
    x = rng.normal(5.0, 2.0, n)
    x[rng.random(n) < 0.02] = np.nan
    proba = 1 / (1 + np.exp(-(np.nan_to_num(x, nan=5.0) - 5.0)))
    levels = np.array(["red", "green", "blue", "grey"], dtype=object)
    words = np.array(WORDS.split(), dtype=object)
    length = rng.integers(0, 12, n)
    picked = words[rng.integers(0, len(words), int(length.sum()))]
    comment = [" ".join(w) for w in np.split(picked, np.cumsum(length)[:-1])]
    topics = rng.choice(len(TOPICS), n, p=[0.4, 0.3, 0.2, 0.1])
    emb = TOPICS[topics] + rng.normal(0.0, 1.0, (n, TOPICS.shape[1]))
    return pa.table({
        "id": np.arange(n) + seed * 10_000_000,
        "ts": pa.array((ts * 1e6).astype("int64"), type=pa.timestamp("us", tz="UTC")),
        "x": x,
        "colour": levels[rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])],
        "sex": rng.choice(["f", "m"], n),
        "proba": proba,
        "prediction": (proba > 0.5).astype(int),
        "label": (rng.random(n) < proba).astype(int),
        "comment": comment,  # free text: text descriptors
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), TOPICS.shape[1]),
    })


#: A customer comment's words (free text for the text monitors).
WORDS = ("the service was fast and the staff friendly but the price too high for what "
         "we got delivery late again please call me back about my order refund thanks "
         "great product works well broken after two days would buy again never")


@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(stream(48, seed=1), timestamp="ts", target="label", multivariate=True,
                   multivariate_groups={"inputs": ["x", "colour", "sex"]},
                   rules={"x_near_five": "isnull(x) or abs(x - 5) < 10",
                          "prediction_follows_proba": "(prediction == 1) == (proba > 0.5)"})


def test_every_monitor_type_is_covered(suite: wk.Suite) -> None:
    assert {m.type for m in suite.monitors} == set(monitor_types())


@pytest.fixture(scope="module")
def hourly(suite: wk.Suite) -> list[WindowResult]:
    """100 hourly windows drawn from the reference distribution."""
    return suite.check(stream(100, seed=2), window="1h").windows


def test_monitors_stay_within_their_share_of_the_budget(hourly) -> None:
    windows = hourly
    assert len(windows) == 100
    alerts = [f for w in windows for f in w.findings if f.severity.rank >= 1]
    # The whole suite may raise about budget × windows = 1 false alert here.
    assert len(alerts) <= 2, [(f.monitor, f.column, f.value, f.threshold) for f in alerts]


def _key(findings: list[wk.Finding]) -> list[tuple[str, str | None, float, str]]:
    return sorted((f.monitor, f.column, round(f.value, 9), f.severity.value) for f in findings)


def corrupted() -> pa.Table:
    """Two hours of events with 400 infinite ``x``: quality monitors have something to say."""
    data = stream(2, seed=3)
    x = data.column("x").to_numpy().copy()
    x[:400] = np.inf
    return data.set_column(data.column_names.index("x"), "x", pa.array(x))


BAD_ROWS = [
    {"ts": "2026-01-01T00:00:01Z", "x": "not a number", "colour": 7, "proba": None,
     "prediction": "1", "label": 1, "emb": [1.0, 2.0]},
    {"ts": None, "x": float("inf"), "colour": None, "proba": float("nan"),
     "prediction": None, "surprise": [1, 2], "emb": [float("nan")] * 8},
    {"x": -1e300, "colour": "purple", "proba": 2.0, "prediction": 0, "emb": "a vector"},
] * 50


@pytest.fixture(scope="module")
def case(suite: wk.Suite, hourly) -> Case:
    return Case(suite.schema, suite.reference, corrupted(), windows=[w.profile for w in hourly],
                bad_rows=BAD_ROWS, split=1500,
                span=(datetime.fromtimestamp(START, UTC),
                      datetime.fromtimestamp(START + 7200, UTC)))


@pytest.mark.parametrize(("monitor_type", "prop"), [
    pytest.param(t, p, id=f"{t}-{p}") for t in sorted(monitor_types()) for p in PROPERTIES])
def test_contract(suite: wk.Suite, case: Case, monitor_type: str, prop: str) -> None:
    """One property of the contract on every monitor of one type in the suite."""
    monitors = [m for m in suite.monitors if m.type == monitor_type]
    assert monitors, f"the suite has no {monitor_type} monitor"
    for m in monitors:
        PROPERTIES[prop](m, case)


def test_merged_windows_evaluate_like_their_union(suite: wk.Suite, case: Case) -> None:
    """The whole suite on the corrupted data (per monitor: ``*-merge_equals_union``)."""
    data = case.data
    a, b = data.slice(0, 1500), data.slice(1500)
    merged = merge(suite.profile(a), suite.profile(b))
    union = suite.profile(data)
    for p in (merged, union):
        p.start = datetime.fromtimestamp(START, UTC)
        p.end = datetime.fromtimestamp(START + 7200, UTC)
    found = _key(suite.evaluate(merged))
    assert found == _key(suite.evaluate(union))
    assert ("invalid_rate", "x") in {(m, c) for m, c, _, _ in found}


def test_bad_values_are_counted_not_raised(suite: wk.Suite) -> None:
    rows = BAD_ROWS
    window = suite.profile(rows)
    x = window.columns["x"]
    assert (x.count, x.missing, x.invalid) == (150, 0, 100)
    assert window.columns["colour"].missing == 50
    assert window.unexpected["surprise"] == 150
    findings = suite.evaluate(window)
    kinds = {(f.monitor, f.column) for f in findings}
    assert ("invalid_rate", "x") in kinds
    assert ("new_column", "surprise") in kinds
    assert ("unseen_category", "colour") in kinds
    assert ("missing_rate", "proba") in kinds


def test_round_trip_through_the_suite_file(suite: wk.Suite, tmp_path) -> None:
    path = tmp_path / "suite.yaml"
    suite.save(path)
    loaded = wk.load(path)
    assert [m.to_dict() for m in loaded.monitors] == [m.to_dict() for m in suite.monitors]
    data = stream(6, seed=5)
    data = data.set_column(data.column_names.index("colour"), "colour",
                           pa.array(["teal"] * data.num_rows))
    before = suite.check(data, window="1h")
    after = loaded.check(data, window="1h")
    assert [_key(w.findings) for w in before.windows] == [_key(w.findings) for w in after.windows]
    assert before.findings, "the altered data should give findings to compare"


def test_a_wide_batch_is_one_new_column_finding() -> None:
    """A row with thousands of unknown columns is one finding that names a few of them and
    counts them all, not one finding per column (which flooded alerting)."""
    suite = wk.init(pa.table({"x": np.arange(200.0)}))
    wide = pa.table({"x": [1.0], **{f"extra_{i:05d}": [i] for i in range(5000)}})
    (found,) = [f for f in suite.check(wide).findings if f.monitor == "new_column"]
    assert found.value == 5000 and found.evidence["count"] == 5000
    assert found.column is None
    assert found.message.startswith("5000 new columns (extra_00000, extra_00001, ")
    assert found.message.endswith("and 4980 more) are not in the suite")


# -- the contract on a monitor of your own ----------------------------------------------------
@pytest.fixture
def too_many_zeros(monkeypatch: pytest.MonkeyPatch) -> type[Monitor]:
    """The example of :mod:`watchkeeper.monitors.contract`'s docstring, as written there,
    registered in a copy of the registry that is dropped after the test."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    doc = contract.__doc__ or ""
    example = doc[doc.index("runs every property::") + len("runs every property::"):
                  doc.index("For a monitor that reads")]
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(example), namespace)
    return namespace["TooManyZeros"]  # type: ignore[no-any-return]


def test_the_docstring_example_keeps_the_contract(too_many_zeros: type[Monitor]) -> None:
    rng = np.random.default_rng(0)
    reference = pa.table({"x": rng.normal(5.0, 1.0, 5_000)})
    data = pa.table({"x": rng.normal(5.0, 1.0, 2_000)})
    report = check_monitor(too_many_zeros("x"), reference, data)
    assert report.monitor == "too_many_zeros:x" and report.passed == list(PROPERTIES)


def test_a_broken_monitor_is_named_with_the_property_it_breaks(
        too_many_zeros: type[Monitor]) -> None:
    class Forgetful(too_many_zeros):  # type: ignore[valid-type,misc]
        """Evaluates by consuming the window's counts (a mutation the contract forbids)."""

        def evaluate(self, window, reference):
            found = super().evaluate(window, reference)
            if window.columns.get(self.column) is not None:
                window.columns[self.column].count = 0
            return found

    rng = np.random.default_rng(1)
    reference = pa.table({"x": rng.normal(size=1_000)})
    with pytest.raises(AssertionError, match=r"too_many_zeros:x \(Forgetful\) breaks "
                                             r"deterministic: evaluate changed the window"):
        check_monitor(Forgetful("x"), reference, reference, properties=["deterministic"])
    with pytest.raises(ValueError, match="unknown properties"):
        check_monitor(too_many_zeros("x"), reference, reference, properties=["speed"])
