"""Command line: ``watchkeeper init`` builds a suite, ``watchkeeper check`` evaluates data,
``watchkeeper report`` writes the HTML report of a check.

``main`` (the ``watchkeeper`` entry point) and what every command shares are in
:mod:`~watchkeeper.cli.common`; the commands, one module per group: :mod:`.suites`
(``init``, ``diff``), :mod:`.checks` (``check``, ``report``) and :mod:`.server` (``serve``
and the server's models: ``deploy``, ``rollback``, incidents, silences, quarantine,
``grafana``). Importing this package registers them all on ``main``."""

from __future__ import annotations

from watchkeeper.cli import checks, server, suites  # noqa: F401  (they register on main)
from watchkeeper.cli.checks import EXIT_FINDINGS
from watchkeeper.cli.common import FLAGS, cli_message, cli_text, main
from watchkeeper.cli.server import OPSGENIE_URL, PAGERDUTY_URL

__all__ = ["EXIT_FINDINGS", "FLAGS", "OPSGENIE_URL", "PAGERDUTY_URL", "cli_message",
           "cli_text", "main"]
