"""Deltas and history: an hourly delta touches only its own vehicles, with the same result as comparing the whole stock."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.stock.history import empty_history, update_history
from dms_pipelines.stock.merge import apply_delta, rows_at
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines_tests.support import HOUR, NIGHT, stock_of, valid_vehicle


def comparable(history: pd.DataFrame) -> pd.DataFrame:
    return history.sort_values(["stock_id", "valid_from"]).reset_index(drop=True)


@settings(max_examples=40, deadline=None)
@given(
    prices=st.lists(st.sampled_from([9995.0, 10995.0, 12995.0]), min_size=1, max_size=12),
    changes=st.dictionaries(st.integers(0, 15), st.sampled_from([("price", 8995.0), ("status", "sold"), ("status", "reserved"), ("mileage", 40000)]), max_size=6),
)
def test_a_delta_gives_the_stock_and_history_of_comparing_everything(prices, changes):
    stock = stock_of([valid_vehicle(f"S{n:03d}", price=p) for n, p in enumerate(prices)])
    history = update_history(empty_history(), stock, NIGHT)
    delta_rows = [valid_vehicle(f"S{n:03d}", **({"price": prices[n] if n < len(prices) else 7995.0} | {field: value})) for n, (field, value) in changes.items()]
    delta = coerce_to_schema(pd.DataFrame(delta_rows)) if delta_rows else coerce_to_schema(pd.DataFrame([valid_vehicle("S000")]).iloc[:0])
    merged = apply_delta(stock, delta)

    expected_stock = pd.concat([stock[~stock["stock_id"].isin(delta["stock_id"])], delta]).sort_values("stock_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(merged.stock, coerce_to_schema(expected_stock))
    assert merged.added == sum(1 for n in changes if n >= len(prices))
    assert merged.stock["stock_id"].is_unique and merged.stock["stock_id"].is_monotonic_increasing

    everything = update_history(history, merged.stock, HOUR)
    proportional = update_history(history, merged.stock, HOUR, changed_ids=set(delta["stock_id"]))
    pd.testing.assert_frame_equal(comparable(proportional), comparable(everything))


def test_only_changed_vehicles_get_a_new_version():
    stock = stock_of([valid_vehicle("S001"), valid_vehicle("S002"), valid_vehicle("S003")])
    history = update_history(empty_history(), stock, NIGHT)
    merged = apply_delta(stock, coerce_to_schema(pd.DataFrame([valid_vehicle("S002", price=9995.0), valid_vehicle("S003")])))
    history = update_history(history, merged.stock, HOUR, changed_ids={"S002", "S003"})
    versions = history.groupby("stock_id").size().to_dict()
    assert versions == {"S001": 1, "S002": 2, "S003": 1}  # S003 came again unchanged: no new version
    closed = history[history["valid_to"].notna()]
    assert closed["stock_id"].tolist() == ["S002"] and closed["price"].tolist() == [12995.0]


def test_versions_hashed_by_the_earlier_scheme_are_recognised_not_duplicated():
    from dms_pipelines.stock.history import HASH_SCHEME, legacy_row_hashes

    stock = stock_of([valid_vehicle("S001"), valid_vehicle("S002"), valid_vehicle("S003")])
    history = update_history(empty_history(), stock, NIGHT)
    history["version_hash"] = legacy_row_hashes(stock).values  # as an earlier version stored them
    merged = apply_delta(stock, coerce_to_schema(pd.DataFrame([valid_vehicle("S002", price=9995.0)])))
    after = update_history(history, merged.stock, HOUR)
    assert after.groupby("stock_id").size().to_dict() == {"S001": 1, "S002": 2, "S003": 1}
    assert after.loc[after["valid_to"].isna(), "version_hash"].str.startswith(HASH_SCHEME).all()
    assert update_history(after, merged.stock, HOUR.replace(hour=10)).equals(after)  # and the next run changes nothing


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.data())
def test_rows_at_positions_equal_a_row_take_on_a_spliced_stock(size, data):
    stock = coerce_to_schema(pd.DataFrame([valid_vehicle(f"S{n:03d}", price=1000 + n) for n in range(size)]))
    spliced = pd.concat([stock.iloc[: size // 2], stock.iloc[size // 2 :]], ignore_index=True)  # Arrow columns of two chunks
    positions = sorted(data.draw(st.sets(st.integers(min_value=0, max_value=size - 1))))
    pd.testing.assert_frame_equal(rows_at(spliced, np.array(positions, dtype=np.int64)), spliced.iloc[positions])
