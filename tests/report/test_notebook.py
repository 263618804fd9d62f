"""Jupyter display: suites, check results and incidents render themselves with the
report's sections, every value escaped; the example notebook runs on the ACS data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from watchkeeper.io.datasets import synthetic_drift_pair

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def hostile() -> tuple[wk.Suite, wk.CheckResult]:
    """A suite whose column and rule names are HTML, and a check with findings on them."""
    rng = np.random.default_rng(0)
    name = "<script>alert(1)</script>"
    reference = pa.table({name: rng.normal(size=3_000), "y": rng.normal(size=3_000)})
    suite = wk.init(reference, rules={"small": f"abs(`{name}`) < 5 and y < 5"},
                    progress=False)
    current = pa.table({name: rng.normal(2.0, 1.0, 3_000), "y": rng.normal(size=3_000)})
    return suite, suite.check(current, progress=False)


def test_a_suite_shows_its_monitors_rules_and_columns(hostile) -> None:
    suite, _ = hostile
    html = suite._repr_html_()
    assert html.startswith('<div class="wk-report">') and "<style>" in html
    for heading in ("Monitors", "Rules", "Columns"):
        assert f"<h2>{heading}</h2>" in html
    assert "feature_drift" in html and "rules" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt; 5 and y &lt; 5" in html


def test_a_check_result_is_its_report(hostile) -> None:
    _, result = hostile
    html = result._repr_html_()
    assert html.startswith('<div class="wk-report">') and "<html" not in html
    assert "wk-findings" in html and "feature_drift" in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_an_incident_shows_its_advice_and_alerts() -> None:
    reference, current = synthetic_drift_pair(4_000, seed=2)
    result = wk.init(reference, progress=False).check(current, window_rows=1_000,
                                                      progress=False)
    incident = result.track().incidents[0]
    html = incident._repr_html_()
    assert html.startswith('<div class="wk-report">')
    assert "Diagnosis: <strong>" in html and "Recommended actions" in html
    assert f"<code>{incident.id}</code>" in html


@pytest.mark.slow
def test_the_example_notebook_runs_on_the_acs_data() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "acs_check.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    html = [o.data["text/html"] for c in code for o in c.outputs if "text/html" in o.get(
        "data", {})]
    suite_html, result_html, incident_html = html
    assert "prediction_follows_score" in suite_html and "<h2>Monitors</h2>" in suite_html
    assert "year=2017" in result_html and "feature_drift" in result_html
    assert "AGEP" in result_html and "ANC" in result_html
    assert "feature_drift on AGEP" in incident_html
    printed = "".join(o.get("text", "") for o in code[-1].outputs)
    assert "year=2018 warning feature_drift ANC" in printed
