"""One Spark session in local mode for every Spark test (it takes seconds to start):
two worker threads, two shuffle partitions, no web UI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from watchkeeper.spark import session


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    s = session("local[2]", [("spark.sql.shuffle.partitions", "2"),
                             ("spark.ui.enabled", "false"),
                             ("spark.default.parallelism", "2")])
    yield s
    s.stop()
