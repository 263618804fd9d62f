"""Benchmark: ``watchkeeper check`` vs a load-only floor, Evidently and a scipy loop.

What it measures, on the synthetic reference/current pair from
``watchkeeper.io.datasets.synthetic_drift_pair`` (default 1M rows × 20 columns, seed 0, written
once to ``benchmarks/data/{ref,cur}_<rows>.parquet``):

* ``floor``         – load both Parquet files into pandas and stop (the least any
                      pandas-based drift check can cost);
* ``floor_current`` – load only the current file (``watchkeeper check`` reads current data
                      plus its suite, not the reference);
* ``watchkeeper``   – ``watchkeeper check CUR --suite SUITE --format json``; the suite is built
                      beforehand by ``watchkeeper init REF`` (timed once, reported as "init",
                      kept out of the ratios);
* ``evidently``     – Evidently 0.7 ``Report([DataDriftPreset()])`` with default settings, in
                      its own venv (``benchmarks/.venv-evidently``, created on first use);
* ``scipy``         – ``ks_2samp`` per numeric column, ``chi2_contingency`` on value counts
                      per categorical column, drift when p < 0.05.

Every measured tool runs as a whole, fresh process (start-up and imports included); each is run
``--repeat`` times, round-robin across tools so machine noise spreads evenly, and the median is
reported. Wall time is taken around the process; peak RSS is that process's ``ru_maxrss`` as
GNU ``/usr/bin/time -f %M`` reports it (or, without GNU time, a fresh Python wrapper's
``RUSAGE_CHILDREN``). Detected drifted columns are scored against ``DRIFTED_COLUMNS``. The
Markdown report goes to stdout and to ``benchmarks/results/drift_<rows>.md``.

Run it from the repository root with the project venv::

    .venv/bin/python benchmarks/bench_drift.py                       # 1M rows, 3 runs, all tools
    .venv/bin/python benchmarks/bench_drift.py --rows 100000 --repeat 1 --tools floor,scipy
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import inspect
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
WORKER = BENCH_DIR / "drift_worker.py"
EVIDENTLY_VENV = BENCH_DIR / ".venv-evidently"
EVIDENTLY_PYTHON = EVIDENTLY_VENV / "bin" / "python"
EVIDENTLY_REQUIREMENTS = ("evidently>=0.7,<0.8", "pandas<3", "pyarrow")
SEED = 0

#: Tools that may be named in ``--tools``; ``floor`` also runs ``floor_current``.
TOOL_CHOICES = ("floor", "watchkeeper", "evidently", "scipy")
#: Order of rows in the report.
ROW_ORDER = ("floor", "floor_current", "watchkeeper", "wk_profile", "evidently", "scipy")

#: Targets stated in the report.
TARGET_FLOOR_RATIO = 1.5
TARGET_EVIDENTLY_SPEEDUP = 20.0
TARGET_RSS_OVER_FLOOR_MB = 150.0

RESULT_PREFIX = "DRIFT_WORKER_RESULT "  # must match drift_worker.py

try:
    from watchkeeper.io.datasets import DRIFTED_COLUMNS, synthetic_drift_pair
except ImportError as error:  # pragma: no cover - depends on the interpreter used
    sys.exit(
        f"cannot import watchkeeper ({error}); run with the project venv:\n"
        "    .venv/bin/python benchmarks/bench_drift.py"
    )


# --------------------------------------------------------------------------------------------
# Measuring one process


@dataclass
class Run:
    """One timed process."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


def _maxrss_mb(ru_maxrss: int) -> float:
    """``ru_maxrss`` is kibibytes on Linux and bytes on macOS."""
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    return ru_maxrss / divisor


GNU_TIME = Path("/usr/bin/time")

#: Fallback when GNU time is absent: a fresh, small interpreter runs the command and reports
#: its own wall time and ``RUSAGE_CHILDREN`` peak RSS to the file named by its first argument.
_WRAPPER = """\
import json, resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
rc = subprocess.call(cmd)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(out, "w") as handle:
    json.dump({"wall": wall, "maxrss": peak, "rc": rc}, handle)
"""


def _has_gnu_time() -> bool:
    if not GNU_TIME.exists():
        return False
    done = subprocess.run([str(GNU_TIME), "--version"], capture_output=True, text=True)
    return "GNU" in done.stdout + done.stderr


def measure_method() -> str:
    """How :func:`measure` takes peak RSS on this machine, for the report."""
    if _has_gnu_time():
        return "GNU `/usr/bin/time -f '%e %M %x'` around each run (peak RSS = `%M`)"
    return "a fresh Python wrapper per run (peak RSS = its `getrusage(RUSAGE_CHILDREN)`)"


def measure(cmd: Sequence[str], *, env: dict[str, str] | None, timeout_s: float) -> Run:
    """Run ``cmd`` from the repo root; wall seconds and the process's own peak RSS.

    The peak comes from a small intermediate process (GNU time, or else a fresh Python
    wrapper), never from this one: on Linux a child starts with its parent's RSS high-water
    mark and keeps it across ``execve``, so ``os.wait4`` from this (large) process would report
    at least this process's own peak.
    """
    with tempfile.TemporaryDirectory(prefix="bench_drift_") as scratch:
        stats = Path(scratch) / "stats"
        gnu_time = _has_gnu_time()
        if gnu_time:
            wrapped = [str(GNU_TIME), "-f", "%e %M %x", "-o", str(stats), *cmd]
        else:
            wrapped = [sys.executable, "-c", _WRAPPER, str(stats), *cmd]
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout can end the whole group
        )
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        outer_wall = time.perf_counter() - start
        wall, peak_mb, returncode = outer_wall, float("nan"), proc.returncode
        text = stats.read_text().strip() if stats.exists() else ""
        with contextlib.suppress(ValueError, KeyError, IndexError):  # killed: no figures
            if gnu_time and text:
                # GNU time may put "Command exited with non-zero status N" on a line before.
                _, maxrss_kb, status = text.splitlines()[-1].split()
                peak_mb, returncode = int(maxrss_kb) / 1024, int(status)
            elif text:
                record = json.loads(text)
                wall = float(record["wall"])
                peak_mb, returncode = _maxrss_mb(int(record["maxrss"])), int(record["rc"])
        return Run(
            wall_s=wall,
            peak_rss_mb=peak_mb,
            returncode=returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            timed_out=timed_out,
        )


# --------------------------------------------------------------------------------------------
# Data


def size_label(rows: int) -> str:
    """1_000_000 -> '1m', 100_000 -> '100k', 1234 -> '1234'."""
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def _generator_fingerprint() -> str:
    import watchkeeper.io.datasets as datasets

    return hashlib.sha256(inspect.getsource(datasets).encode()).hexdigest()[:16]


def ensure_data(rows: int) -> tuple[Path, Path]:
    """Write the pair once; reuse it while rows, seed and the generator's source are unchanged."""
    import pyarrow.parquet as pq

    label = size_label(rows)
    ref_path = DATA_DIR / f"ref_{label}.parquet"
    cur_path = DATA_DIR / f"cur_{label}.parquet"
    meta_path = DATA_DIR / f"pair_{label}.json"
    meta = {"rows": rows, "seed": SEED, "generator": _generator_fingerprint()}
    if ref_path.exists() and cur_path.exists() and meta_path.exists():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(meta_path.read_text()) == meta:
                _log(f"reusing {_rel(ref_path)} and {_rel(cur_path)}")
                return ref_path, cur_path
    _log(f"generating synthetic_drift_pair({rows:_}, seed={SEED}) ...")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    ref, cur = synthetic_drift_pair(rows, seed=SEED)
    for table, path in ((ref, ref_path), (cur, cur_path)):
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    del ref, cur
    meta_path.write_text(json.dumps(meta) + "\n")
    _log(f"wrote {_rel(ref_path)} and {_rel(cur_path)}")
    return ref_path, cur_path


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Read the files once so no tool pays for a cold disk that the next one doesn't."""
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass


# --------------------------------------------------------------------------------------------
# Tools


@dataclass
class Tool:
    """A measured command and how to read its answer."""

    name: str
    cmd: list[str]
    env: dict[str, str] | None = None
    is_worker: bool = True
    runs: list[Run] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _tail(text: str, lines: int = 2, width: int = 240) -> str:
    """The last non-blank lines of a tool's output (for a traceback: where and what)."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    kept = [line if len(line) <= width else line[: width - 1] + "…" for line in kept]
    return " … ".join(kept) if kept else "(no output)"


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def parse_worker(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return parsed
    raise ValueError("no result line in the worker's output")


def parse_watchkeeper(stdout: str) -> dict[str, Any]:
    """Drifted columns from ``watchkeeper check --format json``.

    Contract: ``{"suite": ..., "windows": [{"rows": N, "findings": [{"family": "drift",
    "column": ..., ...}]}]}``; drifted = the ``column`` of every finding of family ``drift``.
    """
    report = json.loads(stdout)
    windows = report["windows"]
    drifted = {
        str(finding["column"])
        for window in windows
        for finding in window.get("findings", [])
        if finding.get("family") == "drift" and finding.get("column") is not None
    }
    rows = sum(int(window.get("rows", 0)) for window in windows)
    return {"rows": rows, "drifted": sorted(drifted)}


def run_once(tool: Tool, timeout_s: float) -> None:
    """One timed run of ``tool``; on failure sets ``tool.error`` and keeps no figures."""
    run = measure(tool.cmd, env=tool.env, timeout_s=timeout_s)
    if run.timed_out:
        tool.error = f"timed out after {timeout_s:g} s"
        return
    try:
        if tool.is_worker:
            if run.returncode != 0:
                raise ValueError(f"exit {run.returncode}")
            result = parse_worker(run.stdout)
        else:
            result = parse_watchkeeper(run.stdout)
            if run.returncode != 0:
                note = f"`watchkeeper check` exited {run.returncode} (output parsed as JSON)"
                if note not in tool.notes:
                    tool.notes.append(note)
    except (ValueError, KeyError, TypeError) as error:
        tool.error = f"{error}: {_tail(run.stderr or run.stdout)}"
        return
    tool.runs.append(run)
    tool.results.append(result)


def write_report(out: Path, report: str) -> None:
    """Write a results file atomically (no half report if interrupted) and show it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(report)
    os.replace(tmp, out)
    print(report)
    _log(f"wrote {_rel(out)}")


def ensure_venv(
    venv: Path,
    requirements: Sequence[str],
    check: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> tuple[Path | None, str]:
    """A peer's own venv, made on first use: its python, or (None, why) when that fails.

    ``check`` is Python code that must run in the venv once its packages are installed.
    """
    python = venv / "bin" / "python"
    probe = [str(python), "-c", check]
    if python.exists() and subprocess.run(probe, capture_output=True, env=env).returncode == 0:
        return python, ""
    log_path = DATA_DIR / f"{venv.name.removeprefix('.venv-')}-install.log"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _log(f"creating {_rel(venv)} (pip log: {_rel(log_path)}) ...")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", *requirements]]
    with log_path.open("w") as log:
        for step in steps:
            log.write(f"$ {shlex.join(step)}\n")
            log.flush()
            try:
                done = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                      env=env)
            except (OSError, subprocess.TimeoutExpired) as error:
                return None, f"`{shlex.join(step)}` failed: {error}"
            if done.returncode != 0:
                return None, (
                    f"`{shlex.join(step)}` exited {done.returncode}; see {_rel(log_path)}: "
                    f"{_tail(log_path.read_text(errors='replace'), 3)}"
                )
    if subprocess.run(probe, capture_output=True, env=env).returncode != 0:
        return None, f"{_rel(venv)} built but `{check}` fails; see {_rel(log_path)}"
    return python, ""


def ensure_evidently_venv() -> tuple[Path | None, str]:
    """The Evidently venv's python, creating the venv on first use; (None, why) on failure."""
    installed = f"import importlib.metadata as m; [m.version(p) for p in {_PEER_PACKAGES!r}]"
    return ensure_venv(EVIDENTLY_VENV, EVIDENTLY_REQUIREMENTS, installed)


def build_tools(
    selected: Sequence[str], ref: Path, cur: Path, suite: Path, python: str
) -> tuple[list[Tool], list[str]]:
    """The measured tools in run order, plus notes on tools that could not be set up."""
    tools: list[Tool] = []
    skipped: list[str] = []
    worker = _rel(WORKER)
    ref_s, cur_s = _rel(ref), _rel(cur)
    if "floor" in selected:
        tools.append(Tool("floor", [python, worker, "floor", ref_s, cur_s]))
        tools.append(Tool("floor_current", [python, worker, "floor_current", cur_s]))
    if "watchkeeper" in selected:
        cli = _watchkeeper_cli()
        cmd = [cli, "check", cur_s, "--suite", _rel(suite), "--format", "json"]
        tools.append(Tool("watchkeeper", cmd, is_worker=False))
    if "evidently" in selected:
        evidently_python, why = ensure_evidently_venv()
        if evidently_python is None:
            skipped.append(f"evidently skipped: {why}")
            _log(skipped[-1])
        else:
            env = {**os.environ, "DO_NOT_TRACK": "1"}  # no usage telemetry from Evidently
            cmd = [str(evidently_python), worker, "evidently", ref_s, cur_s]
            tools.append(Tool("evidently", cmd, env=env))
    if "scipy" in selected:
        tools.append(Tool("scipy", [python, worker, "scipy", ref_s, cur_s]))
    if "watchkeeper" in selected:  # profiling throughput alone, on one core
        tools.append(Tool("wk_profile", [python, worker, "wk_profile", _rel(suite), cur_s]))
    return tools, skipped


def _watchkeeper_cli() -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    found = shutil.which("watchkeeper", path=str(scripts)) or shutil.which("watchkeeper")
    return os.path.abspath(found) if found else str(scripts / "watchkeeper")


def build_suite(ref: Path, suite: Path, timeout_s: float) -> tuple[Run | None, str | None]:
    """``watchkeeper init REF -o SUITE``, timed once; (run, None) or (None, error)."""
    suite.unlink(missing_ok=True)
    cmd = [_watchkeeper_cli(), "init", _rel(ref), "-o", _rel(suite)]
    _log(f"building the suite: {_shown(cmd)}")
    try:
        run = measure(cmd, env=None, timeout_s=timeout_s)
    except OSError as error:
        return None, f"`{_shown(cmd)}` could not start: {error}"
    if run.timed_out:
        return None, f"`{_shown(cmd)}` timed out after {timeout_s:g} s"
    if run.returncode != 0 or not suite.exists():
        return None, f"`{_shown(cmd)}` exited {run.returncode}: {_tail(run.stderr)}"
    return run, None


# --------------------------------------------------------------------------------------------
# Report


@dataclass
class Summary:
    wall_s: float
    peak_rss_mb: float
    runs_s: list[float]
    drifted: list[str] | None
    phases: dict[str, float]


def summarize(tool: Tool) -> Summary | None:
    if not tool.runs:
        return None
    drifted = tool.results[0].get("drifted")
    if any(result.get("drifted") != drifted for result in tool.results[1:]):
        tool.notes.append("detections differ between runs; first run shown")
    phase_names = [name for name in tool.results[0].get("phases", {})]
    phases = {
        name: statistics.median(result["phases"][name] for result in tool.results)
        for name in phase_names
        if all(name in result.get("phases", {}) for result in tool.results)
    }
    return Summary(
        wall_s=statistics.median(run.wall_s for run in tool.runs),
        peak_rss_mb=statistics.median(run.peak_rss_mb for run in tool.runs),
        runs_s=[run.wall_s for run in tool.runs],
        drifted=drifted,
        phases=phases,
    )


def score(drifted: list[str] | None) -> tuple[str, str]:
    """('right/wrong', 'false alarms; missed') against DRIFTED_COLUMNS."""
    if drifted is None:
        return "—", ""
    truth = set(DRIFTED_COLUMNS)
    found = set(drifted)
    false_alarms = sorted(found - truth)
    missed = sorted(truth - found)
    right = len(found & truth)
    wrong = len(false_alarms) + len(missed)
    details = []
    if false_alarms:
        details.append("false alarm: " + ", ".join(false_alarms))
    if missed:
        details.append("missed: " + ", ".join(missed))
    return f"{right}/{wrong}", "; ".join(details) or "exact"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "—"
    return f"{numerator / denominator:.2f}×"


def machine_info(evidently_python: Path | None, load_at_start: str) -> list[str]:
    lines = []
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    lines.append(f"- CPUs: nproc {affinity or os.cpu_count()} ({_cpu_model()})")
    lines.append(f"- memory: {_mem_total()}")
    lines.append(f"- load average (1, 5, 15 min) at start: {load_at_start}; at end: {_loadavg()}")
    lines.append(f"- OS: {platform.platform()}")
    lines.append(f"- Python: {platform.python_version()} ({sys.executable})")
    lines.append(f"- project venv: {_versions_here()}")
    if evidently_python is not None:
        lines.append(f"- Evidently venv: {_versions_in(evidently_python)}")
    threads = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS") or "OPENBLAS" in k}
    if threads:
        lines.append(f"- thread/BLAS environment: {threads}")
    lines.append(f"- repository: {_git_describe()}")
    lines.append(f"- measured with {measure_method()}; wall time around the process")
    return lines


_PACKAGES = ("watchkeeper", "numpy", "pandas", "pyarrow", "scipy")
_PEER_PACKAGES = ("evidently", "numpy", "pandas", "pyarrow", "scipy")


def _versions_here() -> str:
    parts = []
    for name in _PACKAGES:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def _versions_in(python: Path, packages: Sequence[str] = _PEER_PACKAGES) -> str:
    """Python and package versions inside another venv."""
    code = (
        "import importlib.metadata as m, json, platform;"
        "print(json.dumps([platform.python_version()]"
        f" + [m.version(p) for p in {tuple(packages)!r}]))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return "(could not read versions)"
    pyver, *versions = json.loads(done.stdout)
    pairs = ", ".join(f"{n} {v}" for n, v in zip(packages, versions, strict=True))
    return f"Python {pyver}, {pairs}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _mem_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def _git_describe() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "no commit yet"
    dirty = " (work tree has uncommitted changes)" if git("status", "--porcelain") else ""
    return f"{commit}{dirty}"


def render(
    *,
    rows: int,
    repeat: int,
    tools: list[Tool],
    init_run: Run | None,
    init_error: str | None,
    skipped: list[str],
    machine: list[str],
    command: str,
    data_files: Sequence[Path],
    started: dt.datetime,
    elapsed_s: float,
) -> str:
    summaries = {tool.name: summarize(tool) for tool in tools}
    by_name = {tool.name: tool for tool in tools}

    def wall(name: str) -> float | None:
        summary = summaries.get(name)
        return summary.wall_s if summary else None

    def rss(name: str) -> float | None:
        summary = summaries.get(name)
        return summary.peak_rss_mb if summary else None

    floor, floor_current, watchkeeper = wall("floor"), wall("floor_current"), wall("watchkeeper")
    lines = [
        f"# Drift check benchmark: {rows:,} rows × 20 columns",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, {elapsed_s / 60:.1f} min in all. Each tool is a "
        f"fresh process, {repeat} run(s) round-robin; wall time and peak RSS are medians. "
        "Drift is scored against `DRIFTED_COLUMNS` "
        f"({', '.join(sorted(DRIFTED_COLUMNS))}): right = drifted columns found, "
        "wrong = false alarms + misses.",
        "",
        "| tool | wall s (median) | runs s | peak RSS MB | × floor | × floor_current "
        "| RSS − floor MB | watchkeeper speed-up | drift right/wrong | details |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for name in ROW_ORDER:
        if name not in by_name:
            continue
        tool, summary = by_name[name], summaries[name]
        if summary is None:
            lines.append(f"| {name} | not measured | | | | | | | | see below |")
            continue
        right_wrong, details = score(summary.drifted)
        rss_floor = rss("floor")
        remarks = [details] if details else []
        remarks += tool.notes
        if tool.error:
            remarks.append(f"a later run failed: {tool.error}")
        lines.append(
            f"| {name} | {summary.wall_s:.2f} | {', '.join(f'{s:.2f}' for s in summary.runs_s)} "
            f"| {summary.peak_rss_mb:.0f} | {_ratio(summary.wall_s, floor)} "
            f"| {_ratio(summary.wall_s, floor_current)} "
            f"| {(f'{summary.peak_rss_mb - rss_floor:+.0f}' if rss_floor is not None else '—')} "
            f"| {_ratio(summary.wall_s, watchkeeper)} | {right_wrong} "
            f"| {_cell('; '.join(remarks))} |"
        )
    lines.append("")
    lines.append(
        "`× floor` = wall / load-both-frames floor; `× floor_current` = wall / load-current-only "
        "floor; `watchkeeper speed-up` = tool wall / watchkeeper wall (> 1× means watchkeeper "
        "is faster)."
    )
    lines.append("")
    if init_run is not None:
        lines.append(
            f"Suite build (`watchkeeper init`, 1 run, not in the ratios): "
            f"{init_run.wall_s:.2f} s, peak RSS {init_run.peak_rss_mb:.0f} MB."
        )
    elif init_error:
        lines.append("Suite build (`watchkeeper init`) failed: see *Not measured* below.")
    lines += ["", "## Targets", ""]
    lines += _targets(watchkeeper, floor, wall("evidently"), rss("watchkeeper"), rss("floor"))
    lines += ["", "## In-process phases (median s, measured inside the worker)", ""]
    for tool in tools:
        summary = summaries[tool.name]
        if summary and summary.phases:
            phases = ", ".join(f"{k} {v:.2f}" for k, v in summary.phases.items())
            lines.append(f"- {tool.name}: {phases}")
    evidently_tool = by_name.get("evidently")
    if evidently_tool and evidently_tool.results:
        methods = sorted(set(evidently_tool.results[0].get("methods", {}).values()))
        lines.append(f"- evidently drift methods chosen by DataDriftPreset: {'; '.join(methods)}")
        warning = evidently_tool.results[0].get("warning")
        if warning:
            lines.append(f"- evidently decoding warning: {warning}")
    for tool in tools:
        for result in tool.results[:1]:
            if "rows" in result and result["rows"] != rows:
                lines.append(f"- {tool.name} saw {result['rows']:,} rows, expected {rows:,}")
    if skipped or any(tool.error and not tool.runs for tool in tools):
        lines += ["", "## Not measured", ""]
        lines += [f"- {note}" for note in skipped]
        lines += [f"- {t.name}: {t.error}" for t in tools if t.error and not t.runs]
    lines += ["", "## Machine", ""]
    lines += machine
    sizes = ", ".join(f"{_rel(p)} {p.stat().st_size / 1024**2:.0f} MiB" for p in data_files)
    lines.append(f"- data: {sizes}")
    lines += ["", "## Rerun", "", "```sh", command, "```", ""]
    return "\n".join(lines)


def _targets(
    watchkeeper: float | None,
    floor: float | None,
    evidently: float | None,
    wk_rss: float | None,
    floor_rss: float | None,
) -> list[str]:
    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines = []
    if watchkeeper is not None and floor is not None:
        ratio = watchkeeper / floor
        lines.append(
            f"- watchkeeper wall ≤ {TARGET_FLOOR_RATIO}× load floor: {ratio:.2f}× "
            f"— {verdict(ratio <= TARGET_FLOOR_RATIO)}"
        )
    else:
        lines.append(f"- watchkeeper wall ≤ {TARGET_FLOOR_RATIO}× load floor: not measured")
    if watchkeeper is not None and evidently is not None:
        speedup = evidently / watchkeeper
        lines.append(
            f"- watchkeeper ≥ {TARGET_EVIDENTLY_SPEEDUP:g}× faster than Evidently: "
            f"{speedup:.1f}× — {verdict(speedup >= TARGET_EVIDENTLY_SPEEDUP)}"
        )
    else:
        lines.append(
            f"- watchkeeper ≥ {TARGET_EVIDENTLY_SPEEDUP:g}× faster than Evidently: not measured"
        )
    if wk_rss is not None and floor_rss is not None:
        delta = wk_rss - floor_rss
        lines.append(
            f"- watchkeeper peak RSS ≤ floor + {TARGET_RSS_OVER_FLOOR_MB:g} MB: "
            f"{wk_rss:.0f} MB = floor {delta:+.0f} MB "
            f"— {verdict(delta <= TARGET_RSS_OVER_FLOOR_MB)}"
        )
    else:
        lines.append(
            f"- watchkeeper peak RSS ≤ floor + {TARGET_RSS_OVER_FLOOR_MB:g} MB: not measured"
        )
    return lines


# --------------------------------------------------------------------------------------------
# Main


def _rel(path: Path | str) -> str:
    """``path`` relative to the repo root when inside it (commands are run from there).

    Symlinks are not resolved: a venv's ``bin/python`` must stay the venv's.
    """
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(REPO))
    except ValueError:
        return str(path)


def _shown(cmd: Sequence[str]) -> str:
    """A command as typed from the repo root."""
    return shlex.join([_rel(cmd[0]) if os.path.isabs(cmd[0]) else cmd[0], *cmd[1:]])


def _log(message: str) -> None:
    print(f"[bench_drift] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `watchkeeper check` against a load-only floor, Evidently and scipy.",
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows per frame (default 1000000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (default 3)")
    parser.add_argument(
        "--tools",
        default=",".join(TOOL_CHOICES),
        help=f"comma-separated subset of {','.join(TOOL_CHOICES)} (default: all); "
        "floor also runs floor_current",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds allowed per run (default 3600)"
    )
    args = parser.parse_args(argv)
    tools = [name.strip() for name in args.tools.split(",") if name.strip()]
    unknown = sorted(set(tools) - set(TOOL_CHOICES))
    if unknown or not tools:
        parser.error(f"--tools: unknown {unknown}; choose from {','.join(TOOL_CHOICES)}")
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be positive")
    args.tools = [name for name in TOOL_CHOICES if name in tools]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    load_at_start = _loadavg()
    python = os.path.abspath(sys.executable)
    command = _shown(
        [
            python,
            _rel(__file__),
            "--rows",
            str(args.rows),
            "--repeat",
            str(args.repeat),
            "--tools",
            ",".join(args.tools),
        ]
    )
    label = size_label(args.rows)
    ref, cur = ensure_data(args.rows)
    warm_page_cache([ref, cur])
    suite = DATA_DIR / f"suite_{label}.yaml"

    init_run: Run | None = None
    init_error: str | None = None
    if "watchkeeper" in args.tools:
        init_run, init_error = build_suite(ref, suite, args.timeout)
        if init_error:
            _log(f"watchkeeper init failed: {init_error}")

    tools, skipped = build_tools(args.tools, ref, cur, suite, python)
    for tool in tools:
        if tool.name == "watchkeeper" and init_error:
            tool.error = f"no suite (`watchkeeper init` failed: {init_error})"
    for index in range(args.repeat):
        for tool in tools:
            if tool.error:  # a tool that failed once is not retried
                continue
            _log(f"{tool.name} run {index + 1}/{args.repeat}: {_shown(tool.cmd)}")
            try:
                run_once(tool, args.timeout)
            except OSError as error:
                tool.error = f"could not start: {error}"
            if tool.error:
                _log(f"  {tool.name} failed: {tool.error}")
            else:
                run = tool.runs[-1]
                _log(f"  {run.wall_s:.2f} s, peak RSS {run.peak_rss_mb:.0f} MB")

    has_evidently = any(tool.name == "evidently" for tool in tools)
    machine = machine_info(EVIDENTLY_PYTHON if has_evidently else None, load_at_start)
    report = render(
        rows=args.rows,
        repeat=args.repeat,
        tools=tools,
        init_run=init_run,
        init_error=init_error,
        skipped=skipped,
        machine=machine,
        command=command,
        data_files=[ref, cur],
        started=started,
        elapsed_s=time.perf_counter() - t_start,
    )
    write_report(RESULTS_DIR / f"drift_{label}.md", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
