"""The HTML model report: table with the best value highlighted, embedded PNG curves."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import fsspec

from recsys.evaluation.report import plot_history, write_model_report

PNG = b"\x89PNG\r\n\x1a\n"
METRICS = {
    "lightgcn": {"recall@20": 0.18, "ndcg@20": 0.15, "fit_s": 120.0},
    "popularity": {"recall@20": 0.04, "ndcg@20": 0.03, "fit_s": 0.1},
    "gf-cf": {"recall@20": 0.185, "ndcg@20": 0.149, "fit_s": 30.0},
}
HISTORY = [
    {"epoch": 1, "loss": 0.6, "val_recall@20": 0.10, "val_ndcg@20": 0.08},
    {"epoch": 2, "loss": 0.4, "val_recall@20": 0.14, "val_ndcg@20": 0.11},
    {"epoch": 3, "loss": 0.3, "val_recall@20": 0.16},
]


def test_report_written_with_table_and_image(tmp_path: Path) -> None:
    out = tmp_path / "run" / "report.html"
    write_model_report(str(out), "Run <42>", METRICS, HISTORY, notes={"graph": "snap & co"})
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    assert "Run &lt;42&gt;" in text and "snap &amp; co" in text  # escaped
    for model in METRICS:
        assert f"<th>{model}</th>" in text
    best = re.findall(r'<td class="best">([^<]+)</td>', text)
    # recall: gf-cf, ndcg: lightgcn, fit time: popularity (lower is better)
    assert sorted(best) == sorted(["0.1850", "0.1500", "0.1000"])
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(PNG)
    assert not list(tmp_path.glob("run/*.tmp-*"))  # atomic write left no temp file


def test_report_without_history_on_memory_fs() -> None:
    uri = "memory://reports/gfcf.html"
    write_model_report(uri, "training-free", {"gf-cf": {"ndcg@20": 0.15}}, [])
    with fsspec.open(uri, "rt") as f:
        text = f.read()
    assert "No training history" in text and "data:image/png" not in text


def test_plot_history_png() -> None:
    assert plot_history(HISTORY).startswith(PNG)
    assert plot_history([]).startswith(PNG)
    assert plot_history([{"loss": 1.0}, {"loss": 0.5}]).startswith(PNG)  # no epoch key
