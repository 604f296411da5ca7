"""``recsys build-graph --engine spark``: the graph build with its event-scale stages on Spark.

The same stages as :func:`recsys.graph.build.build`, the same definitions, the same
artifact. What grows with the events runs on the cluster: reading and hashing the
window's partitions, the point-in-time split, the holdout sizing, the distinct users and
products that extend the id maps, the per-event weights (:func:`~recsys.graph.weights.
event_weights` and :func:`~recsys.graph.weights.saturate` on Spark Columns through
:data:`~recsys.graph.spark_ops.SPARK`) summed per pair, the behavioural node counts, the
holdout pairs and the served history. What the snapshot holds whole (id maps, edges,
feature matrices: what training loads into memory) is collected to the driver as Arrow
and finished by the very functions the local build uses: :func:`~recsys.graph.idmap.
extend_ids` (previous map + new ids appended in sorted order), :func:`~recsys.graph.nodes.
encode_features`, :func:`~recsys.graph.holdout.choose_holdout_span` (the sizing rule) and
:func:`~recsys.graph.publish.gate_and_publish` (the graph gate and
:func:`~recsys.graph.snapshot.write_snapshot`). So training, export and serving cannot
tell which engine built a snapshot; its manifest says so (``extra.engine = "spark"``).

The driver's memory grows with the snapshot (users, products, edges), not with the events.
"""

from __future__ import annotations

import datetime as dt
from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.artifacts import InputRef
from recsys.data.lake import partition_files, partition_uri
from recsys.data.schema import EVENT_TYPES, EVENTS
from recsys.errors import InputError
from recsys.graph.config import GraphConfig
from recsys.graph.idmap import check_prefix, extend_ids
from recsys.graph.inputs import EVENT_COLUMNS, Events, partition_sha256
from recsys.graph.nodes import NodeCounts, encode_features
from recsys.graph.publish import Built, StageTimer, gate_and_publish
from recsys.graph.snapshot import snapshot_uri
from recsys.graph.spark_frames import (
    collect_strings,
    id_frame,
    scatter,
    sorted_arrow,
    spark_functions,
    weighed,
)
from recsys.graph.spark_holdout import (
    holdout_pairs_spark,
    served_history_spark,
    size_holdout_spark,
)
from recsys.graph.weights import PURCHASE_CODE, US_PER_DAY
from recsys.graph.window import (
    Window,
    point_in_time_failed,
    read_context,
    window_partitions,
)
from recsys.spark import file_hashes, get_spark, parquet_schema, read_parquet, spark_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ENGINE = "spark"


def read_events_spark(
    spark: SparkSession, lake: str, days: list[dt.date]
) -> tuple[DataFrame, dict[str, InputRef], int]:
    """The window's events as a DataFrame ``user_id, item_id, type_code, value, ts_us``, the
    partitions' refs (hashed where the files are) and the number of events; the reader's
    rules of :func:`recsys.graph.inputs.read_events` with its messages."""
    F = spark_functions()
    files = {d: partition_files(lake, EVENTS, d) for d in days}
    digests = file_hashes(spark, [f for fs in files.values() for f in fs])
    refs: dict[str, InputRef] = {}
    frames = []
    for day, uris in files.items():
        ref = InputRef(
            uri=partition_uri(lake, EVENTS, day),
            sha256=partition_sha256([(u, digests[u]) for u in uris]),
        )
        refs[f"{EVENTS}/dt={day.isoformat()}"] = ref
        df = read_parquet(spark, uris, parquet_schema(uris)[0])
        missing = [c for c in EVENT_COLUMNS if c not in df.columns]
        if missing:
            raise InputError(f"{ref.uri}: missing column(s) {', '.join(missing)}")
        frames.append(
            df.select(
                F.lit(day.isoformat()).alias("dt"),
                F.col("user_id").cast("string").alias("user_id"),
                F.col("item_id").cast("string").alias("item_id"),
                F.col("event_type").cast("string").alias("event_type"),
                F.col("value").cast("double").alias("value"),
                F.col("ts").cast("timestamp").alias("ts"),
            )
        )
    raw = reduce(lambda a, b: a.unionByName(b), frames)
    known = F.col("event_type").isin(*EVENT_TYPES)
    per_day = (
        raw.groupBy("dt")
        .agg(
            F.count("*").alias("rows"),
            F.array_sort(F.collect_set(F.when(~known, F.col("event_type")))).alias("unknown"),
            F.sum(F.col("event_type").isNull().cast("long")).alias("null_types"),
            F.sum(F.col("ts").isNull().cast("long")).alias("null_ts"),
            F.sum(F.col("user_id").isNull().cast("long")).alias("null_users"),
            F.sum(F.col("item_id").isNull().cast("long")).alias("null_items"),
        )
        .collect()
    )
    found = {str(r["dt"]): r for r in per_day}
    for day in days:
        r = found.get(day.isoformat())
        if r is None:
            continue
        uri = refs[f"{EVENTS}/dt={day.isoformat()}"].uri
        unknown = sorted([str(v) for v in r["unknown"]] + (["None"] if r["null_types"] else []))
        if unknown:
            raise InputError(
                f"{uri}: column event_type: unknown value(s) {unknown}, allowed {list(EVENT_TYPES)}"
            )
        if r["null_ts"]:
            raise InputError(f"{uri}: column ts: {r['null_ts']} null timestamp(s)")
    for col in ("user", "item"):
        nulls = sum(int(r[f"null_{col}s"]) for r in per_day)
        if nulls:
            raise InputError(f"events.{col}_id: {nulls} null value(s), ids must be non-null")
    codes = F.create_map(*[x for i, t in enumerate(EVENT_TYPES) for x in (F.lit(t), F.lit(i))])
    events = raw.select(
        "user_id",
        "item_id",
        codes[F.col("event_type")].cast("int").alias("type_code"),
        "value",
        F.unix_micros("ts").alias("ts_us"),
    )
    return events, refs, sum(int(r["rows"]) for r in per_day)


def build_spark(
    lake: str,
    as_of: dt.date,
    cfg: GraphConfig,
    out: str,
    report: str | None = None,
    spark: SparkSession | None = None,
    _before_publish: Any = None,
) -> str:
    """:func:`recsys.graph.build.build` on Spark: the same snapshot at ``out``."""
    from pyspark import StorageLevel

    F = spark_functions()
    tick = StageTimer(as_of)
    w = Window.of(as_of, cfg, cfg.holdout_max_days)
    days = window_partitions(lake, w)  # bad input fails before a JVM starts
    spark_path(lake)
    spark = spark or get_spark()
    events, refs, events_read = read_events_spark(spark, lake, days)
    tick("read %d events", events_read)
    inp = read_context(lake, w, out, Events.empty(), refs)
    cached: list[DataFrame] = []
    try:
        # every later stage reads the window's events: kept (memory, then local disk)
        in_window = (F.col("ts_us") >= F.lit(w.start_us)) & (F.col("ts_us") < F.lit(w.cutoff_us))
        iw = events.filter(in_window).withColumn(
            "day", F.floor(F.col("ts_us") / F.lit(US_PER_DAY)).cast("long")
        )
        iw = iw.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(iw)
        w, size = size_holdout_spark(spark, iw, inp, w, cfg)
        tick("holdout: %d day(s) from %s; %s", size.span, w.holdout_start, size.why)

        is_train = F.col("ts_us") < F.lit(w.holdout_us)
        split = iw.agg(
            F.count("*").alias("in_window"),
            F.sum(is_train.cast("long")).alias("train"),
            F.sum((~is_train).cast("long")).alias("hold"),
            F.max(F.when(is_train, F.col("ts_us"))).alias("train_max"),
            F.max(F.when(~is_train, F.col("ts_us"))).alias("hold_max"),
        ).first()
        assert split is not None
        # the independent point-in-time check (the filters exclude such events by construction)
        for what, latest, limit in (
            ("train", split["train_max"], w.holdout_us),
            ("holdout", split["hold_max"], w.cutoff_us),
        ):
            if latest is not None and int(latest) >= limit:
                late = iw.filter(
                    (is_train if what == "train" else ~is_train) & (F.col("ts_us") >= F.lit(limit))
                ).count()
                point_in_time_failed(late, int(latest), limit, what)
        train = iw.filter(is_train)

        # stage 4: id maps (the previous map + this window's new ids, appended sorted)
        seen_items = collect_strings(train.select("item_id").distinct(), "item_id")
        if cfg.include_catalog_items and inp.items is not None:
            seen_items = np.concatenate([seen_items, inp.items["item_id"].to_numpy(dtype=object)])
        user_ids = extend_ids(
            inp.prev_users, collect_strings(train.select("user_id").distinct(), "user_id")
        )
        item_ids = extend_ids(inp.prev_items, seen_items)
        if inp.prev_users is not None and inp.prev_items is not None:
            check_prefix(inp.prev_users, user_ids, "user")
            check_prefix(inp.prev_items, item_ids, "item")
        n_users, n_items = len(user_ids), len(item_ids)
        tick("id maps: %d users, %d items", n_users, n_items)
        user_map = id_frame(spark, user_ids, "user")
        item_map = id_frame(spark, item_ids, "item")

        # stage 5: train edges
        tj = (
            train.join(user_map, "user_id")
            .join(item_map, "item_id")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        cached.append(tj)
        edges_df = weighed(tj, ["user_idx", "item_idx"], w.cutoff_us, cfg).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        cached.append(edges_df)
        edges = sorted_arrow(edges_df, ["user_idx", "item_idx"])
        eu = edges.column("user_idx").to_numpy().astype(np.int64)
        ei = edges.column("item_idx").to_numpy().astype(np.int64)
        tick("aggregated %d train events into %d edges", int(split["train"] or 0), len(eu))

        # stage 6: node features from the train period's counts
        purchase = (F.col("type_code") == PURCHASE_CODE).cast("long")
        per_user = (
            tj.groupBy("user_idx")
            .agg(
                F.count("*").alias("n"),
                F.sum(purchase).alias("p"),
                F.max("ts_us").alias("last"),
            )
            .toArrow()
        )
        per_item = (
            tj.groupBy("item_idx")
            .agg(F.count("*").alias("n"), F.sum(purchase).alias("p"))
            .toArrow()
        )
        type_rows = tj.groupBy("type_code").agg(F.count("*").alias("n")).collect()
        type_counts = np.zeros(len(EVENT_TYPES), np.int64)
        for r in type_rows:
            type_counts[int(r["type_code"])] = int(r["n"])
        ux = per_user.column("user_idx").to_numpy().astype(np.int64)
        ix = per_item.column("item_idx").to_numpy().astype(np.int64)
        counts = NodeCounts(
            user_events=scatter(n_users, ux, per_user.column("n")),
            user_purchases=scatter(n_users, ux, per_user.column("p")),
            user_last_us=scatter(n_users, ux, per_user.column("last"), float_nan=True),
            item_events=scatter(n_items, ix, per_item.column("n")),
            item_users=np.bincount(ei, minlength=n_items),
            item_purchases=scatter(n_items, ix, per_item.column("p")),
        )
        feats = encode_features(inp, user_ids, item_ids, w, cfg, counts)
        tick("features: users %s, items %s", feats.user_x.shape, feats.item_x.shape)

        hu, hi, hcounts = holdout_pairs_spark(iw, user_map, item_map, edges_df, w, cfg)
        served = served_history_spark(spark, iw, user_map, item_map, n_users, w, cfg)
        tick(
            "served history: %d edges, %d user(s) first seen in the holdout days",
            len(served.user),
            len(served.extra_user_ids),
        )
        built = Built(
            lake=lake,
            out=out,
            cfg=cfg,
            w=w,
            size=size,
            inp=inp,
            user_ids=user_ids,
            item_ids=item_ids,
            edge_user=eu,
            edge_item=ei,
            edge_weight=edges.column("weight").to_numpy().astype(np.float32),
            edge_types=edges.column("types").to_numpy().astype(np.int16),
            type_counts=type_counts,
            feats=feats,
            holdout_user=hu,
            holdout_item=hi,
            holdout_counts=hcounts,
            served=served,
            events_read=events_read,
            events_in_window=int(split["in_window"]),
            train_events=int(split["train"] or 0),
            holdout_events=int(split["hold"] or 0),
            extra={"engine": ENGINE},
        )
    finally:
        for df in cached:
            df.unpersist()
    return gate_and_publish(built, tick, report, _before_publish)


def build_snapshot_spark(
    lake: str,
    as_of: dt.date,
    config: GraphConfig | None = None,
    out: str | None = None,
    report: str | None = None,
    spark: SparkSession | None = None,
) -> str:
    """:func:`recsys.graph.build.build_snapshot` on Spark."""
    return build_spark(
        lake,
        as_of,
        config or GraphConfig(),
        out or snapshot_uri(lake, as_of),
        report=report,
        spark=spark,
    )
