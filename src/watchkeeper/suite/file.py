"""Reading and writing the suite file: readable YAML, exact round trip, field-named errors.

The file holds what a person reads and edits first (columns, roles, task, monitors and
their settings, budget, alert rules), then a ``fitted:`` section with what init fitted to
the reference — bin edges, text plans, score edges, label and loss models, the security
and multivariate models,
monitors' calibration and the reference profile — one compressed line per artefact
(zlib-compressed JSON in base64), so the suite stays one text (deploy, diff and the store
keep it whole). Format 1 files, with everything inline, still load, and an artefact
written inline (say a column's ``edges``) takes precedence over its fitted copy.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import yaml

from watchkeeper.errors import SuiteError
from watchkeeper.io.jsonable import to_python

FORMAT_VERSION = 2
#: Formats this version reads: 1 had the fitted artefacts inline.
READS = (1, 2)
FITTED = "fitted"
_FITTED_NOTE = ("# Fitted to the reference by `watchkeeper init` (compressed; re-run init to "
                "refit). Edit the fields above.\n")


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


class _Dumper(yaml.SafeDumper):
    """Block style for structure, flow style for short rows of numbers and labels."""

    def ignore_aliases(self, data: Any) -> bool:  # no &anchors: a shared list is written twice
        return True


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(_is_scalar(v) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    flow = 0 < len(data) <= 4 and all(isinstance(v, (int, float)) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _represent_numpy(dumper: yaml.SafeDumper, data: np.generic) -> yaml.Node:
    return dumper.represent_data(data.item())


_Dumper.add_representer(list, _represent_list)
# np.generic is abstract in numpy's stubs, and types-PyYAML types the argument `type[_T]`,
# which mypy refuses for an abstract class although a multi representer is meant for one.
_Dumper.add_multi_representer(np.generic, _represent_numpy)  # type: ignore[type-abstract]
_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(str, _represent_str)


def dump(document: dict[str, Any]) -> str:
    """The suite file's text: the editable fields, then the ``fitted:`` section."""
    editable, fitted = pack(document)
    text = _yaml(editable)
    return text + _FITTED_NOTE + _yaml({FITTED: fitted}) if fitted else text


def _yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def encode(value: Any) -> str:
    """An artefact as one line: JSON (floats exact), zlib-compressed, base64."""
    raw = json.dumps(value, separators=(",", ":"), allow_nan=True, default=to_python)
    return base64.b64encode(zlib.compress(raw.encode("utf-8"), 9)).decode("ascii")


def decode(text: Any, where: str, source: str | None) -> Any:
    if not isinstance(text, str):
        raise SuiteError(where, f"expected a compressed artefact, got {_kind(text)}", source)
    try:
        return json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    except (ValueError, zlib.error) as exc:
        raise SuiteError(where, f"corrupt compressed artefact ({exc})", source) from None


def _monitor_keys(monitors: list[Any]) -> list[str | None]:
    """Each monitor's key in ``fitted.monitors``: its id (type:column), numbered when it
    repeats, so the section follows the monitors when a person reorders or deletes some."""
    keys: list[str | None] = []
    seen: dict[str, int] = {}
    for m in monitors:
        if not isinstance(m, dict):
            keys.append(None)
            continue
        key = f"{m.get('type')}:{m['column']}" if m.get("column") is not None else str(
            m.get("type"))
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


def pack(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a suite document into its editable part and its fitted artefacts (encoded)."""
    doc = dict(document)
    fitted: dict[str, Any] = {}
    columns = {}
    for name, spec in (doc.get("columns") or {}).items():
        for key in ("edges", "text", "codebook"):  # fitted to the reference
            if isinstance(spec, dict) and key in spec:
                spec = dict(spec)
                fitted.setdefault("columns", {}).setdefault(name, {})[key] = encode(
                    spec.pop(key))
        columns[name] = spec
    if "columns" in doc:
        doc["columns"] = columns
    if isinstance(doc.get("task"), dict):
        task = dict(doc["task"])
        for key in ("score_edges", "label_model", "loss_model"):
            if key in task:
                fitted.setdefault("task", {})[key] = encode(task.pop(key))
        doc["task"] = task
    monitors = []
    for monitor_key, m in zip(_monitor_keys(doc.get("monitors") or []),
                              doc.get("monitors") or [], strict=True):
        if monitor_key is not None and "calibration" in m:
            m = dict(m)
            fitted.setdefault("monitors", {})[monitor_key] = encode(m.pop("calibration"))
        monitors.append(m)
    if "monitors" in doc:
        doc["monitors"] = monitors
    if isinstance(doc.get("segments"), dict) and "nulls" in doc["segments"]:
        segments = dict(doc["segments"])
        fitted["segments"] = {"nulls": encode(segments.pop("nulls"))}
        doc["segments"] = segments
    for key in ("security", "multivariate", "multivariate_groups", "reference_profile"):
        if key in doc:
            fitted[key] = encode(doc.pop(key))
    return doc, fitted


def unpack(document: dict[str, Any], source: str | None) -> dict[str, Any]:
    """A document with its ``fitted:`` section put back in place (inline fields win)."""
    if FITTED not in document:
        return document
    doc = dict(document)
    fitted = Fields(doc.pop(FITTED), FITTED, source)
    for name, artefacts in fitted.mapping("columns", {}).data.items():
        spec = (doc.get("columns") or {}).get(name)
        where = f"{FITTED}.columns.{name}"
        if not isinstance(spec, dict):
            raise SuiteError(where, "column is not in columns", source)
        for key, text in Fields(artefacts, where, source).data.items():
            spec.setdefault(key, decode(text, f"{where}.{key}", source))
    _restore(doc, fitted, "task", "the suite has no task", source)
    calibrations = dict(fitted.mapping("monitors", {}).data)
    listed = doc.get("monitors")
    monitors: list[Any] = listed if isinstance(listed, list) else []
    for key, m in zip(_monitor_keys(monitors), monitors, strict=True):
        if key in calibrations:
            m.setdefault("calibration", decode(calibrations.pop(key),
                                               f"{FITTED}.monitors.{key}", source))
    _restore(doc, fitted, "segments", "the suite has no segments", source)
    for key in ("security", "multivariate", "multivariate_groups", "reference_profile"):
        if key in fitted.data and key not in doc:
            doc[key] = decode(fitted.data[key], f"{FITTED}.{key}", source)
    return doc


def parse(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=_Loader)  # _Loader is a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SuiteError(where, f"not valid YAML: {problem}", source) from None
    if not isinstance(document, dict):
        raise SuiteError("(top level)", "expected a mapping of suite fields", source)
    return unpack(document, source)


class Fields:
    """Typed access to one mapping of the suite file; errors name the field's full path."""

    def __init__(self, data: Any, path: str, source: str | None) -> None:
        if not isinstance(data, dict):
            raise SuiteError(
                path or "(top level)", f"expected a mapping, got {_kind(data)}", source
            )
        self.data = data
        self.path = path
        self.source = source

    def _field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> SuiteError:
        return SuiteError(self._field(key), problem, self.source)

    def get(self, key: str, check: Callable[[Any], bool], expected: str,
            default: Any = ..., ) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.error(key, "is required")
            return default
        value = self.data[key]
        if not check(value):
            raise self.error(key, f"expected {expected}, got {value!r}")
        return value

    def number(self, key: str, default: Any = ..., lo: float | None = None,
               hi: float | None = None, open_interval: bool = False) -> float:
        value = self.get(key, _is_number, "a number", default)
        if value is default and default is not ...:
            return value
        value = float(value)
        too_low = lo is not None and (value <= lo if open_interval else value < lo)
        too_high = hi is not None and (value >= hi if open_interval else value > hi)
        if too_low or too_high:
            brackets = "()" if open_interval else "[]"
            raise self.error(key, f"must be in {brackets[0]}{lo}, {hi}{brackets[1]}, got {value!r}")
        return value

    def integer(self, key: str, default: Any = ..., lo: int | None = None) -> int:
        value = self.get(key, lambda v: isinstance(v, int) and not isinstance(v, bool),
                         "an integer", default)
        if lo is not None and value < lo:
            raise self.error(key, f"must be at least {lo}, got {value!r}")
        return int(value)

    def text(self, key: str, default: Any = ...) -> str:
        return self.get(key, lambda v: isinstance(v, str), "a string", default)

    def flag(self, key: str, default: Any = ...) -> bool:
        return self.get(key, lambda v: isinstance(v, bool), "true or false", default)

    def choice(self, key: str, options: list[str], default: Any = ...) -> str:
        value = self.get(key, lambda v: isinstance(v, str), "a string", default)
        if key not in self.data or self.data[key] is None:
            return value  # the default
        if value not in options:
            raise self.error(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def mapping(self, key: str, default: Any = ...) -> Fields:
        return Fields(self.get(key, lambda v: isinstance(v, dict), "a mapping", default),
                      self._field(key), self.source)

    def items(self, key: str, default: Any = ...) -> list[Any]:
        return self.get(key, lambda v: isinstance(v, list), "a list", default)

    def numbers(self, key: str, default: Any = ...) -> list[float]:
        values = self.items(key, default)
        if values is None:
            return values
        for i, v in enumerate(values):
            if not _is_number(v) or not math.isfinite(float(v)):
                raise self.error(f"{key}[{i}]", f"expected a finite number, got {v!r}")
        return [float(v) for v in values]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    return {list: "a list", str: "a string", type(None): "nothing"}.get(type(v), repr(v))


def _restore(doc: dict[str, Any], fitted: Fields, section: str, missing: str,
             source: str | None) -> None:
    """Put the fitted artefacts of ``section`` (``task``, ``segments``) back in its mapping
    of the document (what the document says itself wins)."""
    artefacts = fitted.mapping(section, {}).data
    if not artefacts:
        return
    if not isinstance(doc.get(section), dict):
        raise SuiteError(f"{FITTED}.{section}", missing, source)
    for key, text in artefacts.items():
        doc[section].setdefault(key, decode(text, f"{FITTED}.{section}.{key}", source))
