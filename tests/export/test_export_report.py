"""The export gate speaks the shared report shape (what the retrain DAG's export task reads)."""

from __future__ import annotations

from recsys.export.gate import CHECKS, ExportConfig, GateResult


def test_each_check_passes_or_carries_its_failure_lines() -> None:
    metrics = {"foldin_max_abs_diff": 1e-7, "parity_topk_mismatches": 2.0, "latency_p99_ms": 0.4}
    result = GateResult(
        metrics,
        [
            "parity: top-100 differs from torch for 2 of 50 users",
            "parity: max |onnx - torch score| = 1e-2 > 0.0001",
            "mystery: something new went wrong",
        ],
    )
    report = result.report(ExportConfig(latency_p99_ms=5))
    assert report.gate == "export" and report.decision == "failed"
    status = {c.name: c.status for c in report.checks}
    assert status == {
        **{name: "passed" for name in CHECKS},
        "parity": "failed",
        "mystery": "failed",
    }
    parity = next(c for c in report.checks if c.name == "parity")
    assert "2 of 50 users" in parity.observed and "1e-2 > 0.0001" in parity.observed
    latency = next(c for c in report.checks if c.name == "latency")
    assert latency.rule == "single-user p99 <= 5 ms" and "latency_p99_ms 0.4" in latency.observed
    assert report.details["metrics"] == metrics
    ok = GateResult(metrics, []).report(ExportConfig())
    assert ok.passed and not ok.failure_lines()
