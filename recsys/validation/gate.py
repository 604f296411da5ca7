"""The data-quality gate (gate 1 of DESIGN.md): ``recsys validate --lake L --date D``.

It reads the events partition of ``D`` and the users/items snapshots of that
day as written (no casting), checks the schema on Arrow, runs the GX suites
per table and the cross-partition checks, and publishes a report artifact
(``report.json``, the :class:`~recsys.reports.GateReport` of every check, and Data Docs)
even when checks fail, because the report is what a person reads. Then it raises
:class:`~recsys.errors.GateFailed` listing each failed check, or returns the
:class:`GateResult`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from recsys.artifacts import InputRef
from recsys.data.lake import (
    latest_partition_on_or_before,
    partition_files,
    partition_uri,
    read_partition,
)
from recsys.data.schema import EVENTS, ITEMS, KEYS, USERS
from recsys.errors import GateFailed, InputError
from recsys.logs import get_logger
from recsys.reports import VALIDATION, Check, report_uri, write_gate_report
from recsys.storage import join
from recsys.validation import cross
from recsys.validation.config import ValidationConfig
from recsys.validation.partition import Engine, Partition, content_hash
from recsys.validation.results import GateResult
from recsys.validation.schema_check import check_schema

if TYPE_CHECKING:
    # great-expectations takes seconds to import: only once the inputs have been read,
    # so a missing or corrupt partition is reported at once
    from recsys.validation.gx_runner import GxRunner
    from recsys.validation.suites import Spec

__all__ = ["GateResult", "ValidationConfig", "default_report_uri", "run_gate"]

log = get_logger(__name__)
REPORT_KIND = "validation_report"


def default_report_uri(lake: str, day: dt.date) -> str:
    """Where the validation report of ``day`` lives unless told otherwise."""
    return report_uri(lake, VALIDATION, day)


def _load(lake: str, table: str, day: dt.date) -> tuple[pa.Table, list[str]]:
    files = partition_files(lake, table, day)  # InputError when missing or without files
    data = read_partition(lake, table, day)  # InputError naming a corrupt file
    if data.num_rows == 0:
        raise InputError(f"{', '.join(files)}: empty {table} partition (0 rows)")
    return data, files


class LocalEngine:
    """The gate's reads and figures on this machine: Arrow tables, pandas for GX."""

    name = "local"
    gx_source = "pandas"

    def load(self, lake: str, table: str, day: dt.date) -> Partition:
        data, files = _load(lake, table, day)
        return Partition(
            table, day, data, files, set(), content_hash(files), data.schema, data.num_rows
        )

    def frame(self, part: Partition) -> Any:
        return _to_pandas(part) if part.usable else pd.DataFrame()

    def table(self, df: pd.DataFrame) -> Any:
        return df

    def unknown_ids(
        self, ev: Partition, col: str, dim: Partition, tol: float, cfg: ValidationConfig
    ) -> cross.Metric:
        assert ev.data is not None and dim.data is not None
        known = dim.data.column(col).combine_chunks()
        return cross.unknown_ids(ev.data, col, known, dim.table, dim.day, tol, cfg)

    def duplicate_rate(self, ev: Partition, cfg: ValidationConfig) -> cross.Metric:
        assert ev.data is not None
        return cross.duplicate_rate(ev.data, cfg)

    def history(self, lake: str, day: dt.date, cfg: ValidationConfig) -> cross.History:
        return cross.read_history(lake, day, cfg)

    def mix_drift(
        self, ev: Partition, hist: cross.History, cfg: ValidationConfig
    ) -> cross.Metric | Check:
        assert ev.data is not None
        return cross.mix_drift(ev.data.column("event_type"), hist, cfg)


def _snapshot_day(lake: str, table: str, day: dt.date) -> dt.date:
    found = latest_partition_on_or_before(lake, table, day)
    if found is None:
        raise InputError(
            f"{join(lake, table)}: no {table} partition on or before {day.isoformat()}"
        )
    return found


def _skipped(spec: Spec, missing: set[str]) -> Check:
    return Check(
        name=spec.name, table=spec.table, column=spec.column, rule=spec.rule,
        observed="n/a", status="skipped",
        note=f"skipped: column(s) {', '.join(sorted(missing))} failed the schema check",
        expectation=spec.expectation.expectation_type,
    )  # fmt: skip


def _to_pandas(part: Partition) -> pd.DataFrame:
    """The usable columns as pandas, repeated strings (ids, event types) as categoricals.

    Conditional checks filter the whole frame; on category codes that is much
    cheaper than on Arrow-backed strings. The table's own key stays a string
    column: it is meant to be unique, and a categorical with a million
    categories costs ~5x the memory of the strings themselves.
    """
    assert part.data is not None
    data = part.data.select(sorted(part.usable))
    cols = {}
    for name in data.column_names:
        col = data.column(name)
        if name != KEYS[part.table] and (
            pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        ):
            col = col.dictionary_encode()
        cols[name] = col
    return pa.table(cols).to_pandas()


def _run_table(gx_run: GxRunner, engine: Engine, part: Partition, specs: list[Spec]) -> list[Check]:
    runnable = [s for s in specs if set(s.needs) <= part.usable]
    df = engine.frame(part)
    ran = {c.name: c for c in gx_run.run(part.table, df, runnable, "gx", part.sha256)}
    return [
        ran[s.name] if s.name in ran else _skipped(s, set(s.needs) - part.usable) for s in specs
    ]


def _cross_checks(
    gx_run: GxRunner, engine: Engine, lake: str, ev: Partition, users: Partition, items: Partition,
    cfg: ValidationConfig,
) -> list[Check]:  # fmt: skip
    from recsys.validation.suites import metric_spec

    figures: list[cross.Metric | Check] = []
    for col, dim, tol in (
        ("user_id", users, cfg.max_unknown_user_rate),
        ("item_id", items, cfg.max_unknown_item_rate),
    ):
        rule = f"share of {col} not in {dim.table} dt={dim.day.isoformat()} <= {tol:g}"
        if col in ev.usable and col in dim.usable:
            figures.append(engine.unknown_ids(ev, col, dim, tol, cfg))
        else:
            figures.append(_cross_skip(f"events.{col}.known_in_{dim.table}", col, rule))
    if set(cross.DUP_KEY) <= ev.usable:
        figures.append(engine.duplicate_rate(ev, cfg))
    else:
        figures.append(_cross_skip("events.*.duplicate_rate", "*", "duplicate rate"))
    for dim in (users, items):
        figures.append(cross.freshness(dim.table, dim.day, ev.day, cfg))
    history = engine.history(lake, ev.day, cfg)
    figures.append(cross.volume(ev.rows, history, cfg))
    if "event_type" in ev.usable:
        figures.append(engine.mix_drift(ev, history, cfg))
    metrics = [f for f in figures if isinstance(f, cross.Metric)]
    specs = [
        metric_spec(m.name, m.table, m.column, m.rule, m.metric, m.low, m.high) for m in metrics
    ]
    df = engine.table(pd.DataFrame({m.metric: [m.value] for m in metrics}))
    ran = {c.name: c for c in gx_run.run("cross_partition", df, specs, "cross")}
    out: list[Check] = []
    for f in figures:
        if isinstance(f, Check):
            out.append(f)
        else:  # GX gives the verdict; the observed text carries the context it lacks
            out.append(ran[f.name].model_copy(update={"observed": f.observed}))
    return out


def _cross_skip(name: str, column: str, rule: str) -> Check:
    return Check(
        name=name, table=EVENTS, column=column, rule=rule, observed="n/a",
        status="skipped", note="skipped: a column it needs failed the schema check", stage="cross",
    )  # fmt: skip


def _publish(
    uri: str, result: GateResult, parts: list[Partition], docs: Path | None, cfg: ValidationConfig
) -> None:
    config = cfg.model_dump(mode="json")
    write_gate_report(
        uri,
        result.gate_report(config),
        kind=REPORT_KIND,
        docs=docs,
        inputs={
            p.table: InputRef(uri=partition_uri(result.lake, p.table, p.day), sha256=p.sha256)
            for p in parts
        },
        counts={f"rows_{k}": v for k, v in result.counts.items()},
        config=config,
        extra={"date": result.day.isoformat()},
    )


class _Stages:
    """A progress bar over the gate's stages that also logs how long each took."""

    def __init__(self, day: dt.date) -> None:
        self.bar = tqdm(total=9, desc=f"validate {day.isoformat()}", unit="stage", disable=None)
        self.last = time.perf_counter()
        self.took: dict[str, float] = {}

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.took[stage] = round(now - self.last, 2)
        self.last = now
        self.bar.update()

    def close(self) -> None:
        self.bar.close()
        log.info("validation stages (s): %s", self.took)


def run_gate(
    lake: str,
    day: dt.date,
    report: str | None,
    config: ValidationConfig | None = None,
    engine: str = "local",
    spark: Any = None,
) -> GateResult:
    """Validate ``day``'s partitions of ``lake``; publish the report; raise GateFailed on failure.

    ``engine`` ``spark`` reads the partitions and computes the cross-partition figures
    with Spark and runs the same suites through GX's Spark data source (``spark``: the
    session; default the active one, else local mode): the same checks, the same
    messages, the same report.

    Raises :class:`InputError` (exit 2) when a partition is missing, empty or
    unreadable, naming it, and :class:`GateFailed` (exit 1) after writing the
    report when any check fails.
    """
    cfg = config or ValidationConfig()
    report_uri = report or default_report_uri(lake, day)
    runs: Engine
    if engine == "spark":
        from recsys.validation.spark_gate import SparkEngine

        runs = SparkEngine(spark)
    elif engine == "local":
        runs = LocalEngine()
    else:
        raise InputError(f"--engine {engine!r}: expected local or spark")
    steps = _Stages(day)
    parts: list[Partition] = []
    checks: list[Check] = []
    for table, part_day in (
        (EVENTS, day),
        (USERS, _snapshot_day(lake, USERS, day)),
        (ITEMS, _snapshot_day(lake, ITEMS, day)),
    ):
        part = runs.load(lake, table, part_day)
        files = part.files
        found, part.usable = check_schema(
            table, part.schema, files[0] if len(files) == 1 else table
        )
        checks += found
        parts.append(part)
        steps.done(f"read {table}")
    from recsys.validation import suites
    from recsys.validation.gx_runner import GxRunner

    ev, users, items = parts
    _, end = suites.day_bounds(day)
    cutoff = end
    if cfg.max_future_skew_hours is not None:
        cutoff = min(end, dt.datetime.now(dt.UTC) + dt.timedelta(hours=cfg.max_future_skew_hours))
    notes = []
    for p in (users, items):
        if p.day != day:
            notes.append(f"{p.table}: no partition for {day}, used the snapshot dt={p.day}")
    with tempfile.TemporaryDirectory(prefix="recsys-gx-") as tmp:
        docs = Path(tmp) / "docs" if cfg.data_docs else None
        gx_run = GxRunner(docs, f"dt={day.isoformat()}", cfg.examples, source=runs.gx_source)
        steps.done("start great-expectations")
        checks += _run_table(gx_run, runs, ev, suites.events_specs(cfg, day, cutoff))
        steps.done("events suite")
        checks += _run_table(gx_run, runs, users, suites.users_specs(cfg, day))
        checks += _run_table(gx_run, runs, items, suites.items_specs(cfg, day))
        steps.done("users and items suites")
        checks += _cross_checks(gx_run, runs, lake, ev, users, items, cfg)
        steps.done("cross-partition checks")
        notes += [f"{c.name}: {c.note}" for c in checks if c.skipped and c.note]
        result = GateResult(
            lake=lake,
            day=day,
            checks=checks,
            counts={p.table: p.rows for p in parts},
            notes=notes,
            report=report_uri,
        )
        if docs is not None and not (docs / "index.html").is_file():
            docs = None  # GX wrote no site (nothing ran); the report still has report.json
        _publish(report_uri, result, parts, docs, cfg)
        steps.done("report")
    steps.close()
    result.timings = steps.took
    log.info(
        "validation %s (%s engine): %d checks, %d failed",
        day,
        runs.name,
        len(checks),
        len(result.failed),
    )
    if not result.passed:
        raise GateFailed("validation", result.failure_lines(), report=report_uri)
    return result
