"""Exports that go back to an earlier state, byte for byte: every marketplace shows what the DMS says after each run."""

import json
from datetime import datetime, timezone

import dagster as dg
import pytest

from dms_pipelines.definitions import build_definitions
from dms_pipelines.devtools.sample.generator import SampleDealer, export_name, generate_group, render_export
from dms_pipelines.stock.store import read_stock


@pytest.fixture
def synced(paths, settings):
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers if d.id == "leeds"], vehicles=120, seed=5, deltas=0)
    defs = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml")
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("dealer_sync")
    assert job.execute_in_process(instance=instance, partition_key="leeds").success

    def run() -> None:
        result = job.execute_in_process(instance=instance, partition_key="leeds", raise_on_error=False)
        assert result.success

    return run


def write_delta(paths, car, hour: int) -> bytes:
    content = render_export(car.reset_index(drop=True), "navigator_csv")
    path = paths.inbox / "leeds" / export_name("navigator_csv", "delta", datetime(2026, 11, 22, hour, 0, tzinfo=timezone.utc).replace(tzinfo=None))
    path.write_bytes(content)
    return content


def shown(paths, stock_api, stock_id: str) -> tuple[bool, str, int | None]:
    """On the website (listed?), on Auto Trader (lifecycle state and price)."""
    website = json.loads((paths.outbox / "website" / "leeds.json").read_text(encoding="utf-8"))
    on_website = any(v["stock_id"] == stock_id for v in website["vehicles"])
    live = [i for i in stock_api.live_items("10001") if i["metadata"]["externalStockReference"] == stock_id]
    assert len(live) == 1, live
    return on_website, live[0]["metadata"]["lifecycleState"], live[0]["adverts"]["retailAdverts"]["suppliedPrice"].get("amountGBP")


def test_a_sale_cancelled_and_made_again_in_a_byte_identical_file_reaches_every_marketplace(paths, stock_api, synced):
    stock = read_stock(paths.state, "leeds")
    car = stock[stock["status"] == "available"].head(1).copy()
    stock_id = str(car["stock_id"].iloc[0])
    sold, back = car.assign(status="sold", location="Forecourt"), car.assign(location="Forecourt")
    first = write_delta(paths, sold, 9)
    synced()
    assert shown(paths, stock_api, stock_id)[:2] == (False, "SOLD")
    write_delta(paths, back, 10)
    synced()
    assert shown(paths, stock_api, stock_id)[:2] == (True, "FORECOURT")
    assert write_delta(paths, sold, 11) == first  # sold again: the very bytes of 09:00, under its own name
    synced()
    assert shown(paths, stock_api, stock_id)[:2] == (False, "SOLD")


def test_a_price_that_goes_up_and_back_reaches_every_marketplace(paths, stock_api, synced):
    stock = read_stock(paths.state, "leeds")
    car = stock[stock["status"] == "available"].head(1).copy()
    stock_id, price = str(car["stock_id"].iloc[0]), float(car["price"].iloc[0])
    for hour, new_price in ((9, price + 1000), (10, price), (11, price + 1000), (12, price)):
        write_delta(paths, car.assign(price=new_price, location="Forecourt"), hour)
        synced()
        website = json.loads((paths.outbox / "website" / "leeds.json").read_text(encoding="utf-8"))
        on_website = [v for v in website["vehicles"] if v["stock_id"] == stock_id]
        assert shown(paths, stock_api, stock_id)[2] == int(new_price + 0.5), hour
        assert on_website and float(on_website[0]["price_gbp"]) == new_price, hour


def test_a_held_full_export_is_superseded_by_the_next_good_one(paths, synced):
    from sqlalchemy import select

    from dms_pipelines.operations.db import engine_for, ingested_files
    from dms_pipelines.operations.run_health import current_problems

    stock = read_stock(paths.state, "leeds")
    at = lambda hour: datetime(2026, 11, 23, hour, 0, tzinfo=timezone.utc).replace(tzinfo=None)  # noqa: E731
    (paths.inbox / "leeds" / export_name("navigator_csv", "full", at(2))).write_bytes(render_export(stock.head(5).assign(location="Forecourt"), "navigator_csv"))
    synced()
    engine = engine_for(paths.operations_db_url)
    assert [p.kind for p in current_problems(engine, "leeds")] == ["held_export"]  # the operator is told, until...
    (paths.inbox / "leeds" / export_name("navigator_csv", "full", at(3))).write_bytes(render_export(stock.assign(location="Forecourt"), "navigator_csv"))
    synced()  # ...a newer good full export arrives: applied, and nothing is left to release
    with engine.connect() as connection:
        statuses = dict(connection.execute(select(ingested_files.c.file_name, ingested_files.c.status).where(ingested_files.c.file_name.like("stock_full_20261123%"))).fetchall())
    assert sorted(statuses.values()) == ["processed", "superseded"]
    assert current_problems(engine, "leeds") == []


def test_a_held_full_export_does_not_take_the_delta_before_it_down(paths, stock_api, synced):
    """Found by the stateful test: a price change, then a truncated full export, in one run: the full export superseded
    the delta, then was held, and the new price never reached any marketplace."""
    stock = read_stock(paths.state, "leeds")
    car = stock[stock["status"] == "available"].head(1).copy().assign(location="Forecourt")
    stock_id, price = str(car["stock_id"].iloc[0]), float(car["price"].iloc[0]) - 500
    write_delta(paths, car.assign(price=price), 9)
    at = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc).replace(tzinfo=None)
    (paths.inbox / "leeds" / export_name("navigator_csv", "full", at)).write_bytes(render_export(stock.head(3).assign(location="Forecourt"), "navigator_csv"))
    synced()
    assert read_stock(paths.state, "leeds").set_index("stock_id").loc[stock_id, "price"] == price
    assert shown(paths, stock_api, stock_id)[2] == int(price + 0.5)


def write_full(paths, stock, day: int, hour: int) -> None:
    content = render_export(stock.assign(location="Forecourt").reset_index(drop=True), "navigator_csv")
    (paths.inbox / "leeds" / export_name("navigator_csv", "full", datetime(2026, 11, day, hour, 0, tzinfo=timezone.utc).replace(tzinfo=None))).write_bytes(content)


def test_a_good_full_export_followed_by_a_truncated_one_in_the_same_run_still_applies(paths, stock_api, synced):
    """The DMS sends a full export without one car, then (before the next run) a truncated one: the truncated one is held,
    and the good one before it, not superseded with it, takes the car off every marketplace (found by the stateful test)."""
    stock = read_stock(paths.state, "leeds")
    gone = str(stock.loc[stock["status"] == "available", "stock_id"].iloc[0])
    write_full(paths, stock[stock["stock_id"] != gone], 23, 2)
    write_full(paths, stock.head(5), 23, 3)  # cut short: the delisting guard holds it
    synced()
    assert gone not in set(read_stock(paths.state, "leeds")["stock_id"])
    assert not [i for i in stock_api.live_items("10001") if i["metadata"]["externalStockReference"] == gone]  # withdrawn from the API
    website = json.loads((paths.outbox / "website" / "leeds.json").read_text(encoding="utf-8"))
    assert gone not in {v["stock_id"] for v in website["vehicles"]}
    from sqlalchemy import select

    from dms_pipelines.config import load_settings, operations_db_url
    from dms_pipelines.operations.db import engine_for, ingested_files

    with engine_for(operations_db_url(load_settings(paths.root / "config" / "dms_pipelines.yaml"), paths)).connect() as connection:
        statuses = dict(connection.execute(select(ingested_files.c.file_name, ingested_files.c.status).where(ingested_files.c.file_name.like("%20261123%"))).fetchall())
    assert sorted(statuses.values()) == ["held", "processed"]  # the truncated one is still held, and reported so
