"""The model report: one self-contained HTML file (metrics table and training curves).

Images are PNGs drawn with matplotlib's Agg backend and embedded as base64,
so the file can be opened from the lake, attached to MLflow, or mailed.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from recsys.errors import InputError
from recsys.storage import write_bytes_atomic

if TYPE_CHECKING:
    from recsys.reports import GateReport

__all__ = ["plot_history", "render_gate_report", "render_model_report", "write_model_report"]

_X_KEYS = ("epoch", "step")
_LOWER_IS_BETTER = ("loss", "time", "_s", "latency")


def _lower_is_better(column: str) -> bool:
    return any(column.endswith(s) or s in column for s in _LOWER_IS_BETTER)


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@contextmanager
def _figure(ncols: int, figsize: tuple[float, float]) -> Iterator[tuple[Any, Any, io.BytesIO]]:
    """A matplotlib figure (Agg, headless: workers and CI have no display) whose PNG lands in
    the yielded buffer when the block ends, and which is closed whatever happens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize, dpi=100)
    buf = io.BytesIO()
    try:
        yield fig, axes, buf
        fig.tight_layout()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)


def plot_history(history: list[dict[str, float]]) -> bytes:
    """PNG of training curves: loss on the left, validation metrics on the right.

    The x axis is ``epoch`` (or ``step``) when the entries carry it, else the
    entry's position. Keys with ``loss`` in their name go to the loss panel; every
    other numeric key (except time-like ones) is a validation metric.
    """
    xkey = next((k for k in _X_KEYS if history and all(k in h for h in history)), None)
    xs = [float(h[xkey]) if xkey else float(i + 1) for i, h in enumerate(history)]
    keys: list[str] = []
    for h in history:
        keys += [k for k in h if k not in keys and k != xkey]
    loss_keys = [k for k in keys if "loss" in k]
    metric_keys = [k for k in keys if k not in loss_keys and not _lower_is_better(k)]

    with _figure(2, (10, 3.6)) as (_, axes, buf):
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


_STATUS_STYLE = """
.passed{background:#c8f0c8}.failed{background:#f6c6c6}.undecided{background:#f6e7b0}
.skipped{background:#e8e8e8}.banner{font-size:1.3em;padding:.5em 1em;display:inline-block}
td.l,th.l{text-align:left}
"""


def plot_intervals(comparisons: dict[str, Any], metric: str) -> bytes:
    """PNG of each comparison's difference interval against its threshold."""
    rows = [(k, v) for k, v in comparisons.items() if "interval" in v]
    with _figure(1, (7, 0.8 + 0.7 * max(len(rows), 1))) as (_, ax, buf):
        for y, (_, c) in enumerate(rows):
            lo, hi = c["interval"]
            mid = c["difference"]
            ax.errorbar([mid], [y], xerr=[[mid - lo], [hi - mid]], fmt="o", capsize=5, color="#336")
            ax.plot([c["threshold"]] * 2, [y - 0.3, y + 0.3], color="#c33", lw=2)
        ax.axvline(0, color="#999", lw=0.8)
        ax.set_yticks(range(len(rows)), [f"candidate - {n}" for n, _ in rows])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel(f"mean per-user difference of {metric} (red: threshold)")
    return buf.getvalue()


def _ci(v: Any) -> str:
    return f"[{v[0]:.4f}, {v[1]:.4f}]" if isinstance(v, list | tuple) and len(v) == 2 else "–"


def render_gate_report(report: GateReport) -> str:
    """The model gate's report as one HTML page: the decision, each check with its
    interval, every model's metrics with their intervals and the users counted."""
    d = report.details
    metric = str(d.get("metric", ""))
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Model gate {esc(str(report.day or ''))}</title>",
        f"<style>{_STYLE}{_STATUS_STYLE}</style></head><body>",
        f"<h1>Model gate {esc(str(report.day or ''))}</h1>",
        f"<p>candidate <code>{esc(str(report.subject or ''))}</code></p>",
        f"<p class='banner {esc(report.decision)}'>{esc(report.decision.upper())}"
        + (
            f" &rarr; {'deploy' if d.get('deploy') else 'no deploy'}: {esc(str(d['outcome']))}"
            if "outcome" in d
            else ""
        )
        + "</p>",
    ]
    if d.get("forced"):
        parts.append("<p><b>Deploy forced despite the gate's decision.</b></p>")
    parts.append(
        "<h2>Checks</h2><table><tr><th class=l>check</th><th class=l>rule</th>"
        "<th class=l>observed</th><th>status</th></tr>"
    )
    for c in report.checks:
        note = f"<br><i>{esc(c.note)}</i>" if c.note else ""
        parts.append(
            f"<tr><td class=l>{esc(c.name)}</td><td class=l>{esc(c.rule)}</td>"
            f"<td class=l>{esc(c.observed)}{note}</td>"
            f"<td class='{esc(c.status)}'>{esc(c.status)}</td></tr>"
        )
    parts.append("</table>")
    comparisons = d.get("comparisons") or {}
    if any("interval" in v for v in comparisons.values()):
        png = base64.b64encode(plot_intervals(comparisons, metric)).decode("ascii")
        parts.append(f'<img alt="difference intervals" src="data:image/png;base64,{png}">')
    metrics: dict[str, dict[str, Any]] = d.get("metrics") or {}
    names = [n for n in next(iter(metrics.values()), {}) if not n.endswith("_ci") and n != "users"]
    if metrics:
        conf = float(d.get("confidence", 0.95))
        parts.append(f"<h2>Metrics on the holdout ({conf:.0%} intervals)</h2>")
        parts.append(
            "<table><tr><th class=l>model</th><th>users</th>"
            + "".join(f"<th>{esc(n)}</th>" for n in names)
            + "</tr>"
        )
        for model, m in metrics.items():
            cells = "".join(
                f"<td>{_fmt(float(m[n])) if n in m else '–'}<br><small>{_ci(m.get(n + '_ci'))}"
                f"</small></td>"
                for n in names
            )
            parts.append(
                f"<tr><th class=l>{esc(model)}</th><td>{m.get('users', 0)}</td>{cells}</tr>"
            )
        parts.append("</table>")
    facts = {
        "holdout": ", ".join(f"{k} {v}" for k, v in (d.get("holdout") or {}).items()),
        "users compared": ", ".join(
            f"{k}: {v['users']}"
            + (
                f" ({v['left_out']} left out: new since production's snapshot)"
                if v.get("left_out")
                else ""
            )
            for k, v in comparisons.items()
        ),
        "production": str(d.get("production") or "none serving"),
        "statistics": "paired bootstrap of per-user differences: "
        + ", ".join(f"{k} {v}" for k, v in (d.get("bootstrap") or {}).items()),
        "undecided policy": str(d.get("undecided_policy", "")),
    }
    parts.append("<h2>How this was decided</h2><dl>")
    for k, v in facts.items():
        if v:
            parts.append(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>")
    parts.append("</dl></body></html>\n")
    return "".join(parts)
