"""The report's sections, one module each. A section's ``render`` takes plain data (the
windows of a check result as ``common.windows_of`` normalises them, or incidents as the
API returns them), tolerates missing keys, and returns HTML, or "" when it has nothing to
show; ``watchkeeper.report.render`` puts them in order under the header.

- ``header``: title, time range, counts by severity, links to the sections present
- ``summary``: one row per window, its verdict and headline metric
- ``incidents``: diagnosis, likely causes and actions per incident
- ``findings``: every finding, grouped by monitor family (quality, service... included)
- ``performance``: realised and estimated metrics, the confusion matrix
- ``drift``: each column's distance from the reference against its threshold
- ``fairness``: parity measures per sensitive attribute, the groups
- ``security``: out-of-distribution rows, features to blame, traffic per client
- ``segments``: per segment value its alerts, not-evaluated windows and latest metrics
- ``suite``: a suite's task, budget per family, monitors, rules and columns (it reads a
  ``Suite``: the notebook display of :mod:`watchkeeper.report.notebook`)
- ``common``: ``WindowView``, ``windows_of`` and the lenient accessors they all use
"""

from __future__ import annotations

from watchkeeper.report.sections import (
    drift,
    fairness,
    findings,
    header,
    incidents,
    performance,
    security,
    segments,
    summary,
)
from watchkeeper.report.sections.common import WindowView, windows_of
from watchkeeper.report.sections.security import score_bins

__all__ = ["WindowView", "drift", "fairness", "findings", "header", "incidents",
           "performance", "score_bins", "security", "segments", "summary",
           "windows_of"]
