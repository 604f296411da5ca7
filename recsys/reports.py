"""Report artifacts: what a gate or a deployment decided, for people and for programs.

A report is an artifact folder at ``<lake>/reports/<name>/dt=YYYY-MM-DD`` (``name``:
``validation``, ``graph``, ``model``, ``export``, ``deploy``) holding its documents (a JSON
one that programs read, Markdown or HTML for people), optionally the HTML site of a tool
(great-expectations' Data Docs under ``data_docs/``), and the manifest with the report's
lineage. This module decides where reports live and how they are written and read back.

Every gate (data, graph, model, export) speaks one shape: a :class:`GateReport` of
:class:`Check` results, written as ``report.json`` (:func:`write_gate_report`) whatever the
outcome and read back with :func:`read_gate_report`, so a caller (an Airflow task, a
person) learns what a gate decided from the report, never from a command's console output.
A check is ``passed``, ``failed``, ``skipped`` (could not run: it says why) or
``undecided`` (the model gate's honest third outcome: the data cannot tell); the report's
``decision`` is ``failed`` if any check failed, else ``undecided`` if any is undecided,
else ``passed``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.artifacts import InputRef, read_json, write_artifact
from recsys.errors import GateFailed, GateUndecided, InputError
from recsys.storage import exists, join

REPORTS_DIR = "reports"
DATA_DOCS = "data_docs"
VALIDATION = "validation"
GRAPH = "graph"
MODEL = "model"
EXPORT = "export"
DEPLOY = "deploy"
GATE_REPORT = "report.json"
"""The gate's :class:`GateReport` in every gate report folder (what programs read)."""

Status = Literal["passed", "failed", "undecided", "skipped"]
Decision = Literal["passed", "failed", "undecided"]


def _finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


class Check(BaseModel):
    """One check of a gate: what it looked at, its rule, what it saw, and its status.

    ``table`` / ``column`` name the data a data-gate check looked at; the other gates
    leave them empty and their ``name`` says what was checked. ``value``, ``threshold``
    and ``interval`` carry the numbers behind ``observed`` when there are any (the model
    gate's interval is the confidence interval of ``value``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    """Stable id: ``<table>.<column>.<check>`` for data checks, else the check's name."""
    status: Status
    rule: str
    observed: str
    table: str | None = None
    column: str | None = None
    value: float | None = None
    threshold: float | None = None
    interval: tuple[float, float] | None = None
    note: str | None = None
    stage: str | None = None
    """Where in its gate the check ran (the data gate: ``schema``, ``gx``, ``cross``)."""
    expectation: str | None = None
    """The great-expectations expectation type that ran it, if any."""

    @model_validator(mode="after")
    def _json_safe(self) -> Check:
        # JSON has no NaN / inf: a non-finite number is reported in ``observed`` only
        self.value = _finite_or_none(self.value)
        self.threshold = _finite_or_none(self.threshold)
        return self

    @classmethod
    def of(cls, name: str, ok: bool, rule: str, observed: str, **kw: Any) -> Check:
        """A pass/fail check from a verdict."""
        return cls(
            name=name, status="passed" if ok else "failed", rule=rule, observed=observed, **kw
        )

    @property
    def passed(self) -> bool:
        """Not in the way of the gate: passed, or skipped (with its reason in ``note``)."""
        return self.status in ("passed", "skipped")

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    @property
    def subject(self) -> str:
        return ".".join(x for x in (self.table, self.column) if x) or self.name

    def line(self) -> str:
        """``subject: rule (observed ...)``: the line a person reads when it did not pass."""
        return f"{self.subject}: {self.rule} (observed {self.observed})"


def decide(checks: list[Check]) -> Decision:
    if any(c.status == "failed" for c in checks):
        return "failed"
    if any(c.status == "undecided" for c in checks):
        return "undecided"
    return "passed"


class GateReport(BaseModel):
    """Every check of one run of a gate, and the decision they make."""

    model_config = ConfigDict(extra="forbid")

    gate: str
    """``validation``, ``graph``, ``model`` or ``export``."""
    decision: Decision
    checks: list[Check] = Field(default_factory=list)
    day: dt.date | None = None
    subject: str | None = None
    """What was gated: the lake, the graph snapshot, the model."""
    counts: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    """What the gate wants to say beyond its checks (the model gate: metrics, intervals,
    users counted, the undecided policy and whether a deploy was forced)."""

    @model_validator(mode="after")
    def _consistent(self) -> GateReport:
        if self.decision != decide(self.checks):
            raise ValueError(
                f"decision {self.decision!r} does not follow from the checks "
                f"({decide(self.checks)!r})"
            )
        return self

    @classmethod
    def of(cls, gate: str, checks: list[Check], **kw: Any) -> GateReport:
        return cls(gate=gate, decision=decide(checks), checks=checks, **kw)

    @property
    def passed(self) -> bool:
        return self.decision == "passed"

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "failed"]

    @property
    def undecided(self) -> list[Check]:
        return [c for c in self.checks if c.status == "undecided"]

    def failure_lines(self) -> list[str]:
        """One line per check that stands in the way: failed ones, then undecided ones."""
        return [c.line() for c in self.failed + self.undecided]

    def error(self, report: str | None = None) -> GateFailed:
        """The exception a caller raises for this report when it stops the run."""
        if self.decision == "undecided":
            return GateUndecided(self.gate, self.failure_lines(), report)
        return GateFailed(self.gate, self.failure_lines() or [f"{self.gate}: not passed"], report)


def report_uri(lake: str, name: str, day: dt.date) -> str:
    """Where the ``name`` report of ``day`` lives: ``<lake>/reports/<name>/dt=YYYY-MM-DD``."""
    return join(lake, REPORTS_DIR, name, f"dt={day.isoformat()}")


Document = Any
"""A report document: text (written as it is), a mapping (as JSON) or a pandas DataFrame
(as Parquet)."""


def write_report(
    uri: str,
    kind: str,
    documents: Mapping[str, Document],
    *,
    docs: Path | None = None,
    inputs: dict[str, InputRef] | None = None,
    counts: dict[str, int | float] | None = None,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Publish a report at ``uri``: each document (text as it is, a mapping as JSON, a
    DataFrame as Parquet) and the local folder ``docs`` (a generated site) under
    ``data_docs/``; returns ``uri``."""
    with write_artifact(uri, kind) as draft:
        for name, content in documents.items():
            if isinstance(content, str):
                draft.write_text(name, content)
            elif isinstance(content, Mapping):
                draft.write_json(name, content)
            else:
                draft.write_parquet(name, content)
        if docs is not None:
            draft.copy_tree(DATA_DOCS, docs)
        draft.inputs = dict(inputs or {})
        draft.counts = dict(counts or {})
        draft.config = dict(config or {})
        draft.extra = dict(extra or {})
    return uri


def write_gate_report(
    uri: str,
    report: GateReport,
    *,
    kind: str | None = None,
    documents: Mapping[str, Document] | None = None,
    counts: dict[str, int | float] | None = None,
    extra: dict[str, Any] | None = None,
    **artifact: Any,
) -> str:
    """Publish a gate's report at ``uri``: ``report.json`` (the :class:`GateReport`) beside
    the gate's own ``documents``; the manifest counts its checks and its ``extra`` records the
    decision. ``artifact`` passes ``docs``, ``inputs`` and ``config`` on to
    :func:`write_report`."""
    counts = {
        **(counts or {}),
        "checks": len(report.checks),
        "failed": len(report.failed),
        "undecided": len(report.undecided),
    }
    return write_report(
        uri,
        kind or f"{report.gate}_report",
        {GATE_REPORT: report.model_dump(mode="json"), **(documents or {})},
        counts=counts,
        extra={**(extra or {}), "decision": report.decision, "passed": report.passed},
        **artifact,
    )


def read_gate_report(uri: str) -> GateReport:
    """The :class:`GateReport` in the report folder ``uri`` (an InputError naming it if
    there is none or it is not one)."""
    path = join(uri, GATE_REPORT)
    if not exists(path):
        raise InputError(f"{uri}: no gate report ({GATE_REPORT}) there")
    try:
        return GateReport.model_validate(read_json(path))
    except ValueError as exc:
        raise InputError(f"{path}: not a gate report ({exc})") from None


def read_report(uri: str, document: str) -> Any:
    """A JSON document of the report at ``uri``."""
    return read_json(join(uri, document))
