"""watchkeeper: ML monitoring with calibrated thresholds and mergeable profiles.

>>> import watchkeeper
>>> from watchkeeper.io.datasets import synthetic_drift_pair
>>> ref, cur = synthetic_drift_pair(2_000, seed=3, drift=False)
>>> watchkeeper.init(ref).check(cur).alerts()
[]

Names are imported on first use, so ``import watchkeeper.sdk`` in a model server stays
light (no SciPy, YAML or progress bars until something needs them).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "CheckResult": "run.check", "WindowResult": "run.check",
    "deploy": "suite.deploy", "rollback": "suite.deploy",
    "diff": "suite.diff",
    "DataError": "errors", "SuiteError": "errors", "WatchkeeperError": "errors",
    "Finding": "monitors", "Monitor": "monitors", "Severity": "monitors",
    "register_monitor": "monitors",
    "Profile": "profiles.core", "merge": "profiles.core", "profile": "profiles.core",
    "Column": "baseline.schema", "Kind": "baseline.schema", "Role": "baseline.schema",
    "Schema": "baseline.schema", "infer_schema": "baseline.schema",
    "Suite": "suite.core", "init": "suite.build", "load": "suite.core",
}

__all__ = [
    "CheckResult",
    "Column",
    "DataError",
    "Finding",
    "Kind",
    "Monitor",
    "Profile",
    "Role",
    "Schema",
    "Severity",
    "Suite",
    "SuiteError",
    "WatchkeeperError",
    "WindowResult",
    "deploy",
    "diff",
    "infer_schema",
    "init",
    "load",
    "merge",
    "profile",
    "register_monitor",
    "rollback",
]


#: Names whose objects render themselves in Jupyter: their first use also imports the
#: report's renderers (lower stages never import the report; see io/display.py).
_DISPLAYED = {"CheckResult", "Suite", "init", "load"}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the package's metadata on first use (~30 ms)
        from importlib import metadata

        globals()[name] = metadata.version("watchkeeper")
        return globals()[name]
    if name in _WHERE:
        value = getattr(import_module(f"watchkeeper.{_WHERE[name]}"), name)
        if name in _DISPLAYED:
            import_module("watchkeeper.report.notebook")
        globals()[name] = value
        return value
    raise AttributeError(f"module 'watchkeeper' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, "__version__"})


if TYPE_CHECKING:
    from watchkeeper.baseline.schema import Column, Kind, Role, Schema, infer_schema
    from watchkeeper.errors import DataError, SuiteError, WatchkeeperError
    from watchkeeper.monitors import Finding, Monitor, Severity, register_monitor
    from watchkeeper.profiles.core import Profile, merge, profile
    from watchkeeper.run.check import CheckResult, WindowResult
    from watchkeeper.suite.build import init
    from watchkeeper.suite.core import Suite, load
    from watchkeeper.suite.deploy import deploy, rollback
    from watchkeeper.suite.diff import diff

    __version__: str
