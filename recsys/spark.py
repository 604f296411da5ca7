"""The Spark side of the data engine: the session, lake URIs as Spark paths, file hashes.

``--engine spark`` runs the data gate and the graph build on PySpark: on a cluster
(Azure Databricks, where the job's driver finds the cluster's session) or, with no
session about, in local mode on this machine (``local[*]``; ``RECSYS_SPARK_MASTER``
overrides). pyspark is an optional dependency (the ``spark`` extra): it is imported
here, on first use, never at import time of the modules that offer the engine.

Spark reads the lake through Hadoop filesystems, so a lake URI is mapped to the path
Spark understands (:func:`spark_path`): a local folder becomes ``file:/abs/path``, an
ADLS Gen2 ``abfs://container@account.dfs.core.windows.net/...`` URI becomes
``abfss://...``; ``memory://`` (an in-process fsspec store) cannot be read by Spark and
is refused with a message saying so. What the driver writes (the snapshot, the reports)
still goes through fsspec, like the local engine's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import InputError
from recsys.storage import get_fs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Engine = Literal["local", "spark"]
ENGINES: tuple[Engine, ...] = ("local", "spark")
MASTER_ENV = "RECSYS_SPARK_MASTER"
DRIVER_MEMORY_ENV = "RECSYS_SPARK_DRIVER_MEMORY"

# Settings of a session this module starts (a cluster's own session is used as it is).
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # a local run has a few cores: a few shuffle partitions, not 200 tiny ones
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.extraJavaOptions": "-Dio.netty.tryReflectionSetAccessible=true",
}
# Spark refuses Parquet's nanosecond timestamps unless it reads them as longs; the readers
# here turn those back into timestamps (read_parquet), as pyarrow reads them for the local
# engine.
SESSION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}


def get_spark(master: str | None = None) -> SparkSession:
    """The active session (a cluster's), else a new one on ``master`` (default
    ``$RECSYS_SPARK_MASTER``, else ``local[*]``; JVM heap ``$RECSYS_SPARK_DRIVER_MEMORY``,
    else 2g), with UTC as the session time zone."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - the extra is part of `all`
        raise InputError(
            "--engine spark needs pyspark: pip install 'recsys[spark]' (and a Java 17 runtime)"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in SESSION_CONF.items():
            active.conf.set(key, value)
        return active
    # Python workers run this interpreter (the one with recsys' dependencies)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("recsys").master(
        master or os.environ.get(MASTER_ENV) or "local[*]"
    )
    for key, value in {**LOCAL_CONF, **SESSION_CONF}.items():
        builder = builder.config(key, value)
    # local mode: the JVM holds the driver and the executors (default 2g; a cluster's
    # session has its own settings)
    builder = builder.config("spark.driver.memory", os.environ.get(DRIVER_MEMORY_ENV) or "2g")
    return builder.getOrCreate()


def spark_path(uri: str) -> str:
    """The path Spark (Hadoop) reads for a lake URI."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        local = parts.path if scheme == "file" else uri
        return "file://" + str(Path(local).absolute())
    if scheme in ("abfs", "abfss", "az"):
        if "@" not in parts.netloc:
            raise InputError(
                f"{uri}: the spark engine needs the storage account in the URI "
                "(abfss://container@account.dfs.core.windows.net/path)"
            )
        return f"abfss://{parts.netloc}{parts.path}"
    raise InputError(
        f"{uri}: the spark engine reads the lake through Hadoop filesystems (a local folder "
        f"or abfss://); {scheme}:// is not one of them: use --engine local"
    )


def file_hashes(spark: SparkSession, uris: Sequence[str]) -> dict[str, str]:
    """sha256 of each file, computed where the files are (Spark's ``binaryFile`` source and
    its ``sha2``, one task per file), keyed by the URI given."""
    if not uris:
        return {}
    from pyspark.sql import functions as F

    by_path = {_normal(spark_path(u)): u for u in uris}
    rows = (
        spark.read.format("binaryFile")
        .load(list({spark_path(u) for u in uris}))
        .select("path", F.sha2("content", 256).alias("sha256"))
        .collect()
    )
    out = {by_path[_normal(str(r["path"]))]: str(r["sha256"]) for r in rows}
    missing = [u for u in uris if u not in out]
    if missing:
        raise InputError(f"{missing[0]}: not found by Spark")
    return out


def _normal(path: str) -> str:
    """One spelling of a Hadoop path (``file:/x``, ``file:///x`` and ``/x`` alike)."""
    p = path
    for prefix in ("file:///", "file://", "file:"):
        if p.startswith(prefix):
            p = "/" + p[len(prefix) :].lstrip("/")
            break
    return p.rstrip("/")


def parquet_schema(files: Sequence[str]) -> tuple[pa.Schema, int]:
    """The Arrow schema of a partition's files (unified as the local reader concatenates
    them) and their rows, from the Parquet footers only (read by the driver, no rows)."""
    schemas, rows = [], 0
    for uri in files:
        fs, path = get_fs(uri)
        try:
            with fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f)
                schemas.append(meta.schema_arrow)
                rows += meta.metadata.num_rows
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(f"{uri}: unreadable Parquet file ({exc})") from None
    if len(schemas) == 1:
        return schemas[0], rows
    try:
        return pa.unify_schemas(schemas, promote_options="permissive"), rows
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        where = files[0].rsplit("/", 1)[0]
        raise InputError(f"{where}: files disagree on schema ({exc})") from None


def read_parquet(spark: SparkSession, files: Sequence[str], schema: pa.Schema) -> DataFrame:
    """A partition's files as one DataFrame; a nanosecond timestamp column (which Spark reads
    as a long, :data:`SESSION_CONF`) comes back as a timestamp, truncated to the microsecond
    toward the past (as the contract's unit; bounds on whole microseconds judge it alike)."""
    from pyspark.sql import functions as F

    df = spark.read.option("mergeSchema", "true").parquet(*[spark_path(u) for u in files])
    for field in schema:
        t = field.type
        if pa.types.is_timestamp(t) and t.unit == "ns" and field.name in df.columns:
            # integer floor division: `/` is a double division, which rounds some
            # nanosecond counts of today's dates (~1.7e18) to a microsecond early
            n = field.name.replace("`", "``")
            micros = F.expr(f"(`{n}` - pmod(`{n}`, 1000)) div 1000")
            df = df.withColumn(field.name, F.timestamp_micros(micros))
    return df
