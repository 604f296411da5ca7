"""DataFrame helpers of the Spark graph build (:mod:`recsys.graph.spark_build`): per-pair
weights on Spark Columns, id frames, and collecting node-scale results to the driver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from recsys.graph.config import GraphConfig
from recsys.graph.weights import US_PER_DAY, event_weights, saturate

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def spark_functions() -> Any:
    from pyspark.sql import functions as F

    return F


def collect_strings(df: DataFrame, col: str) -> np.ndarray:
    """One string column of a (small: node-scale) DataFrame, collected as Arrow."""
    return np.asarray(
        df.select(col).toArrow().column(col).to_numpy(zero_copy_only=False), dtype=object
    )


def id_frame(spark: SparkSession, ids: np.ndarray, kind: str, first: int = 0) -> DataFrame:
    return spark.createDataFrame(
        pa.table(
            {
                f"{kind}_id": pa.array(np.asarray(ids, dtype=object).astype(str), pa.string()),
                f"{kind}_idx": np.arange(first, first + len(ids), dtype=np.int64),
            }
        )
    )


def weighed(df: DataFrame, key: list[str], cutoff_us: int, cfg: GraphConfig) -> DataFrame:
    """Per ``key`` pair: the saturated sum of the events' weights (float32 as stored), the
    bitmask of their types and the latest event."""
    from recsys.graph.spark_ops import SPARK

    F = spark_functions()
    age = (F.lit(cutoff_us) - F.col("ts_us")) / F.lit(US_PER_DAY)
    raw = event_weights(F.col("type_code"), F.col("value"), age, cfg.weights, SPARK)
    summed = df.groupBy(*key).agg(
        F.sum(raw).alias("summed"),
        F.bit_or(F.expr("shiftleft(1, type_code)")).alias("types"),
    )
    return summed.select(
        *key,
        saturate(F.col("summed"), cfg.weights, SPARK).cast("float").alias("weight"),
        F.col("types").cast("short").alias("types"),
    )


def sorted_arrow(df: DataFrame, order: list[str]) -> pa.Table:
    return df.orderBy(*order).toArrow()


def scatter(n: int, at: np.ndarray, values: pa.ChunkedArray, float_nan: bool = False) -> np.ndarray:
    """A per-node array of ``n`` from the (index, value) rows an aggregate gave (0, or NaN
    with ``float_nan``, where a node has no row)."""
    out = np.full(n, np.nan) if float_nan else np.zeros(n, np.int64)
    out[at] = values.to_numpy()
    return out
