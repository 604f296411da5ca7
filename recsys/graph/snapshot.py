"""The graph snapshot artifact: what training, evaluation and serving read.

Layout of ``<lake>/graphs/as_of=YYYY-MM-DD/`` (published atomically, manifest last)::

    user_ids.parquet      user_idx, user_id      (stable across snapshots; new ids appended)
    item_ids.parquet      item_idx, item_id
    edges.parquet         user_idx, item_idx, weight, types  (train edges, unique pairs;
                          types = bitmask of the pair's event types, bit k = EVENT_TYPES[k])
    holdout.parquet       user_idx, item_idx           (time-based holdout positives)
    history.parquet       user_idx, item_idx, weight, types  (served history: every edge
                          through the as-of day, holdout days included; what the bundle serves)
    history_users.parquet user_idx, user_id      (users first seen in the holdout days, indices
                          from n_users on: served from their history, unknown to the model)
    user_features.npy     float32 [n_users, Fu]
    item_features.npy     float32 [n_items, Fi]
    feature_spec.json     FeatureSpec (encode a new user's raw features like training did)
    items.parquet         item_idx, item_id, category, price (serving filters)
    stats.json            degree histograms, event-type mix, gate results (drift baseline)
    manifest.json         inputs with content hashes, counts, config, file sha256
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.artifacts import read_manifest
from recsys.errors import InputError
from recsys.graph.config import GraphConfig
from recsys.graph.features import FeatureSpec
from recsys.storage import get_fs, join, read_bytes

KIND = "graph_snapshot"
GRAPHS_DIR = "graphs"
USER_IDS = "user_ids.parquet"
ITEM_IDS = "item_ids.parquet"
EDGES = "edges.parquet"
HOLDOUT = "holdout.parquet"
HISTORY = "history.parquet"
HISTORY_USERS = "history_users.parquet"
USER_FEATURES = "user_features.npy"
ITEM_FEATURES = "item_features.npy"
FEATURE_SPEC = "feature_spec.json"
ITEMS = "items.parquet"
STATS = "stats.json"

_AS_OF = re.compile(r"^as_of=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True, eq=False)
class ServedHistory:
    """Edges through the end of the as-of day; ``user`` indexes the snapshot's users, then
    ``extra_user_ids`` (users first seen in the holdout days) from ``n_users`` on."""

    user: np.ndarray
    item: np.ndarray
    weight: np.ndarray
    types: np.ndarray
    extra_user_ids: np.ndarray


@dataclass(frozen=True, eq=False)
class GraphSnapshot:
    """A loaded snapshot; indices are rows of ``user_ids`` / ``item_ids``."""

    uri: str
    as_of: dt.date
    user_ids: np.ndarray
    item_ids: np.ndarray
    train_user: np.ndarray
    train_item: np.ndarray
    train_weight: np.ndarray
    holdout_user: np.ndarray
    holdout_item: np.ndarray
    user_features: np.ndarray
    item_features: np.ndarray
    feature_spec: FeatureSpec
    items: pd.DataFrame
    history: ServedHistory | None = None
    """What serving knows of each user (train and holdout days); None for older snapshots,
    whose bundles serve the train edges."""

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_edges(self) -> int:
        return len(self.train_user)


def graphs_root(lake: str) -> str:
    return join(lake, GRAPHS_DIR)


def snapshot_uri(lake: str, as_of: dt.date) -> str:
    """Default location of the snapshot of ``as_of``: ``<lake>/graphs/as_of=YYYY-MM-DD``."""
    return join(graphs_root(lake), f"as_of={as_of.isoformat()}")


def list_snapshots(root: str) -> list[tuple[dt.date, str]]:
    """Published snapshots (with a manifest) directly under ``root``, oldest first."""
    fs, path = get_fs(root)
    if not fs.exists(path):
        return []
    out = []
    for entry in fs.ls(path, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        m = _AS_OF.match(name)
        if m and fs.exists(f"{entry.rstrip('/')}/manifest.json"):
            out.append((dt.date.fromisoformat(m.group(1)), join(root, name)))
    return sorted(out)


def previous_snapshot(root: str, as_of: dt.date) -> str | None:
    """The latest published snapshot strictly before ``as_of`` under ``root``."""
    earlier = [uri for day, uri in list_snapshots(root) if day < as_of]
    return earlier[-1] if earlier else None


def read_parquet(uri: str) -> pd.DataFrame:
    fs, path = get_fs(uri)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_table(f).to_pandas()
    except FileNotFoundError:
        raise InputError(f"{uri}: file not found") from None


def read_npy(uri: str) -> np.ndarray:
    arr: np.ndarray = np.load(io.BytesIO(read_bytes(uri)), allow_pickle=False)
    return arr


def read_stats(uri: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(read_bytes(join(uri, STATS)))
    return data


def load_id_maps(uri: str) -> tuple[np.ndarray, np.ndarray]:
    """``(user_ids, item_ids)`` string arrays of a snapshot (index -> id)."""
    users = read_parquet(join(uri, USER_IDS))
    items = read_parquet(join(uri, ITEM_IDS))
    return (
        users["user_id"].to_numpy(dtype=object).astype(str),
        items["item_id"].to_numpy(dtype=object).astype(str),
    )


def snapshot_config(uri: str) -> GraphConfig:
    """The :class:`GraphConfig` a snapshot was built with (e.g. to weight a live interaction
    at serving exactly like the build did, with :mod:`recsys.graph.weights`)."""
    return GraphConfig.model_validate(read_manifest(uri).config)


def load_snapshot(uri: str) -> GraphSnapshot:
    """Load a published snapshot (an error if ``uri`` has no manifest)."""
    manifest = read_manifest(uri)
    if manifest.kind != KIND:
        raise InputError(f"{uri}: a {manifest.kind!r} artifact, not a graph snapshot")
    user_ids, item_ids = load_id_maps(uri)
    edges = read_parquet(join(uri, EDGES))
    holdout = read_parquet(join(uri, HOLDOUT))
    spec = FeatureSpec.from_json(read_bytes(join(uri, FEATURE_SPEC)))
    history = None
    if HISTORY in manifest.files:
        h = read_parquet(join(uri, HISTORY))
        extra = read_parquet(join(uri, HISTORY_USERS)).sort_values("user_idx")
        history = ServedHistory(
            user=h["user_idx"].to_numpy(dtype=np.int64),
            item=h["item_idx"].to_numpy(dtype=np.int64),
            weight=h["weight"].to_numpy(dtype=np.float32),
            types=h["types"].to_numpy(dtype=np.int64),
            extra_user_ids=extra["user_id"].to_numpy(dtype=object).astype(str),
        )
    return GraphSnapshot(
        uri=uri,
        as_of=dt.date.fromisoformat(str(manifest.extra["as_of"])),
        user_ids=user_ids,
        item_ids=item_ids,
        train_user=edges["user_idx"].to_numpy(dtype=np.int64),
        train_item=edges["item_idx"].to_numpy(dtype=np.int64),
        train_weight=edges["weight"].to_numpy(dtype=np.float32),
        holdout_user=holdout["user_idx"].to_numpy(dtype=np.int64),
        holdout_item=holdout["item_idx"].to_numpy(dtype=np.int64),
        user_features=read_npy(join(uri, USER_FEATURES)).astype(np.float32, copy=False),
        item_features=read_npy(join(uri, ITEM_FEATURES)).astype(np.float32, copy=False),
        feature_spec=spec,
        items=read_parquet(join(uri, ITEMS)),
        history=history,
    )


def build_snapshot(
    lake: str, as_of: dt.date, config: GraphConfig | None = None, out: str | None = None
) -> str:
    """Build, gate and publish the snapshot of ``as_of``; returns its URI.

    ``out`` defaults to :func:`snapshot_uri`; the previous snapshot (for the id
    maps and the drift checks) is the latest one before ``as_of`` in the same folder.
    """
    from recsys.graph.build import build

    return build(lake, as_of, config or GraphConfig(), out or snapshot_uri(lake, as_of))
