"""Run the gate's suites through a great-expectations ephemeral context.

One context per gate run; each table is a pandas dataframe asset with a
whole-dataframe batch definition, validated by a checkpoint whose action
updates a local Data Docs site (copied into the report artifact afterwards).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint.actions import UpdateDataDocsAction, ValidationAction
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from recsys.reports import Check
from recsys.validation.results import Stage
from recsys.validation.suites import Spec

SITE = "recsys"


def _fmt(value: Any, naive_is_local: bool = False) -> str:
    """A value as a report quotes it; ``naive_is_local``: a naive datetime is local time (how
    PySpark hands a Spark timestamp to Python) and is quoted in UTC like pandas' ones."""
    if value is None or value is pd.NaT:
        return "null"
    if naive_is_local and type(value) is dt.datetime and value.tzinfo is None:
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return "null"
    return str(value)


@contextmanager
def _batch_fingerprint(value: str | None) -> Iterator[None]:
    """Give GX the partition's content hash as its batch fingerprint.

    GX fingerprints a pandas batch by hashing the whole frame, which for 1M
    events costs more memory (~500 MiB) and time than all the checks; the gate
    already holds an exact fingerprint (the sha256 of the Parquet files the
    frame came from). The hook is GX's module-level function; if a GX release
    renames it, GX simply hashes the frame again.
    """
    import great_expectations.execution_engine.pandas_execution_engine as engine

    original = getattr(engine, "hash_pandas_dataframe", None)
    if value is None or original is None:
        yield
        return
    setattr(engine, "hash_pandas_dataframe", lambda df: value)  # noqa: B010
    try:
        yield
    finally:
        setattr(engine, "hash_pandas_dataframe", original)  # noqa: B010


class GxRunner:
    """An ephemeral GX context with a Data Docs site in ``docs_dir`` (if given); its data
    source is ``pandas`` (pandas DataFrames) or ``spark`` (Spark DataFrames, validated by
    GX's Spark execution engine where the data is)."""

    def __init__(
        self, docs_dir: Path | None, run_name: str, examples: int = 5, source: str = "pandas"
    ) -> None:
        sites: dict[str, Any] = {}
        if docs_dir is not None:
            sites[SITE] = {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            data_docs_sites=sites,
            # GX's per-metric bars would drown the gate's own output
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        if source == "spark":
            self.source: Any = self.context.data_sources.add_spark("lake")
        else:
            self.source = self.context.data_sources.add_pandas("lake")
        self.fingerprints = source == "pandas"
        self.docs = docs_dir is not None
        self.examples = examples
        self.run_name = run_name

    def run(
        self,
        asset: str,
        df: Any,
        specs: Sequence[Spec],
        stage: Stage,
        fingerprint: str | None = None,
    ) -> list[Check]:
        """Validate ``df`` (a DataFrame of the runner's source) against ``specs``; one result
        per spec, in order.

        ``fingerprint`` identifies the data (e.g. the hash of its files); without it
        GX hashes a pandas frame.
        """
        if not specs:
            return []
        batch_def = self.source.add_dataframe_asset(asset).add_batch_definition_whole_dataframe(
            f"{asset}-partition"
        )
        suite = self.context.suites.add(gx.ExpectationSuite(name=asset))
        for spec in specs:
            suite.add_expectation(spec.with_meta())
        vd = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=asset, data=batch_def, suite=suite)
        )
        actions: list[ValidationAction] = []
        if self.docs:
            actions.append(UpdateDataDocsAction(name="data_docs", site_names=[SITE]))
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=f"gate-{asset}",
                validation_definitions=[vd],
                actions=actions,
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
            )
        )
        with _batch_fingerprint(fingerprint if self.fingerprints else None):
            result = checkpoint.run(
                batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=self.run_name)
            )
        by_name: dict[str, Check] = {}
        for vr in result.run_results.values():
            for r in vr.results:
                cfg = r.expectation_config
                meta = (cfg.meta or {}) if cfg is not None else {}
                by_name[str(meta.get("check"))] = Check(
                    name=str(meta.get("check")),
                    table=str(meta.get("table")),
                    column=str(meta.get("column")),
                    rule=str(meta.get("rule")),
                    observed=self._observed(r.result, r.exception_info),
                    status="passed" if r.success else "failed",
                    stage=stage,
                    expectation=cfg.type if cfg is not None else None,
                )
        return [by_name[s.name] for s in specs]

    def _observed(self, res: dict[str, Any], exc: Any) -> str:
        raised = [
            v for v in (exc.values() if isinstance(exc, dict) else [])
            if isinstance(v, dict) and v.get("raised_exception")
        ]  # fmt: skip
        if isinstance(exc, dict) and exc.get("raised_exception"):
            raised.append(exc)
        if raised:
            return f"error: {str(raised[0].get('exception_message', 'unknown'))[:300]}"
        bad = int(res.get("unexpected_count") or 0)
        total = int(res.get("element_count") or 0)
        text = f"{bad} of {total} rows"
        seen: list[str] = []
        for v in res.get("partial_unexpected_list") or []:
            s = _fmt(v, naive_is_local=not self.fingerprints)
            if s not in seen:
                seen.append(s)
        if seen and seen != ["null"]:
            text += f", e.g. {seen[: self.examples]}"
        return text
