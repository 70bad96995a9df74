"""Stock generations and the change log: what a feed may rebuild from, and when only the whole stock can say what changed."""

from pathlib import Path

import pandas as pd

from dms_pipelines.stock import changes
from dms_pipelines.stock.changes import ChangeLog, next_log, read_log, stock_generation, write_log
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines.stock.store import StockView, read_stock, stock_path, write_stock
from dms_pipelines_tests.marketplaces.fixtures import fixed_stock


def _priced(stock: pd.DataFrame, stock_id: str, price: float) -> pd.DataFrame:
    stock = stock.copy()
    stock.loc[stock["stock_id"] == stock_id, "price"] = price
    return coerce_to_schema(stock)


def test_deltas_log_their_vehicles_and_a_full_export_empties_the_log(tmp_path: Path):
    stock = fixed_stock()
    log = next_log(None, stock, None, 1)  # a full export
    assert log.full_generation == 1 and log.rows.empty
    stock = _priced(stock, "A0001", 9000.0)
    log = next_log(log, stock, {"A0001"}, 2)
    stock = _priced(stock, "A0001", 8000.0)
    log = next_log(log, stock, {"A0001", "A0002"}, 3)
    write_log(tmp_path, "leeds", log)
    log = read_log(tmp_path, "leeds")
    since_1 = log.changed_since(1, 3)
    assert list(since_1["stock_id"]) == ["A0001", "A0002"] and since_1.loc[0, "price"] == 8000.0  # the latest version
    assert list(log.changed_since(2, 3)["stock_id"]) == ["A0001", "A0002"]
    assert log.changed_since(3, 3).empty
    assert list(log.changed_since(1, 2)["stock_id"]) == ["A0001"] and log.changed_since(1, 2).loc[0, "price"] == 9000.0  # entries ahead of the stock are ignored
    assert log.changed_since(0, 3) is None  # before the full export: any vehicle may have changed
    assert log.changed_since(4, 3) is None  # a generation the stock never had
    assert next_log(log, stock, None, 4).rows.empty


def test_a_log_grown_past_its_cap_is_dropped(monkeypatch):
    stock = fixed_stock()
    monkeypatch.setattr(changes, "MIN_LOG_CAP", 3)
    log = next_log(ChangeLog(1, next_log(None, stock, None, 1).rows), stock, {"A0001", "A0002"}, 2)
    assert len(log.rows) == 2 and log.full_generation == 1
    log = next_log(log, stock, {"A0003", "A0004"}, 3)
    assert log.rows.empty and log.full_generation == 3  # feeds built at generation 1 or 2 now build whole


def test_the_generation_is_written_with_the_stock_and_read_from_its_footer(tmp_path: Path):
    assert stock_generation(stock_path(tmp_path, "leeds")) == 0
    write_stock(tmp_path, "leeds", fixed_stock(), generation=7)
    assert stock_generation(stock_path(tmp_path, "leeds")) == 7
    assert len(read_stock(tmp_path, "leeds")) == len(fixed_stock())
    view = StockView(tmp_path, "leeds")
    assert view.generation == 7 and view.changed_since(6) is None  # no log: only the whole stock can say
    write_log(tmp_path, "leeds", ChangeLog(7, next_log(None, fixed_stock(), None, 7).rows))
    assert StockView(tmp_path, "leeds").changed_since(7).empty
