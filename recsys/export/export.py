"""``recsys export``: a trained model and its graph snapshot -> the export gate -> a bundle.

Nothing is written unless the gate (:mod:`recsys.export.gate`) passes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.artifacts import InputRef, manifest_sha256, read_manifest
from recsys.bundle import BundleMeta, WeightRules, write_bundle
from recsys.errors import GateFailed
from recsys.export.gate import ExportConfig, run_gate
from recsys.export.tables import compute_tables, with_served_history
from recsys.graph.config import WeightConfig
from recsys.graph.snapshot import load_snapshot
from recsys.item_item import ItemItemTerm
from recsys.logs import get_logger
from recsys.reports import write_gate_report
from recsys.training.artifact import load_model

log = get_logger(__name__)


@dataclass
class ExportResult:
    uri: str
    version: str
    metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        m = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        return f"bundle {self.version} written to {self.uri}: {m}"


def export_from_model(
    model: Any,
    snapshot: Any,
    out_uri: str,
    cfg: ExportConfig,
    version: str,
    inputs: dict[str, InputRef] | None = None,
    edge_types: np.ndarray | None = None,
    report: str | None = None,
    item_item: ItemItemTerm | None = None,
) -> ExportResult:
    """Tables -> gate -> bundle. Raises GateFailed (and writes no bundle) when a check fails;
    the gate's ``report.json`` goes to ``report`` (if given) either way."""
    tables, ref = compute_tables(model, snapshot, edge_types, cfg.segment_feature, item_item)
    result = run_gate(tables, ref.users, cfg)
    if report is not None:
        gate = result.report(cfg).model_copy(
            update={"subject": out_uri, "day": getattr(snapshot, "as_of", None)}
        )
        write_gate_report(
            report,
            gate,
            inputs=inputs,
            config=cfg.model_dump(mode="json"),
            extra={"version": version},
        )
    if result.failures:
        raise GateFailed("export", result.failures, report)
    tables = with_served_history(tables, snapshot)
    as_of = getattr(snapshot, "as_of", None)
    cutoff = None
    if as_of is not None:
        # the snapshot covers events up to the end of its as-of day (UTC)
        cutoff = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), dt.UTC).isoformat()
    meta = BundleMeta(
        version=version,
        num_layers=tables.num_layers,
        embedding_dim=int(tables.item_final.shape[1]),
        num_users=len(tables.user_ids),
        num_items=len(tables.item_ids),
        weights=_weight_rules(snapshot),
        segment_feature=cfg.segment_feature if tables.user_segments is not None else None,
        data_cutoff=cutoff,
    )
    # latency is wall-clock and differs on every run: it stays in the result (CLI summary,
    # task log) and out of the manifest, so re-exporting the same model gives the same bundle
    recorded = {k: v for k, v in result.metrics.items() if not k.startswith("latency_")}
    write_bundle(
        tables,
        out_uri,
        meta,
        inputs=inputs,
        metrics=recorded,
        lineage={"graph_uri": getattr(snapshot, "uri", None), "gate": cfg.model_dump()},
    )
    return ExportResult(uri=out_uri, version=version, metrics=result.metrics)


def _weight_rules(snapshot: Any) -> WeightRules:
    """The graph's edge-weight rules (so live events weigh like training events)."""
    uri = getattr(snapshot, "uri", None)
    if uri:
        try:
            weights = read_manifest(uri).config.get("weights")
            if isinstance(weights, dict):
                return WeightRules.from_config(WeightConfig.model_validate(weights))
        except Exception as exc:  # a snapshot without the rules falls back to the defaults
            log.warning("graph %s: no weight rules in its manifest (%s); using defaults", uri, exc)
    return WeightRules.from_config(WeightConfig())


def export_model(
    model_uri: str,
    out_uri: str,
    cfg: ExportConfig,
    version: str | None = None,
    report: str | None = None,
) -> ExportResult:
    """``recsys export``: load the trained model and its graph, gate, and write the bundle."""
    loaded = load_model(model_uri)
    norm = getattr(loaded.config, "norm", "sym")
    if norm != "sym":
        raise GateFailed(
            "export",
            [
                f"foldin: the model was trained with norm={norm!r}; the exact fold-in the scorer "
                "computes needs norm='sym' (retrain with it)"
            ],
        )
    graph_uri = str(loaded.graph_uri)
    snapshot = load_snapshot(graph_uri)
    model_sha = manifest_sha256(model_uri)
    graph_sha = manifest_sha256(graph_uri)
    version = version or f"m-{model_sha[:12]}"
    inputs = {
        "model": InputRef(uri=model_uri, sha256=model_sha),
        "graph": InputRef(uri=graph_uri, sha256=graph_sha),
    }
    return export_from_model(
        loaded.model,
        snapshot,
        out_uri,
        cfg,
        version,
        inputs,
        snapshot.train_types,
        report,
        loaded.item_item,
    )
