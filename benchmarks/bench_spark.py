"""Benchmark: the same check with the local engine and with Spark (``watchkeeper.spark``).

On the synthetic data of ``watchkeeper.io.datasets.synthetic_drift_pair`` (20 columns, 4
drifted): the current rows written once as Parquet parts of 1M rows each
(``benchmarks/data/spark_parts/part-<k>.parquet``, the current half of the pair of seed
100 + k, row groups of 100k rows); a run of N rows reads a directory of the first N/1M
parts (hard links, ``benchmarks/data/spark_cur_<rows>/``); the suite is ``wk.init`` of a
200k-row reference (seed 0), the same for every size (not timed).

* ``local`` – ``suite.check_stream(dir)``: the local engine's streamed check (batches of
  the files, profiled on every core, merged; memory flat in rows);
* ``spark`` – ``watchkeeper.spark.check(spark.read.parquet(dir), suite)`` with
  ``--master`` (``local[2]`` by default), ``spark.sql.shuffle.partitions=2``; the session's
  start is timed apart ("session") and kept out of the wall time.

Peers, side by side on the same Parquet directory (``--peers whylogs,evidently``; each in
its own venv, made on first use like the other peers' venvs, run by
``benchmarks/spark_peer_worker.py`` with the same ``--master`` and session settings):

* ``whylogs`` – whylogs 1.6.4's Spark profiler (``collect_dataset_profile_view``) in
  ``benchmarks/.venv-whylogs-spark`` (``whylogs[spark]``, pyspark 3.5.6, which runs on
  Java 17, numpy<2, pandas<3): approximate sketches per column of the current rows only,
  no judgement (no reference, no test, no drifted columns);
* ``evidently`` – Evidently 0.7.23's legacy Spark engine (``evidently.legacy.spark``,
  ``SparkEngine``) running ``DataDriftTable`` on the reference and current Spark
  DataFrames, in ``benchmarks/.venv-evidently-spark`` (with pyspark 3.5.6): per-column
  drift tests, drifted columns reported.

The reference for Evidently is the same 200k rows the suite was fitted on, written as
``benchmarks/data/spark_reference.parquet``. A peer that fails or runs past ``--peer-timeout``
seconds is reported as not finished.

Each engine runs in a fresh process per size. Reported: wall time, rows/s, the Spark/local
ratio, the drifted columns found (both must find the same), and peak memory: the driver's
Python process (its VmHWM) and, for Spark, of its children (the JVM, which in local mode
runs the executors, and the Python workers: the sum of their VmHWM). Markdown to stdout
and to ``benchmarks/results/spark.md``.

Run from the repository root (``make bench-spark``)::

    .venv/bin/python benchmarks/bench_spark.py                     # 5M, 10M, 20M rows
    .venv/bin/python benchmarks/bench_spark.py --rows 1000000 --master 'local[2]'
    .venv/bin/python benchmarks/bench_spark.py --rows 5000000 --peers whylogs,evidently
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from peak_memory import own_peak_mib, tree_peak_mib  # beside this script

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULT = ROOT / "benchmarks" / "results" / "spark.md"
PEER_WORKER = ROOT / "benchmarks" / "spark_peer_worker.py"
#: each peer's venv and what it installs (pyspark 3.5 runs on Java 17; whylogs needs numpy<2)
PEERS = {
    "whylogs": (ROOT / "benchmarks" / ".venv-whylogs-spark",
                ["whylogs[spark]==1.6.4", "pyspark==3.5.6", "numpy<2", "pandas<3"],
                "import whylogs.api.pyspark.experimental"),
    "evidently": (ROOT / "benchmarks" / ".venv-evidently-spark",
                  ["evidently==0.7.23", "pyspark==3.5.6", "numpy<2", "pandas<3", "pyarrow"],
                  "import evidently.legacy.spark, pyspark"),
}


PART_ROWS = 1_000_000


def _paths(rows: int) -> tuple[Path, Path]:
    return DATA / f"spark_cur_{rows}", DATA / "spark_suite.yaml"


def prepare(rows: int) -> None:
    """The parts the run needs (written once), linked into the run's directory."""
    import os

    import pyarrow.parquet as pq

    import watchkeeper as wk
    from watchkeeper.io.datasets import synthetic_drift_pair

    if rows % PART_ROWS:
        raise SystemExit(f"--rows: multiples of {PART_ROWS:,} only, got {rows:,}")
    cur_dir, suite_path = _paths(rows)
    parts = DATA / "spark_parts"
    parts.mkdir(parents=True, exist_ok=True)
    reference_path = DATA / "spark_reference.parquet"
    if not suite_path.exists() or not reference_path.exists():
        reference, _ = synthetic_drift_pair(200_000, seed=0)
        wk.init(reference, progress=False).save(suite_path)
        pq.write_table(reference, reference_path, row_group_size=100_000)
    cur_dir.mkdir(exist_ok=True)
    for k in range(rows // PART_ROWS):
        part = parts / f"part-{k:05d}.parquet"
        if not part.exists():
            _, current = synthetic_drift_pair(PART_ROWS, seed=100 + k)
            pq.write_table(current, part.with_suffix(".tmp"), row_group_size=100_000)
            part.with_suffix(".tmp").rename(part)
        if not (cur_dir / part.name).exists():
            os.link(part, cur_dir / part.name)


def worker(engine: str, rows: int, master: str) -> dict[str, object]:
    import watchkeeper as wk

    cur_path, suite_path = _paths(rows)
    suite = wk.load(suite_path)
    out: dict[str, object] = {"engine": engine, "rows": rows}
    if engine == "local":
        start = time.perf_counter()
        result = suite.check_stream(cur_path, progress=False)
        out["seconds"] = time.perf_counter() - start
    else:
        import watchkeeper.spark as wks

        start = time.perf_counter()
        spark = wks.session(master, [("spark.sql.shuffle.partitions", "2"),
                                     ("spark.ui.enabled", "false")])
        out["session"] = time.perf_counter() - start
        start = time.perf_counter()
        df = wks.read(spark, cur_path)
        out["partitions"] = df.rdd.getNumPartitions()
        result = wks.check(df, suite)
        out["seconds"] = time.perf_counter() - start
        jvm = spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
        out["children_mib"] = tree_peak_mib(jvm)  # the JVM and its Python workers
        spark.stop()
    out["drifted"] = sorted({f.column for f in result.findings if f.family == "drift"})
    out["counted"] = sum(w.rows for w in result.windows)
    out["driver_mib"] = own_peak_mib()
    return out


def peer(tool: str, rows: int, master: str, timeout: float) -> dict[str, object]:
    """One peer's run in its own venv (made on first use), or why it did not finish."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_drift import ensure_venv

    venv, requirements, check = PEERS[tool]
    python, why = ensure_venv(venv, requirements, check)
    out: dict[str, object] = {"engine": tool, "rows": rows}
    if python is None:
        return {**out, "error": why}
    cur_path, _ = _paths(rows)
    try:
        done = subprocess.run([str(python), str(PEER_WORKER), tool, str(cur_path),
                               str(DATA / "spark_reference.parquet"), master],
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**out, "error": f"not finished in {timeout:.0f} s"}
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exited with code {done.returncode}"])[-1]
        return {**out, "error": last[:300]}
    return {**out, **json.loads(done.stdout.strip().splitlines()[-1])}


WHAT = {
    "local": "watchkeeper: exact counts, bins, drift tests and findings",
    "spark": "watchkeeper: exact counts, bins, drift tests and findings",
    "whylogs": "sketches only (KLL, HLL, frequent items) of the current rows; no judgement",
    "evidently": "per-column drift tests (DataDriftTable) with its Spark stattests",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="5000000,10000000,20000000",
                        help="comma-separated sizes (multiples of 1M)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--peers", default="",
                        help="peers run side by side: whylogs, evidently (comma-separated)")
    parser.add_argument("--peer-timeout", type=float, default=3600.0,
                        help="seconds a peer's run may take before it counts as not finished")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, int(args.rows), args.master)))
        return
    runs = []
    load = os.getloadavg()
    for rows in (int(r) for r in args.rows.split(",")):
        prepare(rows)
        for engine in ("local", "spark"):
            done = subprocess.run([sys.executable, __file__, "--worker", engine, "--rows",
                                   str(rows), "--master", args.master], capture_output=True,
                                  text=True, check=True, cwd=ROOT)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), file=sys.stderr)
        for tool in filter(None, args.peers.split(",")):
            runs.append(peer(tool, rows, args.master, args.peer_timeout))
            print(json.dumps(runs[-1]), file=sys.stderr)
    text = render(runs, args, load, os.getloadavg())
    print(text)
    RESULT.write_text(text, encoding="utf-8")


def render(runs: list[dict], args: argparse.Namespace, load: tuple[float, ...],
           end: tuple[float, ...]) -> str:
    """The markdown table of ``runs`` (the JSON lines the benchmark logs on stderr)."""
    lines = [
        "# Spark engine vs local engine",
        "",
        f"`python benchmarks/bench_spark.py --rows {args.rows} --master {args.master}"
        + (f" --peers {args.peers}`" if args.peers else "`")
        + f" ({time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, shared 2-core "
        f"machine, load average {load[0]:.1f} at the start and {end[0]:.1f} at "
        "the end; one run each: absolute times vary).",
        "Synthetic data, 20 columns (15 numeric, 5 categorical), 4 drifted, as Parquet "
        "parts of 1M rows; one window of all rows. Local: the streamed check "
        "(`check_stream`, every core). Spark's wall time excludes its session start "
        "(column *session*).",
        "",
        "| rows | engine | partitions | wall s | rows/s | ÷ local | ÷ spark | session s | "
        "driver peak MiB | children peak MiB | drifted found | computes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    wall: dict[tuple[int, str], float] = {}
    for r in runs:
        if "seconds" in r:
            wall[int(r["rows"]), str(r["engine"])] = float(r["seconds"])  # type: ignore[arg-type]
    for r in runs:
        rows, engine = int(r["rows"]), str(r["engine"])  # type: ignore[call-overload]
        if "error" in r:
            lines.append(f"| {rows:,} | {engine} | | not finished | | | | | | | | "
                         f"{r['error']} |")
            continue
        seconds = wall[rows, engine]
        ratios = [f"{seconds / wall[rows, base]:.2f}" if (rows, base) in wall else ""
                  for base in ("local", "spark")]
        session = f"{r['session']:.1f}" if "session" in r else ""
        children = f"{r['children_mib']:.0f}" if "children_mib" in r else ""
        drifted = ", ".join(r["drifted"]) if "drifted" in r else "–"  # type: ignore[arg-type]
        lines.append(
            f"| {rows:,} | {engine} | {r.get('partitions', '')} | {seconds:.1f} | "
            f"{rows / seconds:,.0f} | {ratios[0]} | {ratios[1]} | {session} | "
            f"{r['driver_mib']:.0f} | {children} | {drifted} (rows counted "
            f"{r['counted']:,}) | {WHAT[engine]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
