"""A full export whose price and mileage headers are exchanged is held through the real Definitions, and applied only when released."""

import csv
import io
import json

import dagster as dg
import duckdb

from dms_pipelines.definitions import build_definitions
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group


def run_leeds(defs, instance, **kwargs):
    result = defs.resolve_job_def("dealer_sync").execute_in_process(instance=instance, partition_key="leeds", raise_on_error=False, **kwargs)
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    return result, checks


def leeds_prices(paths) -> tuple[dict, dict]:
    """What the warehouse holds and what the website feed shows, stock number to price."""
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        warehouse = dict(db.execute("SELECT stock_id, price FROM stock_current WHERE dealer_id = 'leeds'").fetchall())
    website = json.loads((paths.outbox / "website" / "leeds.json").read_text(encoding="utf-8"))
    return warehouse, {v["stock_id"]: v["price_gbp"] for v in website["vehicles"]}


def with_price_and_mileage_headers_exchanged(content: bytes) -> bytes:
    header, rest = content.split(b"\r\n", 1)
    names = header.split(b",")
    price, mileage = names.index(b"WebPrice"), names.index(b"Mileage")
    names[price], names[mileage] = names[mileage], names[price]
    return b",".join(names) + b"\r\n" + rest


def test_a_full_export_with_price_and_mileage_swapped_is_held_until_released(paths, settings):
    generate_group(paths.inbox, [SampleDealer("leeds", "Aire Valley Motors Leeds", "navigator_csv")], vehicles=150, seed=11, deltas=2)
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml")
    first, _ = run_leeds(defs, instance)
    assert first.success
    warehouse_before, website_before = leeds_prices(paths)
    assert len(warehouse_before) > 100 and website_before

    full = sorted((paths.inbox / "leeds").glob("stock_full_*.csv"))[0]
    swapped = with_price_and_mileage_headers_exchanged(full.read_bytes())
    (paths.inbox / "leeds" / "stock_full_20261122_0200.csv").write_bytes(swapped)
    held_run, checks = run_leeds(defs, instance)
    assert checks["no_held_exports"] is False
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        held = db.execute("SELECT file_name, error FROM ingested_files WHERE status = 'held'").fetchall()
    assert [name for name, _ in held] == ["stock_full_20261122_0200.csv"]
    assert "median price" in held[0][1] and "changed price by more than 25%" in held[0][1]
    assert leeds_prices(paths) == (warehouse_before, website_before)  # the stock and the feeds keep the old prices

    released, checks = run_leeds(defs, instance, run_config={"ops": {"landed_exports": {"config": {"release_held": True}}}})
    assert released.success and checks["no_held_exports"] is True
    rows = list(csv.DictReader(io.StringIO(swapped.decode("utf-8-sig"))))
    exported_mileage = {row["Stock"]: float(row["Mileage"]) for row in rows if row["Mileage"].isdigit()}  # the column now headed Mileage holds the prices
    exported_price = {row["Stock"]: float(row["WebPrice"]) for row in rows if row["WebPrice"].isdigit()}
    warehouse_after, website_after = leeds_prices(paths)
    applied = [stock_id for stock_id, price in warehouse_after.items() if stock_id in exported_price and price == exported_price[stock_id]]
    assert len(applied) > 100  # released on purpose: the export is applied as it was sent
    assert any(website_after[s] != website_before.get(s) for s in applied if s in website_after)
    assert all(exported_mileage.get(s) != exported_price[s] for s in applied[:20])
