"""Checks that look beyond one table: referential integrity, duplicates, volume and mix drift.

The figures are computed here with pyarrow (vectorised, cheap on millions of
rows); great-expectations then checks each against its bounds on a one-row
metrics table, so they appear in the same result and Data Docs as the rest.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.data.lake import list_partitions, partition_files
from recsys.data.schema import EVENTS
from recsys.errors import InputError
from recsys.reports import Check
from recsys.storage import get_fs
from recsys.validation.config import ValidationConfig


@dataclass(frozen=True)
class Metric:
    """A figure with its bounds; ``metric`` names its column in the metrics table."""

    name: str
    table: str
    column: str
    rule: str
    metric: str
    value: float
    low: float | None
    high: float | None
    observed: str


def _examples(values: pa.Array, n: int) -> list[str]:
    return [str(v) for v in pc.unique(values).slice(0, n).to_pylist()]


def unknown_ids(
    events: pa.Table, column: str, known: pa.Array, dim: str, dim_day: dt.date,
    tolerance: float, cfg: ValidationConfig,
) -> Metric:  # fmt: skip
    """Share of events whose ``column`` is not in the dimension table ``dim`` of ``dim_day``."""
    ids = events.column(column)
    present = pc.drop_null(ids)
    known_set = pc.unique(pc.drop_null(known)).cast(present.type)
    unknown = pc.filter(present, pc.invert(pc.is_in(present, value_set=known_set)))
    eg = _examples(unknown.combine_chunks() if isinstance(unknown, pa.ChunkedArray) else unknown,
                   cfg.examples)  # fmt: skip
    return unknown_ids_metric(column, dim, dim_day, tolerance, len(unknown), len(present), eg)


def unknown_ids_metric(
    column: str, dim: str, dim_day: dt.date, tolerance: float, n_unknown: int, total: int,
    examples: list[str],
) -> Metric:  # fmt: skip
    """The unknown-ids figure from its counts (either engine): ``n_unknown`` of ``total``
    non-null ids not in ``dim``, ``examples`` the first distinct ones in row order."""
    rate = n_unknown / total if total else 0.0
    observed = f"rate {rate:.4g} ({n_unknown} of {total} events)"
    if examples:
        observed += f", e.g. {examples}"
    return Metric(
        f"events.{column}.known_in_{dim}", EVENTS, column,
        f"share of {column} not in {dim} dt={dim_day.isoformat()} <= {tolerance:g}",
        f"unknown_{column}_rate", rate, 0.0, tolerance, observed,
    )  # fmt: skip


def freshness(table: str, part_day: dt.date, day: dt.date, cfg: ValidationConfig) -> Metric:
    """Age in days of the dimension snapshot the gate read (the latest partition on or before
    ``day``): a table that stopped being updated must say so, not be read silently."""
    limit = cfg.max_dimension_age_days[table]
    age = (day - part_day).days
    return Metric(
        f"{table}.dt.freshness", table, "dt",
        f"latest partition at most {limit} day(s) older than {day.isoformat()}",
        f"{table}_age_days", float(age), 0.0, float(limit),
        f"latest partition dt={part_day.isoformat()}: {age} day(s) old",
    )  # fmt: skip


DUP_KEY = ("user_id", "item_id", "event_type", "ts")


def duplicate_rate(events: pa.Table, cfg: ValidationConfig) -> Metric:
    """Share of rows that repeat an earlier row's (user_id, item_id, event_type, ts)."""
    groups = events.select(list(DUP_KEY)).group_by(list(DUP_KEY)).aggregate([([], "count_all")])
    n = events.num_rows
    eg: list[str] = []
    if n - groups.num_rows:
        repeated = groups.filter(pc.greater(groups.column("count_all"), 1)).slice(0, cfg.examples)
        eg = [dup_example([r[k] for k in DUP_KEY]) for r in repeated.to_pylist()]
    return duplicate_metric(n, groups.num_rows, eg, cfg)


def dup_example(key: list[object]) -> str:
    """One repeated key as the report quotes it."""
    return "(" + ", ".join(str(v) for v in key) + ")"


def duplicate_metric(n: int, distinct: int, examples: list[str], cfg: ValidationConfig) -> Metric:
    """The duplicate-rate figure from its counts (either engine): ``n`` rows holding
    ``distinct`` keys, ``examples`` the first repeated keys."""
    dups = n - distinct
    rate = dups / n if n else 0.0
    observed = f"rate {rate:.4g} ({dups} repeated rows of {n})"
    if dups:
        observed += f", e.g. {examples}"
    return Metric(
        "events.*.duplicate_rate", EVENTS, "(" + ",".join(DUP_KEY) + ")",
        f"duplicate rate <= {cfg.max_duplicate_rate:g}",
        "duplicate_rate", rate, 0.0, cfg.max_duplicate_rate, observed,
    )  # fmt: skip


@dataclass
class History:
    """Row counts and event-type counts of the trailing events partitions."""

    days: list[dt.date]
    rows: list[int]
    mix: dict[str, int]


def _open_parquet(uri: str) -> pq.ParquetFile:
    fs, path = get_fs(uri)
    try:
        return pq.ParquetFile(fs.open(path, "rb"))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{uri}: unreadable Parquet file ({exc})") from None


def read_history(lake: str, day: dt.date, cfg: ValidationConfig) -> History:
    """The trailing ``history_days`` events partitions before ``day`` (those that exist)."""
    first = day - dt.timedelta(days=cfg.history_days)
    days = [d for d in list_partitions(lake, EVENTS) if first <= d < day]
    rows: list[int] = []
    mix: dict[str, int] = {}
    for d in days:
        count = 0
        for uri in partition_files(lake, EVENTS, d):
            pf = _open_parquet(uri)
            count += pf.metadata.num_rows
            if "event_type" not in pf.schema_arrow.names:
                continue
            try:
                col = pf.read(columns=["event_type"]).column("event_type")
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise InputError(f"{uri}: unreadable Parquet file ({exc})") from None
            for vc in pc.value_counts(col).to_pylist():
                key = str(vc["values"])
                mix[key] = mix.get(key, 0) + int(vc["counts"])
        rows.append(count)
    return History(days, rows, mix)


def _skipped(name: str, column: str, rule: str, why: str) -> Check:
    return Check(
        name=name, table=EVENTS, column=column, rule=rule, observed="n/a",
        status="skipped", note=why, stage="cross",
    )  # fmt: skip


def volume(n_rows: int, hist: History, cfg: ValidationConfig) -> Metric | Check:
    rule = (
        f"row count within {cfg.volume_min_ratio:g}x-{cfg.volume_max_ratio:g}x "
        f"of the trailing {cfg.history_days}-day median"
    )
    if len(hist.days) < cfg.min_history_days:
        return _skipped(
            "events.*.volume", "*", rule,
            f"skipped: {len(hist.days)} trailing partition(s), {cfg.min_history_days} needed",
        )  # fmt: skip
    median = statistics.median(hist.rows)
    ratio = n_rows / median if median else float("inf")
    observed = f"{n_rows} rows = {ratio:.3g}x the median {median:g} of {len(hist.days)} day(s)"
    return Metric(
        "events.*.volume", EVENTS, "*", rule, "volume_ratio", ratio,
        cfg.volume_min_ratio, cfg.volume_max_ratio, observed,
    )  # fmt: skip


def mix_drift(types: pa.ChunkedArray, hist: History, cfg: ValidationConfig) -> Metric | Check:
    """Total variation distance between today's event-type shares and the trailing days'."""
    today = {str(v["values"]): int(v["counts"]) for v in pc.value_counts(types).to_pylist()}
    return mix_drift_of(today, hist, cfg)


def mix_drift_of(today: dict[str, int], hist: History, cfg: ValidationConfig) -> Metric | Check:
    """:func:`mix_drift` from today's counts per event type (either engine)."""
    rule = f"event-type mix total variation distance vs trailing days <= {cfg.max_mix_tvd:g}"
    if len(hist.days) < cfg.min_history_days or not hist.mix:
        return _skipped(
            "events.event_type.mix_drift", "event_type", rule,
            f"skipped: {len(hist.days)} trailing partition(s), {cfg.min_history_days} needed",
        )  # fmt: skip
    n_today, n_hist = sum(today.values()), sum(hist.mix.values())
    keys = sorted(set(today) | set(hist.mix))
    p = {k: today.get(k, 0) / n_today for k in keys}
    q = {k: hist.mix.get(k, 0) / n_hist for k in keys}
    tvd = 0.5 * sum(abs(p[k] - q[k]) for k in keys)
    worst = max(keys, key=lambda k: abs(p[k] - q[k]))
    observed = f"tvd {tvd:.4g}; largest shift {worst} {q[worst]:.3f} -> {p[worst]:.3f}"
    return Metric(
        "events.event_type.mix_drift", EVENTS, "event_type", rule, "mix_tvd", tvd,
        0.0, cfg.max_mix_tvd, observed,
    )  # fmt: skip
