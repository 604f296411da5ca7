"""The graph snapshot artifact: its writer and its reader (training, evaluation and export
read it; :mod:`recsys.graph.build` computes what :func:`write_snapshot` writes).

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
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.artifacts import (
    InputRef,
    read_json,
    read_manifest,
    read_npy,
    read_parquet,
    write_artifact,
)
from recsys.errors import InputError
from recsys.graph.config import GraphConfig
from recsys.graph.features import FeatureSpec
from recsys.graph.gate import GraphStats
from recsys.reports import GateReport
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
    """A snapshot's content; indices are rows of ``user_ids`` / ``item_ids``."""

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
    """item_idx, item_id, category, price (serving filters)."""
    history: ServedHistory | None = None
    """What serving knows of each user (train and holdout days); None for older snapshots,
    whose bundles serve the train edges."""
    train_types: np.ndarray | None = None
    """Bitmask of each train edge's event types (bit k = EVENT_TYPES[k]); None when the
    snapshot does not record them."""

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


# ---------------------------------------------------------------- writer


def _ids_table(first: int, ids: np.ndarray, kind: str) -> pa.Table:
    return pa.table(
        {
            f"{kind}_idx": np.arange(first, first + len(ids), dtype=np.int64),
            f"{kind}_id": pa.array(np.asarray(ids).astype(str), pa.string()),
        }
    )


def _edges_table(
    user: np.ndarray, item: np.ndarray, weight: np.ndarray, types: np.ndarray | None
) -> pa.Table:
    cols: dict[str, Any] = {
        "user_idx": np.asarray(user, dtype=np.int64),
        "item_idx": np.asarray(item, dtype=np.int64),
        "weight": np.asarray(weight, dtype=np.float32),
    }
    if types is not None:
        cols["types"] = np.asarray(types, dtype=np.int16)
    return pa.table(cols)


def _items_table(items: pd.DataFrame) -> pa.Table:
    return pa.table(
        {
            "item_idx": items["item_idx"].to_numpy(dtype=np.int64),
            "item_id": pa.array(items["item_id"].to_numpy(dtype=object).astype(str), pa.string()),
            "category": pa.array(items["category"], pa.string(), from_pandas=True),
            "price": pa.array(items["price"].to_numpy(), pa.float64(), from_pandas=True),
        }
    )


def write_snapshot(
    out: str,
    snapshot: GraphSnapshot,
    *,
    stats: GraphStats,
    gate: GateReport,
    config: GraphConfig,
    inputs: dict[str, InputRef] | None = None,
    counts: dict[str, int | float] | None = None,
    extra: dict[str, Any] | None = None,
    before_publish: Callable[[str], None] | None = None,
) -> str:
    """Publish ``snapshot`` at ``out`` (the manifest last); returns ``out``.

    ``stats`` and ``gate`` are the graph gate's (``stats.json``, the next build's drift
    baseline); ``extra`` adds to the manifest's ``as_of`` (the build's window bounds).
    ``before_publish`` sees the staging folder once every file is written (tests use it
    to fail a build at the last moment).
    """
    s = snapshot
    with write_artifact(out, KIND) as draft:
        draft.write_parquet(USER_IDS, _ids_table(0, s.user_ids, "user"))
        draft.write_parquet(ITEM_IDS, _ids_table(0, s.item_ids, "item"))
        draft.write_parquet(
            EDGES, _edges_table(s.train_user, s.train_item, s.train_weight, s.train_types)
        )
        draft.write_parquet(
            HOLDOUT,
            pa.table(
                {
                    "user_idx": np.asarray(s.holdout_user, dtype=np.int64),
                    "item_idx": np.asarray(s.holdout_item, dtype=np.int64),
                }
            ),
        )
        if s.history is not None:
            h = s.history
            draft.write_parquet(HISTORY, _edges_table(h.user, h.item, h.weight, h.types))
            draft.write_parquet(HISTORY_USERS, _ids_table(s.n_users, h.extra_user_ids, "user"))
        draft.write_npy(USER_FEATURES, s.user_features)
        draft.write_npy(ITEM_FEATURES, s.item_features)
        draft.write_text(FEATURE_SPEC, s.feature_spec.to_json())
        draft.write_parquet(ITEMS, _items_table(s.items))
        draft.write_json(STATS, {"graph": stats.to_dict(), "gate": gate.model_dump(mode="json")})
        if before_publish is not None:
            before_publish(draft.uri)
        draft.inputs = dict(sorted((inputs or {}).items()))
        draft.counts = dict(counts or {})
        draft.config = config.model_dump(mode="json")
        draft.extra = {"as_of": s.as_of.isoformat(), **(extra or {})}
    return out


# ---------------------------------------------------------------- reader


def read_stats(uri: str) -> GraphStats:
    """The graph statistics a snapshot was gated on (the next build's drift baseline)."""
    return GraphStats.from_dict(read_json(join(uri, STATS))["graph"])


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


def load_feature_spec(uri: str) -> FeatureSpec:
    """How the snapshot at ``uri`` encodes node features (the next snapshot extends it)."""
    return FeatureSpec.from_json(read_bytes(join(uri, FEATURE_SPEC)))


def load_snapshot(uri: str) -> GraphSnapshot:
    """Load a published snapshot (an error if ``uri`` has no manifest)."""
    manifest = read_manifest(uri)
    if manifest.kind != KIND:
        raise InputError(f"{uri}: a {manifest.kind!r} artifact, not a graph snapshot")
    user_ids, item_ids = load_id_maps(uri)
    edges = read_parquet(join(uri, EDGES))
    holdout = read_parquet(join(uri, HOLDOUT))
    spec = load_feature_spec(uri)
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
        train_types=edges["types"].to_numpy(dtype=np.int64) if "types" in edges else None,
    )
