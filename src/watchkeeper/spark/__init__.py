"""Run a suite on Apache Spark (extra ``spark``: ``pip install 'watchkeeper[spark]'``).

:func:`init` makes a suite from a Spark DataFrame (the passes of a streamed init, run on
the partitions). :func:`check` profiles a Spark DataFrame where its rows are (per
partition, with the local engine's profile function on Arrow record batches), merges the
partial profiles exactly on the executors, and judges the windows on the driver: the same
:class:`~watchkeeper.run.check.CheckResult` as :meth:`Suite.check
<watchkeeper.suite.core.Suite.check>` on the same rows.
:class:`~watchkeeper.spark.stream.ServerSink` feeds a running ``watchkeeper serve`` from
a Structured Streaming query (window profiles in its event log, exactly once per
micro-batch); :class:`~watchkeeper.spark.stream.StoreSink` writes a query's window
profiles into the store of a model no server folds. See docs/spark.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from watchkeeper.errors import DataError
from watchkeeper.spark.engine import check, read
from watchkeeper.spark.init import SparkReference, init

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["SparkReference", "check", "init", "read", "session"]


def session(master: str = "local[*]", conf: Iterable[tuple[str, str]] = (),
            app_name: str = "watchkeeper") -> SparkSession:
    """A Spark session for the CLI: ``master`` (``local[*]``, ``spark://host:7077``,
    ``yarn``...) and ``conf`` pairs (``spark.executor.memory``, ``4g``), applied after
    watchkeeper's defaults (UTC session time, no progress bars on the console)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise DataError("the Spark engine needs pyspark: pip install 'watchkeeper[spark]'"
                        ) from None
    if master.startswith("local"):  # the workers run this interpreter, which has watchkeeper
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.showConsoleProgress", "false"))
    for key, value in conf:
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
