"""Jupyter display of check results, suites and incidents, from the report's sections.

Importing this module registers the renderers (see :mod:`watchkeeper.io.display`);
``import watchkeeper`` does so on first use of ``wk.init``, ``wk.load``, ``wk.Suite`` or
``wk.CheckResult``. Each renders a ``div.wk-report`` fragment with its style scoped to it,
every value escaped.

>>> from watchkeeper.io.datasets import synthetic_drift_pair
>>> from watchkeeper.suite.build import init
>>> ref, cur = synthetic_drift_pair(2_000, seed=3)
>>> html = init(ref).check(cur)._repr_html_()
>>> html.startswith('<div class="wk-report">') and "Drift" in html
True
"""

from __future__ import annotations

from watchkeeper.alerts.advice import incident_view
from watchkeeper.alerts.incidents import Incident
from watchkeeper.io.display import register_html
from watchkeeper.report import render
from watchkeeper.report.html import page
from watchkeeper.report.sections import incidents, suite
from watchkeeper.run.check import CheckResult
from watchkeeper.suite.core import Suite


def check_result_html(result: CheckResult) -> str:
    """The HTML report of a check result, as a fragment."""
    return render(result.to_dict(), title=f"check of {result.suite}", fragment=True)


def suite_html(s: Suite) -> str:
    """A suite's task, monitors and budget per family, rules and columns."""
    return page(suite.render(s), title=f"suite {s.name}", fragment=True)


def incident_html(incident: Incident) -> str:
    """One incident with its diagnosis, likely causes, actions and alerts."""
    return page(incidents.render([incident_view(incident)]), title=incident.title,
                fragment=True)


register_html(CheckResult, check_result_html)
register_html(Suite, suite_html)
register_html(Incident, incident_html)
