"""The serving bundle: write it (export) and read it back (server), torch-free.

A bundle is one artifact folder (``write_artifact``, kind ``bundle``)::

    manifest.json          checksums of every file, lineage, gate metrics
    bundle.json            BundleMeta: version, K, d, weight rules, segment feature
    scorer.onnx            fold-in + dot + mask + top-K, item tables as initialisers
    user_features.onnx     feature projection of a new user (absent for id-only models)
    feature_spec.json      how raw user features are encoded (absent for id-only models)
    users.parquet          user_idx, user_id, segment
    items.parquet          item_idx, item_id, category, price
    histories.parquet      user_idx, item_idx, weight, types (bitmask over EVENT_TYPES)
    popularity.parquet     segment ('' = global), rank, item_idx, score
    user_e0.npy  item_S.npy  item_final.npy  item_inv_sqrt_deg.npy
    item_item_index.npy  item_item_value.npy   the item-item term (absent without one)

The ``.npy`` tables duplicate the scorer's initialisers so the server can
explain a recommendation and find similar items without the ``onnx`` package;
they are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.artifacts import (
    InputRef,
    Manifest,
    read_manifest,
    read_npy,
    read_parquet,
    verify_artifact,
    write_artifact,
)
from recsys.data.schema import EVENT_TYPES, RATING_MAX, RATING_MIN
from recsys.errors import InputError
from recsys.graph.config import WeightConfig
from recsys.graph.weights import saturate
from recsys.item_item import INDEX_FILE, VALUE_FILE, ItemItemTerm
from recsys.logs import get_logger
from recsys.storage import join, read_bytes

log = get_logger(__name__)

BUNDLE_KIND = "bundle"
BUNDLE_JSON = "bundle.json"
SCORER = "scorer.onnx"
PROJECTION = "user_features.onnx"
FEATURE_SPEC = "feature_spec.json"
USERS = "users.parquet"
ITEMS = "items.parquet"
HISTORIES = "histories.parquet"
POPULARITY = "popularity.parquet"
USER_E0 = "user_e0.npy"
ITEM_S = "item_S.npy"
ITEM_FINAL = "item_final.npy"
ITEM_INV_SQRT_DEG = "item_inv_sqrt_deg.npy"
UNKNOWN_TYPE_BIT = 1 << len(EVENT_TYPES)
"""Bit for history edges whose event types the graph did not record."""
TYPE_BITS: dict[str, int] = {t: 1 << i for i, t in enumerate(EVENT_TYPES)}
ALL_TYPES_MASK = UNKNOWN_TYPE_BIT | sum(TYPE_BITS.values())
POPULARITY_PER_SEGMENT = 500
"""Items kept per segment in the popularity table (the global list keeps every item)."""


class WeightRules(WeightConfig):
    """How an event changes an edge weight at serving time: the graph's own rules.

    The fields and their defaults are the graph's :class:`WeightConfig` (the
    export copies the snapshot's into ``bundle.json``), so serving can never
    weigh an event differently from training. The graph's weight is
    ``saturate(sum type_weight * decay)``; an event arriving now has decay 1,
    so the new weight is ``saturate(unsaturate(w) + type_weight)``, and a
    training user's weights are the graph's own, so the fold-in reproduces
    their trained embedding.
    """

    # bundle.json written by other versions may carry fields this one does not know
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def from_config(cls, cfg: WeightConfig) -> WeightRules:
        return cls.model_validate(cfg.model_dump())

    def event_weight(self, event_type: str, value: float | None) -> float:
        """An event's raw weight at age 0: :func:`recsys.graph.weights.event_weights` for one
        event (stars clipped to the rating range, a missing or non-finite value counting
        ``rating_default``), in plain floats: it runs per live event on the request path."""
        w = self.type_weights[event_type]
        if event_type == "rating":
            stars = value if value is not None and math.isfinite(value) else self.rating_default
            w *= min(max(stars, RATING_MIN), RATING_MAX) / RATING_MAX
        return float(w)

    def saturate(self, raw: float) -> float:
        return float(saturate(np.array([raw]), self)[0])

    def unsaturate(self, w: float) -> float:
        if self.saturation == "log1p":
            return float(np.expm1(w))
        if self.saturation == "hyperbolic":
            w = min(w, 1.0 - 1e-9)
            return self.saturation_c * w / (1.0 - w)
        return w

    def add_event(self, weight: float, event_type: str, value: float | None) -> float:
        """The edge weight after one more event of ``event_type`` (``weight`` 0 = new edge)."""
        raw = self.unsaturate(weight) if weight > 0 else 0.0
        return self.saturate(raw + self.event_weight(event_type, value))


class BundleMeta(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str
    num_layers: int
    embedding_dim: int
    num_users: int
    num_items: int
    weights: WeightRules = Field(default_factory=WeightRules)
    segment_feature: str | None = None
    """Raw user column whose value names the user's segment for popularity fallbacks."""
    has_feature_projection: bool = False
    data_cutoff: str | None = None
    """End of the snapshot's as-of day (ISO, exclusive): the bundle's histories hold every
    event before it, so the server folds in only the live events at or after it."""
    item_item_width: int = 0
    """Entries per item of the scorer's item-item term (:mod:`recsys.item_item`); 0: none."""


@dataclass
class FoldInTables:
    """Everything the fold-in and the fallbacks need, as numpy/pandas (computed in tables.py)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_e0: np.ndarray
    item_S: np.ndarray
    item_final: np.ndarray
    item_deg: np.ndarray
    num_layers: int
    hist_user: np.ndarray
    hist_item: np.ndarray
    hist_weight: np.ndarray
    hist_types: np.ndarray
    items: pd.DataFrame
    """item_idx, item_id, category, price (one row per item index)."""
    user_segments: np.ndarray | None = None
    """Segment label per user index ('' when unknown)."""
    proj_weight: np.ndarray | None = None
    proj_bias: np.ndarray | None = None
    feature_spec_json: str | None = None
    item_item: ItemItemTerm | None = None
    """The scorer's item-item term (None: embeddings alone)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def item_inv_sqrt_deg(self) -> np.ndarray:
        deg = self.item_deg.astype(np.float64)
        out = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-30)), 0.0)
        return out.astype(np.float32)


def popularity_table(t: FoldInTables) -> pd.DataFrame:
    """Global popularity (every item) and the top items of each segment, by summed weight."""
    n_items = len(t.item_ids)
    score = np.bincount(t.hist_item, weights=t.hist_weight, minlength=n_items)
    order = np.lexsort((np.arange(n_items), -score))
    frames = [
        pd.DataFrame(
            {"segment": "", "rank": np.arange(n_items), "item_idx": order, "score": score[order]}
        )
    ]
    if t.user_segments is not None and len(t.hist_user):
        seg_of_edge = t.user_segments[t.hist_user]
        df = pd.DataFrame({"segment": seg_of_edge, "item_idx": t.hist_item, "w": t.hist_weight})
        df = df[df["segment"] != ""]
        agg = df.groupby(["segment", "item_idx"], as_index=False)["w"].sum()
        agg = agg.sort_values(["segment", "w", "item_idx"], ascending=[True, False, True])
        agg["rank"] = agg.groupby("segment").cumcount()
        agg = agg[agg["rank"] < POPULARITY_PER_SEGMENT]
        frames.append(agg.rename(columns={"w": "score"})[["segment", "rank", "item_idx", "score"]])
    out = pd.concat(frames, ignore_index=True)
    out["item_idx"] = out["item_idx"].astype(np.int64)
    out["rank"] = out["rank"].astype(np.int64)
    out["score"] = out["score"].astype(np.float64)
    return out


def write_bundle(
    t: FoldInTables,
    out_uri: str,
    meta: BundleMeta,
    inputs: dict[str, InputRef] | None = None,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
) -> Manifest:
    """Write the bundle folder atomically; readers see all of it or none."""
    from recsys.scorer import build_feature_projection, build_scorer

    scorer = build_scorer(t.item_S, t.item_final, t.item_inv_sqrt_deg, t.num_layers, t.item_item)
    n_users = len(t.user_ids)
    segments = t.user_segments if t.user_segments is not None else np.full(n_users, "", object)
    with write_artifact(out_uri, BUNDLE_KIND) as draft:
        draft.write_bytes(SCORER, scorer.SerializeToString())
        # the bundle's tables are snappy-compressed (pandas' default when it was first written)
        tables = {
            USERS: pd.DataFrame(
                {
                    "user_idx": np.arange(n_users, dtype=np.int64),
                    "user_id": t.user_ids.astype(str),
                    "segment": segments.astype(str),
                }
            ),
            ITEMS: t.items.reset_index(drop=True),
            HISTORIES: pd.DataFrame(
                {
                    "user_idx": t.hist_user.astype(np.int64),
                    "item_idx": t.hist_item.astype(np.int64),
                    "weight": t.hist_weight.astype(np.float32),
                    "types": t.hist_types.astype(np.int16),
                }
            ),
            POPULARITY: popularity_table(t),
        }
        for name, frame in tables.items():
            draft.write_parquet(name, frame, compression="snappy")
        draft.write_npy(USER_E0, t.user_e0.astype(np.float32))
        draft.write_npy(ITEM_S, t.item_S.astype(np.float32))
        draft.write_npy(ITEM_FINAL, t.item_final.astype(np.float32))
        draft.write_npy(ITEM_INV_SQRT_DEG, t.item_inv_sqrt_deg)
        if t.item_item is not None:
            draft.write_npy(INDEX_FILE, t.item_item.index.astype(np.int32))
            draft.write_npy(VALUE_FILE, t.item_item.value.astype(np.float32))
            meta = meta.model_copy(update={"item_item_width": t.item_item.width})
        if t.proj_weight is not None:
            bias = t.proj_bias if t.proj_bias is not None else np.zeros(t.proj_weight.shape[1])
            proj = build_feature_projection(t.proj_weight, bias)
            draft.write_bytes(PROJECTION, proj.SerializeToString())
            meta = meta.model_copy(update={"has_feature_projection": True})
        if t.feature_spec_json is not None:
            draft.write_text(FEATURE_SPEC, t.feature_spec_json)
        draft.write_text(BUNDLE_JSON, meta.model_dump_json(indent=2) + "\n")
        draft.inputs = dict(inputs or {})
        draft.counts = {
            "users": n_users,
            "items": len(t.item_ids),
            "history_edges": len(t.hist_item),
            "embedding_dim": int(t.item_final.shape[1]),
        }
        draft.config = {"num_layers": t.num_layers, "version": meta.version}
        draft.extra = {"metrics": dict(metrics or {}), "lineage": dict(lineage or {}), **t.extra}
    log.info(
        "bundle %s written to %s (%d users, %d items)",
        meta.version,
        out_uri,
        n_users,
        len(t.item_ids),
    )
    return read_manifest(out_uri)


@dataclass
class BundleData:
    """A bundle read into memory (no onnxruntime session yet: see recsys.serving.engine)."""

    uri: str
    meta: BundleMeta
    manifest: Manifest
    scorer_onnx: bytes
    projection_onnx: bytes | None
    feature_spec_json: str | None
    users: pd.DataFrame
    items: pd.DataFrame
    histories: pd.DataFrame
    popularity: pd.DataFrame
    user_e0: np.ndarray
    item_S: np.ndarray
    item_final: np.ndarray
    item_inv_sqrt_deg: np.ndarray
    item_item: ItemItemTerm | None = None


def read_bundle(uri: str, verify: bool = True) -> BundleData:
    """Read (and by default verify the checksums of) the bundle at ``uri``."""
    manifest = verify_artifact(uri) if verify else read_manifest(uri)
    if manifest.kind != BUNDLE_KIND:
        raise InputError(f"{uri}: artifact kind is {manifest.kind!r}, not a serving bundle")
    try:
        meta = BundleMeta.model_validate_json(read_bytes(join(uri, BUNDLE_JSON)))
    except ValueError as exc:
        raise InputError(f"{uri}: bundle.json is invalid: {exc}") from None
    has = set(manifest.files)
    data = BundleData(
        uri=uri,
        meta=meta,
        manifest=manifest,
        scorer_onnx=read_bytes(join(uri, SCORER)),
        projection_onnx=read_bytes(join(uri, PROJECTION)) if PROJECTION in has else None,
        feature_spec_json=read_bytes(join(uri, FEATURE_SPEC)).decode()
        if FEATURE_SPEC in has
        else None,
        users=read_parquet(join(uri, USERS)),
        items=read_parquet(join(uri, ITEMS)),
        histories=read_parquet(join(uri, HISTORIES)),
        popularity=read_parquet(join(uri, POPULARITY)),
        user_e0=read_npy(join(uri, USER_E0)),
        item_S=read_npy(join(uri, ITEM_S)),
        item_final=read_npy(join(uri, ITEM_FINAL)),
        item_inv_sqrt_deg=read_npy(join(uri, ITEM_INV_SQRT_DEG)),
        item_item=_read_item_item(uri, has),
    )
    n_u, n_i, d = meta.num_users, meta.num_items, meta.embedding_dim
    if data.item_item is not None:
        got_ii = (data.item_item.n_items, data.item_item.width)
        if got_ii != (n_i, meta.item_item_width):
            raise InputError(
                f"{uri}: {INDEX_FILE} has shape {got_ii}, bundle.json says "
                f"{(n_i, meta.item_item_width)}"
            )
    elif meta.item_item_width:
        raise InputError(f"{uri}: bundle.json names an item-item term, {INDEX_FILE} is missing")
    checks = {
        USER_E0: (data.user_e0.shape, (n_u, d)),
        ITEM_S: (data.item_S.shape, (n_i, d)),
        ITEM_FINAL: (data.item_final.shape, (n_i, d)),
        ITEM_INV_SQRT_DEG: (data.item_inv_sqrt_deg.shape, (n_i,)),
        USERS: ((len(data.users),), (n_u,)),
        ITEMS: ((len(data.items),), (n_i,)),
    }
    for name, (got, want) in checks.items():
        if tuple(got) != want:
            raise InputError(f"{uri}: {name} has shape {tuple(got)}, bundle.json says {want}")
    return data


def _read_item_item(uri: str, files: set[str]) -> ItemItemTerm | None:
    if INDEX_FILE not in files or VALUE_FILE not in files:
        return None
    try:
        return ItemItemTerm(read_npy(join(uri, INDEX_FILE)), read_npy(join(uri, VALUE_FILE)))
    except InputError as exc:
        raise InputError(f"{uri}: {exc}") from None
