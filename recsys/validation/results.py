"""What the gate found: one :class:`CheckResult` per check, gathered in a :class:`GateResult`."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

Stage = Literal["schema", "gx", "cross"]


class CheckResult(BaseModel):
    """One check: what was looked at, the rule, what was seen, and the verdict."""

    name: str
    """Stable id, ``<table>.<column>.<check>``, e.g. ``events.user_id.not_null``."""
    table: str
    column: str
    """The column checked, or ``*`` for table-level checks (row volume, mix)."""
    rule: str
    observed: str
    passed: bool
    skipped: bool = False
    note: str | None = None
    stage: Stage = "gx"
    expectation: str | None = None
    """The great-expectations expectation type that ran it, if any."""

    def line(self) -> str:
        """``table.column: rule (observed ...)``: the line a person reads on failure."""
        return f"{self.table}.{self.column}: {self.rule} (observed {self.observed})"


class GateResult(BaseModel):
    """Every check of one run of the gate, and where its report was written."""

    lake: str
    day: dt.date
    checks: list[CheckResult] = Field(default_factory=list)
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
    def failed(self) -> list[CheckResult]:
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

    def to_json(self, config: dict[str, Any]) -> str:
        doc = {
            "gate": "validation",
            "lake": self.lake,
            "date": self.day.isoformat(),
            "passed": self.passed,
            "counts": self.counts,
            "failed": self.failure_lines(),
            "notes": self.notes,
            "config": config,
            "checks": [c.model_dump(mode="json") for c in self.checks],
        }
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"
