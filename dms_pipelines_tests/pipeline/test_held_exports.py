"""A held full export holds itself, not the day: the deltas after it apply to the last good stock, and a release replays them after it."""

from datetime import datetime

import dagster as dg
import pytest

from dms_pipelines.definitions import build_definitions
from dms_pipelines.devtools.sample.generator import SampleDealer, export_name, generate_group, render_export
from dms_pipelines.orchestration.drivers import run_sync
from dms_pipelines.stock.store import read_stock


@pytest.fixture
def leeds(paths, settings):
    generate_group(paths.inbox, [SampleDealer("leeds", "Leeds", "navigator_csv")], vehicles=60, seed=3, deltas=0)
    job = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml").resolve_job_def("dealer_sync")
    instance = dg.DagsterInstance.ephemeral()

    def run() -> None:
        assert job.execute_in_process(instance=instance, partition_key="leeds").success

    run()
    return run


def write(paths, kind: str, rows, at: datetime) -> None:
    (paths.inbox / "leeds" / export_name("navigator_csv", kind, at)).write_bytes(render_export(rows.assign(location="Forecourt").reset_index(drop=True), "navigator_csv"))


def test_a_sale_after_a_held_full_export_leaves_every_marketplace(paths, stock_api, leeds):
    stock = read_stock(paths.state, "leeds")
    car = stock[stock["status"] == "available"].head(1)
    stock_id = str(car["stock_id"].iloc[0])
    write(paths, "full", stock.head(5), datetime(2026, 11, 23, 2, 0))  # truncated: held by the delisting guard
    write(paths, "delta", car.assign(status="sold"), datetime(2026, 11, 23, 9, 0))
    leeds()
    after = read_stock(paths.state, "leeds").set_index("stock_id")
    assert len(after) == len(stock)  # the held export delisted nothing
    assert after.loc[stock_id, "status"] == "sold"  # the sale after it was not held with it
    live = [i for i in stock_api.live_items("10001") if i["metadata"]["externalStockReference"] == stock_id]
    assert [i["metadata"]["lifecycleState"] for i in live] == ["SOLD"]


def test_a_released_full_export_is_applied_and_the_deltas_after_it_are_applied_again(paths, stock_api, leeds, capsys):
    stock = read_stock(paths.state, "leeds")
    kept = stock.head(5)  # the dealer really did sell most of its stock: the operator releases the export
    car = kept.head(1)
    write(paths, "full", kept, datetime(2026, 11, 23, 2, 0))
    write(paths, "delta", car.assign(price=car["price"] + 500), datetime(2026, 11, 23, 9, 0))
    leeds()
    assert len(read_stock(paths.state, "leeds")) == len(stock)
    run_sync(["leeds"], release_held=True, echo=lambda line: None)
    after = read_stock(paths.state, "leeds").set_index("stock_id")
    assert sorted(after.index) == sorted(kept["stock_id"])  # the released export applied
    assert float(after.loc[str(car["stock_id"].iloc[0]), "price"]) == float(car["price"].iloc[0]) + 500  # and the later delta again after it


def test_two_truncated_full_exports_after_a_delta_leave_the_delta_applied(paths, stock_api, leeds):
    """A reprice, then two truncated full exports in the same run: both are held, and the reprice before them stands
    (falling back to the older truncated export must not supersede it)."""
    stock = read_stock(paths.state, "leeds")
    car = stock[stock["status"] == "available"].head(1)
    write(paths, "delta", car.assign(price=car["price"] - 500), datetime(2026, 11, 23, 1, 0))
    write(paths, "full", stock.head(5), datetime(2026, 11, 23, 2, 0))
    write(paths, "full", stock.head(4), datetime(2026, 11, 23, 3, 0))
    leeds()
    after = read_stock(paths.state, "leeds").set_index("stock_id")
    assert len(after) == len(stock)
    assert float(after.loc[str(car["stock_id"].iloc[0]), "price"]) == float(car["price"].iloc[0]) - 500
