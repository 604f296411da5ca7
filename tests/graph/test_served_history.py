"""The served history: every edge through the as-of day, holdout days included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from recsys.data.lake import read_partition
from recsys.graph.build import build_snapshot
from recsys.graph.config import WeightConfig
from recsys.graph.snapshot import load_snapshot
from recsys.graph.weights import edge_weight

from .conftest import END, small_config, ts, write_events


def test_history_holds_train_and_holdout_days(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=4)
    # u900 appears only on the as-of day (a holdout day); u000 buys i001 that day too
    write_events(
        lake,
        [
            ("u900", "i002", "purchase", None, ts(END, 9)),
            ("u900", "i003", "view", None, ts(END, 10)),
            ("u000", "i001", "purchase", None, ts(END, 23, 59)),
        ],
        prefix="late",
    )
    s = load_snapshot(build_snapshot(lake, END, small_config(holdout_days=1)))
    h = s.history
    assert h is not None
    assert "u900" not in set(s.user_ids)  # unknown to the model...
    assert list(h.extra_user_ids) == ["u900"]  # ...but served from its history
    u900 = s.n_users
    got = {s.item_ids[i] for i in h.item[h.user == u900]}
    assert got == {"i002", "i003"}
    # every train edge is in the history, with a weight at least as large
    hist = {(int(u), int(i)): float(w) for u, i, w in zip(h.user, h.item, h.weight, strict=True)}
    for u, i, w in zip(s.train_user, s.train_item, s.train_weight, strict=True):
        assert hist[(int(u), int(i))] >= float(w) - 1e-6
    # the (u000, i001) pair weighs exactly what the graph's rule gives all its events,
    # train days and the holdout day alike
    events = pa.concat_tables(
        [read_partition(lake, "events", END - dt.timedelta(days=d)) for d in range(4)]
    ).to_pylist()
    pair = [e for e in events if e["user_id"] == "u000" and e["item_id"] == "i001"]
    cutoff = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(), dt.UTC)
    want = edge_weight(
        [e["event_type"] for e in pair],
        [e["value"] for e in pair],
        [(cutoff - e["ts"]).total_seconds() / 86_400 for e in pair],
        WeightConfig(),
    )
    u0 = int(np.flatnonzero(s.user_ids == "u000")[0])
    i1 = int(np.flatnonzero(s.item_ids == "i001")[0])
    assert abs(hist[(u0, i1)] - want) < 1e-5
