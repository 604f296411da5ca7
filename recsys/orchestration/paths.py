"""The one place where artifact URIs are derived from a run's day.

Every task of the retrain DAG asks :func:`run_paths` for its inputs and outputs,
so a rerun for the same logical date writes to the same places (overwriting,
never duplicating) and no task reads the wall clock.

Bundles are the exception to "a rerun overwrites": the registry pins the
manifest hash of the bundle it serves, so a bundle folder must never change
once written. Each bundle lives under its version (:func:`bundle_uri`), which
is derived from the day and the model's content hash: the same model lands in
the same folder, a different model in a new one, and every version the
registry's history names stays on disk for a rollback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict

from recsys.storage import join

MODELS_DIR = "models"
"""The pipeline's model runs, one per data day (``models/as_of=YYYY-MM-DD``)."""
BUNDLES_DIR = "bundles"


class RunPaths(BaseModel):
    """Every URI a retrain run for ``day`` reads or writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: dt.date
    lake: str
    registry: str
    events: str
    """The day's events partition (the sensor waits for it)."""
    events_marker: str
    """``_SUCCESS`` in the partition: written last, so its presence means complete."""
    validation_report: str
    graph: str
    graph_report: str
    model: str
    model_report: str
    export_report: str
    bundles: str
    """Parent of the immutable, versioned bundle folders (see :func:`bundle_uri`)."""
    deploy_report: str


def day_of(
    logical_date: dt.date | dt.datetime | str | None,
    as_of: str | dt.date | None = None,
    run_after: dt.datetime | None = None,
) -> dt.date:
    """The data day a run works on: the ``as_of`` override, else the logical date (UTC),
    else (a run triggered without a logical date) the last full day before ``run_after``.

    The DAGs use a data-interval timetable, so the logical date of the run that starts
    just after midnight is the day that has just ended.
    """
    if as_of:
        return as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(str(as_of)[:10])
    if logical_date is None:
        if run_after is None:
            raise ValueError("a run without a logical date needs its run_after time")
        logical_date = run_after - dt.timedelta(days=1)
    if isinstance(logical_date, dt.datetime):
        if logical_date.tzinfo is not None:
            logical_date = logical_date.astimezone(dt.UTC)
        return logical_date.date()
    if isinstance(logical_date, dt.date):
        return logical_date
    return dt.date.fromisoformat(logical_date[:10])


def run_paths(day: dt.date, lake: str, registry: str) -> RunPaths:
    """Artifact URIs of the run for ``day``: each where the library puts it by default."""
    # imported here: the DAG files import this module at parse time, the data libraries
    # behind these modules are for the tasks that run
    from recsys.data.lake import SUCCESS, partition_uri
    from recsys.data.schema import EVENTS
    from recsys.graph.snapshot import snapshot_uri
    from recsys.reports import DEPLOY, EXPORT, GRAPH, MODEL, VALIDATION, report_uri

    events = partition_uri(lake, EVENTS, day)
    return RunPaths(
        day=day,
        lake=lake,
        registry=registry,
        events=events,
        events_marker=join(events, SUCCESS),
        validation_report=report_uri(lake, VALIDATION, day),
        graph=snapshot_uri(lake, day),
        graph_report=report_uri(lake, GRAPH, day),
        model=join(lake, MODELS_DIR, f"as_of={day.isoformat()}"),
        model_report=report_uri(lake, MODEL, day),
        export_report=report_uri(lake, EXPORT, day),
        bundles=join(lake, BUNDLES_DIR),
        deploy_report=report_uri(lake, DEPLOY, day),
    )


def bundle_version(day: dt.date, model_manifest_sha256: str) -> str:
    """Registry version of a bundle: its day plus the content hash of the model it serves.

    Keyed by the model rather than the bundle: the model is known before the
    export runs, so the export writes straight into its version's folder, and
    the same model always gets the same version, so a rerun that exports it
    again does not look like a new model.
    """
    return f"{day:%Y%m%d}-{model_manifest_sha256[:12]}"


def bundle_uri(paths: RunPaths, version: str) -> str:
    """Folder of bundle ``version``: ``<lake>/bundles/<version>``, written once, never replaced."""
    return join(paths.bundles, version)


def azureml_job_name(day: dt.date, run_id: str, try_number: int) -> str:
    """A job name unique per task try (Azure ML refuses to reuse one) yet reproducible."""
    digest = hashlib.sha256(f"{run_id}|{try_number}".encode()).hexdigest()[:10]
    return f"recsys-train-{day:%Y%m%d}-{digest}"


def as_dict(paths: RunPaths) -> dict[str, Any]:
    """JSON-safe form for XCom."""
    return paths.model_dump(mode="json")


def from_dict(data: dict[str, Any]) -> RunPaths:
    return RunPaths.model_validate(data)
