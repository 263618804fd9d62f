"""watchkeeper: ML monitoring with calibrated thresholds and mergeable profiles.

>>> import watchkeeper
>>> from watchkeeper.datasets import synthetic_drift_pair
>>> ref, cur = synthetic_drift_pair(2_000, seed=3, drift=False)
>>> watchkeeper.init(ref).check(cur).alerts()
[]

Names are imported on first use, so ``import watchkeeper.sdk`` in a model server stays
light (no SciPy, YAML or progress bars until something needs them).
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "CheckResult": "check", "WindowResult": "check",
    "deploy": "deploy", "rollback": "deploy",
    "diff": "diff",
    "DataError": "errors", "SuiteError": "errors", "WatchkeeperError": "errors",
    "Finding": "monitors", "Monitor": "monitors", "Severity": "monitors",
    "Profile": "profile", "merge": "profile", "profile": "profile",
    "Column": "schema", "Kind": "schema", "Role": "schema", "Schema": "schema",
    "infer_schema": "schema",
    "Suite": "suite", "init": "suite", "load": "suite",
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
    "rollback",
]


class _Package(ModuleType):
    """Importing a submodule sets it on its package, so ``watchkeeper.deploy`` would turn
    into the module once anything imported ``watchkeeper.deploy`` before ``wk.deploy`` was
    first read. The public function of the submodule's name is kept instead, as an eager
    ``from watchkeeper.deploy import deploy`` here would have done."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and _WHERE.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(f"watchkeeper.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'watchkeeper' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *_WHERE]


if TYPE_CHECKING:
    from watchkeeper.check import CheckResult, WindowResult
    from watchkeeper.deploy import deploy, rollback
    from watchkeeper.diff import diff
    from watchkeeper.errors import DataError, SuiteError, WatchkeeperError
    from watchkeeper.monitors import Finding, Monitor, Severity
    from watchkeeper.profile import Profile, merge, profile
    from watchkeeper.schema import Column, Kind, Role, Schema, infer_schema
    from watchkeeper.suite import Suite, init, load
