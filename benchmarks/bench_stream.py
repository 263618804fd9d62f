"""Streaming check: peak RSS/PSS and wall time of ``watchkeeper check`` by file size and
--jobs, beside the time pyarrow takes merely to read the same file.

The current files are ``synthetic_drift_pair`` current frames (20 columns: 15 float, 5
string), written once per size as one Parquet file (row groups of 1M rows) under
``--dir`` (default ``benchmarks/data/stream``, git-ignored) and reused: a missing one is
written only if the disk has room for it (~127 MB per million rows: 6.3 GB at 50M). The
suite is ``init`` of a 100,000-row reference. Every measured command runs in its own
process; its peak RSS is the largest ``ru_maxrss`` of it and its worker processes, its
PSS the peak of their summed proportional set sizes (read by a small wrapper process, so
each figure is that run's alone; in one extra run, as sampling slows the run it samples).
``load`` is the 1-minute load average just before the run: the machine may be shared, so
the reads and checks run ``--repeat`` rounds, versions and ``--jobs`` in turn, and medians
are reported.

    make bench-stream       # 1M, 10M and 50M rows, --jobs 1 and 2, 3 rounds
    .venv/bin/python benchmarks/bench_stream.py                        # 1M and 10M rows
    .venv/bin/python benchmarks/bench_stream.py --sizes 1m,10m,50m     # what make runs
    .venv/bin/python benchmarks/bench_stream.py --sizes 200k --jobs 1  # a quick look
    .venv/bin/python benchmarks/bench_stream.py --init --sizes 1m,10m  # streamed init
    .venv/bin/python benchmarks/bench_stream.py --watchkeeper \\
        before=../main/.venv/bin/watchkeeper,after=.venv/bin/watchkeeper  # side by side

Writes the section "Check by file size and cores" of ``benchmarks/results/stream.md``
(``--init``: the section "Streamed init", measuring ``watchkeeper init FILE --stream``
beside the in-memory ``--no-stream`` init up to ``--whole-init-max`` rows); the other
sections of that file (earlier runs, notes) are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CHUNK = 1_000_000
#: Bytes a current file takes per row (126.7 MB per million rows, 20 columns), and what is
#: left free on the disk besides.
FILE_BYTES_PER_ROW = 127
DISK_MARGIN = 2_000_000_000

_WRAP = """
import json, os, resource, subprocess, sys, threading, time

def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out

def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
    except OSError:
        return 0

sample = sys.argv[1] == "sample"
t = time.perf_counter()
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
peak = [0]
def watch():
    while child.poll() is None:
        peak[0] = max(peak[0], sum(pss(p) for p in tree(child.pid)))
        time.sleep(0.1)
watcher = threading.Thread(target=watch, daemon=True)
if sample:
    watcher.start()
err = child.stderr.read()
child.wait()
wall = time.perf_counter() - t
if sample:
    watcher.join()
if child.returncode not in (0, 1):
    sys.exit(err)
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "rss": use.ru_maxrss * 1024, "pss": peak[0],
                  "cpu": use.ru_utime + use.ru_stime}))
"""

_READ = """
import sys, pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
print(table.num_rows)
"""

_SCAN = """
import sys, pyarrow.parquet as pq
rows = sum(b.num_rows for b in pq.ParquetFile(sys.argv[1], pre_buffer=False).iter_batches(
    batch_size=131_072))
print(rows)
"""


def _rows(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def _name(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def prepare(directory: Path, sizes: list[int]) -> Path:
    """The suite and one current file per size (made once)."""
    import pyarrow.parquet as pq

    import watchkeeper as wk
    from watchkeeper.io.datasets import synthetic_drift_pair

    directory.mkdir(parents=True, exist_ok=True)
    missing = [directory / f"current_{_name(rows)}.parquet" for rows in sizes]
    need = sum(rows * FILE_BYTES_PER_ROW for rows, path in zip(sizes, missing, strict=True)
               if not path.exists())
    free = shutil.disk_usage(directory).free
    if need and free < need + DISK_MARGIN:
        raise SystemExit(f"{', '.join(p.name for p in missing if not p.exists())}: missing, "
                         f"~{need / 1e9:.1f} GB to write; {free / 1e9:.1f} GB free on the "
                         f"disk (keeping {DISK_MARGIN / 1e9:.0f} GB): free some, or give "
                         "--dir elsewhere")
    suite = directory / "suite.yaml"
    if not suite.exists():
        reference, _ = synthetic_drift_pair(100_000, seed=0)
        wk.init(reference, progress=False).save(suite)
    for rows in sizes:
        path = directory / f"current_{_name(rows)}.parquet"
        if path.exists():
            continue
        _log(f"writing {path} (~{rows * FILE_BYTES_PER_ROW / 1e9:.1f} GB) ...")
        writer = None
        part = path.with_suffix(".part")
        for i, at in enumerate(range(0, rows, CHUNK)):
            _, current = synthetic_drift_pair(min(CHUNK, rows - at), seed=1000 + i)
            if writer is None:
                writer = pq.ParquetWriter(part, current.schema)
            writer.write_table(current, row_group_size=CHUNK)
        assert writer is not None
        writer.close()
        part.rename(path)
    return suite


def measure(command: list[str], *, sample: bool = False) -> dict[str, float]:
    """Wall time, peak RSS (``ru_maxrss``) and CPU of ``command``; with ``sample``, also
    its peak PSS, read from ``/proc`` every 0.1 s while it runs. Sampling costs the command
    time: reading a large process's ``smaps_rollup`` walks its page tables under its memory
    map lock (stalling its page faults) and takes a core, so the timed runs do not
    sample."""
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, "-c", _WRAP, "sample" if sample else "time",
                          *command], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {out.stderr[-2000:]}")
    figures = json.loads(out.stdout)
    figures["load"] = load
    return figures


def _pinned(jobs: int, args: argparse.Namespace) -> list[str]:
    """``taskset -c 0`` for a one-job check where it can be pinned, so that *j1* is one
    core (NumPy's and any other library's threads too), and *j1 / j2* one core against
    two; nothing else is pinned."""
    if jobs != 1 or args.no_pin or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", "0"]


def _check(jobs: int, args: argparse.Namespace, watchkeeper: str, path: Path,
           suite: Path) -> list[str]:
    return [*_pinned(jobs, args), watchkeeper, "check", str(path), "--suite", str(suite),
            "--format", "json", "--no-progress", "--jobs", str(jobs)]


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median wall time."""
    return sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,10m", help="rows per file (default 1m,10m)")
    parser.add_argument("--jobs", default="1,2", help="--jobs values (default 1,2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the check runs, every version and --jobs in turn in "
                             "each round; medians reported (default 3)")
    parser.add_argument("--watchkeeper", default=f"this={BIN / 'watchkeeper'}",
                        help="LABEL=PATH[,LABEL=PATH]: the watchkeeper commands to measure "
                             "side by side (another checkout's venv for a before/after)")
    parser.add_argument("--dir", type=Path, default=HERE / "data" / "stream")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "stream.md")
    parser.add_argument("--whole-read-max", default="10m",
                        help="largest size read whole with pq.read_table (default 10m: "
                             "50M rows take ~18 GB)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not run the --jobs 1 checks under `taskset -c 0` (one core)")
    parser.add_argument("--init", action="store_true",
                        help="measure init --stream on the files instead of check")
    parser.add_argument("--whole-init-max", default="1m",
                        help="largest size also given to the in-memory init (default 1m)")
    args = parser.parse_args()
    sizes = [_rows(s) for s in args.sizes.split(",")]
    jobs = [int(j) for j in args.jobs.split(",")]
    versions = dict(v.split("=", 1) for v in args.watchkeeper.split(","))
    started = time.perf_counter()
    suite = prepare(args.dir, sizes)
    if args.init:
        bench_init(args, sizes, jobs, next(iter(versions.values())))
        return
    rows_out = []
    for rows in sizes:
        path = args.dir / f"current_{_name(rows)}.parquet"
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        reads: list[dict[str, float]] = []
        scans: list[dict[str, float]] = []
        for _ in range(args.repeat):
            # the reads too are taken in every round, beside the checks, and their medians
            # compared: one read alone on a shared machine may fall in a quiet or busy spell
            if rows <= _rows(args.whole_read_max):
                reads.append(measure([sys.executable, "-c", _READ, str(path)]))
            scans.append(measure([sys.executable, "-c", _SCAN, str(path)]))
            for label, watchkeeper in versions.items():
                for n in jobs:
                    figures = measure(_check(n, args, watchkeeper, path, suite))
                    _log(f"{_name(rows)} {label} jobs {n}: {figures}")
                    runs.setdefault((label, n), []).append(figures)
        read = _median_run(reads) if reads else None
        scan = _median_run(scans)
        _log(f"{_name(rows)} read: {read} scan: {scan}")
        memory = {(label, n): measure(_check(n, args, watchkeeper, path, suite), sample=True)
                  for label, watchkeeper in versions.items() for n in jobs}
        for label in versions:
            rows_out.append({"rows": rows, "mb": path.stat().st_size / 1e6, "read": read,
                             "scan": scan, "version": label,
                             "check": {n: runs[label, n] for n in jobs},
                             "memory": {n: memory[label, n] for n in jobs}})
    report = render(rows_out, jobs, versions, args, time.perf_counter() - started)
    write_section(args.out, CHECK_HEADING, report)
    print(report)


TITLE = "# Streaming check: memory and time by file size"
CHECK_HEADING = "## Check by file size and cores"


def write_section(path: Path, heading: str, body: str) -> None:
    """Put ``body`` (which starts with ``heading``) in place of that section of the results
    file (up to the next ``## `` heading), keeping the others; a new section goes first."""
    text = path.read_text(encoding="utf-8") if path.exists() else TITLE + "\n\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        start = end = next((i for i, line in enumerate(lines) if line.startswith("## ")),
                           len(lines))
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
    new = lines[:start] + body.rstrip("\n").splitlines() + [""] + lines[end:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(new).rstrip("\n") + "\n", encoding="utf-8")


def render(lines: list[dict], jobs: list[int], versions: dict[str, str],
           args: argparse.Namespace, took: float) -> str:
    command = " ".join(["python", "benchmarks/bench_stream.py", "--sizes", args.sizes,
                        "--jobs", args.jobs, "--repeat", str(args.repeat)]
                       + (["--no-pin"] if args.no_pin else [])
                       + ([f"--watchkeeper {args.watchkeeper}"] if len(versions) > 1 else []))
    both = 1 in jobs and 2 in jobs
    loads = [r["load"] for line in lines for runs in line["check"].values() for r in runs]
    out = [
        CHECK_HEADING,
        "",
        f"`{command}` (`make bench-stream` runs `--sizes 1m,10m,50m`), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"1-minute load average {min(loads):.1f}–{max(loads):.1f} during the checks; the "
        f"run took {took / 60:.1f} min.",
        "Current files: `synthetic_drift_pair` frames, 20 columns, one Parquet file each (row",
        "groups of 1M rows); suite from a 100k-row reference; `watchkeeper check FILE --format",
        "json --jobs N` (one window of all rows). Each check ran "
        f"{args.repeat} time(s), every version and `--jobs` in turn in each round: times are",
        "medians, *j1 / j2* the median of the rounds' ratios. *RSS*: the largest single",
        "process's `ru_maxrss`; *PSS*: the peak of the summed proportional set size of the",
        "check and its worker processes (sampled every 100 ms, shared pages counted once, in",
        "one more run after the timed rounds: sampling slows the sampled run, so the timed",
        "runs do not sample); *cpu*: user + system seconds of all of them. *read* is",
        "`pq.read_table(FILE)` in a fresh process, once in each round (medians; whole file",
        "in memory; skipped above `--whole-read-max`), *scan* reads",
        "the file batch by batch (`ParquetFile.iter_batches`); */ read* divides the check's",
        "time by the read's (else the scan's). Every time includes the process start (Python",
        "and imports: a check of a 1,000-row file takes ~0.75 s on a quiet machine). "
        + ("`--jobs 1` ran pinned to one core (`taskset -c 0`): *j1 / j2* is one core against"
           " two." if _pinned(1, args) else "`--jobs 1` was not pinned to a core."),
        "",
        "| rows | version | read s | scan s | "
        + " | ".join(f"j{n} s | j{n} / read | j{n} RSS MB | j{n} PSS MB | j{n} cpu s"
                     for n in jobs)
        + (" | j1 / j2 |" if both else " |"),
        "|---:|---|---:|---:|" + "---:|---:|---:|---:|---:|" * len(jobs)
        + ("---:|" if both else ""),
    ]
    for line in lines:
        read, scan = line["read"], line["scan"]
        base = read or scan
        cells = [f"{line['rows']:,}", line["version"],
                 f"{read['wall']:.2f}" if read else "–", f"{scan['wall']:.2f}"]
        for n in jobs:
            runs = line["check"][n]
            wall = _median([r["wall"] for r in runs])
            cells += [f"{wall:.2f}", f"{wall / base['wall']:.2f}×",
                      f"{max(r['rss'] for r in [*runs, line['memory'][n]]) / 1e6:.0f}",
                      f"{line['memory'][n]['pss'] / 1e6:.0f}",
                      f"{_median([r['cpu'] for r in runs]):.2f}"]
        if both:
            ratios = [a["wall"] / b["wall"]
                      for a, b in zip(line["check"][1], line["check"][2], strict=True)]
            cells.append(f"{_median(ratios):.2f}×")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for label in versions:
        for n in jobs:
            rss = [line["memory"][n]["pss"] / 1e6 for line in lines
                   if line["version"] == label]
            out.append(f"- {label}, `--jobs {n}`: peak PSS from {min(rss):.0f} to "
                       f"{max(rss):.0f} MB over the sizes, a spread of "
                       f"{max(rss) - min(rss):.0f} MB (target: within 150 MB).")
    out.append("")
    return "\n".join(out)


INIT_HEADING = "## Streamed init"


def bench_init(args: argparse.Namespace, sizes: list[int], jobs: list[int],
               watchkeeper: str) -> None:
    """Peak RSS and time of ``init FILE --stream --jobs N`` (and ``--no-stream``)."""
    lines = []
    out_suite = args.dir / "init_out.yaml"
    for rows in sizes:
        path = args.dir / f"current_{_name(rows)}.parquet"
        line: dict = {"rows": rows, "mb": path.stat().st_size / 1e6, "init": {}}
        if rows <= _rows(args.whole_init_max):
            line["whole"] = measure([watchkeeper, "init", str(path), "-o", str(out_suite),
                                     "--force", "--no-progress", "--no-stream"])
            _log(f"{_name(rows)} in-memory init: {line['whole']}")
        for n in jobs:
            line["init"][n] = measure([watchkeeper, "init", str(path), "-o", str(out_suite),
                                       "--force", "--no-progress", "--stream",
                                       "--jobs", str(n)])
            _log(f"{_name(rows)} streamed init jobs {n}: {line['init'][n]}")
        lines.append(line)
    command = " ".join(["python", "benchmarks/bench_stream.py", "--init", "--sizes",
                        args.sizes, "--jobs", args.jobs]
                       + (["--whole-init-max", args.whole_init_max]
                          if args.whole_init_max != "1m" else []))
    section = [
        INIT_HEADING,
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores. The same files used as the reference (20 columns, no "
        "target): `watchkeeper init FILE --stream --jobs N` reads them twice batch by batch "
        "(pass 1: a 200,000-row sample, quantile sketches, category counts; pass 2: the "
        "exact reference profile) and fits and calibrates on the sample; *in-memory* is "
        "`init FILE --no-stream` (today's init, whole file in memory; up to "
        "`--whole-init-max` rows). Peak RSS is the process's `ru_maxrss`.",
        "",
        "| rows | file MB | in-memory s | in-memory RSS MB | "
        + " | ".join(f"stream j{n} s | j{n} RSS MB | load j{n}" for n in jobs) + " |",
        "|---:|---:|---:|---:|" + "---:|---:|---:|" * len(jobs),
    ]
    for line in lines:
        whole = line.get("whole")
        cells = [f"{line['rows']:,}", f"{line['mb']:.0f}",
                 f"{whole['wall']:.2f}" if whole else "–",
                 f"{whole['rss'] / 1e6:.0f}" if whole else "–"]
        for n in jobs:
            c = line["init"][n]
            cells += [f"{c['wall']:.2f}", f"{c['rss'] / 1e6:.0f}", f"{c['load']:.1f}"]
        section.append("| " + " | ".join(cells) + " |")
    section.append("")
    for n in jobs:
        rss = [line["init"][n]["rss"] / 1e6 for line in lines]
        section.append(f"- streamed init `--jobs {n}`: peak RSS from {min(rss):.0f} to "
                       f"{max(rss):.0f} MB over the sizes ({max(rss) - min(rss):.0f} MB apart).")
    section.append("")
    write_section(args.out, INIT_HEADING, "\n".join(section))
    print("\n".join(section))


if __name__ == "__main__":
    main()
