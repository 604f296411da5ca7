"""The array namespace of :mod:`recsys.graph.weights` on Spark Columns.

:func:`recsys.graph.weights.event_weights` and :func:`~recsys.graph.weights.saturate` are
written once over :class:`~recsys.graph.weights.Ops`; passing :data:`SPARK` makes them
build Spark Column expressions instead of computing numpy arrays, so the Spark build
weighs events with the very rule the local build uses (doubles throughout: Spark's
``exp`` / ``log1p`` are fdlibm's, numpy's may differ in the last bit of a double, far
below the float32 the snapshot stores).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F


def _col(x: Any) -> Column:
    return x if isinstance(x, Column) else F.lit(x)


class SparkOps:
    """:class:`recsys.graph.weights.Ops` on Spark Columns."""

    def asfloat(self, x: Any) -> Any:
        return _col(x).cast("double")

    def asint(self, x: Any) -> Any:
        return _col(x).cast("long")

    def exp(self, x: Any) -> Any:
        return F.exp(_col(x))

    def log1p(self, x: Any) -> Any:
        return F.log1p(_col(x))

    def maximum(self, x: Any, floor: float) -> Any:
        # np.maximum propagates NaN; so does this (greatest() would skip a null, never NaN)
        c = _col(x)
        return F.when(F.isnan(c) | (c >= F.lit(float(floor))), c).otherwise(F.lit(float(floor)))

    def clip(self, x: Any, low: float, high: float) -> Any:
        return self._minimum(self.maximum(x, low), high)

    def _minimum(self, x: Any, ceiling: float) -> Any:
        c = _col(x)
        return F.when(F.isnan(c) | (c <= F.lit(float(ceiling))), c).otherwise(F.lit(float(ceiling)))

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return F.when(_col(cond), _col(a)).otherwise(_col(b))

    def isfinite(self, x: Any) -> Any:
        c = _col(x)
        return (
            c.isNotNull() & ~F.isnan(c) & (c != F.lit(float("inf"))) & (c != F.lit(float("-inf")))
        )

    def lookup(self, table: list[float], code: Any) -> Any:
        # element_at is 1-based; a code outside the table gives null (the reader refuses
        # unknown event types before any weight is computed)
        at = (_col(code) + 1).cast("int")
        return F.element_at(F.array(*[F.lit(float(v)) for v in table]), at)


SPARK = SparkOps()
