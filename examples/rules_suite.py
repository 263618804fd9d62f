"""Declarative rules in a suite, on the ACS employment data (data/acs_employment_ma).

A rule is a condition every row should meet, written in the suite file's ``rules:`` list
(the same text is given to ``init`` here). Each rule's violation rate is tallied in the
profile and judged against the reference's own rate, at a share of the alert budget, like
the missing-value rate. A rule that names a column a batch lacks is reported as a data
quality finding.

    python examples/rules_suite.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import watchkeeper as wk

DATA = Path(__file__).resolve().parents[1] / "data" / "acs_employment_ma"

#: As in the suite file.
RULES = yaml.safe_load("""
rules:
  # the model's decision is its score over 0.5
  - name: prediction_follows_score
    expr: (prediction == 1) == (predicted_probability >= 0.5)
  # an age in years
  - name: age_in_range
    expr: AGEP >= 0 and AGEP <= 99
  # a spouse in the household (RELP 1) is married (MAR 1)
  - name: spouse_is_married
    expr: RELP != '1' or MAR == '1' or isnull(MAR)
""")["rules"]


def main() -> int:
    reference = pq.read_table(DATA / "employment_MA_reference.pq").slice(0, 20_000)
    analysis = pq.read_table(DATA / "employment_MA_analysis.pq").slice(0, 20_000)
    suite = wk.init(reference, target="employed", rules=RULES)
    (monitor,) = [m for m in suite.monitors if m.type == "rules"]
    for name, counts in monitor.calibration["reference"].items():
        print(f"reference {name}: {counts['violated']} of {counts['checked']} rows violate it")

    with tempfile.TemporaryDirectory() as tmp:  # the rules are in the suite file
        path = Path(tmp) / "acs.yaml"
        suite.save(path)
        suite = wk.load(path)

    print(f"clean batch: {_rule_findings(suite.check(analysis))}")

    # the serving code changed the decision threshold to 0.4
    score = analysis.column("predicted_probability").to_numpy()
    changed = (score >= 0.4).astype("int64")
    bad = analysis.set_column(analysis.column_names.index("prediction"), "prediction",
                              pa.array(changed))
    print(f"threshold changed: {_rule_findings(suite.check(bad))}")

    # a batch without the marital status: the rule cannot be checked, which is a finding
    print(f"MAR missing: {_rule_findings(suite.check(analysis.drop_columns(['MAR'])))}")
    return 0


def _rule_findings(result: wk.CheckResult) -> str:
    found = [f"{f.severity.value} {f.monitor} {f.metric}: {f.message}" for f in result.findings
             if f.monitor.startswith("rule")]
    return "; ".join(found) or "no rule violated beyond the reference's rate"


if __name__ == "__main__":
    sys.exit(main())
