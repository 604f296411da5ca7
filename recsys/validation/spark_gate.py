"""``recsys validate --engine spark``: the data gate's reads and figures on Spark.

The checks are the gate's own (:mod:`recsys.validation.suites`, run by
:class:`~recsys.validation.gx_runner.GxRunner` through GX's Spark data source), and so
are the rules that turn figures into results (:mod:`recsys.validation.cross`). What this
engine changes is where the rows are:

- a partition's schema is checked on the Arrow schema of its Parquet footers (read by the
  driver, no rows), exactly as the local engine checks it; its row count comes from the
  same footers; its content hash from the files' sha256, computed by Spark where the
  files are;
- the rows are a Spark DataFrame, the usable columns only, NaN in floating-point columns
  read as null (pandas, hence the local engine, treats NaN as a missing value, and so
  the null rules judge it; Spark would compare NaN as larger than any number);
- unknown ids, duplicate rate, today's event-type mix and the trailing days' volume and
  mix are Spark aggregates; examples are the first in row order (file, then row), as the
  local engine quotes them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from recsys.data.lake import list_partitions, partition_files
from recsys.data.schema import EVENTS
from recsys.errors import InputError
from recsys.reports import Check
from recsys.spark import file_hashes, get_spark, parquet_schema, read_parquet, spark_path
from recsys.validation import cross
from recsys.validation.config import ValidationConfig
from recsys.validation.partition import Partition, content_hash

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_ROW = "__recsys_row"
_FILE = "__recsys_file"


class SparkEngine:
    """The gate's reads and figures on Spark (see the module docstring)."""

    name = "spark"
    gx_source = "spark"

    def __init__(self, spark: SparkSession | None = None) -> None:
        self._spark = spark

    @property
    def spark(self) -> SparkSession:
        """The session, started on first use. Each partition's files are listed and their
        footers read (a missing, empty or corrupt partition reported) before it asks Spark
        for anything; the events partition, read first, starts the JVM, so a broken users or
        items partition is reported after it started."""
        if self._spark is None:
            self._spark = get_spark()
        return self._spark

    def load(self, lake: str, table: str, day: dt.date) -> Partition:
        from pyspark.sql import functions as F

        files = partition_files(lake, table, day)
        schema, rows = parquet_schema(files)
        if rows == 0:
            raise InputError(f"{', '.join(files)}: empty {table} partition (0 rows)")
        spark_path(lake)  # a lake Spark cannot read is said before Spark starts
        sha = content_hash(files, file_hashes(self.spark, files))
        order = {spark_path(u).rsplit("/", 1)[-1]: i for i, u in enumerate(files)}
        df = read_parquet(self.spark, files, schema)
        rank = F.create_map(*[x for name, i in order.items() for x in (F.lit(name), F.lit(i))])
        df = df.withColumn(_FILE, rank[F.col("_metadata.file_name")]).withColumn(
            _ROW, F.col("_metadata.row_index")
        )
        return Partition(table, day, None, files, set(), sha, schema, rows, frame=df)

    def frame(self, part: Partition) -> Any:
        """The usable columns for GX; NaN read as null in floating-point columns."""
        from pyspark.sql import functions as F

        df: DataFrame = part.frame
        floats = {f.name for f in part.schema if pa.types.is_floating(f.type)}
        cols = [
            F.when(~F.isnan(F.col(c)), F.col(c)).alias(c) if c in floats else F.col(c)
            for c in sorted(part.usable)
        ]
        return df.select(*cols)

    def table(self, df: pd.DataFrame) -> Any:
        return self.spark.createDataFrame(df)

    def unknown_ids(
        self, ev: Partition, col: str, dim: Partition, tol: float, cfg: ValidationConfig
    ) -> cross.Metric:
        from pyspark.sql import functions as F

        events: DataFrame = ev.frame
        known = dim.frame.select(F.col(col).cast("string").alias("_known")).distinct()
        ids = events.filter(F.col(col).isNotNull()).select(
            F.col(col).cast("string").alias("_id"), _FILE, _ROW
        )
        flagged = ids.join(known, ids["_id"] == known["_known"], "left_anti")
        counts = ids.agg(F.count("*").alias("total")).first()
        n_unknown = flagged.count()
        examples = [
            str(r["_id"])
            for r in flagged.groupBy("_id")
            .agg(F.min(F.struct(_FILE, _ROW)).alias("first"))
            .orderBy("first")
            .limit(cfg.examples)
            .collect()
        ]
        total = int(counts["total"]) if counts is not None else 0
        return cross.unknown_ids_metric(col, dim.table, dim.day, tol, n_unknown, total, examples)

    def duplicate_rate(self, ev: Partition, cfg: ValidationConfig) -> cross.Metric:
        from pyspark.sql import functions as F

        keys = list(cross.DUP_KEY)
        groups = ev.frame.groupBy(*keys).agg(
            F.count("*").alias("n"), F.min(F.struct(_FILE, _ROW)).alias("first")
        )
        distinct = groups.count()
        examples: list[str] = []
        if ev.rows - distinct:
            repeated = groups.filter(F.col("n") > 1).orderBy("first").limit(cfg.examples)
            # ts (a UTC timestamp: the schema check let it through) as microseconds, so
            # that Python's local time zone never enters the example
            rows = repeated.select(
                *[F.unix_micros(k).alias(k) if k == "ts" else k for k in keys]
            ).collect()
            examples = [
                cross.dup_example([_utc(r[k]) if k == "ts" else r[k] for k in keys]) for r in rows
            ]
        return cross.duplicate_metric(ev.rows, distinct, examples, cfg)

    def history(self, lake: str, day: dt.date, cfg: ValidationConfig) -> cross.History:
        """The trailing partitions' rows and event-type counts, one Spark aggregate per day."""
        from pyspark.sql import functions as F

        first = day - dt.timedelta(days=cfg.history_days)
        days = [d for d in list_partitions(lake, EVENTS) if first <= d < day]
        rows: list[int] = []
        mix: dict[str, int] = {}
        for d in days:
            files = partition_files(lake, EVENTS, d)
            schema, _ = parquet_schema(files)
            df = read_parquet(self.spark, files, schema)
            if "event_type" not in schema.names:
                rows.append(df.count())
                continue
            counts = df.groupBy(F.col("event_type").cast("string").alias("t")).count().collect()
            rows.append(sum(int(r["count"]) for r in counts))
            for r in counts:
                mix[str(r["t"])] = mix.get(str(r["t"]), 0) + int(r["count"])
        return cross.History(days, rows, mix)

    def mix_drift(
        self, ev: Partition, hist: cross.History, cfg: ValidationConfig
    ) -> cross.Metric | Check:
        from pyspark.sql import functions as F

        today = {
            str(r["t"]): int(r["count"])
            for r in ev.frame.groupBy(F.col("event_type").cast("string").alias("t"))
            .count()
            .collect()
        }
        return cross.mix_drift_of(today, hist, cfg)


def _utc(us: int) -> dt.datetime:
    """Microseconds since the epoch as the UTC datetime pyarrow gives the local engine."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
