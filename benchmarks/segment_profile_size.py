"""Bytes of one 5,000-row window's profile on ACS, without and with a segmentation (CIT,
as ``bench_segments.py`` draws its windows), and where a segment sub-profile's bytes go.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/segment_profile_size.py``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import watchkeeper as wk

sys.path.insert(0, str(Path(__file__).parent))
from bench_segments import ACS, _plain


def size(d: Any) -> int:
    return len(json.dumps(d, separators=(",", ":")))


def main() -> None:
    table = _plain(pq.read_table(ACS))
    order = np.random.default_rng(0).permutation(table.num_rows)
    half = table.num_rows // 2
    reference, pool = table.take(pa.array(order[:half])), table.take(pa.array(order[half:]))
    kw: dict[str, Any] = dict(target="employed", prediction="prediction",
                              proba="predicted_probability", id="id", progress=False, seed=0)
    plain = wk.init(reference, **kw)
    segmented = wk.init(reference, segments=["CIT"], **kw)
    picks = np.random.default_rng([0, 1]).choice(pool.num_rows, 5_000, replace=False)
    window = pool.take(pa.array(picks))
    p0, p1 = plain.profile(window).to_dict(), segmented.profile(window).to_dict()
    print(f"window profile: {size(p0) / 1024:.1f} KiB plain, {size(p1) / 1024:.1f} KiB with "
          f"segments CIT ({len(p1['segments'])} values with rows)")
    parts: dict[str, int] = {}
    for d in p1["segments"].values():
        for key, value in d.items():
            if key == "joint":
                for k, v in value.items():
                    parts["joint." + k] = parts.get("joint." + k, 0) + size(v)
            else:
                parts[key] = parts.get(key, 0) + size(value)
    for key, n in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  segments' {key}: {n / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
