"""What the gate found: one :class:`~recsys.reports.Check` per check, gathered in a
:class:`GateResult`, whose :meth:`GateResult.gate_report` is the report's ``report.json``."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from recsys.reports import Check, GateReport

Stage = Literal["schema", "gx", "cross"]


class GateResult(BaseModel):
    """Every check of one run of the gate, and where its report was written."""

    lake: str
    day: dt.date
    checks: list[Check] = Field(default_factory=list)
    """Every check: the shared :class:`~recsys.reports.Check`, ``name`` ``<table>.<column>.<check>``
    (``events.user_id.not_null``), ``column`` ``*`` for table-level checks (volume, mix),
    ``stage`` where it ran (schema, gx, cross) and ``expectation`` the GX expectation type."""
    counts: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    report: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    """Seconds per stage of this run; logged, never written to the report (it must not
    change with the machine's load)."""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def failure_lines(self) -> list[str]:
        return [c.line() for c in self.failed]

    def summary(self) -> str:
        """Console summary: counts, notes, each failed check by column, rule and observed value."""
        ran = [c for c in self.checks if not c.skipped]
        head = (
            f"validation {'PASSED' if self.passed else 'FAILED'} for {self.day.isoformat()}: "
            f"{len(ran) - len(self.failed)}/{len(ran)} checks passed"
        )
        if skipped := len(self.checks) - len(ran):
            head += f", {skipped} skipped"
        rows = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        lines = [head]
        if rows:
            lines.append(f"  rows: {rows}")
        lines += [f"  FAILED {c.line()}" for c in self.failed]
        lines += [f"  note: {n}" for n in self.notes]
        if self.report:
            lines.append(f"  report: {self.report}")
        return "\n".join(lines)

    def gate_report(self, config: dict[str, Any]) -> GateReport:
        """The shared report shape (``report.json``): every check, the rows read, the notes."""
        return GateReport.of(
            "validation",
            list(self.checks),
            day=self.day,
            subject=self.lake,
            counts={f"rows_{k}": float(v) for k, v in self.counts.items()},
            notes=self.notes,
            details={"failed": self.failure_lines(), "config": config},
        )
