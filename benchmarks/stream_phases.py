"""CPU seconds by phase of one streamed check, for benchmarks/results/stream.md.

Runs ``watchkeeper ARGS`` in this process and prints, on stderr, one JSON line: the
parent's CPU (``getrusage``) and wall time when the check starts profiling (``start``:
Python, imports, the suite loaded: everything before a worker is forked), after profiling,
and at exit, with the CPU of all forked workers together and the 1-minute load average.

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/stream_phases.py check \\
        /tmp/sb/current_10m.parquet --suite /tmp/sb/suite.yaml --format json \\
        --no-progress --jobs 2 > /dev/null
    taskset -c 0 ... --jobs 1   # one core
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
import time
from typing import Any

STARTED = time.perf_counter()
MARKS: dict[str, float] = {}


def _cpu(who: int) -> float:
    use = resource.getrusage(who)
    return use.ru_utime + use.ru_stime


def _mark(name: str) -> None:
    MARKS.setdefault(f"{name}_cpu", _cpu(resource.RUSAGE_SELF))
    MARKS.setdefault(f"{name}_wall", time.perf_counter() - STARTED)


def _report() -> None:
    MARKS["parent_cpu"] = _cpu(resource.RUSAGE_SELF)
    MARKS["workers_cpu"] = _cpu(resource.RUSAGE_CHILDREN)
    MARKS["wall"] = time.perf_counter() - STARTED
    MARKS["load"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 2) for k, v in MARKS.items()}), file=sys.stderr)


def main() -> None:
    from watchkeeper.run import stream_pool

    profiles = stream_pool.profiles

    def timed(*args: Any, **kwargs: Any) -> Any:
        _mark("start")
        try:
            return profiles(*args, **kwargs)
        finally:
            _mark("profiled")

    stream_pool.profiles = timed  # type: ignore[assignment]
    atexit.register(_report)
    from watchkeeper.cli import main as cli

    sys.argv = ["watchkeeper", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
