"""Artifact formats stay put: the same inputs give byte-identical manifests.

A graph snapshot built from a fixed lake, a model artifact with fixed weights on it, and
the bundle exported from that model are hashed (sha256 of each ``manifest.json``, which
lists the sha256 of every file) and compared with digests recorded on the code before the
artifact writers were restructured. A refactor of a writer or reader must not move them.

When a format changes on purpose (a new file, a new config field), the failure prints the
new digests: update ``DIGESTS`` in the same commit and say why in its message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
import pytest
import torch

from recsys.artifacts import manifest_sha256
from recsys.export.export import export_model
from recsys.export.gate import ExportConfig
from recsys.graph.build import build_snapshot
from recsys.graph.snapshot import load_snapshot
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.artifact import write_model_artifact
from tests.graph.conftest import END, random_events, small_config, write_dims, write_events

# fixed URIs: they are recorded in the manifests (inputs, lineage)
ROOT = "memory://artifact-digests"
LAKE = f"{ROOT}/lake"
GRAPH = f"{LAKE}/graphs/as_of={END.isoformat()}"
MODEL = f"{ROOT}/runs/model"
BUNDLE = f"{ROOT}/bundles/model"

DIGESTS = {
    "graph": "bdeebf05b9ebdc27a6cb19dbb59d3ab6d06d1d001b8ca6bfb6cb371db29c5632",
    "model": "ba964096cd8f74552db42373176b01d4ccb9fe31c8a1f0febf61f0ed58bb53a9",
    "bundle": "13aeae9bdad711b697d0fd4f0a4e6edf62d0af4b8873a8d3bf49b1eb454e5cbc",
}


def _wipe() -> None:
    fs = fsspec.filesystem("memory")
    path = ROOT.removeprefix("memory://")
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture
def root() -> Iterator[str]:
    _wipe()
    yield ROOT
    _wipe()


class _FixedTrainConfig:
    """What the model writer reads of a TrainConfig, fixed: the digests must not move when
    training gains a setting (the writer records whatever the config dumps)."""

    norm = "sym"

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"embedding_dim": 8, "num_layers": 2, "norm": "sym"}


def _fixed_model(graph_uri: str) -> FeatureLightGCN:
    """A model of the snapshot's shape whose every parameter comes from a seeded numpy
    generator: independent of the model's own initialisation scheme."""
    snap = load_snapshot(graph_uri)
    model = FeatureLightGCN(
        snap.n_users,
        snap.n_items,
        embedding_dim=8,
        num_layers=2,
        user_features=torch.from_numpy(snap.user_features),
        item_features=torch.from_numpy(snap.item_features),
    )
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.from_numpy(rng.normal(0, 0.2, tuple(p.shape)).astype(np.float32)))
    return model


def _digests() -> dict[str, str]:
    write_events(LAKE, random_events(40, 30, 5, 200))
    write_dims(LAKE, END - dt.timedelta(days=4), 40, 30)
    graph = build_snapshot(LAKE, END, small_config(holdout_days=1))
    assert graph == GRAPH
    history = [{"epoch": 1.0, "loss": 0.5}, {"epoch": 2.0, "loss": 0.25}]
    metrics = {"holdout": {"recall@20": 0.5, "ndcg@20": 0.25}}
    write_model_artifact(
        MODEL,
        _fixed_model(graph),
        _FixedTrainConfig(),  # type: ignore[arg-type]
        graph,
        history,
        metrics,
        "<html></html>",
    )
    export_model(MODEL, BUNDLE, ExportConfig(k=10, parity_users=50, latency_p99_ms=1e3))
    return {
        "graph": manifest_sha256(GRAPH),
        "model": manifest_sha256(MODEL),
        "bundle": manifest_sha256(BUNDLE),
    }


def test_manifests_are_byte_identical_to_the_recorded_ones(root: str) -> None:
    got = _digests()
    assert got == DIGESTS, f"artifact manifests changed; new digests: {got}"
