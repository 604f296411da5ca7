from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from recsys.artifacts import read_manifest

from .conftest import END


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from recsys.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_build_graph_command(make_lake: Callable[..., str], tmp_path: Path) -> None:
    lake = make_lake(days=4)
    cfg = tmp_path / "graph.json"
    cfg.write_text(
        json.dumps({"holdout_days": 2, "gate": {"min_users": 2, "min_items": 2, "min_edges": 5}})
    )
    out = str(tmp_path / "snap" / "as_of=2026-03-10")
    r = _cli(
        "build-graph",
        "--lake",
        lake,
        "--as-of",
        END.isoformat(),
        "--window-days",
        "3",
        "--config",
        str(cfg),
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == out
    m = read_manifest(out)
    assert m.config["window_days"] == 3 and m.config["holdout_days"] == 2
    assert sorted(k for k in m.inputs if k.startswith("events/")) == [
        "events/dt=2026-03-08",
        "events/dt=2026-03-09",
        "events/dt=2026-03-10",
    ]

    # a gate failure exits 1 and names the check; a bad date exits 2
    cfg.write_text(json.dumps({"gate": {"min_edges": 10**9}}))
    r = _cli("build-graph", "--lake", lake, "--as-of", END.isoformat(), "--config", str(cfg))
    assert r.returncode == 1 and "min_edges: >= 1e+09 (observed" in r.stderr
    # the graph gate's report says the same to programs, in the lake unless told elsewhere
    from recsys.reports import GRAPH, read_gate_report, report_uri

    report = read_gate_report(report_uri(lake, GRAPH, END))
    assert report.gate == "graph" and report.decision == "failed"
    assert [c.name for c in report.failed] == ["min_edges"]
    assert report.failed[0].value is not None and report.failed[0].threshold == 10**9
    r = _cli("build-graph", "--lake", lake, "--as-of", "2026-13-01")
    assert r.returncode == 2 and "not a date" in r.stderr
