"""Benchmark: what ``wk.log(...)`` costs a model server, next to whylogs' per-row logging.

watchkeeper: ``Client.log(features, prediction)`` with its background thread at work (it
converts the buffered rows to Arrow tables and hands them to a sink that drops them), on
rows of 10 numeric and 5 categorical features. Two load shapes:

* ``paced``: the calls come in bursts of ``--batch`` at each of ``--rates`` calls per second
  on average (default 10,000/s, a busy Python model server, and 100,000/s, a stress test),
  so the background thread converts rows while the caller logs;
* ``flat_out``: calls back to back as fast as the loop goes; the background thread cannot
  keep up, the buffer fills and the newest rows are dropped (counted), as designed.

Each shape is timed twice over ``--calls`` calls (default 1,000,000) with
``time.perf_counter_ns``: per batch of ``--batch`` calls (the batch mean is one sample) and
call by call (each call is one sample, the timer's own cost included). Reported: median and
p99 of each, p99.9 and max of single calls, the timer's cost and that of the same loop calling
a function that does nothing.

whylogs (``why.log(row=...)`` and ``DatasetProfile.track(row=...)``, the same rows with the
prediction as one more column) runs in its own venv, ``benchmarks/.venv-whylogs``, made on
first use with ``pip install "whylogs[viz]" scipy "numpy<2" "pandas<3"``, as a separate
process (this script with ``--worker whylogs``). It is much slower per call, so it gets fewer
calls (``--why-calls``, ``--track-calls``). ``WHYLOGS_NO_ANALYTICS=1`` keeps it from sending
usage statistics. Ratios are whylogs / watchkeeper (first paced shape) medians.

Run it from the repository root with the project venv::

    .venv/bin/python benchmarks/bench_sdk.py                    # 1M calls per measure
    .venv/bin/python benchmarks/bench_sdk.py --calls 200000 --skip-whylogs

The Markdown report goes to stdout and ``benchmarks/results/sdk_overhead.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WHYLOGS_VENV = BENCH_DIR / ".venv-whylogs"
WHYLOGS_PYTHON = WHYLOGS_VENV / "bin" / "python"
WHYLOGS_REQUIREMENTS = ["whylogs[viz]", "scipy", "numpy<2", "pandas<3"]
RESULT = BENCH_DIR / "results" / "sdk_overhead.md"
TARGET_MEDIAN_US = 3.0
TARGET_P99_US = 50.0

NUMERIC = [f"num_{i:02d}" for i in range(10)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(5)]
LEVELS = ["red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"]


def make_rows(n: int = 1_000, seed: int = 0) -> list[tuple[dict[str, Any], float]]:
    """``n`` distinct (features, prediction) pairs; the same in every process."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        features: dict[str, Any] = {c: rng.gauss(0.0, 1.0) for c in NUMERIC}
        features.update({c: rng.choice(LEVELS) for c in CATEGORICAL})
        rows.append((features, rng.random()))
    return rows


# -- timing, shared by both processes ---------------------------------------------------------
def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return float(ordered[min(int(q * len(ordered)), len(ordered) - 1)])


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, p99, p99.9 and max of per-call nanoseconds, in microseconds."""
    ordered = sorted(samples)
    return {"n": len(ordered), "median_us": _quantile(ordered, 0.5) / 1e3,
            "p99_us": _quantile(ordered, 0.99) / 1e3,
            "p999_us": _quantile(ordered, 0.999) / 1e3,
            "max_us": (ordered[-1] if ordered else float("nan")) / 1e3}


def _fresh(row: tuple[dict[str, Any], float]) -> tuple[dict[str, Any], float]:
    """A new dict per call, as a server builds one per request (made outside the timing)."""
    return dict(row[0]), row[1]


class GcWatch:
    """Full (generation 2) garbage collections while timing: how many, and how long."""

    def __init__(self) -> None:
        self.on = False
        self.pauses_ms: list[float] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2 or not self.on:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._start) * 1e3)


GC = GcWatch()
gc.callbacks.append(GC)


def time_batches(call: Callable[[dict[str, Any], float], Any],
                 rows: list[tuple[dict[str, Any], float]], calls: int, batch: int,
                 rate: float | None) -> Sequence[float]:
    """Per-call nanoseconds, one sample per batch of ``batch`` calls (the batch mean)."""
    clock = time.perf_counter_ns
    n_rows = len(rows)
    means = array("d")
    period = batch / rate if rate else 0.0
    next_start = time.perf_counter()
    for b in range(calls // batch):
        chunk = [_fresh(rows[(b * batch + i) % n_rows]) for i in range(batch)]
        start = clock()
        for features, prediction in chunk:
            call(features, prediction)
        means.append((clock() - start) / batch)
        if period:
            next_start += period
            pause = next_start - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    return means


def time_calls(call: Callable[[dict[str, Any], float], Any],
               rows: list[tuple[dict[str, Any], float]], calls: int, batch: int,
               rate: float | None) -> Sequence[float]:
    """Per-call nanoseconds, one sample per call (timer included), paced like
    :func:`time_batches`."""
    clock = time.perf_counter_ns
    n_rows = len(rows)
    samples = array("q", bytes(8 * calls))  # not a list: the GC never walks an array
    period = batch / rate if rate else 0.0
    next_start = time.perf_counter()
    k = 0
    for b in range(calls // batch):
        chunk = [_fresh(rows[(b * batch + i) % n_rows]) for i in range(batch)]
        for features, prediction in chunk:
            start = clock()
            call(features, prediction)
            samples[k] = clock() - start
            k += 1
        if period:
            next_start += period
            pause = next_start - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    return samples[:k]


def timer_cost(n: int = 200_000) -> float:
    """Median nanoseconds between two back-to-back ``perf_counter_ns`` calls."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        start = clock()
        samples.append(clock() - start)
    samples.sort()
    return float(samples[len(samples) // 2])


def _nothing(features: dict[str, Any], prediction: float) -> None:
    return None


def measure_tool(call: Callable[[dict[str, Any], float], Any], calls: int, batch: int,
                 rate: float | None) -> dict[str, Any]:
    rows = make_rows()
    for features, prediction in rows[:100]:  # warm up
        call(features, prediction)
    GC.pauses_ms = []
    gc.collect()
    GC.on = True
    batches = summary(time_batches(call, rows, calls, batch, rate))
    GC.on = False
    gc.collect()
    GC.on = True
    singles = summary(time_calls(call, rows, calls, batch, rate))
    GC.on = False
    return {"calls": calls, "batch": batch, "rate": rate, "batch_means": batches,
            "single_calls": singles, "full_gc_ms": GC.pauses_ms}


# -- the whylogs worker (runs in .venv-whylogs; imports no watchkeeper) -------------------------
def whylogs_worker(why_calls: int, track_calls: int) -> dict[str, Any]:
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
    start = time.perf_counter()
    import whylogs as why
    from whylogs.core import DatasetProfile

    imported = time.perf_counter() - start
    out: dict[str, Any] = {"import_s": imported, "versions": _versions(
        ["whylogs", "numpy", "pandas"])}

    def why_log(features: dict[str, Any], prediction: float) -> None:
        why.log(row={**features, "prediction": prediction})

    profile = DatasetProfile()

    def track(features: dict[str, Any], prediction: float) -> None:
        profile.track(row={**features, "prediction": prediction})

    out["why.log(row=...)"] = measure_tool(why_log, why_calls, 10, None)
    out["profile.track(row=...)"] = measure_tool(track, track_calls, 100, None)
    return out


def _versions(names: list[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# -- the driver (project venv) -----------------------------------------------------------------
class NullSink:
    """Takes the tables and forgets them (the conversion to Arrow still happens)."""

    def __init__(self) -> None:
        self.rows = 0

    def send_events(self, table: Any) -> None:
        self.rows += table.num_rows

    def send_labels(self, table: Any) -> None:
        self.rows += table.num_rows

    def close(self) -> None:
        pass


def measure_watchkeeper(calls: int, batch: int, rate: float | None) -> dict[str, Any]:
    from watchkeeper.sdk import Client

    sink = NullSink()
    client = Client(sink, feature_names=NUMERIC + CATEGORICAL)
    started = time.perf_counter()
    result = measure_tool(client.log, calls, batch, rate)
    logging_s = time.perf_counter() - started
    close_start = time.perf_counter()
    client.close(timeout=120)
    result["close_s"] = time.perf_counter() - close_start
    result["stats"] = client.stats
    result["sink_rows"] = sink.rows
    result["logging_s"] = logging_s
    return result


def ensure_whylogs_venv() -> tuple[Path | None, str]:
    """The whylogs venv's python, made on first use; (None, why) when that fails."""
    sys.path.insert(0, str(BENCH_DIR))
    from bench_drift import ensure_venv

    return ensure_venv(WHYLOGS_VENV, WHYLOGS_REQUIREMENTS, "import whylogs, whylogs.core",
                       env={**os.environ, "WHYLOGS_NO_ANALYTICS": "1"})


def measure_whylogs(python: Path, why_calls: int, track_calls: int) -> dict[str, Any]:
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", "whylogs",
           "--why-calls", str(why_calls), "--track-calls", str(track_calls)]
    env = {**os.environ, "WHYLOGS_NO_ANALYTICS": "1", "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"whylogs worker exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _us(x: float) -> str:
    if x != x:  # NaN
        return "—"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _row(name: str, m: dict[str, Any], baseline: float | None) -> str:
    b, s = m["batch_means"], m["single_calls"]
    ratio = "—" if baseline is None else f"{s['median_us'] / baseline:,.0f}×"
    return (f"| {name} | {m['calls']:,} | {m['batch']:,} | {_us(b['median_us'])} | "
            f"{_us(b['p99_us'])} | {_us(s['median_us'])} | {_us(s['p99_us'])} | "
            f"{_us(s['p999_us'])} | {_us(s['max_us'])} | {ratio} |")


def _machine(whylogs_versions: dict[str, str] | None) -> list[str]:
    sys.path.insert(0, str(BENCH_DIR))
    from bench_drift import _cpu_model, _git_describe, _loadavg, _mem_total

    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [f"- CPUs: nproc {nproc} ({_cpu_model()}); memory {_mem_total()}",
             f"- load average (1, 5, 15 min) at the end: {_loadavg()}",
             f"- OS: {platform.platform()}; Python {platform.python_version()}",
             f"- project venv: {_versions(['watchkeeper', 'pyarrow', 'numpy'])}",
             f"- switch interval (GIL): {sys.getswitchinterval() * 1e3:g} ms",
             f"- repository: {_git_describe()}"]
    if whylogs_versions:
        lines.append(f"- whylogs venv: {whylogs_versions}")
    return lines


def _shape_name(rate: float | None) -> str:
    return f"paced {rate:,.0f}/s" if rate else "flat out"


def report(args: argparse.Namespace, wk: dict[str, dict[str, Any]], timer_ns: float,
           loop: dict[str, Any], why: dict[str, Any] | None, why_error: str,
           load_at_start: str) -> str:
    shapes = list(wk)
    base = wk[shapes[0]]["single_calls"]["median_us"]
    lines = ["# SDK overhead: `Client.log()` per call, next to whylogs", "",
             f"Generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by "
             "`benchmarks/bench_sdk.py`. Rows: 10 numeric + 5 categorical features and a "
             "float prediction (1,000 distinct rows, cycled; a new dict per call). Times are "
             "microseconds per call; the last column is whylogs' single-call median over "
             f"watchkeeper's ({shapes[0]}).",
             "",
             "| tool | calls | batch | median of batch means | p99 of batch means | "
             "single call median | single p99 | single p99.9 | single max | "
             "single median / watchkeeper |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_row(f"watchkeeper `log()`, {shape}", wk[shape], None) for shape in shapes]
    if why is not None:
        for name in ("why.log(row=...)", "profile.track(row=...)"):
            lines.append(_row(f"whylogs `{name}`", why[name], base))
    lines.append(_row("the loop calling a no-op function", loop, None))
    lines += ["", f"Timer cost (two back-to-back `perf_counter_ns`): {timer_ns:.0f} ns, "
              "included in the single-call figures. The no-op row is the loop's own cost, "
              "included in every row.", ""]
    lines += ["## Targets (watchkeeper, every load shape, both ways of timing)", ""]
    for shape in shapes:
        for way, key in (("batch means", "batch_means"), ("single calls", "single_calls")):
            med, p99 = wk[shape][key]["median_us"], wk[shape][key]["p99_us"]
            ok = med <= TARGET_MEDIAN_US and p99 <= TARGET_P99_US
            lines.append(f"- {shape}, {way}: median {_us(med)} µs (target ≤ "
                         f"{TARGET_MEDIAN_US:g}), p99 {_us(p99)} µs (target ≤ "
                         f"{TARGET_P99_US:g}): **{'met' if ok else 'NOT met'}**")
    lines += ["", "## What the background thread did", ""]
    for shape in shapes:
        m = wk[shape]
        st = m["stats"]
        total = st["logged"] + st["dropped"]
        pauses = m["full_gc_ms"]
        lines.append(
            f"- {shape}: {total:,} calls in {m['logging_s']:.1f} s (both timings, pauses "
            f"included); logged {st['logged']:,}, dropped (buffer full) {st['dropped']:,} "
            f"({st['dropped'] / max(total, 1):.1%}), converted to Arrow and sent "
            f"{st['flushed_rows']:,}; close() took {m['close_s']:.2f} s; full garbage "
            f"collections while timing: {len(pauses)}, median "
            f"{sorted(pauses)[len(pauses) // 2] if pauses else 0:.0f} ms, longest "
            f"{max(pauses, default=0):.0f} ms")
    lines += ["", "## Reading the numbers", "",
              "- `log()` only appends a tuple to a deque; the work is in the background thread "
              "(a few µs of CPU per row: transposing dicts and building Arrow columns). That "
              "thread holds the GIL while it converts (in parts of 1,000 rows), so a call that "
              "arrives then waits for the GIL, up to the 5 ms switch interval: this is what "
              "lifts the p99 of batch means when a conversion overlaps a burst. A model "
              "server's own request handling competes for the GIL the same way.",
              "- Buffered rows are Python objects (a tuple and the caller's dict each) until "
              "they are converted, and a full garbage collection (any thread may trigger one) "
              "stops every thread while it walks all objects of the process, these included. "
              "These pauses, stretched by CPU contention on a loaded machine, are the "
              "single-call maxima.",
              "- When the calls come faster than the thread converts (flat out, or a loaded "
              "machine at a high rate) the buffer fills and the newest rows are dropped and "
              "counted, with a lock on that path only. 10,000 calls/s is a busy Python model "
              "server; 100,000/s is a stress test.",
              "- whylogs updates its sketches on the caller's thread; `why.log(row=...)` also "
              "builds a new profile per call. It is timed without a background thread and "
              "with fewer calls (each call is slow enough that timer cost does not matter).",
              ""]
    if why is None:
        lines += [f"whylogs not measured: {why_error}", ""]
    else:
        lines += [f"whylogs import took {why['import_s']:.1f} s (not in the figures).", ""]
    lines += ["## Machine", "", f"- load average (1, 5, 15 min) at the start: {load_at_start}",
              *_machine(why["versions"] if why else None), "",
              "## Rerun", "", "```sh", "# from the repository root", shlex.join(
                  [".venv/bin/python", "benchmarks/bench_sdk.py", *sys.argv[1:]]), "```", ""]
    return "\n".join(lines)


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rates", default="10000,100000",
                        help="comma-separated calls per second of the paced shapes")
    parser.add_argument("--why-calls", type=int, default=2_000)
    parser.add_argument("--track-calls", type=int, default=50_000)
    parser.add_argument("--skip-whylogs", action="store_true")
    parser.add_argument("--worker", choices=["whylogs"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    if args.worker == "whylogs":
        print(json.dumps(whylogs_worker(args.why_calls, args.track_calls)))
        return 0
    load_at_start = _load()
    why, why_error = None, "skipped (--skip-whylogs)"
    if not args.skip_whylogs:
        python, why_error = ensure_whylogs_venv()
        if python is not None:
            print(f"whylogs: {args.why_calls:,} why.log and {args.track_calls:,} track calls",
                  file=sys.stderr)
            try:
                why = measure_whylogs(python, args.why_calls, args.track_calls)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
                why_error = str(error)
    timer_ns = timer_cost()
    loop = measure_tool(_nothing, args.calls, args.batch, None)
    wk = {}
    rates: list[float | None] = [float(r) for r in args.rates.split(",") if r.strip()]
    for rate in [*rates, None]:
        shape = _shape_name(rate)
        print(f"watchkeeper {shape}: 2 × {args.calls:,} calls", file=sys.stderr)
        wk[shape] = measure_watchkeeper(args.calls, args.batch, rate)
    text = report(args, wk, timer_ns, loop, why, why_error, load_at_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
