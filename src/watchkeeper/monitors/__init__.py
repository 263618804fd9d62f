"""Monitors: each answers one question about a window and returns Findings."""

from watchkeeper.monitors.base import (
    ENTRY_POINT_GROUP,
    FAMILIES,
    Family,
    Finding,
    Monitor,
    ReferenceData,
    Severity,
    monitor_class,
    monitor_types,
    register_monitor,
    severity_for,
)
from watchkeeper.monitors.drift import FeatureDrift, PredictionDrift, TargetDrift
from watchkeeper.monitors.embedding import EmbeddingDrift
from watchkeeper.monitors.estimate import EstimatedPerformance
from watchkeeper.monitors.fairness import Fairness
from watchkeeper.monitors.multivariate import MultivariateDrift
from watchkeeper.monitors.performance import LabelCoverage, RealisedPerformance
from watchkeeper.monitors.quality import (
    InvalidRate,
    MissingRate,
    OutOfRange,
    SchemaChange,
    UnseenCategory,
    Volume,
)
from watchkeeper.monitors.rules import RuleViolations
from watchkeeper.monitors.security import (
    BoundaryProbing,
    ClientVolume,
    ExtractionCoverage,
    NearDuplicates,
    OODShare,
    RejectedRequests,
)
from watchkeeper.monitors.service import ErrorRate, Latency, Throughput
from watchkeeper.monitors.text import TextDrift, TextRange

__all__ = [
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "BoundaryProbing",
    "ClientVolume",
    "EmbeddingDrift",
    "ErrorRate",
    "EstimatedPerformance",
    "ExtractionCoverage",
    "Fairness",
    "Family",
    "FeatureDrift",
    "Finding",
    "InvalidRate",
    "LabelCoverage",
    "Latency",
    "MissingRate",
    "Monitor",
    "MultivariateDrift",
    "NearDuplicates",
    "OODShare",
    "OutOfRange",
    "PredictionDrift",
    "RealisedPerformance",
    "ReferenceData",
    "RejectedRequests",
    "RuleViolations",
    "SchemaChange",
    "Severity",
    "TargetDrift",
    "TextDrift",
    "TextRange",
    "Throughput",
    "UnseenCategory",
    "Volume",
    "monitor_class",
    "monitor_types",
    "register_monitor",
    "severity_for",
]
