"""The history as a base and a log: after any chain of deltas, reading it gives what rewriting the whole history gives."""

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.stock import history_changes
from dms_pipelines.stock.history import empty_history, legacy_row_hashes, update_history
from dms_pipelines.stock.history_changes import history_log_path, history_path, read_history, read_history_log, record_versions, write_history
from dms_pipelines.stock.merge import apply_delta
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines_tests.support import HOUR, NIGHT, stock_of, valid_vehicle

CHANGES = st.sampled_from([("price", 8995.0), ("price", 7995.0), ("status", "sold"), ("status", "reserved"), ("mileage", 40000), ("same", None), ("gone", None)])


def _delta(stock: pd.DataFrame, changes: dict[int, tuple]) -> tuple[pd.DataFrame, set[str]]:
    """The stock after the delta, and the stock numbers it touched ("gone": a vehicle that left the stock)."""
    rows = []
    gone = set()
    for number, (field, value) in changes.items():
        stock_id = f"S{number:03d}"
        if field == "gone":
            gone.add(stock_id)
            continue
        current = stock[stock["stock_id"] == stock_id]
        base = {"price": float(current["price"].iloc[0])} if len(current) else {}
        rows.append(valid_vehicle(stock_id, **(base | ({} if field == "same" else {field: value}))))
    merged = apply_delta(stock, coerce_to_schema(pd.DataFrame(rows))).stock if rows else stock
    merged = merged[~merged["stock_id"].isin(gone)].reset_index(drop=True)
    return merged, {f"S{n:03d}" for n in changes}


@settings(max_examples=40, deadline=None)
@given(prices=st.lists(st.sampled_from([9995.0, 10995.0]), min_size=1, max_size=8), deltas=st.lists(st.dictionaries(st.integers(0, 11), CHANGES, max_size=5), min_size=1, max_size=6))
def test_a_chain_of_deltas_read_back_equals_the_history_rewritten_whole(tmp_path_factory, prices, deltas):
    state = tmp_path_factory.mktemp("state")
    stock = stock_of([valid_vehicle(f"S{n:03d}", price=p) for n, p in enumerate(prices)])
    whole = update_history(empty_history(), stock, NIGHT)
    write_history(state, "leeds", whole, 1)
    base_bytes = history_path(state, "leeds").read_bytes()
    for step, changes in enumerate(deltas, start=1):
        at = HOUR + timedelta(hours=step)
        stock, touched = _delta(stock, changes)
        whole = update_history(whole, stock, at, touched)
        record_versions(state, "leeds", stock, at, touched, generation=step + 1)
        pd.testing.assert_frame_equal(read_history(state, "leeds"), whole)
    assert history_path(state, "leeds").read_bytes() == base_bytes  # the base was never rewritten


def test_a_log_grown_past_its_cap_becomes_the_new_base(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(history_changes, "MIN_LOG_CAP", 2)
    stock = stock_of([valid_vehicle(f"S{n:03d}") for n in range(4)])
    whole = update_history(empty_history(), stock, NIGHT)
    write_history(tmp_path, "leeds", whole, 1)
    for step, price in enumerate([8995.0, 7995.0], start=1):
        stock, touched = _delta(stock, {0: ("price", price), 1: ("price", price), 2: ("price", price)})
        whole = update_history(whole, stock, HOUR + timedelta(hours=step), touched)
        record_versions(tmp_path, "leeds", stock, HOUR + timedelta(hours=step), touched, generation=step + 1)
    assert pq.read_metadata(history_path(tmp_path, "leeds")).num_rows == len(whole)  # rewritten whole...
    assert read_history_log(tmp_path, "leeds").opened.empty  # ...with an empty log on it
    pd.testing.assert_frame_equal(read_history(tmp_path, "leeds"), whole)


def test_a_log_left_on_another_base_is_ignored(tmp_path: Path):
    stock = stock_of([valid_vehicle("S001"), valid_vehicle("S002")])
    whole = update_history(empty_history(), stock, NIGHT)
    write_history(tmp_path, "leeds", whole, 1)
    stock, touched = _delta(stock, {1: ("price", 8995.0)})
    record_versions(tmp_path, "leeds", stock, HOUR, touched, generation=2)
    stale = history_log_path(tmp_path, "leeds").read_bytes()
    write_history(tmp_path, "leeds", whole, 3)  # a full export's base...
    history_log_path(tmp_path, "leeds").write_bytes(stale)  # ...and the run stopped before it emptied the log
    pd.testing.assert_frame_equal(read_history(tmp_path, "leeds"), whole)


def test_versions_hashed_by_the_earlier_scheme_send_the_delta_through_the_whole_history(tmp_path: Path):
    stock = stock_of([valid_vehicle("S001"), valid_vehicle("S002")])
    whole = update_history(empty_history(), stock, NIGHT)
    whole["version_hash"] = legacy_row_hashes(stock).values  # as an earlier version stored them
    write_history(tmp_path, "leeds", whole, 1)
    stock, touched = _delta(stock, {1: ("price", 8995.0), 0: ("same", None)})
    record_versions(tmp_path, "leeds", stock, HOUR, touched, generation=2)
    expected = update_history(whole, stock, HOUR, touched)
    pd.testing.assert_frame_equal(read_history(tmp_path, "leeds"), expected)
    assert read_history_log(tmp_path, "leeds").base_generation == 2  # a new base, written whole
