"""Values as JSON takes them: NumPy scalars and arrays as Python numbers and lists, NaN and
±inf as null (JSON has no NaN), and, in the check result, numbers to six significant digits.

>>> import numpy as np
>>> plain({"a": [np.float64("nan"), 1 / 3], "b": (np.int64(2),)})
{'a': [None, 0.3333333333333333], 'b': [2]}
>>> plain({"a": [1 / 3]}, digits=6), plain([np.float64("nan")], finite=False)
({'a': [0.333333]}, [nan])
>>> json_number(np.float32(0.1)), json_number(float("inf")), json_number("x")
(0.1, None, 'x')
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Significant digits of the numbers in the check result's JSON.
RESULT_DIGITS = 6


def plain(value: Any, *, digits: int | None = None, finite: bool = True) -> Any:
    """A JSON-ready copy: dicts and lists walked (tuples become lists), NumPy scalars as
    Python ones, NaN and ±inf as None (kept with ``finite=False``), floats rounded to
    ``digits`` significant digits when given; anything else as it is (NumPy arrays too:
    ``json.dumps(default=to_python)`` takes them)."""
    if isinstance(value, dict):
        return {k: plain(v, digits=digits, finite=finite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, digits=digits, finite=finite) for v in value]
    return _scalar(value, digits, finite)


def json_number(v: Any) -> Any:
    """A number as the JSON result writes it: six significant digits, NaN and ±inf as None
    (JSON has no NaN), NumPy scalars as Python ones; anything else as it is."""
    return _scalar(v, RESULT_DIGITS, True)


def _scalar(v: Any, digits: int | None, finite: bool) -> Any:
    if isinstance(v, float | np.floating):
        if not math.isfinite(v):
            return None if finite else float(v)
        return float(f"{float(v):.{digits}g}") if digits else float(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def to_python(value: Any) -> Any:
    """``json.dumps(default=to_python)``: a NumPy scalar or array as a Python number or
    list (exact; NaN stays NaN); TypeError for anything else, as json.dumps raises."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
