"""The holdout grows back from the as-of day until it holds enough users and pairs to decide."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from recsys.artifacts import read_manifest
from recsys.graph.build import build_snapshot
from recsys.graph.snapshot import load_snapshot

from .conftest import END, Event, random_events, small_config, ts, write_dims, write_events


def _returning_buyers(days: int, per_day: int, train_days: int = 10) -> list[Event]:
    """``train_days`` of history for 200 users, then ``days`` days in which ``per_day``
    distinct returning users each buy a product they never touched before."""
    out: list[Event] = []
    first = END - dt.timedelta(days=days + train_days - 1)
    for d in range(train_days):
        day = first + dt.timedelta(days=d)
        out += [(f"u{u:03d}", f"i{u % 20:03d}", "purchase", None, ts(day)) for u in range(200)]
    user = 0
    for d in range(days):
        day = END - dt.timedelta(days=days - 1 - d)
        for _ in range(per_day):
            out.append((f"u{user % 200:03d}", f"i{100 + user:03d}", "purchase", None, ts(day, 9)))
            out.append((f"u{user % 200:03d}", f"i{user % 20:03d}", "view", None, ts(day, 10)))
            user += 1
    return out


def _holdout_users(uri: str) -> int:
    return len(np.unique(load_snapshot(uri).holdout_user))


def test_holdout_grows_until_the_targets_are_met(lake: str) -> None:
    write_events(lake, _returning_buyers(days=12, per_day=10))
    write_dims(lake, END - dt.timedelta(days=30), 200, 400)
    cfg = small_config(
        holdout_min_users=35, holdout_min_pairs=35, holdout_max_days=20, holdout_max_event_share=0.9
    )
    uri = build_snapshot(lake, END, cfg)
    m = read_manifest(uri)
    # 10 new pairs by 10 distinct returning users a day: 4 days hold 40 >= 35, 3 hold 30
    assert m.counts["holdout_days"] == 4
    assert m.counts["holdout_users"] == 40 == _holdout_users(uri)
    assert m.counts["holdout_pairs"] == 40
    assert m.extra["holdout_start"] == (END - dt.timedelta(days=3)).isoformat()
    assert m.extra["holdout_target_met"] is True
    assert "reach the targets" in m.extra["holdout_sizing"]
    # training never sees the holdout days; the served history does
    s = load_snapshot(uri)
    trained = {
        (s.user_ids[u], s.item_ids[i]) for u, i in zip(s.train_user, s.train_item, strict=True)
    }
    held = {
        (s.user_ids[u], s.item_ids[i]) for u, i in zip(s.holdout_user, s.holdout_item, strict=True)
    }
    assert not trained & held
    assert s.history is not None
    served = {(int(u), int(i)) for u, i in zip(s.history.user, s.history.item, strict=True)}
    assert {(int(u), int(i)) for u, i in zip(s.holdout_user, s.holdout_item, strict=True)} <= served


def test_holdout_stops_at_max_days_and_says_it_fell_short(lake: str) -> None:
    write_events(lake, _returning_buyers(days=12, per_day=10))
    write_dims(lake, END - dt.timedelta(days=30), 200, 400)
    cfg = small_config(holdout_min_users=500, holdout_max_days=6, holdout_max_event_share=0.9)
    m = read_manifest(build_snapshot(lake, END, cfg))
    assert m.counts["holdout_days"] == 6 and m.counts["holdout_users"] == 60
    assert m.extra["holdout_target_met"] is False
    assert "holdout_max_days" in m.extra["holdout_sizing"]
    assert "short of the targets 500" in m.extra["holdout_sizing"]


def test_holdout_never_takes_more_than_its_share_of_the_window(lake: str) -> None:
    write_events(lake, _returning_buyers(days=12, per_day=10))
    write_dims(lake, END - dt.timedelta(days=30), 200, 400)
    # 2,000 train events + 20 a day: 6 days are 120 / 2,240 = 5.4 %, 7 days 6.1 %
    cfg = small_config(holdout_min_users=500, holdout_max_days=20, holdout_max_event_share=0.058)
    m = read_manifest(build_snapshot(lake, END, cfg))
    assert m.counts["holdout_days"] == 6
    assert "holdout_max_event_share" in m.extra["holdout_sizing"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sizing_counts_what_the_holdout_then_holds(lake: str, seed: int) -> None:
    """The sizing's count of users and pairs is the holdout the build then picks."""
    write_events(lake, random_events(60, 50, 15, 60, seed=seed))
    write_dims(lake, END - dt.timedelta(days=20), 40, 30)  # some users / items not in dims
    cfg = small_config(holdout_min_users=45, holdout_max_days=10, holdout_max_event_share=0.6)
    uri = build_snapshot(lake, END, cfg)
    m = read_manifest(uri)
    s = load_snapshot(uri)
    assert m.counts["holdout_pairs"] == len(s.holdout_user) > 0
    assert m.counts["holdout_users"] == _holdout_users(uri)
    assert 1 <= m.counts["holdout_days"] <= 10


def test_fixed_holdout_and_no_holdout(lake: str) -> None:
    write_events(lake, _returning_buyers(days=12, per_day=10))
    write_dims(lake, END - dt.timedelta(days=30), 200, 400)
    m = read_manifest(build_snapshot(lake, END, small_config(holdout_days=2)))
    assert m.counts["holdout_days"] == 2 and m.counts["holdout_pairs"] == 20
    m = read_manifest(build_snapshot(lake, END, small_config(holdout_days=0)))
    assert m.counts["holdout_days"] == 0 and m.counts["holdout_pairs"] == 0
    with pytest.raises(ValueError, match="holdout_max_days"):
        small_config(holdout_days=5, holdout_max_days=3)
