from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from recsys.graph.build import build_snapshot
from recsys.graph.features import MISSING, UNKNOWN, FeatureSpec, fit_table
from recsys.graph.snapshot import load_snapshot

from .conftest import END, small_config

RAW = pd.DataFrame(
    {
        "age": [20.0, 35.0, None, 61.0, 35.0],
        "n_events": [0.0, 3.0, 100.0, 1.0, None],
        "country": ["DE", "FR", None, "DE", "XX"],
    }
)


def _spec() -> FeatureSpec:
    users = fit_table(
        RAW, [("age", False), ("n_events", True)], ["country"], max_vocab=2, min_count=2
    )
    items = fit_table(
        RAW.rename(columns={"country": "category"}), [("age", False)], ["category"], 8, 1
    )
    return FeatureSpec(users=users, items=items)


def test_encode_decode_round_trip() -> None:
    spec = _spec()
    x = spec.encode_users(RAW)
    assert x.dtype == np.float32 and x.shape == (5, len(spec.user_feature_names))
    back = spec.users.decode(x)
    np.testing.assert_allclose(back["age"], RAW["age"], rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(
        back["n_events"], RAW["n_events"], rtol=1e-4, atol=1e-4, equal_nan=True
    )
    # min_count=2 keeps only DE; FR and XX fall in the unknown bucket; None is explicit missing
    assert spec.users.categorical[0].vocab == ["DE"]
    assert list(back["country"].fillna(MISSING)) == ["DE", UNKNOWN, MISSING, "DE", UNKNOWN]


def test_standardised_with_stored_statistics_and_missing_indicators() -> None:
    spec = _spec()
    x = spec.encode_users(RAW)
    names = spec.user_feature_names
    age = x[:, names.index("age")]
    observed = ~RAW["age"].isna().to_numpy()
    assert age[observed].mean() == pytest.approx(0.0, abs=1e-6)
    assert age[observed].std() == pytest.approx(1.0, abs=1e-5)
    assert list(x[:, names.index("age__missing")]) == [0, 0, 1, 0, 0]
    assert age[2] == 0.0
    # exactly one bucket per categorical feature is hot
    cat = [i for i, n in enumerate(names) if n.startswith("country=")]
    assert (x[:, cat].sum(axis=1) == 1).all()


def test_spec_json_round_trip_encodes_a_new_user_identically() -> None:
    spec = _spec()
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec
    new_user = pd.DataFrame({"country": ["DE"], "age": [44.0]})  # columns missing -> missing
    a, b = spec.encode_users(new_user), again.encode_users(new_user)
    np.testing.assert_array_equal(a, b)
    names = spec.user_feature_names
    assert a[0, names.index("n_events__missing")] == 1.0
    assert a[0, names.index("country=DE")] == 1.0


def test_snapshot_features_match_the_saved_spec(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=3)
    s = load_snapshot(build_snapshot(lake, END, small_config()))
    assert s.user_features.shape == (s.n_users, len(s.feature_spec.user_feature_names))
    assert s.item_features.shape == (s.n_items, len(s.feature_spec.item_feature_names))
    assert np.isfinite(s.user_features).all() and np.isfinite(s.item_features).all()
    # decoding then re-encoding gives the stored matrix back: serving encodes like training
    for table, x in (
        (s.feature_spec.users, s.user_features),
        (s.feature_spec.items, s.item_features),
    ):
        np.testing.assert_allclose(table.encode(table.decode(x)), x, atol=1e-4)
    assert {"age", "country", "n_purchases", "days_since_last_event"} <= set(
        s.feature_spec.user_raw_columns
    )
    assert {"category", "price", "rating", "n_users"} <= set(s.feature_spec.item_raw_columns)
