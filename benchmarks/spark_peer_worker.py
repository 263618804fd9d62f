"""The peers of bench_spark.py on Spark, each run in its own venv (imports no watchkeeper).

Usage: python spark_peer_worker.py TOOL CURRENT_DIR REFERENCE.parquet MASTER

* ``whylogs`` – whylogs' Spark profiler
  (``whylogs.api.pyspark.experimental.collect_dataset_profile_view``): a profile of the
  current rows made of approximate sketches per column (KLL quantiles, HLL distinct
  counts, frequent items, counts), merged on the driver. It judges nothing: a drift
  report would compare it with a reference profile afterwards, on the driver (not timed:
  the profile is the part that scans the rows).
* ``evidently`` – Evidently 0.7's legacy Spark engine (``evidently.legacy.spark``,
  ``SparkEngine``) running ``DataDriftTable`` (per-column drift tests with its default
  Spark stattests, on the reference and current Spark DataFrames) and reading the drifted
  columns.

One JSON line on stdout: seconds (after the session has started), session seconds,
partitions, rows counted, drifted columns (Evidently only), the driver's peak RSS (this
process's VmHWM) and the peak of the JVM and its Python workers (sum of their VmHWM).
"""

from __future__ import annotations

import json
import os
import sys
import time

from peak_memory import own_peak_mib, tree_peak_mib  # beside this script


def _whylogs(spark, current: str, out: dict) -> None:
    from whylogs.api.pyspark.experimental import collect_dataset_profile_view

    df = spark.read.parquet(current)
    out["partitions"] = df.rdd.getNumPartitions()
    view = collect_dataset_profile_view(df)
    columns = view.get_columns()
    out["counted"] = int(columns["num_00"].get_metric("counts").n.value)
    out["columns"] = len(columns)


def _evidently(spark, current: str, reference: str, out: dict) -> None:
    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report
    from evidently.legacy.spark.engine import SparkEngine

    cur = spark.read.parquet(current)
    ref = spark.read.parquet(reference)
    out["partitions"] = cur.rdd.getNumPartitions()
    names = cur.columns
    mapping = ColumnMapping(numerical_features=[c for c in names if c.startswith("num_")],
                            categorical_features=[c for c in names if c.startswith("cat_")],
                            target=None, prediction=None)
    report = Report(metrics=[DataDriftTable()])
    report.run(reference_data=ref, current_data=cur, column_mapping=mapping,
               engine=SparkEngine)
    result = report.as_dict()["metrics"][0]["result"]
    by_column = result["drift_by_columns"]
    out["drifted"] = sorted(c for c, r in by_column.items() if r["drift_detected"])
    out["counted"] = int(cur.count())
    out["tests"] = sorted({r["stattest_name"] for r in by_column.values()})


def main() -> None:
    tool, current, reference, master = sys.argv[1:5]
    # the Python workers run in this venv too (else the system python, without the peer)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    out: dict[str, object] = {"engine": tool}
    start = time.perf_counter()
    spark = (SparkSession.builder.master(master).appName(f"bench-{tool}")
             .config("spark.sql.shuffle.partitions", "2").config("spark.ui.enabled", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    out["session"] = time.perf_counter() - start
    start = time.perf_counter()
    if tool == "whylogs":
        _whylogs(spark, current, out)
    elif tool == "evidently":
        _evidently(spark, current, reference, out)
    else:
        raise SystemExit(f"unknown tool {tool!r}")
    out["seconds"] = time.perf_counter() - start
    jvm = spark.sparkContext._gateway.proc.pid
    out["children_mib"] = tree_peak_mib(jvm)
    out["driver_mib"] = own_peak_mib()
    spark.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
