"""Self-contained HTML report of a check result: inline CSS and SVG, no script and no
external reference, so it opens offline and can be mailed or archived as one file. The same
input gives the same bytes (nothing is timestamped unless ``generated`` is passed).

>>> html = render({"suite": "demo.yaml", "windows": []})
>>> html.startswith("<!DOCTYPE html>") and "demo.yaml" in html
True
>>> "<html" in render({"suite": "demo.yaml", "windows": []}, fragment=True)
False
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from watchkeeper.io.files import write_atomic
from watchkeeper.report import sections
from watchkeeper.report.html import escape, page

__all__ = ["render", "write"]


def render(result: Mapping[str, Any], *, title: str = "watchkeeper report",
           incidents: Sequence[Mapping[str, Any]] = (), fragment: bool = False,
           generated: str | None = None) -> str:
    """HTML report of ``result`` (the JSON shape of ``watchkeeper check --format json``,
    or windows as the server API returns them) and of ``incidents`` (as the server's
    incidents API returns them, with their advice).

    Without ``incidents``, those of the result itself are shown (``check --format json``
    carries them under ``"incidents"``).

    ``fragment=True`` returns only the body content (a ``div.wk-report`` with its style
    scoped to it) for embedding in another page; ``generated`` is an optional line such
    as the time the report was made (left out by default so output is reproducible).
    """
    windows = sections.windows_of(result)
    if not incidents and isinstance(result.get("incidents"), list):
        incidents = [i for i in result["incidents"] if isinstance(i, Mapping)]
    parts = [
        ("summary", "Windows", sections.summary.render(windows)),
        ("incidents", "Incidents", sections.incidents.render(incidents)),
        ("findings", "Findings", sections.findings.render(windows)),
        ("performance", "Performance", sections.performance.render(windows)),
        ("drift", "Drift", sections.drift.render(windows)),
        ("fairness", "Fairness", sections.fairness.render(windows)),
        ("segments", "Segments", sections.segments.render(windows)),
        ("security", "Security", sections.security.render(windows)),
    ]
    nav = [(anchor, text) for anchor, text, html in parts if html]
    body = sections.header.render(title, result, windows, incidents, generated, nav)
    body += "".join(html for _, _, html in parts)
    body += ('<footer>Made by watchkeeper from the check result of suite '
             f"{escape(result.get('suite') or '?')}.</footer>\n")
    return page(body, title=title, fragment=fragment)


def write(path: str | os.PathLike[str], html: str) -> Path:
    """Write a rendered report atomically: a crash never leaves half a file."""
    return write_atomic(path, html)
