"""One loaded bundle: id maps, histories and the live fold-in, the answers. No torch.

Its scorer runs in :mod:`recsys.serving.scoring`; users with neither history nor
features get :mod:`recsys.serving.popularity`'s ranking.

An engine holds no live state: each request brings the user's live events
(read from the live store, :mod:`recsys.serving.live`), and the engine folds in
those after its snapshot's end over the bundle's history. So every replica gives
the same answer for the same store, and a new bundle needs no replay. A hot
reload builds a new engine off-loop and swaps the reference; a request keeps the
engine it started with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from recsys.artifacts import manifest_sha256
from recsys.bundle import (
    TYPE_BITS,
    BundleData,
    read_bundle,
)
from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.serving.batcher import Batcher, Prepared, Scored
from recsys.serving.explain import (
    because_dict,
    because_json,
    explain,
)
from recsys.serving.live import LiveEvent, to_us
from recsys.serving.popularity import Popularity
from recsys.serving.query import Query
from recsys.serving.scoring import OnnxScorer
from recsys.sessions import scorer_session

History = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A user's history: item indices, edge weights, event-type bits."""

log = get_logger(__name__)


_NO_TYPES = np.zeros(0, np.int64)


class Engine:
    def __init__(
        self, data: BundleData, ort_threads: int = 1, score_in_thread: bool = True
    ) -> None:
        self.uri = data.uri
        self.meta = data.meta
        self.version = data.meta.version
        self.manifest = data.manifest
        self.manifest_sha = manifest_sha256(data.uri)
        self.proj_sess = (
            scorer_session(data.projection_onnx, ort_threads) if data.projection_onnx else None
        )
        self.feature_spec = None
        if data.feature_spec_json is not None:
            from recsys.graph.features import FeatureSpec

            self.feature_spec = FeatureSpec.from_json(data.feature_spec_json)
        users = data.users.sort_values("user_idx")
        self.user_ids = users["user_id"].astype(str).to_numpy(dtype=object)
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.user_segment = users["segment"].astype(str).to_numpy(dtype=object)
        items = data.items.sort_values("item_idx")
        self.item_ids = items["item_id"].astype(str).to_numpy(dtype=object)
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}
        self.n_items = len(self.item_ids)
        cats = (
            items["category"].astype("string").fillna("").to_numpy(dtype=object)
            if "category" in items
            else np.full(self.n_items, "", dtype=object)
        )
        self.item_category = cats
        self.item_price = (
            pd.to_numeric(items["price"], errors="coerce").to_numpy(dtype=np.float64)
            if "price" in items
            else np.full(self.n_items, np.nan)
        )
        self.user_ids_sorted: list[str] = sorted(self.user_ids.tolist())
        """For the shopper search of the storefront (``GET /v1/users?prefix=``)."""
        self.category_items = {
            str(c): np.flatnonzero(cats == c).astype(np.int64) for c in pd.unique(cats)
        }
        h = data.histories.sort_values(["user_idx", "item_idx"], kind="stable")
        counts = np.bincount(h["user_idx"].to_numpy(), minlength=len(self.user_ids))
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.h_item = h["item_idx"].to_numpy(dtype=np.int64)
        self.h_w = h["weight"].to_numpy(dtype=np.float32)
        self.h_types = h["types"].to_numpy(dtype=np.int64)
        self.user_e0 = data.user_e0
        self.item_S = data.item_S
        self.item_final = data.item_final
        self.item_inv_sqrt_deg = data.item_inv_sqrt_deg
        norms = np.linalg.norm(self.item_final, axis=1, keepdims=True)
        self.item_unit = (self.item_final / np.maximum(norms, 1e-12)).astype(np.float32)
        self.popularity = Popularity(data.popularity, self.n_items)
        self.cutoff_us = _cutoff_us(self.meta.data_cutoff)
        """Live events before this instant are in the bundle's histories already."""
        self.served = np.zeros(self.n_items, dtype=bool)
        self.n_served = 0
        """Items recommended at least once by this engine (the coverage metric)."""
        # each item id as a JSON string, for the hand-built response body (see finish_json)
        self.item_id_json = [json.dumps(i) for i in self.item_ids.tolist()]
        self.version_json = json.dumps(self.version)
        self.dim = self.meta.embedding_dim
        self._zero_e0 = np.zeros((1, self.dim), dtype=np.float32)
        self._pad = np.array([self.n_items], dtype=np.int64)
        self.scorer = OnnxScorer(data.scorer_onnx, ort_threads, self.n_items, self.dim, data.uri)
        self.batcher = Batcher(self.scorer, inline=not score_in_thread)

    @property
    def explains(self) -> bool:
        """Whether the bundle's scorer gives the two largest contributions per item."""
        return self.scorer.explains

    # ---------- histories and events ----------

    def history(self, user_id: str, live: Sequence[LiveEvent] = ()) -> History | None:
        """The bundle's history of ``user_id`` with the live events after the snapshot's
        end folded in (by the graph's own weight rules); None for a user with neither."""
        u = self.user_index.get(user_id)
        fresh = [e for e in live if e.ts_us >= self.cutoff_us and e.item_id in self.item_index]
        if u is not None:
            a, b = self.indptr[u], self.indptr[u + 1]
            base: History = (self.h_item[a:b], self.h_w[a:b], self.h_types[a:b])
            if not fresh:
                return base
            items = {
                it: [w, ty]
                for it, w, ty in zip(
                    base[0].tolist(), base[1].tolist(), base[2].tolist(), strict=True
                )
            }
        elif not fresh:
            return None
        else:
            items = {}
        rules = self.meta.weights
        for e in fresh:
            j = self.item_index[e.item_id]
            w0, ty0 = items.get(j, (0.0, 0))
            items[j] = [
                rules.add_event(float(w0), e.event_type, e.value),
                int(ty0) | TYPE_BITS[e.event_type],
            ]
        idx = np.fromiter(items.keys(), dtype=np.int64, count=len(items))
        vals = np.array(list(items.values()), dtype=np.float64).reshape(-1, 2)
        return idx, vals[:, 0].astype(np.float32), vals[:, 1].astype(np.int64)

    # ---------- scoring ----------

    def _excluded(self, q: Query, hist: History | None) -> np.ndarray:
        parts = [self._pad]
        if hist is not None and q.exclude_seen_mask and len(hist[0]):
            h_idx, _, h_types = hist
            parts.append(h_idx[(h_types & q.exclude_seen_mask) != 0])
        if q.include_categories:
            keep = np.zeros(self.n_items, dtype=bool)
            for c in q.include_categories:
                if c in self.category_items:
                    keep[self.category_items[c]] = True
            parts.append(np.flatnonzero(~keep))
        for c in q.exclude_categories:
            if c in self.category_items:
                parts.append(self.category_items[c])
        if q.exclude_items:
            ex = [self.item_index[i] for i in q.exclude_items if i in self.item_index]
            parts.append(np.array(ex, dtype=np.int64))
        return np.concatenate(parts).astype(np.int64, copy=False)

    def project_features(self, features: dict[str, Any]) -> np.ndarray | None:
        if self.proj_sess is None or self.feature_spec is None:
            return None
        known = set(self.feature_spec.user_raw_columns)
        unknown = sorted(set(features) - known)
        if unknown:
            raise InputError(f"features: unknown feature(s) {unknown}; known: {sorted(known)}")
        x = self.feature_spec.encode_users(pd.DataFrame([features]))
        (e0,) = self.proj_sess.run(None, {"x": x.astype(np.float32)})
        out: np.ndarray = e0[0]
        return out

    def prepare(
        self, user_id: str, q: Query, live: Sequence[LiveEvent] = (), live_state: str = "ok"
    ) -> Prepared | dict[str, Any]:
        """Inputs of the scorer for one request, or the finished answer when the user falls
        back to popularity. ``live_state`` says whether the live events could be read
        (``ok``) or the answer comes from the bundle alone (``unavailable``)."""
        k = min(q.k, self.n_items)
        hist = self.history(user_id, live)
        u = self.user_index.get(user_id)
        source = "history"
        e0: np.ndarray | None = None
        if u is not None:
            e0 = self.user_e0[u]
        elif q.features:
            e0 = self.project_features(q.features)
            source = "features" if hist is None else "history+features"
        if hist is None and e0 is None:
            return self._popular(user_id, q, k, live_state)
        if e0 is None:
            e0 = self._zero_e0[0]
            source = "events"
        excl = self._excluded(q, hist)
        if hist is None:
            h_idx, h_w, h_types = np.zeros(0, np.int64), np.zeros(0, np.float32), _NO_TYPES
        else:
            h_idx, h_w, h_types = hist
        return Prepared(user_id, source, live_state, e0, h_idx, h_w, h_types, excl, k)

    # ---------- explanations ----------

    def finish(self, p: Prepared, result: Scored) -> dict[str, Any]:
        ids = self.item_ids
        because, note = explain(p, result, self.item_ids)
        items = [
            {"item_id": ids[j], "score": sc, "because": because_dict(b, ids)}
            for j, sc, b in zip(result.idx.tolist(), result.scores.tolist(), because, strict=True)
        ]
        return {
            "user_id": p.user_id,
            "model_version": self.version,
            "source": p.source,
            "live_state": p.live_state,
            "explanation": note,
            "items": items,
            "_idx": result.idx,
        }

    def finish_json(self, p: Prepared, result: Scored) -> bytes:
        """The JSON body of :meth:`finish`'s answer (without ``_idx``), byte for byte what
        ``json.dumps(..., separators=(",", ":"))`` writes, built from per-item JSON strings
        made once at load: a quarter of the cost of building dicts and encoding them
        (JSON string escaping is per character, so an escaped id can be spliced into the
        escaped reason; a float is written with ``repr``, as ``json`` does)."""
        ij = self.item_id_json
        because, note = explain(p, result, self.item_ids)
        items = [
            f'{{"item_id":{ij[j]},"score":{sc!r},"because":{because_json(b, ij)}}}'
            for j, sc, b in zip(result.idx.tolist(), result.scores.tolist(), because, strict=True)
        ]
        note_json = "null" if note is None else json.dumps(note, separators=(",", ":"))
        return (
            f'{{"user_id":{json.dumps(p.user_id)},"model_version":{self.version_json},'
            f'"source":{json.dumps(p.source)},"live_state":{json.dumps(p.live_state)},'
            f'"explanation":{note_json},"items":[{",".join(items)}]}}'
        ).encode()

    async def recommend_body(
        self, user_id: str, q: Query, live: Sequence[LiveEvent] = (), live_state: str = "ok"
    ) -> tuple[bytes, str, np.ndarray]:
        """The server's path: (JSON body, source, recommended item indices)."""
        p = self.prepare(user_id, q, live, live_state)
        if isinstance(p, dict):
            idx = p.pop("_idx")
            return json.dumps(p, separators=(",", ":")).encode(), str(p["source"]), idx
        result = await self.batcher.submit(p)
        return self.finish_json(p, result), p.source, result.idx

    def recommend(self, user_id: str, q: Query, live: Sequence[LiveEvent] = ()) -> dict[str, Any]:
        """Synchronous top-k (smoke test, tools); the server uses :meth:`recommend_body`."""
        p = self.prepare(user_id, q, live)
        if isinstance(p, dict):
            return p
        return self.finish(p, self.scorer.run_batch([p])[0])

    async def recommend_async(
        self, user_id: str, q: Query, live: Sequence[LiveEvent] = ()
    ) -> dict[str, Any]:
        p = self.prepare(user_id, q, live)
        if isinstance(p, dict):
            return p
        return self.finish(p, await self.batcher.submit(p))

    def _popular(self, user_id: str, q: Query, k: int, live_state: str = "ok") -> dict[str, Any]:
        segment = q.segment
        if segment is None and q.features and self.meta.segment_feature:
            v = q.features.get(self.meta.segment_feature)
            segment = str(v) if v is not None else None
        picked = self.popularity.pick(segment, k, self._excluded(q, None))
        items = [
            {"item_id": self.item_ids[j], "score": sc, "because": {"reason": picked.reason}}
            for j, sc in zip(picked.items.tolist(), picked.scores, strict=True)
        ]
        return {
            "user_id": user_id,
            "model_version": self.version,
            "source": picked.source,
            "live_state": live_state,
            "explanation": None,
            "items": items,
            "_idx": picked.items,
        }

    def similar(self, item_id: str, k: int) -> dict[str, Any]:
        j = self.item_index.get(item_id)
        if j is None:
            raise KeyError(item_id)
        sims = self.item_unit @ self.item_unit[j]
        sims[j] = -np.inf
        k = min(k, self.n_items - 1)
        top = np.argpartition(-sims, k - 1)[:k] if k > 0 else np.zeros(0, np.int64)
        top = top[np.argsort(-sims[top], kind="stable")]
        return {
            "item_id": item_id,
            "model_version": self.version,
            "items": [{"item_id": self.item_ids[t], "score": float(sims[t])} for t in top.tolist()],
        }

    def smoke(self) -> float:
        """One real query (a training user if any, else a cold one); returns seconds taken."""
        t0 = time.perf_counter()
        user = str(self.user_ids[0]) if len(self.user_ids) else "__smoke__"
        for _ in range(3):  # the first run allocates; warm the arena too
            out = self.recommend(user, Query(k=min(10, self.n_items)))
        if self.n_items and not out["items"] and out["source"] == "history":
            raise InputError(f"{self.uri}: smoke query returned no items")
        if self.n_items > 1:
            self.similar(str(self.item_ids[0]), 1)
        return time.perf_counter() - t0


def _cutoff_us(cutoff: str | None) -> int:
    """The snapshot's end as epoch microseconds; a bundle that does not know it folds in
    every live event (-1)."""
    if not cutoff:
        return -1
    try:
        when = datetime.fromisoformat(cutoff)
    except ValueError:
        log.warning(
            "bundle data_cutoff %r is not an ISO time: every live event is folded in", cutoff
        )
        return -1
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return to_us(when)


def load_engine(
    uri: str, ort_threads: int = 1, verify: bool = True, score_in_thread: bool = True
) -> Engine:
    """Read, verify (checksums), build sessions and smoke-test the bundle at ``uri``."""
    t0 = time.perf_counter()
    data = read_bundle(uri, verify=verify)
    try:
        engine = Engine(data, ort_threads=ort_threads, score_in_thread=score_in_thread)
    except InputError:
        raise
    except Exception as exc:  # onnxruntime or parquet errors: the bundle is unusable
        raise InputError(f"{uri}: cannot load bundle: {exc}") from None
    smoke_s = engine.smoke()
    log.info(
        "bundle %s loaded from %s in %.2fs (smoke %.1f ms, %d users, %d items)",
        engine.version,
        uri,
        time.perf_counter() - t0,
        smoke_s * 1e3,
        len(engine.user_ids),
        engine.n_items,
    )
    return engine


__all__ = ["Engine", "History", "load_engine"]
