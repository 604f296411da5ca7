from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data.importers import import_events, import_lightgcn
from recsys.data.lake import list_partitions, read_partition
from recsys.data.readers import EventColumns, FeatureColumns, parse_timestamps
from recsys.data.schema import EVENTS, EVENTS_SCHEMA, ITEMS, USERS, USERS_SCHEMA
from recsys.errors import InputError

CSV = """Customer ID,SKU#,When,Action,Stars
c1,sku-9,2026-11-20T10:00:00,pv,
c1,sku-9,2026-11-20T10:01:00+00:00,buy,4.5
c2,sku-7,2026-11-21 23:30:00-02:00,pv,
c2,sku-7,2026-11-21T08:00:00Z,rate,4
"""
COLS = EventColumns(
    user="Customer ID",
    item="SKU#",
    time="When",
    type="Action",
    value="Stars",
    type_map="pv=view,buy=purchase,rate=rating",
)


def _all(lake: str, table: str) -> pd.DataFrame:
    days = list_partitions(lake, table)
    return pd.concat(
        [read_partition(lake, table, d).to_pandas().assign(dt=d) for d in days], ignore_index=True
    )


def test_csv_with_odd_columns(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    src.write_text(CSV)
    lake = str(tmp_path / "lake")
    summary = import_events(str(src), lake, COLS)
    assert "4 events" in summary
    ev = _all(lake, EVENTS)
    assert read_partition(lake, EVENTS, dt.date(2026, 11, 20)).schema.equals(EVENTS_SCHEMA)
    # 23:30 at -02:00 is 01:30 UTC the next day: the UTC day decides the partition
    assert list_partitions(lake, EVENTS) == [dt.date(2026, 11, d) for d in (20, 21, 22)]
    row = ev[(ev["user_id"] == "c2") & (ev["event_type"] == "view")].iloc[0]
    assert row["ts"] == pd.Timestamp("2026-11-22T01:30:00Z") and row["dt"] == dt.date(2026, 11, 22)
    assert ev["ts"].min() == pd.Timestamp("2026-11-20T10:00:00Z")  # naive means UTC
    assert sorted(ev["event_type"]) == ["purchase", "rating", "view", "view"]
    # values only on ratings (the contract), ids unique and reproducible
    assert ev.loc[ev["event_type"] == "rating", "value"].tolist() == [4.0]
    assert ev.loc[ev["event_type"] != "rating", "value"].isna().all()
    assert ev["event_id"].is_unique
    lake2 = str(tmp_path / "lake2")
    import_events(str(src), lake2, COLS)
    assert sorted(_all(lake2, EVENTS)["event_id"]) == sorted(ev["event_id"])
    # without a feature table, each day's snapshot has the ids seen so far
    users = read_partition(lake, USERS, dt.date(2026, 11, 20)).column("user_id").to_pylist()
    assert users == ["c1"]
    assert read_partition(lake, USERS, dt.date(2026, 11, 22)).schema.equals(USERS_SCHEMA)
    assert read_partition(lake, ITEMS, dt.date(2026, 11, 22)).num_rows == 2


def test_parquet_epochs_default_type_and_feature_tables(tmp_path: Path) -> None:
    base = int(pd.Timestamp("2026-11-25T12:00:00Z").timestamp())
    src = tmp_path / "log.parquet"
    pq.write_table(
        pa.table(
            {
                "uid": [1, 2, 2],
                "pid": [10, 10, 11],
                "t_ms": [base * 1000, base * 1000 + 5, (base + 86400) * 1000],
            }
        ),
        src,
    )
    users = tmp_path / "people.csv"
    users.write_text("cust,Age,Land,since\n1,34,DE,2025-01-02\n2,,FR,\n3,51,,2024-12-31\n")
    items = tmp_path / "catalog.parquet"
    pq.write_table(
        pa.table(
            {"sku": [10, 11], "cat": ["books", "toys"], "Price": [9.5, 20.0], "brand": ["a", "b"]}
        ),
        items,
    )
    lake = str(tmp_path / "lake")
    import_events(
        str(src),
        lake,
        EventColumns(user="uid", item="pid", time="t_ms"),
        users=FeatureColumns(
            file=str(users), id_col="cust", mapping="age=Age,country=Land,signup_date=since"
        ),
        items=FeatureColumns(
            file=str(items), id_col="sku", mapping="category=cat,price=Price,brand=brand"
        ),
    )
    ev = _all(lake, EVENTS)
    assert (ev["event_type"] == "purchase").all()
    assert ev["user_id"].tolist() == ["1", "2", "2"]
    assert ev["ts"].iloc[1] == pd.Timestamp("2026-11-25T12:00:00.005Z")
    assert list_partitions(lake, USERS) == [dt.date(2026, 11, 25), dt.date(2026, 11, 26)]
    u = read_partition(lake, USERS, dt.date(2026, 11, 26)).to_pandas()
    assert u["user_id"].tolist() == ["1", "2", "3"]
    assert u["age"].tolist()[0] == 34.0 and np.isnan(u["age"].tolist()[1])
    countries = read_partition(lake, USERS, dt.date(2026, 11, 26)).column("country").to_pylist()
    assert countries == ["DE", "FR", None]
    assert u["signup_date"].tolist()[0] == dt.date(2025, 1, 2)
    it = read_partition(lake, ITEMS, dt.date(2026, 11, 25)).to_pandas()
    assert it["category"].tolist() == ["books", "toys"] and it["brand"].tolist() == ["a", "b"]
    assert it["rating"].isna().all()


@pytest.mark.parametrize(
    "values,expected",
    [
        (["1764000000"], 1764000000 * 10**6),
        ([1764000000123], 1764000000123 * 10**3),
        ([1764000000.5], 1764000000500000),
        (["2025-11-24T16:00:00.25"], 1764000000250000),
        (["2025-11-24T18:00:00+02:00"], 1764000000 * 10**6),
    ],
)
def test_timestamp_formats(values: list[object], expected: int) -> None:
    assert parse_timestamps(pd.Series(values), "f.csv", "t").tolist() == [expected]


def _expect(tmp_path: Path, text: str, cols: EventColumns, *fragments: str) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(text)
    with pytest.raises(InputError) as err:
        import_events(str(src), str(tmp_path / "lake"), cols)
    msg = str(err.value)
    for frag in ("bad.csv", *fragments):
        assert frag in msg, msg
    assert not (tmp_path / "lake").exists()  # nothing half-imported


def test_unknown_event_type(tmp_path: Path) -> None:
    _expect(
        tmp_path, CSV.replace("rate", "zap"), COLS, "'Action'", "event type", "'zap'", "--type-map"
    )


def test_missing_column(tmp_path: Path) -> None:
    _expect(
        tmp_path, CSV, COLS.model_copy(update={"item": "product"}), "'product'", "not found", "SKU#"
    )


def test_unparseable_timestamp(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        CSV.replace("2026-11-21T08:00:00Z", "yesterday"),
        COLS,
        "'When'",
        "timestamp",
        "'yesterday'",
    )


def test_null_user_and_bad_value(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        CSV.replace("c2,sku-7,2026-11-21T08", ",sku-7,2026-11-21T08"),
        COLS,
        "'Customer ID'",
        "not null",
        "row 3",
    )
    _expect(tmp_path, CSV.replace(",4\n", ",four\n"), COLS, "'Stars'", "number", "'four'")


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--default-type: 'buy'"):
        EventColumns(default_type="buy")
    src = tmp_path / "log.csv"
    src.write_text(CSV)
    bad_map = COLS.model_copy(update={"type_map": "pv=looked"})
    with pytest.raises(InputError, match="--type-map: pv=looked: 'looked' is not one of view"):
        import_events(str(src), str(tmp_path / "lake"), bad_map)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        import_events(str(tmp_path / "nope.csv"), str(tmp_path / "lake"), COLS)
    odd = tmp_path / "log.xlsx"
    odd.write_text("x")
    with pytest.raises(InputError, match=r"log\.xlsx: unknown file type"):
        import_events(str(odd), str(tmp_path / "lake"), COLS)
    broken = tmp_path / "log.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match=r"log\.parquet: unreadable"):
        import_events(str(broken), str(tmp_path / "lake"), COLS)


def test_bad_feature_tables(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    src.write_text(CSV)
    people = tmp_path / "people.csv"
    people.write_text("cust,Age\nc1,30\nc1,31\n")
    with pytest.raises(InputError, match=r"people.csv: column 'cust': rule 'unique id': 'c1'"):
        import_events(
            str(src),
            str(tmp_path / "l"),
            COLS,
            users=FeatureColumns(file=str(people), id_col="cust", mapping="age=Age"),
        )
    people.write_text("cust,Age\nc1,thirty\n")
    with pytest.raises(
        InputError, match=r"people.csv: column 'Age': rule 'number': cannot parse 'thirty'"
    ):
        import_events(
            str(src),
            str(tmp_path / "l"),
            COLS,
            users=FeatureColumns(file=str(people), id_col="cust", mapping="age=Age"),
        )
    with pytest.raises(InputError, match="--users-cols: expected 'name=name"):
        import_events(
            str(src),
            str(tmp_path / "l"),
            COLS,
            users=FeatureColumns(file=str(people), id_col="cust", mapping="age"),
        )


def test_lightgcn_import_keeps_the_split(tmp_path: Path) -> None:
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("0 1 2 3\n1 0 4\n2 2\n")
    test.write_text("0 4\n1 3 2\n")
    lake = str(tmp_path / "lake")
    end = dt.date(2026, 11, 27)
    summary = import_lightgcn(train, test, lake, end, train_days=3)
    assert "9 events" in summary
    ev = _all(lake, EVENTS)
    assert (ev["event_type"] == "purchase").all() and ev["event_id"].is_unique
    before, on = ev[ev["dt"] < end], ev[ev["dt"] == end]
    assert ev["dt"].min() >= end - dt.timedelta(days=3)

    def pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
        return sorted(zip(df["user_id"], df["item_id"], strict=True))

    assert pairs(before) == [("0", "1"), ("0", "2"), ("0", "3"), ("1", "0"), ("1", "4"), ("2", "2")]
    assert pairs(on) == [("0", "4"), ("1", "2"), ("1", "3")]
    users = read_partition(lake, USERS, end).column("user_id").to_pylist()
    items = read_partition(lake, ITEMS, end - dt.timedelta(days=1)).column("item_id").to_pylist()
    assert users == ["0", "1", "2"] and items == ["0", "1", "2", "3", "4"]
