"""The model artifact: a folder written atomically, and its loader.

Layout::

    model.pt        state_dict of FeatureLightGCN (tensors only: torch.load(weights_only=True))
    model.json      architecture, train config, graph snapshot URI, best epoch
    history.json    one entry per epoch: loss, validation recall/ndcg when evaluated
    metrics.json    validation at the chosen epoch, holdout metrics, popularity for reference
    report.html     metrics table and training curves
    manifest.json   inputs (graph snapshot + its manifest sha256), counts, config, file hashes
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import torch

from recsys.artifacts import InputRef, manifest_sha256, read_manifest, write_artifact
from recsys.errors import InputError
from recsys.models.lightgcn import FeatureLightGCN
from recsys.storage import join, read_bytes, write_bytes_atomic
from recsys.training.config import TrainConfig

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


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n").encode("utf-8")


def write_model_artifact(
    out_uri: str,
    model: FeatureLightGCN,
    config: TrainConfig,
    graph_uri: str,
    history: list[dict[str, float]],
    metrics: dict[str, Any],
    report_html: str,
    info: dict[str, Any] | None = None,
) -> str:
    """Publish the artifact at ``out_uri``; returns its manifest sha256."""
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
        write_bytes_atomic(draft.path(MODEL_PT), buf.getvalue())
        write_bytes_atomic(draft.path(MODEL_JSON), _json_bytes(model_json))
        write_bytes_atomic(draft.path(HISTORY_JSON), _json_bytes(history))
        write_bytes_atomic(draft.path(METRICS_JSON), _json_bytes(metrics))
        write_bytes_atomic(draft.path(REPORT_HTML), report_html.encode("utf-8"))
        draft.inputs["graph"] = InputRef(uri=graph_uri, sha256=graph_sha)
        draft.counts.update({
            "users": model.num_users,
            "items": model.num_items,
            "parameters": sum(p.numel() for p in model.parameters()),
            "epochs": len(history),
        })
        draft.config.update(config.model_dump(mode="json"))
        draft.extra["architecture"] = architecture(model, config.norm)
    return manifest_sha256(out_uri)


def load_model(uri: str, device: str = "cpu") -> LoadedModel:
    """Load a model artifact; the model is in eval mode on ``device``."""
    manifest = read_manifest(uri)
    if manifest.kind != KIND:
        raise InputError(f"{uri}: a {manifest.kind!r} artifact, not a model")
    info = json.loads(read_bytes(join(uri, MODEL_JSON)))
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
    metrics = json.loads(read_bytes(join(uri, METRICS_JSON)))
    return LoadedModel(
        uri=uri, model=model, config=config, graph_uri=str(info["graph_uri"]),
        info=info, metrics=metrics,
    )
