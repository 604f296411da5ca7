from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.artifacts import read_manifest, verify_artifact
from recsys.data.lake import list_partitions, read_partition
from recsys.data.schema import EVENT_TYPES, EVENTS, EVENTS_SCHEMA, ITEMS, USERS
from recsys.data.synth import SynthConfig, SynthSummary, generate

END = dt.date(2026, 11, 27)
CFG = SynthConfig(users=3000, items=400, days=4, end_date=END, seed=7)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SynthSummary]:
    out = str(tmp_path_factory.mktemp("synth") / "lake")
    return out, generate(CFG, out)


def _events(lake: str) -> pd.DataFrame:
    days = list_partitions(lake, EVENTS)
    frames = []
    for d in days:
        df = read_partition(lake, EVENTS, d).to_pandas()
        df["dt"] = d
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_lake(tmp_path: Path) -> None:
    cfg = SynthConfig(users=300, items=60, days=3, end_date=END, seed=3)
    generate(cfg, str(tmp_path / "a"))
    generate(cfg, str(tmp_path / "b"))
    generate(cfg.model_copy(update={"seed": 4}), str(tmp_path / "c"))
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    assert len(a) > 10
    assert (
        a["events/dt=2026-11-27/part-00000.parquet"] != c["events/dt=2026-11-27/part-00000.parquet"]
    )


def test_partitions_follow_the_contract(lake: tuple[str, SynthSummary]) -> None:
    out, summary = lake
    expected = [END - dt.timedelta(days=k) for k in range(CFG.days - 1, -1, -1)]
    for table in (EVENTS, USERS, ITEMS):
        assert list_partitions(out, table) == expected
    ev = _events(out)
    assert read_partition(out, EVENTS, END).schema.equals(EVENTS_SCHEMA)
    assert len(ev) == summary.events
    assert ev["event_id"].is_unique
    assert set(ev["event_type"]) == set(EVENT_TYPES)
    # events/dt=D holds exactly the events with ts on UTC day D
    assert (ev["ts"].dt.date == ev["dt"]).all()
    # every event's user and item exist in that day's snapshot; snapshots grow as people join
    sizes = []
    for d in expected:
        users = set(read_partition(out, USERS, d).column("user_id").to_pylist())
        items = set(read_partition(out, ITEMS, d).column("item_id").to_pylist())
        sizes.append((len(users), len(items)))
        day = ev[ev["dt"] == d]
        assert set(day["user_id"]) <= users
        assert set(day["item_id"]) <= items
    assert sizes[-1] == (CFG.users, CFG.items)
    assert sizes[0][0] < sizes[-1][0] and sizes[0][1] < sizes[-1][1]
    assert all(a <= b for a, b in itertools.pairwise(sizes))


def test_features_look_like_a_shop(lake: tuple[str, SynthSummary]) -> None:
    out, _ = lake
    users = read_partition(out, USERS, END).to_pandas()
    items = read_partition(out, ITEMS, END).to_pandas()
    assert users["age"].dropna().between(18, 80).all()
    assert 0 < users["age"].isna().mean() < 0.1
    assert users["country"].nunique() == len(CFG.countries)
    assert (items["price"] > 0).all() and items["rating"].between(1, 5).all()
    assert items["category"].nunique() == CFG.n_categories
    # prices differ by category (log-normal per category)
    medians = items.groupby("category")["price"].median()
    assert medians.max() / medians.min() > 3


def test_funnel_and_ratings(lake: tuple[str, SynthSummary]) -> None:
    ev = _events(lake[0])
    counts = ev.pivot_table(
        index=["user_id", "item_id"],
        columns="event_type",
        values="event_id",
        aggfunc="count",
        fill_value=0,
    )
    chain = list(EVENT_TYPES)
    for weak, strong in itertools.pairwise(chain):
        assert (counts[weak] >= counts[strong]).all(), (weak, strong)
    first = ev.pivot_table(
        index=["user_id", "item_id"], columns="event_type", values="ts", aggfunc="min"
    )
    for weak, strong in itertools.pairwise(chain):
        both = first[[weak, strong]].dropna()
        assert (both[weak] < both[strong]).all(), (weak, strong)
    mix = ev["event_type"].value_counts()
    assert mix["view"] > mix["click"] > mix["add_to_cart"] > mix["purchase"] > mix["rating"] > 0
    ratings = ev[ev["event_type"] == "rating"]["value"]
    assert ratings.between(1, 5).all() and (ratings == ratings.round()).all()
    assert ratings.nunique() >= 4
    assert ev[ev["event_type"] != "rating"]["value"].isna().all()


def test_popularity_is_a_power_law(lake: tuple[str, SynthSummary]) -> None:
    ev = _events(lake[0])
    views = np.sort(ev[ev["event_type"] == "view"]["item_id"].value_counts().to_numpy())[::-1]
    top = views[: len(views) // 10].sum() / views.sum()
    assert top > 0.4, top
    rank = np.arange(1, len(views) + 1)
    head = slice(0, len(views) // 2)
    slope = np.polyfit(np.log(rank[head]), np.log(views[head]), 1)[0]
    assert slope < -0.6, slope


def test_truth_is_saved_and_planted(lake: tuple[str, SynthSummary]) -> None:
    out, summary = lake
    truth = summary.truth
    manifest = verify_artifact(truth)
    assert read_manifest(truth).kind == "synth-truth" and manifest.config["seed"] == CFG.seed
    aff = pd.read_parquet(f"{truth}/affinity.parquet")
    assert len(aff) == CFG.users * CFG.affinity_categories
    assert np.allclose(aff.groupby("user_id")["affinity"].sum(), 1.0)
    meta = json.loads(Path(truth, "truth.json").read_text())
    assert len(meta["categories"]) == CFG.n_categories

    # users browse their planted categories far more than chance
    ev = _events(out)
    items = read_partition(out, ITEMS, END).to_pandas()[["item_id", "category"]]
    views = ev[ev["event_type"] == "view"].merge(items, on="item_id")
    hit = views.merge(aff, on=["user_id", "category"], how="left")["affinity"].notna().mean()
    assert hit > 0.7, hit


def test_features_predict_affinities_better_than_popularity(lake: tuple[str, SynthSummary]) -> None:
    """A features-only model (age band x country -> category mix) beats global popularity."""
    out, _ = lake
    ev = _events(out)
    users = read_partition(out, USERS, END).to_pandas().dropna(subset=["age", "country"])
    items = read_partition(out, ITEMS, END).to_pandas()[["item_id", "category"]]
    users["band"] = pd.cut(users["age"], [0, 25, 35, 45, 60, 200], right=False)
    v = ev[ev["event_type"] == "view"].merge(items, on="item_id").merge(users, on="user_id")
    ids = np.sort(v["user_id"].unique())
    held = set(ids[::4])
    train, test = v[~v["user_id"].isin(held)], v[v["user_id"].isin(held)]
    glob = train["category"].value_counts(normalize=True)
    seg = train.groupby(["band", "country"], observed=True)["category"].value_counts(normalize=True)
    eps = 1e-3
    ll_pop = np.log(test["category"].map(glob).fillna(0) + eps).mean()
    keys = list(zip(test["band"], test["country"], test["category"], strict=True))
    ll_seg = np.log(
        np.array([seg.get(k, 0.0) for k in keys]) * 0.9
        + test["category"].map(glob).fillna(0).to_numpy() * 0.1
        + eps
    ).mean()
    assert ll_seg > ll_pop + 0.3, (ll_seg, ll_pop)


def test_summary_describes_counts(lake: tuple[str, SynthSummary]) -> None:
    _, summary = lake
    text = summary.describe()
    assert f"{summary.events:,} events" in text and "_truth" in text
