from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pytest

from recsys.errors import InputError
from recsys.graph.build import build_snapshot
from recsys.graph.idmap import check_prefix, extend_ids, index_of
from recsys.graph.snapshot import load_snapshot

from .conftest import END, random_events, small_config, write_dims, write_events


def test_extend_ids_appends_sorted_new_ids() -> None:
    prev = np.array(["u9", "u1", "u5"], dtype=object)
    out = extend_ids(prev, np.array(["u5", "u0", "u7", "u0", "u1"], dtype=object))
    assert list(out) == ["u9", "u1", "u5", "u0", "u7"]
    assert list(extend_ids(None, np.array(["b", "a", "b"], dtype=object))) == ["a", "b"]
    assert list(index_of(out, np.array(["u0", "zz", "u9"], dtype=object))) == [3, -1, 0]
    with pytest.raises(InputError, match="does not extend"):
        check_prefix(prev, np.array(["u1", "u9", "u5"], dtype=object), "user")


def test_indices_are_stable_across_snapshots(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=3, n_users=30, n_items=20)
    d1 = END
    first = load_snapshot(build_snapshot(lake, d1, small_config()))
    # two days later: new users and items appear, and the window drops the old days
    d2 = END + dt.timedelta(days=2)
    write_events(
        lake,
        random_events(60, 45, 2, 300, end=d2, seed=5, user_prefix="v")
        + random_events(30, 20, 2, 100, end=d2, seed=6),
        prefix="n",
    )
    write_dims(lake, d2, 30, 45)
    second = load_snapshot(build_snapshot(lake, d2, small_config(window_days=2)))
    n1u, n1i = first.n_users, first.n_items
    assert second.n_users > n1u and second.n_items > n1i
    assert list(second.user_ids[:n1u]) == list(first.user_ids)
    assert list(second.item_ids[:n1i]) == list(first.item_ids)
    new_users = list(second.user_ids[n1u:])
    assert new_users == sorted(new_users) and all(u.startswith("v") for u in new_users)
    assert list(second.item_ids[n1i:]) == sorted(second.item_ids[n1i:])
    # a pair present in both snapshots keeps the same indices
    p1 = {
        (first.user_ids[u], first.item_ids[i]): (u, i)
        for u, i in zip(first.train_user, first.train_item, strict=True)
    }
    p2 = {
        (second.user_ids[u], second.item_ids[i]): (u, i)
        for u, i in zip(second.train_user, second.train_item, strict=True)
    }
    common = p1.keys() & p2.keys()
    assert common and all(p1[k] == p2[k] for k in common)
    # the serving item table lines up with the map
    assert list(second.items["item_id"]) == list(second.item_ids)
    assert list(second.items["item_idx"]) == list(range(second.n_items))
