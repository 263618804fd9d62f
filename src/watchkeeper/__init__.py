"""watchkeeper: ML monitoring with calibrated thresholds and mergeable profiles.

>>> import watchkeeper
>>> from watchkeeper.datasets import synthetic_drift_pair
>>> ref, cur = synthetic_drift_pair(2_000, seed=3, drift=False)
>>> watchkeeper.init(ref).check(cur).alerts()
[]
"""

from watchkeeper.check import CheckResult, WindowResult
from watchkeeper.deploy import deploy, rollback
from watchkeeper.diff import diff
from watchkeeper.errors import DataError, SuiteError, WatchkeeperError
from watchkeeper.monitors import Finding, Monitor, Severity
from watchkeeper.profile import Profile, merge, profile
from watchkeeper.schema import Column, Kind, Role, Schema, infer_schema
from watchkeeper.suite import Suite, init, load

__version__ = "0.1.0"

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
