"""A snapshot carries the previous one's feature encoding forward: yesterday's model and
today's graph agree on what every column means; a change of width is explicit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.artifacts import read_manifest
from recsys.data.lake import read_partition, write_partition
from recsys.data.schema import ITEMS
from recsys.graph.build import build_snapshot
from recsys.graph.features import extend_table, fit_table
from recsys.graph.snapshot import load_snapshot

from .conftest import END, random_events, small_config, write_events

DAY2 = END + dt.timedelta(days=1)


def _two_days(lake: str, grow: bool = False, evolve: str = "extend") -> tuple[str, str]:
    cfg = small_config(features={"evolve": evolve, "grow_vocab": grow})
    first = build_snapshot(lake, END, cfg)
    # day 2: different volumes (the numeric statistics move) and a new product category
    write_events(lake, random_events(40, 30, 1, 600, end=DAY2, seed=9), prefix="d2")
    items = read_partition(lake, ITEMS, END - dt.timedelta(days=4)).to_pandas()
    items.loc[items.index[:6], "category"] = "gadgets"
    write_partition(lake, ITEMS, DAY2, pa.Table.from_pandas(items, preserve_index=False))
    return first, build_snapshot(lake, DAY2, cfg)


def test_extended_spec_keeps_every_column_meaning(make_lake: Callable[..., str]) -> None:
    first, second = _two_days(make_lake(days=5))
    a, b = load_snapshot(first), load_snapshot(second)
    assert b.feature_spec == a.feature_spec  # frozen statistics, same vocabularies
    assert "gadgets" not in b.feature_spec.items.categorical[0].vocab
    raw = pd.DataFrame({"age": [33.0, None], "country": ["DE", "ZZ"], "n_events": [4.0, 0.0]})
    np.testing.assert_array_equal(
        a.feature_spec.encode_users(raw), b.feature_spec.encode_users(raw)
    )
    extra = read_manifest(second).extra["feature_spec"]
    assert extra == {"extended_from_previous": True, "width_changed": False, "changes": []}
    # a product of the new category encodes to the unknown bucket of the old layout
    names = b.feature_spec.item_feature_names
    gadget = b.items["category"].astype(str).eq("gadgets").to_numpy()
    assert gadget.any()
    assert (b.item_features[gadget, names.index("category=__unknown__")] == 1).all()


def test_growing_the_vocabulary_is_an_explicit_width_change(make_lake: Callable[..., str]) -> None:
    first, second = _two_days(make_lake(days=5), grow=True)
    a, b = load_snapshot(first), load_snapshot(second)
    old, new = a.feature_spec.items.categorical[0].vocab, b.feature_spec.items.categorical[0].vocab
    assert new[: len(old)] == old and new[len(old) :] == ["gadgets"]  # old columns keep place
    extra = read_manifest(second).extra["feature_spec"]
    assert extra["width_changed"] is True
    assert extra["changes"] == ["items categorical category: 1 new value(s) appended (gadgets)"]
    assert b.item_features.shape[1] == a.item_features.shape[1] + 1


def test_refit_moves_the_statistics(make_lake: Callable[..., str]) -> None:
    first, second = _two_days(make_lake(days=5), evolve="refit")
    a, b = load_snapshot(first), load_snapshot(second)
    means = [
        (f.mean, g.mean)
        for f, g in zip(a.feature_spec.users.numeric, b.feature_spec.users.numeric, strict=True)
    ]
    assert any(x != y for x, y in means)
    assert read_manifest(second).extra["feature_spec"]["changes"] == [
        "refitted (features.evolve = refit)"
    ]


def test_a_new_feature_in_code_is_fitted_and_named() -> None:
    df = pd.DataFrame({"age": [20.0, 40.0], "country": ["DE", "FR"], "score": [1.0, 3.0]})
    prev = fit_table(df, [("age", False)], ["country"], 8, 1)
    spec, changes = extend_table(
        prev, df, [("age", False), ("score", True)], ["country"], 8, 1, grow_vocab=False
    )
    assert spec.numeric[0] == prev.numeric[0] and spec.numeric[1].name == "score"
    assert changes == ["numeric score: new feature"]
    assert spec.width == prev.width + 2
