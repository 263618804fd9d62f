"""Declarative rules: the expression language, its tally in the profile, and the rule
monitor's threshold calibrated against the reference's own violation rate."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.baseline.expressions import Rule, parse_rules
from watchkeeper.profiles.core import merge


def loans(n: int, seed: int, over: float = 0.0) -> pa.Table:
    """Loans where ``amount`` exceeds ``limit`` in a share ``over`` of rows."""
    rng = np.random.default_rng(seed)
    limit = rng.uniform(1_000, 5_000, n)
    amount = limit * rng.uniform(0.2, 1.0, n)
    k = round(over * n)
    amount[:k] = limit[:k] * 1.2
    return pa.table({"amount": amount, "limit": limit,
                     "grade": rng.choice(["a", "b", "c"], n)})


def tally(expr: str, table: pa.Table) -> list[int]:
    return Rule.parse("r", expr).tally(table).tolist()


# -- the language -----------------------------------------------------------------------------
@pytest.mark.parametrize(("expr", "position", "problem"), [
    ("", 1, "the expression is empty"),
    ("amount <= ", 11, "expected a value, got the end"),
    ("amount <= limit)", 16, "unexpected ')'"),
    ("(amount <= limit", 17, "expected ')', got the end"),
    ("amount ; 1", 8, "unexpected character ';'"),
    ("amount + 1", 8, "a rule is a condition"),
    ("1 < amount < 3", 12, "comparisons do not chain"),
    ("isnull(amount, limit)", 1, "isnull() takes 1 argument, got 2"),
    ("__import__('os')", 1, "unknown function '__import__'"),
    ("amount.real > 0", 7, "unexpected character '.'"),
])
def test_a_bad_expression_is_a_suite_error_with_its_position(expr: str, position: int,
                                                             problem: str) -> None:
    with pytest.raises(wk.SuiteError, match=rf"rules\.r\.expr: position {position}: ") as err:
        Rule.parse("r", expr)
    assert problem in err.value.problem


def test_the_language_evaluates_like_sql_on_missing_values() -> None:
    t = pa.table({"a": [1.0, 5.0, None, float("nan"), 3.0], "b": [2.0, 4.0, 1.0, 1.0, 0.0],
                  "s": ["x", "y", "x", None, "z"]})
    assert tally("a <= b", t) == [2, 3, 2]  # null and NaN are unknown: not checked
    assert tally("isnull(a) or a <= b", t) == [2, 5, 0]
    assert tally("not (a > b)", t) == [2, 3, 2]
    assert tally("a / b < 10", t) == [0, 2, 3]  # a division by zero is unknown
    assert tally("abs(-a) * 2 + 1 >= 3 and s != 'z'", t) == [1, 3, 2]
    assert tally("s == 'x' or s == \"y\"", t) == [1, 4, 1]
    assert tally("`a` - b == -1", t) == [2, 3, 2]
    assert tally("true", t) == [0, 5, 0]


def test_a_rule_the_rows_cannot_answer_is_not_checked_never_raised() -> None:
    t = pa.table({"a": ["1", "2"], "b": [1, 2]})
    assert tally("a + b > 0", t) == [0, 0, 2]  # arithmetic on strings
    assert tally("a > 1", t) == [0, 0, 2]  # a string against a number
    assert tally("c > 1", t) == [0, 0, 2]  # no such column
    assert tally("b", t) == [0, 0, 2]  # not a condition


def test_rules_are_given_as_the_suite_file_list_or_a_mapping() -> None:
    listed = parse_rules([{"name": "limit", "expr": "amount <= limit"}])
    assert listed == parse_rules({"limit": "amount <= limit"})
    with pytest.raises(wk.SuiteError, match=r"rules\[1\]\.name: a second rule named 'x'"):
        parse_rules([{"name": "x", "expr": "a > 1"}, {"name": "x", "expr": "a > 2"}])
    with pytest.raises(wk.SuiteError, match=r"rules\[0\]: expected a mapping with name"):
        parse_rules([{"name": "x", "expr": "a > 1", "severity": "high"}])
    with pytest.raises(wk.SuiteError, match=r"rules\[0\]\.name: .*got 'a b'"):
        parse_rules([{"name": "a b", "expr": "a > 1"}])


# -- in a suite --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def suite() -> wk.Suite:
    return wk.init(loans(5_000, seed=1, over=0.05), rules={"within_limit": "amount <= limit"})


def test_the_threshold_is_calibrated_on_the_references_own_rate(suite: wk.Suite) -> None:
    (monitor,) = [m for m in suite.monitors if m.type == "rules"]
    assert monitor.family == "quality" and 0 < monitor.alpha < suite.budget
    assert monitor.calibration["reference"]["within_limit"] == {
        "violated": 250, "checked": 5_000, "unchecked": 0}
    # 5% violate the rule in the reference: as many in a window is no finding...
    assert not [f for f in suite.check(loans(2_000, seed=2, over=0.05)).findings
                if f.monitor == "rule"]
    # ...and twice as many is
    (found,) = [f for f in suite.check(loans(2_000, seed=3, over=0.1)).findings
                if f.monitor == "rule"]
    assert (found.metric, found.value, found.evidence["reference_rate"]) == (
        "within_limit", 0.1, 0.05)
    assert 0.05 < found.threshold < 0.1
    assert found.message.startswith("rule within_limit (amount <= limit) is violated by 10.00%")


def test_a_clean_reference_alerts_on_a_few_percent() -> None:
    suite = wk.init(loans(5_000, seed=4), rules={"within_limit": "amount <= limit"})
    assert [f.metric for f in suite.check(loans(2_000, seed=5, over=0.03)).findings
            if f.monitor == "rule"] == ["within_limit"]


def test_the_tally_merges_like_the_rows(suite: wk.Suite) -> None:
    data = loans(3_000, seed=6, over=0.2)
    merged = merge(suite.profile(data.slice(0, 1_000)), suite.profile(data.slice(1_000)))
    assert merged.joint["rule:within_limit"].tolist() == [600, 3_000, 0]
    assert suite.profile(data).joint["rule:within_limit"].tolist() == [600, 3_000, 0]


def test_a_missing_column_is_a_quality_finding_not_a_crash(suite: wk.Suite) -> None:
    result = suite.check(loans(1_000, seed=7).drop_columns(["limit"]))
    (found,) = [f for f in result.findings if f.monitor == "rule_not_evaluated"]
    assert (found.family, found.metric, found.column, found.severity) == (
        "quality", "within_limit", "limit", wk.Severity.WARNING)
    # wrong types in the column: the rows are not checked, nothing raises
    bad = loans(1_000, seed=8).set_column(1, "limit", pa.array(["lots"] * 1_000))
    assert not [f for f in suite.check(bad).findings if f.monitor == "rule"]


def test_rules_round_trip_through_the_suite_file(suite: wk.Suite, tmp_path) -> None:
    path = tmp_path / "suite.yaml"
    suite.save(path)
    text = path.read_text()
    assert "rules:\n- name: within_limit\n  expr: amount <= limit\n" in text
    loaded = wk.load(path)
    data = loans(2_000, seed=9, over=0.2)
    assert [f.to_dict() for f in loaded.check(data).findings] == \
        [f.to_dict() for f in suite.check(data).findings]
    path.write_text(text.replace("expr: amount <= limit", "expr: amount <= (limit"))
    with pytest.raises(wk.SuiteError, match=r"suite\.yaml: rules\[0\]\.expr: position 17: "
                                            r"expected '\)', got the end"):
        wk.load(path)
    path.write_text(text.replace("expr: amount <= limit", "expr: amount <= limt"))
    with pytest.raises(wk.SuiteError, match=r"rules\[0\]\.expr: rule within_limit: no column "
                                            r"'limt' in the suite \(did you mean 'limit'\?\)"):
        wk.load(path)


def test_init_rejects_a_rule_on_a_column_the_suite_lacks() -> None:
    with pytest.raises(wk.SuiteError, match=r"rules\[0\]\.expr: rule r: no column 'income'"):
        wk.init(loans(500, seed=10), rules={"r": "income > 0"})


def test_diff_names_the_rules_that_changed(suite: wk.Suite) -> None:
    data = loans(5_000, seed=1, over=0.05)
    new = wk.init(data, rules={"within_limit": "amount < limit", "graded": "not isnull(grade)"})
    changed = [s for s in wk.diff(suite, new).settings_changed if s["monitor"] == "rules"]
    assert changed == [
        {"monitor": "rules", "setting": "within_limit", "old": "amount <= limit",
         "new": "amount < limit"},
        {"monitor": "rules", "setting": "graded", "old": None, "new": "not isnull(grade)"}]
