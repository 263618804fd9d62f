"""Monitors: each answers one question about a window and returns Findings."""

from watchkeeper.monitors.base import (
    FAMILIES,
    Finding,
    Monitor,
    ReferenceData,
    Severity,
    monitor_class,
    monitor_types,
)
from watchkeeper.monitors.drift import FeatureDrift, PredictionDrift, TargetDrift
from watchkeeper.monitors.quality import (
    InvalidRate,
    MissingRate,
    OutOfRange,
    SchemaChange,
    UnseenCategory,
    Volume,
)

__all__ = [
    "FAMILIES",
    "FeatureDrift",
    "Finding",
    "InvalidRate",
    "MissingRate",
    "Monitor",
    "OutOfRange",
    "PredictionDrift",
    "ReferenceData",
    "SchemaChange",
    "Severity",
    "TargetDrift",
    "UnseenCategory",
    "Volume",
    "monitor_class",
    "monitor_types",
]
