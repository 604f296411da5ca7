"""Errors that the CLI turns into one readable line and an exit code.

Exit codes: 0 success, 1 a gate failed, 2 usage or input error.
"""

from __future__ import annotations


class RecsysError(Exception):
    """A user-facing error: bad input, missing file, unreadable data. Exit code 2."""

    exit_code = 2


class InputError(RecsysError):
    """The input (a file, a column, an option) breaks a rule; the message names it."""


class GateFailed(RecsysError):
    """A quality gate refused the data, graph, model or export. Exit code 1.

    ``failures`` holds one line per failed check, each naming the check,
    the column or object it looked at, the rule and the observed value.
    """

    exit_code = 1

    def __init__(self, gate: str, failures: list[str], report: str | None = None) -> None:
        self.gate = gate
        self.failures = list(failures)
        self.report = report
        lines = [f"{gate} gate failed: {len(self.failures)} check(s)"]
        lines += [f"  - {f}" for f in self.failures]
        if report:
            lines.append(f"  report: {report}")
        super().__init__("\n".join(lines))


class GateUndecided(GateFailed):
    """A gate could not decide (the model gate on a holdout too small to tell the models
    apart). Exit code 1 like a refusal; callers that apply an undecided policy catch it."""

    def __init__(self, gate: str, failures: list[str], report: str | None = None) -> None:
        super().__init__(gate, failures, report)
        lines = [f"{gate} gate undecided: {len(self.failures)} check(s) could not decide"]
        lines += [f"  - {f}" for f in self.failures]
        if report:
            lines.append(f"  report: {report}")
        self.args = ("\n".join(lines),)
