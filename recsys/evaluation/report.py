"""The model report: one self-contained HTML file (metrics table and training curves).

Images are PNGs drawn with matplotlib's Agg backend and embedded as base64,
so the file can be opened from the lake, attached to MLflow, or mailed.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping

from recsys.errors import InputError
from recsys.storage import write_bytes_atomic

__all__ = ["plot_history", "render_model_report", "write_model_report"]

_X_KEYS = ("epoch", "step")
_LOWER_IS_BETTER = ("loss", "time", "_s", "latency")


def _lower_is_better(column: str) -> bool:
    return any(column.endswith(s) or s in column for s in _LOWER_IS_BETTER)


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def plot_history(history: list[dict[str, float]]) -> bytes:
    """PNG of training curves: loss on the left, validation metrics on the right.

    The x axis is ``epoch`` (or ``step``) when the entries carry it, else the
    entry's position. Keys with ``loss`` in their name go to the loss panel; every
    other numeric key (except time-like ones) is a validation metric.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: workers and CI have no display
    import matplotlib.pyplot as plt

    xkey = next((k for k in _X_KEYS if history and all(k in h for h in history)), None)
    xs = [float(h[xkey]) if xkey else float(i + 1) for i, h in enumerate(history)]
    keys: list[str] = []
    for h in history:
        keys += [k for k in h if k not in keys and k != xkey]
    loss_keys = [k for k in keys if "loss" in k]
    metric_keys = [k for k in keys if k not in loss_keys and not _lower_is_better(k)]

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    try:
        for ax, group, title in (
            (axes[0], loss_keys, "training loss"),
            (axes[1], metric_keys, "validation metrics"),
        ):
            ax.set_title(title)
            ax.set_xlabel(xkey or "entry")
            drawn = False
            for key in group:
                pairs = zip(xs, history, strict=True)
                pts = [(x, float(h[key])) for x, h in pairs if _finite(h.get(key))]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=key)
                    drawn = True
            if drawn:
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3)
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _fmt(v: float) -> str:
    if not _finite(v):
        return "–"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"


def _table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    columns: list[str] = []
    for row in metrics.values():
        columns += [c for c in row if c not in columns]
    best: dict[str, float] = {}
    for c in columns:
        vals = [float(r[c]) for r in metrics.values() if _finite(r.get(c))]
        if vals:
            best[c] = min(vals) if _lower_is_better(c) else max(vals)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for model, row in metrics.items():
        cells = []
        for c in columns:
            v = row.get(c, float("nan"))
            is_best = _finite(v) and c in best and float(v) == best[c] and len(metrics) > 1
            cls = ' class="best"' if is_best else ""
            cells.append(f"<td{cls}>{_fmt(float(v))}</td>")
        rows.append(f"<tr><th>{html.escape(model)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child{text-align:left}
td.best{background:#c8f0c8;font-weight:bold}
dt{font-weight:bold;margin-top:.5em}
img{max-width:100%}
"""


def render_model_report(
    title: str,
    metrics: dict[str, dict[str, float]],
    history: list[dict[str, float]],
    notes: dict[str, str] | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_model_report`)."""
    if not metrics:
        raise InputError("model report: no metrics to report")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2><p>Best value per column highlighted.</p>",
        _table(metrics),
        "<h2>Training curves</h2>",
    ]
    if history:
        png = base64.b64encode(plot_history(history)).decode("ascii")
        parts.append(f'<img alt="training curves" src="data:image/png;base64,{png}">')
    else:
        parts.append("<p>No training history (a training-free model or none recorded).</p>")
    if notes:
        parts.append("<h2>Notes</h2><dl>")
        for k, v in notes.items():
            parts.append(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>")
        parts.append("</dl>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_model_report(
    uri: str,
    title: str,
    metrics: dict[str, dict[str, float]],
    history: list[dict[str, float]],
    notes: dict[str, str] | None = None,
) -> None:
    """Write the HTML report to ``uri`` atomically.

    ``metrics`` maps each model (the candidate and every baseline) to its
    metrics; ``history`` holds one dict per epoch (``epoch``, ``loss``,
    ``val_recall@20``, ...); ``notes`` are shown as a definition list.
    """
    write_bytes_atomic(uri, render_model_report(title, metrics, history, notes).encode("utf-8"))
