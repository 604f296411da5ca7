"""Where the served model came from: bundle -> model run -> graph snapshot -> validation report.

Each step is read from the manifests the pipeline wrote (any fsspec URI the server can
read: a local lake, ADLS), following the hashes each artifact recorded of its input:

- bundle -> model, bundle -> graph: the bundle manifest's ``inputs``;
- model -> graph: the model manifest's ``inputs["graph"]``;
- graph -> validation report: an explicit ``inputs["validation"]`` when the graph records
  one; else the validation report of the graph's as-of day in the same lake, linked only
  when the events partition it validated has the hash the graph recorded for it.

A step is ``verified`` when its manifest's hash now equals the hash recorded by the step
before it (None where nothing was recorded). Reports that people read (the model run's
``report.html``, the validation report's Data Docs) are listed by the path inside their
artifact; the server serves exactly the files their manifests list (see ``routes_ui``).
Torch-free; reads only, in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import Any

from recsys.artifacts import Manifest, manifest_sha256, read_manifest
from recsys.errors import InputError
from recsys.reports import VALIDATION, report_uri
from recsys.storage import get_fs, join

REPORTS = {
    "model": [("training report", "report.html")],
    "validation": [("Data Docs", "data_docs/index.html")],
}
"""HTML documents people read, per step: (name, path inside the artifact)."""
_DAY = re.compile(r"(?:as_of|dt)=(\d{4}-\d{2}-\d{2})")


@dataclass
class Step:
    step: str
    uri: str | None
    link: str
    """How this step was found from the one before it."""
    recorded_sha256: str | None = None
    sha256: str | None = None
    kind: str | None = None
    as_of: str | None = None
    written: str | None = None
    """When the artifact's manifest was written (the store's modification time)."""
    detail: dict[str, Any] = field(default_factory=dict)
    reports: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    files: frozenset[str] = frozenset()
    manifest: Manifest | None = None

    @property
    def verified(self) -> bool | None:
        if self.recorded_sha256 is None or self.sha256 is None:
            return None
        return self.sha256 == self.recorded_sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "uri": self.uri,
            "kind": self.kind,
            "link": self.link,
            "sha256": self.sha256,
            "recorded_sha256": self.recorded_sha256,
            "verified": self.verified,
            "as_of": self.as_of,
            "written": self.written,
            "detail": self.detail,
            "reports": self.reports,
            "error": self.error,
        }


def _written(uri: str) -> str | None:
    try:
        fs, root = get_fs(uri)
        info = fs.info(f"{root}/manifest.json")
    except (OSError, ValueError):
        return None
    when = info.get("mtime", info.get("last_modified"))
    if isinstance(when, int | float):
        return dt.datetime.fromtimestamp(float(when), dt.UTC).isoformat(timespec="seconds")
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.UTC).isoformat(timespec="seconds")
    return None


def _read(step: str, uri: str, link: str, recorded: str | None) -> Step:
    s = Step(step, uri, link, recorded_sha256=recorded)
    try:
        m = read_manifest(uri)
        s.sha256 = manifest_sha256(uri)
    except (InputError, OSError, ValueError) as exc:
        s.error = f"unreadable from this server: {exc}"
        return s
    s.manifest, s.kind, s.files = m, m.kind, frozenset(m.files)
    s.written = _written(uri)
    day = m.extra.get("as_of") or m.extra.get("date")
    if not day:
        found = _DAY.search(uri)
        day = found.group(1) if found else None
    s.as_of = str(day) if day else None
    s.reports = [
        {"name": name, "path": path} for name, path in REPORTS.get(step, []) if path in m.files
    ]
    return s


def _validation_of(graph: Manifest) -> tuple[str, str | None, str] | None:
    """(report URI, recorded hash, link) of the graph's validation report, or None."""
    ref = graph.inputs.get("validation")
    if ref is not None:
        return ref.uri, ref.sha256, "recorded by the graph snapshot"
    as_of = graph.extra.get("as_of")
    events = graph.inputs.get(f"events/dt={as_of}") if as_of else None
    suffix = f"/events/dt={as_of}"
    if events is None or not events.uri.rstrip("/").endswith(suffix):
        return None
    lake = events.uri.rstrip("/")[: -len(suffix)]
    try:
        day = dt.date.fromisoformat(str(as_of))
    except ValueError:
        return None
    return (
        report_uri(lake, VALIDATION, day),
        None,
        f"the validation report of the graph's as-of day {as_of}",
    )


def lineage(bundle_uri: str) -> list[Step]:
    """The served bundle's chain, newest first; a step that cannot be read says why."""
    bundle = _read("bundle", bundle_uri, "served", None)
    steps = [bundle]
    if bundle.manifest is None:
        return steps
    bm = bundle.manifest
    bundle.detail["version"] = bm.config.get("version")
    graph_ref, link = bm.inputs.get("graph"), "recorded by the bundle"
    model_ref = bm.inputs.get("model")
    if model_ref is None:
        steps.append(Step("model", None, "the bundle records no model run"))
    else:
        model = _read("model", model_ref.uri, "recorded by the bundle", model_ref.sha256)
        steps.append(model)
        ref = model.manifest.inputs.get("graph") if model.manifest is not None else None
        if ref is not None:
            graph_ref, link = ref, "recorded by the model run"
    if graph_ref is None:
        steps.append(Step("graph", None, "no graph snapshot recorded"))
        return steps
    graph = _read("graph", graph_ref.uri, link, graph_ref.sha256)
    steps.append(graph)
    if graph.manifest is None:
        return steps
    bundle.as_of = bundle.as_of or graph.as_of  # a bundle serves its graph's as-of day
    found = _validation_of(graph.manifest)
    if found is None:
        steps.append(Step("validation", None, "the graph names no validation report"))
        return steps
    uri, recorded, link = found
    val = _read("validation", uri, link, recorded)
    if val.manifest is not None:
        val.detail["passed"] = val.manifest.extra.get("passed")
        if recorded is None:
            _check_by_partition(graph.manifest, val)
    steps.append(val)
    return steps


def _check_by_partition(graph: Manifest, val: Step) -> None:
    """A report found by day counts only if it validated the partition the graph read: the
    same hash (verified), else the same location (unverified: the graph and the validation
    report may hash a partition's files differently), else another partition (refused)."""
    assert val.manifest is not None
    as_of = graph.extra.get("as_of")
    want = graph.inputs.get(f"events/dt={as_of}")
    got = val.manifest.inputs.get("events")
    if want is None or got is None:
        val.link += "; it names no events partition"
        val.recorded_sha256 = ""
    elif want.sha256 == got.sha256:
        val.link += "; it validated the events partition the graph read (same hash)"
        val.recorded_sha256 = val.sha256
    elif want.uri.rstrip("/") == got.uri.rstrip("/"):
        val.link += (
            "; same events partition, hashes not comparable (the two steps hash a "
            "partition differently)"
        )
    else:
        val.link += f"; it validated {got.uri}, not the graph's {want.uri}"
        val.recorded_sha256 = ""


def report_file(steps: list[Step], step: str, path: str) -> str:
    """The URI of ``path`` inside ``step``'s artifact; InputError unless its manifest lists it."""
    for s in steps:
        if s.step == step and s.uri is not None and path in s.files:
            return join(s.uri, path)
    raise InputError(f"{step}/{path}: not a file of the served model's lineage")


class LineageCache:
    """The served bundle's lineage, read off the event loop and kept ``ttl_s`` (a report
    written after the bundle shows up within that time)."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._key: tuple[str, str] | None = None
        self._at = 0.0
        self._steps: list[Step] = []

    async def get(self, uri: str, manifest_sha: str) -> list[Step]:
        key = (uri, manifest_sha)
        if key != self._key or time.monotonic() - self._at > self.ttl_s:
            self._steps = await asyncio.to_thread(lineage, uri)
            self._key, self._at = key, time.monotonic()
        return self._steps
