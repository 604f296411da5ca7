"""The model artifact: its writer and its reader.

Layout::

    model.pt        state_dict of FeatureLightGCN (tensors only: torch.load(weights_only=True))
    model.json      architecture, train config, graph snapshot URI, best epoch
    history.json    one entry per epoch: loss, validation recall/ndcg when evaluated
    metrics.json    validation at the chosen epoch, holdout metrics, popularity for reference
    report.html     metrics table and training curves
    item_item_index.npy, item_item_value.npy   the item-item term (recsys.item_item), if any
    manifest.json   inputs (graph snapshot + its manifest sha256), counts, config, file hashes
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.artifacts import (
    InputRef,
    Manifest,
    manifest_sha256,
    read_json,
    read_manifest,
    read_npy,
    verify_artifact,
    write_artifact,
)
from recsys.errors import InputError
from recsys.item_item import INDEX_FILE, VALUE_FILE, ItemItemTerm
from recsys.storage import join, read_bytes
from recsys.training.config import TrainConfig

if TYPE_CHECKING:
    # torch is imported by the functions that need it: the pipeline reads a model's
    # recorded metrics (read_metrics) in Airflow workers that never load torch
    from recsys.models.lightgcn import FeatureLightGCN

KIND = "model"
MODEL_PT = "model.pt"
MODEL_JSON = "model.json"
HISTORY_JSON = "history.json"
METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"


@dataclass
class LoadedModel:
    """A model artifact read back: the model (eval mode, on ``device``) and its context."""

    uri: str
    model: FeatureLightGCN
    config: TrainConfig
    graph_uri: str
    info: dict[str, Any]
    metrics: dict[str, Any]
    item_item: ItemItemTerm | None = None


def architecture(model: FeatureLightGCN, norm: str) -> dict[str, Any]:
    return {
        "class": "FeatureLightGCN",
        "num_users": model.num_users,
        "num_items": model.num_items,
        "embedding_dim": model.embedding_dim,
        "num_layers": model.num_layers,
        "user_feature_dim": model.user_feature_dim,
        "item_feature_dim": model.item_feature_dim,
        "norm": norm,
        "score": "dot",
        "readout": "mean of layers 0..K",
    }


def write_model_artifact(
    out_uri: str,
    model: FeatureLightGCN,
    config: TrainConfig,
    graph_uri: str,
    history: list[dict[str, float]],
    metrics: dict[str, Any],
    report_html: str,
    info: dict[str, Any] | None = None,
    item_item: ItemItemTerm | None = None,
) -> str:
    """Publish the artifact at ``out_uri`` (with the model's item-item term, if it has one);
    returns its manifest sha256."""
    import torch

    graph_sha = manifest_sha256(graph_uri)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    model_json = {
        "architecture": architecture(model, config.norm),
        "train_config": config.model_dump(mode="json"),
        "graph_uri": graph_uri,
        "graph_sha256": graph_sha,
        "adjacency": "graph snapshot train edges and weights, normalised with `norm`",
        **(info or {}),
    }
    with write_artifact(out_uri, KIND) as draft:
        draft.write_bytes(MODEL_PT, buf.getvalue())
        draft.write_json(MODEL_JSON, model_json)
        draft.write_json(HISTORY_JSON, history)
        draft.write_json(METRICS_JSON, metrics)
        draft.write_text(REPORT_HTML, report_html)
        if item_item is not None:
            draft.write_npy(INDEX_FILE, item_item.index.astype(np.int32))
            draft.write_npy(VALUE_FILE, item_item.value.astype(np.float32))
            draft.counts["item_item_width"] = item_item.width
        draft.inputs["graph"] = InputRef(uri=graph_uri, sha256=graph_sha)
        draft.counts.update(
            {
                "users": model.num_users,
                "items": model.num_items,
                "parameters": sum(p.numel() for p in model.parameters()),
                "epochs": len(history),
            }
        )
        draft.config.update(config.model_dump(mode="json"))
        draft.extra["architecture"] = architecture(model, config.norm)
    return manifest_sha256(out_uri)


def require_model(uri: str, verify: bool = False) -> Manifest:
    """The manifest of the published model artifact at ``uri``, or an InputError naming it:
    its manifest only, no torch; with ``verify`` also every file against its checksum (a
    damaged model)."""
    manifest = verify_artifact(uri) if verify else read_manifest(uri)
    if manifest.kind != KIND:
        raise InputError(f"{uri}: a {manifest.kind!r} artifact, not a model")
    return manifest


def load_model(uri: str, device: str = "cpu") -> LoadedModel:
    """Load a model artifact; the model is in eval mode on ``device``."""
    import torch

    from recsys.models.lightgcn import FeatureLightGCN

    files = set(require_model(uri).files)
    info = read_json(join(uri, MODEL_JSON))
    arch = info["architecture"]
    config = TrainConfig.model_validate(info["train_config"])
    state = torch.load(
        io.BytesIO(read_bytes(join(uri, MODEL_PT))), map_location="cpu", weights_only=True
    )
    fu, fi = int(arch["user_feature_dim"]), int(arch["item_feature_dim"])
    model = FeatureLightGCN(
        int(arch["num_users"]),
        int(arch["num_items"]),
        embedding_dim=int(arch["embedding_dim"]),
        num_layers=int(arch["num_layers"]),
        user_features=torch.zeros(int(arch["num_users"]), fu) if fu else None,
        item_features=torch.zeros(int(arch["num_items"]), fi) if fi else None,
    )
    model.load_state_dict(state)
    model.to(device).eval()
    metrics = read_metrics(uri)
    item_item = None
    if INDEX_FILE in files and VALUE_FILE in files:
        try:
            item_item = ItemItemTerm(
                read_npy(join(uri, INDEX_FILE)), read_npy(join(uri, VALUE_FILE))
            )
        except InputError as exc:
            raise InputError(f"{uri}: {exc}") from None
        if item_item.n_items != model.num_items:
            raise InputError(
                f"{uri}: its item-item term is for {item_item.n_items} items, the model "
                f"{model.num_items}"
            )
    return LoadedModel(
        uri=uri,
        model=model,
        config=config,
        graph_uri=str(info["graph_uri"]),
        info=info,
        metrics=metrics,
        item_item=item_item,
    )


def read_metrics(uri: str) -> dict[str, Any]:
    """``metrics.json`` of a model artifact: validation, holdout and baseline metrics."""
    metrics: dict[str, Any] = read_json(join(uri, METRICS_JSON))
    return metrics
