"""A synthetic shop with a planted truth, written as a lake of daily partitions.

:mod:`recsys.data.synth_world` draws the shop and simulates its days (the generative model
is in its docstring); this module turns them into the lake's ``users``, ``items`` and
``events`` partitions and the ``_truth`` artifact. A seed gives byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from recsys.artifacts import write_artifact
from recsys.data.lake import write_partition
from recsys.data.schema import (
    EVENT_TYPES,
    EVENTS,
    EVENTS_SCHEMA,
    ITEMS,
    ITEMS_SCHEMA,
    USERS,
    USERS_SCHEMA,
)
from recsys.data.synth_world import AGE_BANDS, DAY_US, SynthConfig, World, draw_world, simulate_day
from recsys.logs import get_logger
from recsys.storage import join

__all__ = ["SynthConfig", "SynthSummary", "generate"]

log = get_logger(__name__)

TRUTH_DIR = "_truth"


@dataclass
class SynthSummary:
    out: str
    truth: str
    start_date: dt.date
    end_date: dt.date
    users: int
    items: int
    events_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())

    def describe(self) -> str:
        mix = ", ".join(f"{k} {v:,}" for k, v in self.events_by_type.items())
        return (
            f"wrote {self.out}: {self.events:,} events ({mix}), {self.users:,} users, "
            f"{self.items:,} items, days {self.start_date} .. {self.end_date}\n"
            f"planted truth: {self.truth}"
        )


def _ids(prefix: str, n: int) -> pa.Array:
    width = max(6, len(str(n)))
    digits = pc.utf8_lpad(pa.array(np.arange(n, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _events_table(
    ev: tuple[np.ndarray, ...], day: dt.date, user_ids: pa.Array, item_ids: pa.Array
) -> pa.Table:
    user, item, etype, value, ts = ev
    order = np.lexsort((user, ts))
    user, item, etype, value, ts = user[order], item[order], etype[order], value[order], ts[order]
    n = len(user)
    digits = pc.utf8_lpad(pa.array(np.arange(n, dtype=np.int64)).cast(pa.string()), 9, "0")
    event_id = pc.binary_join_element_wise(f"e{day:%Y%m%d}-", digits, "")
    types = pa.array(list(EVENT_TYPES), pa.string())
    return pa.table(
        {
            "event_id": event_id,
            "user_id": user_ids.take(pa.array(user)),
            "item_id": item_ids.take(pa.array(item)),
            "event_type": types.take(pa.array(etype.astype(np.int64))),
            "value": pa.array(value, pa.float64(), from_pandas=True),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        },
        schema=EVENTS_SCHEMA,
    )


def _date_array(start: dt.date, offsets: np.ndarray) -> pa.Array:
    epoch_days = (start - dt.date(1970, 1, 1)).days + offsets.astype(np.int32)
    return pa.array(epoch_days.astype(np.int32), pa.int32()).cast(pa.date32())


def generate(cfg: SynthConfig, out: str) -> SynthSummary:
    """Write ``cfg.days`` daily partitions of users, items and events to ``out``, and the truth."""
    rng = np.random.default_rng(cfg.seed)
    w = draw_world(cfg, rng)
    start = cfg.start_date
    user_ids = _ids("u", cfg.users)
    item_ids = _ids("p", cfg.items)
    users_all = pa.table(
        {
            "user_id": user_ids,
            "age": pa.array(w.user_age, pa.float64(), from_pandas=True),
            "country": pa.array(
                np.array(cfg.countries, dtype=object)[w.user_country],
                pa.string(),
                mask=~w.user_country_seen,
            ),
            "signup_date": _date_array(start, w.user_signup),
        },
        schema=USERS_SCHEMA,
    )
    items_all = pa.table(
        {
            "item_id": item_ids,
            "category": pa.array(np.array(w.cat_names, dtype=object)[w.item_cat], pa.string()),
            "price": pa.array(w.item_price, pa.float64()),
            "rating": pa.array(w.item_rating, pa.float64()),
            "created_date": _date_array(start, w.item_created),
        },
        schema=ITEMS_SCHEMA,
    )

    counts = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    pending: tuple[np.ndarray, ...] | None = None
    for d in tqdm(range(cfg.days), desc="synth days", unit="day", disable=None):
        day = start + dt.timedelta(days=d)
        day_start = (day - dt.date(1970, 1, 1)).days * DAY_US
        new = simulate_day(cfg, w, rng, d, day_start)
        ev = (
            new
            if pending is None
            else tuple(np.concatenate([a, b]) for a, b in zip(pending, new, strict=True))
        )
        today = ev[4] < day_start + DAY_US
        pending = tuple(a[~today] for a in ev)
        ev = tuple(a[today] for a in ev)
        counts += np.bincount(ev[2].astype(np.int64), minlength=len(EVENT_TYPES))
        write_partition(out, EVENTS, day, _events_table(ev, day, user_ids, item_ids))
        write_partition(out, USERS, day, users_all.filter(pa.array(w.user_signup <= d)))
        write_partition(out, ITEMS, day, items_all.filter(pa.array(w.item_created <= d)))

    truth = _write_truth(cfg, w, out, user_ids, item_ids)
    summary = SynthSummary(
        out=out,
        truth=truth,
        start_date=start,
        end_date=cfg.end_date,
        users=cfg.users,
        items=cfg.items,
        events_by_type={t: int(c) for t, c in zip(EVENT_TYPES, counts, strict=True)},
    )
    log.debug("%s", summary.describe())
    return summary


def _write_truth(
    cfg: SynthConfig, w: World, out: str, user_ids: pa.Array, item_ids: pa.Array
) -> str:
    uri = join(out, TRUTH_DIR)
    rows, cols = np.nonzero(w.aff_sparse)
    affinity = pa.table(
        {
            "user_id": user_ids.take(pa.array(rows)),
            "category": pa.array(np.array(w.cat_names, dtype=object)[cols], pa.string()),
            "affinity": pa.array(w.aff_sparse[rows, cols], pa.float64()),
        }
    )
    users = pa.table(
        {
            "user_id": user_ids,
            "age_band": pa.array(w.user_band.astype(np.int64)),
            "country": pa.array(np.array(cfg.countries, dtype=object)[w.user_country], pa.string()),
            "activity": pa.array(w.user_activity),
        }
    )
    items = pa.table(
        {
            "item_id": item_ids,
            "category": pa.array(np.array(w.cat_names, dtype=object)[w.item_cat], pa.string()),
            "quality": pa.array(w.item_quality),
            "popularity": pa.array(w.item_pop),
        }
    )
    cat_mass = np.bincount(w.item_cat, weights=w.item_pop, minlength=cfg.n_categories)
    meta = {
        "model": "P(i|u) = m_u[c_i] * p_i / sum_{j in c_i} p_j,  m_u = (1-e) a_u + e P_cat",
        "categories": w.cat_names,
        "age_bands": [list(b) for b in AGE_BANDS],
        "countries": cfg.countries,
        "explore_share": cfg.explore_share,
        "category_popularity": (cat_mass / cat_mass.sum()).tolist(),
        "age_effect": w.age_effect.tolist(),
        "country_effect": w.country_effect.tolist(),
    }  # fmt: skip
    with write_artifact(uri, "synth-truth") as draft:
        for name, table in (("affinity", affinity), ("users", users), ("items", items)):
            draft.write_parquet(f"{name}.parquet", table)
        draft.write_text("truth.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        draft.config = cfg.model_dump(mode="json")
        draft.counts = {"users": cfg.users, "items": cfg.items, "affinity_rows": affinity.num_rows}
    return uri
