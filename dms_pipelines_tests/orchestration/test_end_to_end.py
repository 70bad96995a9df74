"""End to end through the real Definitions: generated exports for three dealers, materialised, in the warehouse and the outbox."""

import csv
import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dms_pipelines.definitions import build_definitions
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.stock.schema import PRIVATE_COLUMNS
from dms_pipelines_tests.support import NAVIGATOR_HEADER, navigator_row


def run_everything(settings, paths, instance) -> list[str]:
    defs = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml")
    job = defs.resolve_job_def("dealer_sync")
    run_ids = []
    for dealer in settings.dealers:
        result = job.execute_in_process(instance=instance, partition_key=dealer.id)
        assert result.success
        run_ids.append(result.run_id)
    assert defs.resolve_job_def("account_feeds").execute_in_process(instance=instance).success
    return run_ids


@pytest.fixture
def generated(paths, settings):
    dealers = [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers]
    return generate_group(paths.inbox, dealers, vehicles=300, seed=11, deltas=2)


def test_three_dealers_end_to_end(paths, settings, generated):
    instance = dg.DagsterInstance.ephemeral()
    run_everything(settings, paths, instance)

    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        per_dealer = dict(db.execute("SELECT dealer_id, count(*) FROM stock_current GROUP BY ALL").fetchall())
        assert set(per_dealer) == {"leeds", "york", "sheffield"} and all(n > 50 for n in per_dealer.values())
        columns = {row[0] for row in db.execute("DESCRIBE stock_current").fetchall()}
        assert not columns & set(PRIVATE_COLUMNS)
        quarantined = db.execute("SELECT dealer_id, rule, source_file, source_row, stock_id, field, value, severity FROM quarantine WHERE severity = 'error'").fetchall()
        rules = {row[1] for row in quarantined}
        assert {"required", "placeholder_price", "plate_format", "duplicate_stock_id", "year_range", "field_count"} <= rules
        assert {row[0] for row in quarantined} == {"leeds", "york", "sheffield"}
        files = db.execute("SELECT dealer_id, status, rows_total, rows_accepted, rows_quarantined FROM ingested_files").fetchall()
        assert all(status == "processed" for _, status, *_ in files)
        assert all(total == accepted + quarantined_rows for *_, total, accepted, quarantined_rows in files)

    planted = list(csv.DictReader(open(paths.inbox / "planted_defects.csv", encoding="utf-8")))
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        found = {(r[0], r[1], r[2]) for r in db.execute("SELECT dealer_id, stock_id, rule FROM quarantine WHERE severity = 'error'").fetchall()}
    assert found == {(d["dealer_id"], d["stock_id"], d["rule"]) for d in planted}  # every planted row, and nothing else, at error

    meta_rows = [r for p in (paths.outbox / "meta").glob("*.csv") for r in csv.DictReader(open(p, encoding="utf-8"))]
    assert meta_rows and all(r["availability"] in ("AVAILABLE", "PENDING") and r["price"].endswith(" GBP") and len(r["vin"]) == 17 for r in meta_rows)
    assert all(r["body_style"] in ("HATCHBACK", "SEDAN", "WAGON", "SUV", "COUPE", "CONVERTIBLE", "MINIVAN", "TRUCK", "VAN", "OTHER") and r["mileage.unit"] == "MILES" for r in meta_rows)
    carsnip_rows = [r for p in (paths.outbox / "carsnip").glob("*_vehicles.csv") for r in csv.DictReader(open(p, encoding="utf-8"))]
    assert carsnip_rows and all(r["Price"].isdigit() and r["FullRegistration"] and r["Vehicle_URL"].startswith("https://") for r in carsnip_rows)

    google_rows = list(csv.DictReader(open(paths.outbox / "google" / "vehicle_listings.csv", encoding="utf-8")))
    assert {r["store_code"] for r in google_rows} == {"AVM-LEEDS", "AVM-YORK", "AVM-SHEFFIELD"}
    assert all(r["price"].endswith(" GBP") and r["id"] for r in google_rows)
    for dealer in ("leeds", "york", "sheffield"):
        document = json.loads((paths.outbox / "website" / f"{dealer}.json").read_text(encoding="utf-8"))
        assert document["vehicle_count"] == len(document["vehicles"]) > 0
    outputs = (paths.outbox / "google" / "vehicle_listings.csv").read_text(encoding="utf-8") + "".join(p.read_text(encoding="utf-8") for p in (paths.outbox / "website").glob("*.json"))
    for secret_marker in ("PX from", "KeyCode", "cost_price"):
        assert secret_marker not in outputs


def test_running_twice_gives_the_same_stock_and_sends_nothing_new(paths, settings, generated):
    instance = dg.DagsterInstance.ephemeral()
    run_everything(settings, paths, instance)
    query = "SELECT * EXCLUDE (source_file, source_row) FROM stock_current ORDER BY dealer_id, stock_id"
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        first = db.execute(query).fetchall()
        deliveries_before = db.execute("SELECT count(*) FROM deliveries").fetchall()[0][0]
        files_before = db.execute("SELECT count(*) FROM ingested_files").fetchall()[0][0]
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers], vehicles=300, seed=11, deltas=2)
    run_everything(settings, paths, instance)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        assert db.execute(query).fetchall() == first
        assert db.execute("SELECT count(*) FROM deliveries").fetchall()[0][0] == deliveries_before
        assert db.execute("SELECT count(*) FROM ingested_files").fetchall()[0][0] == files_before


def test_the_same_content_under_a_new_name_is_new_data_and_a_redelivery_is_a_duplicate(paths, settings, generated):
    import os

    instance = dg.DagsterInstance.ephemeral()
    run_everything(settings, paths, instance)
    full = sorted((paths.inbox / "york").glob("inventory_full_*.xml"))[0]
    (paths.inbox / "york" / "inventory_full_202611220200.xml").write_bytes(full.read_bytes())  # the last good full export, re-sent
    os.utime(full, (full.stat().st_atime, full.stat().st_mtime + 60))  # and the first one touched: listed again, same file
    run_everything(settings, paths, instance)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        rows = dict(db.execute("SELECT file_name, status FROM ingested_files WHERE file_name LIKE 'inventory_full_%' AND status <> 'superseded'").fetchall())
        redelivered = db.execute("SELECT error FROM ingested_files WHERE status = 'duplicate'").fetchall()
    assert rows == {"inventory_full_202611220200.xml": "processed", full.name: "duplicate"}
    assert len(redelivered) == 1 and "same content as file" in redelivered[0][0]


def test_a_truncated_full_export_is_held_and_the_stock_stays(paths, settings, generated):
    instance = dg.DagsterInstance.ephemeral()
    run_everything(settings, paths, instance)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        before = db.execute("SELECT count(*) FROM stock_current WHERE dealer_id = 'leeds'").fetchall()[0][0]
    full = sorted((paths.inbox / "leeds").glob("stock_full_*.csv"))[0]
    lines = full.read_bytes().split(b"\r\n")
    (paths.inbox / "leeds" / "stock_full_20261122_0200.csv").write_bytes(b"\r\n".join(lines[:10]) + b"\r\n")
    defs = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml")
    result = defs.resolve_job_def("dealer_sync").execute_in_process(instance=instance, partition_key="leeds", raise_on_error=False)
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["no_held_exports"] is False
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM stock_current WHERE dealer_id = 'leeds'").fetchall()[0][0] == before
        held = db.execute("SELECT error FROM ingested_files WHERE status = 'held'").fetchall()
        assert len(held) == 1 and "fewer than 70%" in held[0][0]
    released = defs.resolve_job_def("dealer_sync").execute_in_process(instance=instance, partition_key="leeds", run_config={"ops": {"landed_exports": {"config": {"release_held": True}}}})
    assert released.success
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM stock_current WHERE dealer_id = 'leeds'").fetchall()[0][0] < 10


def test_a_sold_car_leaves_every_marketplace_through_the_fast_path(paths, settings, generated):
    from dms_pipelines.devtools.fast_path import sell_one_car, still_listed
    from dms_pipelines.orchestration.drivers import run_sync

    run_sync(echo=lambda line: None, trigger="nightly")
    sale = sell_one_car(paths, settings, "leeds", run_sync)
    assert set(sale.gone_from) == {"google", "website", "meta", "carsnip", "autotrader"}
    assert all(sale.gone_from.values()), sale.gone_from
    other = still_listed(paths, settings, "leeds", "LEE00002")
    assert any(other.values())  # the check can tell a listed car from a sold one
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        calls = db.execute("SELECT sum(calls) FROM deliveries WHERE trigger = 'sold_fast_path' AND marketplace = 'autotrader'").fetchall()[0][0]
    assert calls == 1  # one PATCH for one sold car, whatever the stock size


def test_a_quarantined_row_keeps_the_last_good_version_unless_it_says_sold(paths, settings, tmp_path):
    from dms_pipelines.formats.profile import find_profile
    from dms_pipelines.formats.reader import read_export
    from dms_pipelines.operations.db import engine_for
    from dms_pipelines.pipeline.ingest import ParsedExport, update_stock, validate_parsed
    from dms_pipelines.stock.store import read_stock

    paths.state.mkdir(parents=True, exist_ok=True)
    engine = engine_for(paths.operations_db_url)
    profile = find_profile("navigator_csv", paths.profile_dirs())
    dealer = settings.dealer("leeds")

    def run(name: str, rows: list[str], kind: str, file_id: int):
        path = tmp_path / name
        path.write_text("\r\n".join([NAVIGATOR_HEADER, *rows]) + "\r\n")
        parsed = [ParsedExport(file_id, name, kind, name[-17:-4], result=read_export(path, profile, "leeds"))]
        return update_stock(dealer, validate_parsed(parsed, settings, paths, engine), settings, paths, engine)

    def car(n: int, **changes) -> str:
        return navigator_row(f"00{n}", reg=f"AB71CD{'XABCD'[n]}", **changes).replace("WF0XXXGCDXKA12345", f"WF0XXXGCDXKA1234{n}")

    run("stock_full_20261121_0200.csv", [car(n) for n in range(1, 5)], "full", 1)
    broken = [car(1), car(2, price="99999"), car(3, price="99999").replace("In Stock", "Sold"), car(4)]
    outcome = run("stock_full_20261121_0300.csv", broken, "full", 2)
    stock = read_stock(paths.state, "leeds").set_index("stock_id")
    assert stock.loc["002", "price"] == 12995 and stock.loc["002", "status"] == "available"  # last good version kept
    assert stock.loc["003", "status"] == "sold"  # the quarantined row's sale is believed
    assert outcome.kept_last_good == 2


def test_an_unreadable_newer_full_export_never_hides_the_good_one_before_it(paths, settings, generated):
    from dms_pipelines.orchestration.drivers import run_sync

    good = sorted((paths.inbox / "leeds").glob("stock_full_*.csv"))[0]
    (paths.inbox / "leeds" / "stock_full_20261121_0230.csv").write_bytes(b"garbage,header\r\n1,2\r\n")
    run_sync(["leeds"], echo=lambda line: None)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        statuses = dict(db.execute("SELECT file_name, status FROM ingested_files WHERE dealer_id = 'leeds'").fetchall())
        vehicles = db.execute("SELECT count(*) FROM stock_current WHERE dealer_id = 'leeds'").fetchall()[0][0]
    assert statuses[good.name] == "processed" and statuses["stock_full_20261121_0230.csv"] == "failed"
    assert vehicles > 50


def _whole_files(paths, settings, dealer_id: str, marketplace: str) -> dict[str, bytes]:
    """The dealer's files for `marketplace` built whole from its current stock, as a nightly run builds them."""
    from dms_pipelines.marketplaces.registry import SPECS
    from dms_pipelines.pipeline.feeds import file_pieces, render_dealer
    from dms_pipelines.stock.store import read_stock

    dealer = settings.dealer(dealer_id)
    rendered = render_dealer(SPECS[marketplace], dealer, read_stock(paths.state, dealer_id))
    files = file_pieces(SPECS[marketplace], rendered, dealer, settings)
    return {name: b"".join(bytes(piece) for piece in pieces) for name, pieces in files.items()}


def test_a_delta_rebuilds_the_dealer_files_from_the_changed_vehicles_alone(paths, settings, generated):
    from datetime import datetime, timezone

    from dms_pipelines.devtools.fast_path import write_sale

    instance = dg.DagsterInstance.ephemeral()
    run_everything(settings, paths, instance)
    dealer = settings.dealer("leeds")
    from dms_pipelines.stock.store import read_stock, stock_path
    from dms_pipelines.warehouse.tables import table_file

    sold_id, _ = write_sale(paths, "leeds", dealer.profile, datetime(2026, 11, 22, 10, 5, tzinfo=timezone.utc))
    base = stock_path(paths.state, "leeds").read_bytes()
    warehouse_base = table_file(paths, "stock_current", "leeds").read_bytes()
    job = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml").resolve_job_def("dealer_sync")
    result = job.execute_in_process(instance=instance, partition_key="leeds")
    assert result.success
    assert stock_path(paths.state, "leeds").read_bytes() == base  # the delta went to the stock's log, not a rewrite
    assert read_stock(paths.state, "leeds").set_index("stock_id").loc[sold_id, "status"] == "sold"
    assert table_file(paths, "stock_current", "leeds").read_bytes() == warehouse_base  # nor did the warehouse copy its base again
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        assert db.execute(f"SELECT status FROM stock_current WHERE stock_id = '{sold_id}'").fetchall() == [("sold",)]
        assert db.execute("SELECT count(*) FROM stock_current WHERE dealer_id = 'leeds'").fetchall()[0][0] == len(read_stock(paths.state, "leeds"))
        listed = db.execute(f"SELECT listed FROM marketplace_listings WHERE stock_id = '{sold_id}' AND marketplace = 'website'").fetchall()
        assert listed in ([], [(False,)])  # no longer listed on the website
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    for marketplace in ("website", "meta", "carsnip"):
        assert metadata[f"{marketplace}_feed"]["rebuilt_from_changed_vehicles"].value == 1  # the sold car alone was rendered
        folder = paths.resolve(settings.marketplaces[marketplace].destination.path)
        for name, expected in _whole_files(paths, settings, "leeds", marketplace).items():
            assert (folder / name).read_bytes() == expected, f"{marketplace} {name} differs from a whole build"
    assert metadata["google_listings"]["rebuilt_from_changed_vehicles"].value == 1
    assert metadata["autotrader_listings"]["rebuilt_from_changed_vehicles"].value == 1
    from dms_pipelines.marketplaces.base import listing_rows
    from dms_pipelines.marketplaces.registry import SPECS
    from dms_pipelines.pipeline.feeds import render_dealer as render_whole

    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        for marketplace, asset in (("google", "google_listings"), ("website", "website_feed"), ("meta", "meta_feed"), ("carsnip", "carsnip_feed")):
            whole = listing_rows(render_whole(SPECS[marketplace], dealer, read_stock(paths.state, "leeds")))
            seen = db.execute(f"SELECT stock_id, listed FROM marketplace_listings WHERE dealer_id = 'leeds' AND marketplace = '{marketplace}' ORDER BY stock_id").fetchall()
            assert seen == sorted(zip(whole["stock_id"].astype(str), whole["listed"].astype(bool)))  # the logged rows in place, as a whole render gives them
            assert (metadata[asset]["listed"].value, metadata[asset]["held_back"].value) == (int(whole["listed"].sum()), int((~whole["listed"].astype(bool)).sum()))
    assert metadata["autotrader_listings"]["calls"].value == 1 and metadata["autotrader_listings"]["unchanged"].value == 0  # the sold car's ledger row alone was read
    assert build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml").resolve_job_def("account_feeds").execute_in_process(instance=instance).success
    from dms_pipelines.marketplaces import google
    from dms_pipelines.pipeline.feeds import render_dealer

    items = pd.concat([render_dealer(SPECS["google"], d, read_stock(paths.state, d.id)).items for d in settings.dealers], ignore_index=True)
    google_file = paths.resolve(settings.marketplaces["google"].destination.path) / "vehicle_listings.csv"
    assert google_file.read_bytes() == google.serialise(items)  # the account file, from the dealers' parts, equals a whole build


def test_a_kept_file_touched_or_built_for_other_settings_is_not_rebuilt_from(paths, settings, generated):
    from dms_pipelines.marketplaces.registry import SPECS
    from dms_pipelines.operations.db import engine_for
    from dms_pipelines.orchestration.drivers import run_sync
    from dms_pipelines.pipeline.feeds import snapshot_feed
    from dms_pipelines.stock.store import StockView

    run_sync(echo=lambda line: None, trigger="nightly")
    engine = engine_for(paths.operations_db_url)
    kept = paths.state / "feeds" / "website" / "leeds" / "leeds.json"
    kept.write_bytes(kept.read_bytes().replace(b'"make":"', b'"make":"X', 1))  # touched: its bytes no longer match its index
    outcome = snapshot_feed(SPECS["website"], settings.dealer("leeds"), StockView(paths.state, "leeds"), settings, paths, engine, None, "manual")
    assert outcome.rows_changed is None  # built whole
    renamed = settings.model_copy(update={"dealers": [d.model_copy(update={"name": "Renamed Motors"}) if d.id == "leeds" else d for d in settings.dealers]})
    outcome = snapshot_feed(SPECS["website"], renamed.dealer("leeds"), StockView(paths.state, "leeds"), renamed, paths, engine, None, "manual")
    assert outcome.rows_changed is None  # other settings: built whole, with the new name
    assert b"Renamed Motors" in (paths.resolve(settings.marketplaces["website"].destination.path) / "leeds.json").read_bytes()
    outcome = snapshot_feed(SPECS["website"], renamed.dealer("leeds"), StockView(paths.state, "leeds"), renamed, paths, engine, None, "manual")
    assert outcome.rows_changed == 0 and outcome.files and not outcome.files[0].sent  # nothing changed since: rebuilt, same bytes, not sent


def test_an_unacknowledged_api_item_makes_the_next_run_compare_every_vehicle(paths, settings, generated):
    from sqlalchemy import update

    from dms_pipelines.marketplaces.registry import SPECS
    from dms_pipelines.operations.db import engine_for, listing_ledger
    from dms_pipelines.orchestration.drivers import run_sync
    from dms_pipelines.pipeline.feeds import api_feed
    from dms_pipelines.stock.store import StockView

    run_sync(echo=lambda line: None, trigger="nightly")
    engine = engine_for(paths.operations_db_url)
    dealer = settings.dealer("leeds")
    quiet = api_feed(SPECS["autotrader"], dealer, StockView(paths.state, "leeds"), settings, paths, engine, None, "hourly", reconcile_first=False)
    assert quiet.rows_changed == 0 and quiet.api.calls == 0  # nothing changed since the last delivery: nothing compared, nothing sent
    with engine.begin() as connection:
        connection.execute(update(listing_ledger).where(listing_ledger.c.dealer_id == "leeds", listing_ledger.c.item_key == "LEE00002").values(status="failed"))
    healed = api_feed(SPECS["autotrader"], dealer, StockView(paths.state, "leeds"), settings, paths, engine, None, "hourly", reconcile_first=False)
    assert healed.rows_changed is None and healed.api.calls >= 1 and healed.api.unchanged > 0  # every vehicle compared; the failed one sent again


def test_deltas_applied_alone_give_the_stock_the_whole_stock_path_gives(paths, settings, generated, tmp_path, monkeypatch):
    import shutil

    from dms_pipelines.orchestration.drivers import run_sync
    from dms_pipelines.stock.history_changes import read_history, read_history_log
    from dms_pipelines.stock.store import read_stock, stock_path

    together = tmp_path / "together"
    shutil.copytree(paths.root, together)  # the same exports, applied in one run: the full export, then the deltas on the whole stock
    deltas = sorted(paths.inbox.glob("*/*_delta_*"))
    assert deltas, "the generated exports hold hourly deltas"
    aside = tmp_path / "aside"
    for delta in deltas:
        (aside / delta.parent.name).mkdir(parents=True, exist_ok=True)
        delta.rename(aside / delta.parent.name / delta.name)
    run_sync(echo=lambda line: None, trigger="nightly")
    bases = {d.id: stock_path(paths.state, d.id).read_bytes() for d in settings.dealers}
    for delta in deltas:
        (aside / delta.parent.name / delta.name).rename(delta)
    from dms_pipelines.pipeline import ingest

    whole_reads = []
    monkeypatch.setattr(ingest, "read_stock", lambda *args: whole_reads.append(args) or read_stock(*args))
    run_sync(echo=lambda line: None, trigger="hourly")  # the deltas alone: only the stock numbers read, only the log written
    assert whole_reads == []  # no dealer's update read its whole stock
    alone = {d.id: read_stock(paths.state, d.id) for d in settings.dealers}
    assert all(stock_path(paths.state, d).read_bytes() == base for d, base in bases.items())

    monkeypatch.setenv("DMS_PIPELINES_DATA", str(together))
    run_sync(echo=lambda line: None, trigger="nightly")
    for dealer in settings.dealers:
        pd.testing.assert_frame_equal(alone[dealer.id], read_stock(together / "state", dealer.id))
        with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
            published = db.execute(f"SELECT count(*), count(*) FILTER (WHERE status = 'sold') FROM stock_current WHERE dealer_id = '{dealer.id}'").fetchall()[0]
        assert published == (len(alone[dealer.id]), int((alone[dealer.id]["status"] == "sold").sum()))
        with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
            counted = db.execute(f"SELECT vehicles FROM sync_runs WHERE dealer_id = '{dealer.id}' ORDER BY started_at DESC LIMIT 1").fetchall()
        assert counted == [(len(alone[dealer.id]),)]  # the hourly run's count: the base's vehicles plus the new ones in the log
        history, log = read_history(paths.state, dealer.id), read_history_log(paths.state, dealer.id)
        assert len(log.opened) and len(log.closed)  # the deltas' versions went to the history's log, not a rewritten base
        with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
            versions = db.execute(
                f"SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL), count(DISTINCT stock_id) FILTER (WHERE valid_to IS NULL) FROM stock_history WHERE dealer_id = '{dealer.id}'"
            ).fetchall()[0]
        assert versions == (len(history), int(history["valid_to"].isna().sum()), int(history["valid_to"].isna().sum()))  # one open version per vehicle
        together_history = read_history(together / "state", dealer.id)
        assert sorted(history.loc[history["valid_to"].isna(), "version_hash"]) == sorted(together_history.loc[together_history["valid_to"].isna(), "version_hash"])
