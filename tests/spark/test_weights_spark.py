"""The weight rule, written once over an array namespace, gives the same numbers on numpy
arrays and on Spark Columns: every event type, ratings with missing, out-of-range and
infinite stars, negative ages (clock skew), each saturation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from recsys.graph.config import WeightConfig
from recsys.graph.weights import NUMPY, event_weights, saturate


@pytest.mark.parametrize("saturation", ["log1p", "hyperbolic", "none"])
def test_numpy_and_spark_weigh_alike(spark: Any, saturation: str) -> None:
    from pyspark.sql import functions as F

    from recsys.graph.spark_ops import SPARK

    rng = np.random.default_rng(0)
    n = 5_000
    code = rng.integers(0, 5, n)
    value = np.where(rng.random(n) < 0.7, rng.uniform(-2, 9, n), np.nan)
    value[:3] = [np.inf, -np.inf, np.nan]
    code[:3] = 4  # ratings
    age = rng.uniform(-3, 900, n)
    cfg = WeightConfig(saturation=saturation, half_life_days=17.5)  # type: ignore[arg-type]
    expected = saturate(event_weights(code, value, age, cfg, NUMPY) * 3.0, cfg, NUMPY)
    df = spark.createDataFrame(
        pa.table(
            {
                "i": np.arange(n),
                "code": code.astype(np.int32),
                "age": age,
                # missing stars are nulls in the lake; row 2 keeps a real NaN
                "value": pa.array(
                    [None if np.isnan(v) and i != 2 else float(v) for i, v in enumerate(value)],
                    pa.float64(),
                ),
            }
        )
    )
    raw = event_weights(F.col("code"), F.col("value"), F.col("age"), cfg, SPARK)
    got = df.select("i", saturate(raw * 3.0, cfg, SPARK).alias("w")).orderBy("i").toArrow()
    w = got.column("w").to_numpy()
    assert np.isfinite(w).all() and (w >= cfg.min_weight).all()
    np.testing.assert_allclose(w, expected, rtol=1e-14, atol=0)
