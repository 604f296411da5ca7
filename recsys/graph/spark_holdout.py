"""The holdout stages of the Spark graph build: :mod:`recsys.graph.holdout`'s sizing rule,
holdout pairs and served history, with the event-scale work as Spark aggregates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsys.graph.config import GraphConfig
from recsys.graph.holdout import HoldoutSize, choose_holdout_span, holdout_span_range
from recsys.graph.snapshot import ServedHistory
from recsys.graph.spark_frames import (
    collect_strings,
    id_frame,
    sorted_arrow,
    spark_functions,
    weighed,
)
from recsys.graph.weights import TYPE_CODE
from recsys.graph.window import EPOCH, Inputs, Window, known_items

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ALWAYS = np.iinfo(np.int64).min
"""An item mapped by the previous id map: first seen before any day."""


def size_holdout_spark(
    spark: SparkSession, iw: DataFrame, inp: Inputs, w: Window, cfg: GraphConfig
) -> tuple[Window, HoldoutSize]:
    """:func:`recsys.graph.holdout.size_holdout` with Spark aggregates: per day the events
    (for the share); per (user, product) pair of a holdout type, the start days of a holdout
    that would hold it (kept), counted for each span the sizing rule asks about."""
    from pyspark import StorageLevel

    F = spark_functions()
    if cfg.holdout_days == 0:
        return Window.of(w.as_of, cfg, 0), HoldoutSize(0, 0, 0, True, "holdout disabled")
    as_of_day = (w.as_of - EPOCH).days
    spans = holdout_span_range(cfg)
    first_lo, first_hi = as_of_day - spans[-1] + 1, as_of_day - spans[0] + 1
    per_day = sorted(
        (int(r["day"]), int(r["n"]))
        for r in iw.groupBy("day").agg(F.count("*").alias("n")).collect()
    )
    n_window = sum(n for _, n in per_day)

    u_first = iw.groupBy("user_id").agg(F.min("day").alias("uf"))
    i_first = iw.groupBy("item_id").agg(F.min("day").alias("if_"))
    known = known_items(inp, cfg)
    if known is not None:
        mapped = id_frame(spark, np.unique(known.astype(str)), "item").select(
            "item_id", F.lit(True).alias("mapped")
        )
        i_first = i_first.join(mapped, "item_id", "left").select(
            "item_id", F.when(F.col("mapped"), F.lit(ALWAYS)).otherwise(F.col("if_")).alias("if_")
        )
    hold = F.col("type_code").isin(*[TYPE_CODE[t] for t in cfg.holdout_event_types])
    pairs = (
        iw.groupBy("user_id", "item_id")
        .agg(F.min("day").alias("pf"), F.max(hold.cast("int")).alias("pos"))
        .filter(F.col("pos") > 0)
        .join(u_first, "user_id")
        .join(i_first, "item_id")
        # a pair counts for a holdout starting on day `first` when
        # max(user's first day, product's first day) < first <= the pair's first day
        .select(
            "user_id",
            F.greatest(F.greatest("uf", "if_") + 1, F.lit(first_lo)).alias("lo"),
            F.least(F.col("pf"), F.lit(first_hi)).alias("hi"),
        )
        .filter(F.col("lo") <= F.col("hi"))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )

    def share(first: int) -> float:
        return sum(n for d, n in per_day if d >= first) / max(n_window, 1)

    def holds(first: int) -> tuple[int, int]:
        # asked for one span at a time, as the rule grows it (most often once)
        row = (
            pairs.filter((F.col("lo") <= first) & (F.col("hi") >= first))
            .agg(F.countDistinct("user_id").alias("users"), F.count("*").alias("pairs"))
            .first()
        )
        return (int(row["users"]), int(row["pairs"])) if row is not None else (0, 0)

    try:
        return choose_holdout_span(w, cfg, share, holds)
    finally:
        pairs.unpersist()


def holdout_pairs_spark(
    iw: DataFrame,
    user_map: DataFrame,
    item_map: DataFrame,
    edges: DataFrame,
    w: Window,
    cfg: GraphConfig,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """:func:`recsys.graph.holdout.holdout_pairs` on Spark: the holdout days' unique pairs of a
    holdout type whose user has train edges and whose product is mapped, not in train."""
    F = spark_functions()
    hold_types = [TYPE_CODE[t] for t in cfg.holdout_event_types]
    active = edges.select("user_idx").distinct().select("user_idx", F.lit(True).alias("active"))
    in_train = edges.select("user_idx", "item_idx", F.lit(True).alias("in_train"))
    pairs = (
        iw.filter((F.col("ts_us") >= F.lit(w.holdout_us)) & F.col("type_code").isin(*hold_types))
        .select("user_id", "item_id")
        .distinct()
        .join(user_map, "user_id", "left")
        .join(item_map, "item_id", "left")
        .join(active, "user_idx", "left")
        .join(in_train, ["user_idx", "item_idx"], "left")
        .select(
            "user_idx",
            "item_idx",
            (F.col("user_idx").isNotNull() & F.col("active").isNotNull()).alias("known_user"),
            F.col("item_idx").isNotNull().alias("known_item"),
            F.col("in_train").isNotNull().alias("in_train"),
        )
    )
    keep = F.col("known_user") & F.col("known_item")
    row = pairs.agg(
        F.count("*").alias("candidates"),
        F.sum((~F.col("known_user")).cast("long")).alias("unknown_user"),
        F.sum((F.col("known_user") & ~F.col("known_item")).cast("long")).alias("unknown_item"),
        F.sum((keep & F.col("in_train")).cast("long")).alias("in_train"),
    ).first()
    assert row is not None
    kept = sorted_arrow(
        pairs.filter(keep & ~F.col("in_train")).select("user_idx", "item_idx"),
        ["user_idx", "item_idx"],
    )
    counts = {
        "holdout_candidate_pairs": int(row["candidates"]),
        "holdout_dropped_unknown_user": int(row["unknown_user"] or 0),
        "holdout_dropped_unknown_item": int(row["unknown_item"] or 0),
        "holdout_dropped_in_train": int(row["in_train"] or 0),
    }
    return (
        kept.column("user_idx").to_numpy().astype(np.int64),
        kept.column("item_idx").to_numpy().astype(np.int64),
        counts,
    )


def served_history_spark(
    spark: SparkSession,
    iw: DataFrame,
    user_map: DataFrame,
    item_map: DataFrame,
    n_users: int,
    w: Window,
    cfg: GraphConfig,
) -> ServedHistory:
    """:func:`recsys.graph.holdout.served_history` on Spark: every in-window event of a
    mapped product, users first seen in the holdout days indexed from ``n_users`` on in id
    order, weighed like the train edges."""
    F = spark_functions()
    h = iw.join(item_map, "item_id").join(user_map, "user_id", "left")
    extra_ids = np.sort(
        collect_strings(
            h.filter(F.col("user_idx").isNull()).select("user_id").distinct(), "user_id"
        )
    )
    extra = id_frame(spark, extra_ids, "user", first=n_users).withColumnRenamed(
        "user_idx", "extra_idx"
    )
    h = h.join(extra, "user_id", "left").withColumn(
        "su", F.coalesce(F.col("user_idx"), F.col("extra_idx"))
    )
    t = sorted_arrow(weighed(h, ["su", "item_idx"], w.cutoff_us, cfg), ["su", "item_idx"])
    return ServedHistory(
        user=t.column("su").to_numpy().astype(np.int64),
        item=t.column("item_idx").to_numpy().astype(np.int64),
        weight=t.column("weight").to_numpy().astype(np.float32),
        types=t.column("types").to_numpy().astype(np.int16),
        extra_user_ids=extra_ids.astype(str),
    )
