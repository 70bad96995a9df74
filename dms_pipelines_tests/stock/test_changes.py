"""The stock as a base file and a log of deltas: what a delta writes, what a reader sees, what a feed may rebuild from."""

from pathlib import Path

import pandas as pd

from dms_pipelines.stock import changes
from dms_pipelines.stock.changes import ChangeLog, next_log, read_log, write_log
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines.stock.store import StockView, read_price_reference, read_stock, stock_ids, stock_path, stored, with_new_ids, write_stock
from dms_pipelines_tests.support import fixed_stock


def _priced(stock: pd.DataFrame, stock_id: str, price: float) -> pd.DataFrame:
    stock = stock.copy()
    stock.loc[stock["stock_id"] == stock_id, "price"] = price
    return coerce_to_schema(stock)


def _apply(state: Path, stock: pd.DataFrame, changed_ids: set[str] | None) -> ChangeLog:
    """What update_stock writes for one applied generation."""
    base_generation, previous = stored(state, "leeds")
    generation = (previous.generation if previous is not None else base_generation) + 1
    log = next_log(previous, stock, changed_ids, generation)
    if log.full_generation == generation:
        write_stock(state, "leeds", stock, generation)
    write_log(state, "leeds", log)
    return log


def test_deltas_write_only_the_log_and_the_reader_sees_them_applied(tmp_path: Path):
    stock = fixed_stock()
    _apply(tmp_path, stock, None)  # a full export: the base
    base_bytes = stock_path(tmp_path, "leeds").read_bytes()
    stock = _priced(stock, "A0001", 9000.0)
    _apply(tmp_path, stock, {"A0001"})
    stock = _priced(_priced(stock, "A0001", 8000.0), "A0002", 100.0)
    log = _apply(tmp_path, stock, {"A0001", "A0002"})
    assert stock_path(tmp_path, "leeds").read_bytes() == base_bytes  # the base was not rewritten
    assert (log.full_generation, log.generation) == (1, 3)
    pd.testing.assert_frame_equal(read_stock(tmp_path, "leeds"), stock)
    view = StockView(tmp_path, "leeds")
    assert view.generation == 3
    since_1 = view.changed_since(1)
    assert list(since_1["stock_id"]) == ["A0001", "A0002"] and since_1.loc[0, "price"] == 8000.0  # the latest version
    assert list(view.changed_since(2)["stock_id"]) == ["A0001", "A0002"]
    assert view.changed_since(3).empty
    assert view.changed_since(0) is None  # before the base: any vehicle may have changed
    assert view.changed_since(4) is None  # a generation the stock never had
    reference = read_price_reference(tmp_path, ["leeds"])
    assert sorted(reference["price"].dropna()) == sorted(stock["price"].dropna())  # the outlier rule sees the logged prices


def test_a_full_export_writes_a_new_base_and_empties_the_log(tmp_path: Path):
    stock = fixed_stock()
    _apply(tmp_path, stock, None)
    _apply(tmp_path, _priced(stock, "A0001", 9000.0), {"A0001"})
    fresh = coerce_to_schema(stock.iloc[:4].reset_index(drop=True))
    log = _apply(tmp_path, fresh, None)
    assert log.rows.empty and log.full_generation == log.generation == 3
    pd.testing.assert_frame_equal(read_stock(tmp_path, "leeds"), fresh)
    assert StockView(tmp_path, "leeds").changed_since(2) is None


def test_a_log_left_from_another_base_is_ignored(tmp_path: Path):
    stock = fixed_stock()
    _apply(tmp_path, stock, None)
    _apply(tmp_path, _priced(stock, "A0001", 9000.0), {"A0001"})
    write_stock(tmp_path, "leeds", stock, 3)  # a full export stopped after its base, before emptying the log
    assert read_log(tmp_path, "leeds", 3) is None
    pd.testing.assert_frame_equal(read_stock(tmp_path, "leeds"), stock)
    view = StockView(tmp_path, "leeds")
    assert view.generation == 3 and view.changed_since(2) is None


def test_a_log_grown_past_its_cap_becomes_a_new_base(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(changes, "MIN_LOG_CAP", 3)
    stock = fixed_stock()
    _apply(tmp_path, stock, None)
    log = _apply(tmp_path, _priced(stock, "A0001", 1.0), {"A0001", "A0002"})
    assert len(log.rows) == 2 and log.full_generation == 1
    stock = _priced(_priced(stock, "A0001", 1.0), "A0004", 2.0)
    log = _apply(tmp_path, stock, {"A0003", "A0004"})
    assert log.rows.empty and log.full_generation == log.generation == 3  # feeds built at generation 1 or 2 now build whole
    pd.testing.assert_frame_equal(read_stock(tmp_path, "leeds"), stock)


def test_a_stock_written_before_generations_reads_as_generation_zero(tmp_path: Path):
    write_stock(tmp_path, "leeds", fixed_stock())
    view = StockView(tmp_path, "leeds")
    assert view.generation == 0 and view.changed_since(0) is None
    assert len(read_stock(tmp_path, "leeds")) == len(fixed_stock())


def test_the_price_reference_puts_a_logged_vehicle_in_place_for_its_own_dealer_only(tmp_path: Path):
    leeds = fixed_stock()
    york = coerce_to_schema(leeds.assign(dealer_id="york"))  # the same stock numbers at another dealer
    write_stock(tmp_path, "york", york, 1)
    _apply(tmp_path, leeds, None)
    _apply(tmp_path, _priced(leeds, "A0001", 123456.0), {"A0001"})
    reference = read_price_reference(tmp_path, ["leeds", "york"])
    assert len(reference) == len(leeds) + len(york)
    assert (reference["price"] == 123456.0).sum() == 1  # leeds's A0001 replaced; york's A0001 kept as it was
    assert sorted(reference["price"].dropna()) == sorted(pd.concat([_priced(leeds, "A0001", 123456.0)["price"], york["price"]]).dropna())


def test_stock_numbers_come_once_each_from_the_base_and_the_log(tmp_path: Path):
    stock = fixed_stock()
    _apply(tmp_path, stock, None)
    arrived = coerce_to_schema(pd.concat([stock, stock.iloc[:1].assign(stock_id="NEW01")], ignore_index=True))
    _apply(tmp_path, _priced(arrived, "A0001", 9000.0), {"A0001", "NEW01"})  # one changed vehicle, one new one
    ids = stock_ids(tmp_path, "leeds").to_pylist()
    assert sorted(ids) == sorted(read_stock(tmp_path, "leeds")["stock_id"]) and len(ids) == len(set(ids)) == len(stock) + 1
    grown = with_new_ids(stock_ids(tmp_path, "leeds"), ["A0002", "NEW02", "NEW01", "NEW03"])
    assert grown.to_pylist() == ids + ["NEW02", "NEW03"]
