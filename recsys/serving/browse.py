"""What a storefront needs besides recommendations, read from the active bundle: shoppers by
id prefix, product details, a shopper's history (the bundle's and their live events), the
catalogue's categories and the features a new visitor can give. Torch-free, no I/O."""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from recsys.bundle import TYPE_BITS
from recsys.data.schema import EVENT_TYPES
from recsys.serving.engine import Engine
from recsys.serving.live import LiveEvent


def search_users(e: Engine, prefix: str, limit: int) -> list[str]:
    """Known shoppers whose id starts with ``prefix``, in id order, at most ``limit``."""
    ids = e.user_ids_sorted
    start = bisect.bisect_left(ids, prefix)
    out: list[str] = []
    for uid in ids[start : start + limit]:
        if not uid.startswith(prefix):
            break
        out.append(uid)
    return out


def item_card(e: Engine, j: int) -> dict[str, Any]:
    price = float(e.item_price[j])
    return {
        "item_id": str(e.item_ids[j]),
        "category": str(e.item_category[j]) or None,
        "price": None if math.isnan(price) else price,
    }


def item_details(e: Engine, ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Cards of the known ``ids`` (in the order given) and the ids the bundle does not know."""
    found, unknown = [], []
    for i in ids:
        j = e.item_index.get(i)
        if j is None:
            unknown.append(i)
        else:
            found.append(item_card(e, j))
    return found, unknown


def type_names(bits: int) -> list[str]:
    return [t for t in EVENT_TYPES if bits & TYPE_BITS[t]]


def user_history(
    e: Engine, user_id: str, live: Sequence[LiveEvent], live_state: str, limit: int
) -> dict[str, Any]:
    """The shopper's live events (newest first) and the bundle's history edges (heaviest
    first), each at most ``limit``; ``folded`` says whether a live event is folded into the
    recommendations (after the bundle's snapshot, a product the bundle knows)."""
    u = e.user_index.get(user_id)
    bundle: list[dict[str, Any]] = []
    total = 0
    if u is not None:
        a, b = int(e.indptr[u]), int(e.indptr[u + 1])
        total = b - a
        order = np.argsort(-e.h_w[a:b], kind="stable")[:limit]
        for r in order.tolist():
            j = int(e.h_item[a + r])
            bundle.append(
                {
                    **item_card(e, j),
                    "weight": float(e.h_w[a + r]),
                    "event_types": type_names(int(e.h_types[a + r])),
                }
            )
    events = []
    for ev in list(reversed(live))[:limit]:
        jj = e.item_index.get(ev.item_id)
        card = (
            item_card(e, jj)
            if jj is not None
            else {"item_id": ev.item_id, "category": None, "price": None}
        )
        events.append(
            {
                **card,
                "ts": dt.datetime.fromtimestamp(ev.ts_us / 1e6, dt.UTC).isoformat(),
                "event_type": ev.event_type,
                "value": ev.value,
                "folded": jj is not None and ev.ts_us >= e.cutoff_us,
            }
        )
    return {
        "user_id": user_id,
        "model_version": e.version,
        "known": u is not None,
        "live_state": live_state,
        "data_cutoff": e.meta.data_cutoff,
        "live": events,
        "live_total": len(live),
        "bundle": bundle,
        "bundle_total": total,
    }


def catalog(e: Engine) -> dict[str, Any]:
    """Categories (with item counts) and the features a new visitor can give."""
    cats = sorted(
        ({"name": c, "items": len(ix)} for c, ix in e.category_items.items() if c),
        key=lambda c: str(c["name"]),
    )
    features: list[dict[str, Any]] = []
    if e.feature_spec is not None and e.proj_sess is not None:
        users = e.feature_spec.users
        for c in users.categorical:
            features.append({"name": c.name, "kind": "categorical", "values": list(c.vocab)})
        for n in users.numeric:
            features.append({"name": n.name, "kind": "numeric", "typical": round(n.mean, 2)})
    return {
        "model_version": e.version,
        "items": e.n_items,
        "users": len(e.user_ids),
        "categories": cats,
        "user_features": features,
        "segment_feature": e.meta.segment_feature,
        "segments": e.popularity.segments,
    }
