"""The drift oracle and the truth of every report: a marketplace that does not show what the DMS says fails the run's
exit status and the dealer's partition checks, alerts once, and the next run heals it and says so."""

import json
from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest
import yaml

from dms_pipelines.cli import main
from dms_pipelines.devtools.sample.generator import SampleDealer, export_name, generate_group, render_export
from dms_pipelines.orchestration.drivers import run_sync
from dms_pipelines.stock.store import read_stock
from dms_pipelines_tests.support import AlertHook


@pytest.fixture
def alerts(data_root, monkeypatch):
    hook = AlertHook()
    config = data_root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["alerts"] = {"webhook_url_env": "DMS_TEST_ALERT_HOOK"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("DMS_TEST_ALERT_HOOK", hook.url)
    yield hook
    hook.close()


@pytest.fixture
def nightly(paths, settings, alerts):
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers], vehicles=240, seed=3, deltas=0)
    outcomes = run_sync(echo=lambda line: None, trigger="nightly")
    assert all(outcomes.values()), outcomes
    assert alerts.received == []  # a good night alerts nobody


def current_drift(paths) -> dict[tuple[str, str], tuple]:
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        rows = db.execute("SELECT dealer_id, marketplace, vehicles_checked, missing, extra, stale, sold_live, error FROM marketplace_drift_current").fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def sell(paths, dealer_id: str, hour: int, **changes) -> str:
    stock = read_stock(paths.state, dealer_id)
    car = stock[stock["status"] == "available"].head(1).copy().assign(location="Forecourt", **changes)
    at = datetime(2026, 11, 22, hour, 0, tzinfo=timezone.utc).replace(tzinfo=None)
    (paths.inbox / dealer_id / export_name("navigator_csv", "delta", at)).write_bytes(render_export(car.reset_index(drop=True), "navigator_csv"))
    return str(car["stock_id"].iloc[0])


def check_results(instance, dealer_id: str) -> dict[tuple[str, str], tuple[bool, str]]:
    """The latest evaluation of every check on the dealer's partition: (asset, check) -> (passed, severity)."""
    found = {}
    for record in instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), ascending=True):
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.partition == dealer_id:
            found[(evaluation.asset_key.to_user_string(), evaluation.check_name)] = (evaluation.passed, evaluation.severity.value)
    return found


def test_after_a_good_night_every_marketplace_shows_what_the_dms_says(paths, settings, nightly):
    drift = current_drift(paths)
    published = {(d.id, m) for d in settings.dealers for m in d.marketplaces}
    assert set(drift) == published
    assert all(counts[1:] == (0, 0, 0, 0, None) for counts in drift.values()), drift
    assert all(counts[0] > 0 for counts in drift.values())  # vehicles were compared, not nothing


def test_a_sold_car_whose_patch_fails_is_reported_live_then_healed(paths, stock_api, nightly, alerts, capsys):
    sold = sell(paths, "leeds", 9, status="sold")
    stock_api.fail_next(400, status=503, methods=("POST", "PATCH"))  # every write of this run fails, retries included; searches answer
    assert main(["run", "--dealer", "leeds"]) == 1
    assert current_drift(paths)[("leeds", "autotrader")][4] >= 1
    capsys.readouterr()
    assert main(["report"]) == 1
    report = capsys.readouterr().out
    assert "leeds        autotrader  DRIFT: 1 sold but live" in report and sold in report
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        shown = db.execute(f"SELECT marketplace, listed, drift FROM marketplace_listings WHERE stock_id = '{sold}' ORDER BY marketplace").fetchall()
        on_sale = db.execute("SELECT listed, drift FROM marketplace_listings WHERE marketplace = 'autotrader' AND dealer_id = 'leeds' AND drift IS NULL AND offered LIMIT 1").fetchall()
    assert ("autotrader", True, "sold_live") in shown  # the marketplace still offers it, and the warehouse says so
    assert on_sale == [(True, None)]
    instance = dg.DagsterInstance.get()
    results = check_results(instance, "leeds")
    assert results[("autotrader_listings", "drift_free")] == (False, "ERROR")
    assert results[("autotrader_listings", "delivered")] == (False, "ERROR")
    assert results[("website_feed", "drift_free")][0] is True  # the website shows the sale: the failing marketplace alone is named
    assert check_results(instance, "york").get(("website_feed", "drift_free"), (True,))[0] is True  # the other dealer is not hidden by, nor hides, leeds
    sold_alerts = [a for a in alerts.received if a["kind"] == "sold_live"]
    assert len(sold_alerts) == 1 and sold in sold_alerts[0]["text"]

    assert main(["run", "--dealer", "leeds"]) == 1  # still failing: the incident stays open, no second alert
    assert len([a for a in alerts.received if a["kind"] == "sold_live"]) == 1

    stock_api.reset_failures()
    assert main(["run", "--dealer", "leeds"]) == 0
    assert current_drift(paths)[("leeds", "autotrader")][1:] == (0, 0, 0, 0, None)
    assert main(["report"]) == 0
    live = [i for i in stock_api.live_items("10001") if i["metadata"]["externalStockReference"] == sold]
    assert [i["metadata"]["lifecycleState"] for i in live] == ["SOLD"]
    resolved = [a["text"] for a in alerts.received if a["kind"] == "resolved"]
    assert any("sold car(s) still offered" in text for text in resolved)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        assert db.execute(f"SELECT listed, drift FROM marketplace_listings WHERE stock_id = '{sold}' AND marketplace = 'autotrader'").fetchall() == [(False, None)]


def test_a_run_that_leaves_an_old_price_exits_non_zero_and_the_next_run_heals_it(paths, stock_api, nightly, alerts):
    stock = read_stock(paths.state, "leeds")
    price = float(stock.loc[stock["status"] == "available", "price"].iloc[0])
    repriced = sell(paths, "leeds", 10, price=price + 750)
    stock_api.fail_next(400, status=503)  # the search fails too: what the marketplace shows is unknown, which fails the run as well
    assert main(["run", "--dealer", "leeds"]) == 1
    stock_api.reset_failures()
    assert main(["run", "--dealer", "leeds"]) == 0
    live = [i for i in stock_api.live_items("10001") if i["metadata"]["externalStockReference"] == repriced]
    assert live[0]["adverts"]["retailAdverts"]["suppliedPrice"]["amountGBP"] == int(price + 750.5)
    assert "resolved" in alerts.kinds()


def test_a_feed_file_changed_at_its_destination_is_found_and_put_right(paths, nightly):
    website = paths.outbox / "website" / "leeds.json"
    document = json.loads(website.read_text(encoding="utf-8"))
    victim = document["vehicles"][0]
    victim["price_gbp"] = 1.0  # someone (or a failed half-write elsewhere) left another price there
    website.write_text(json.dumps(document), encoding="utf-8")
    outcomes = run_sync(["leeds"], echo=lambda line: None)
    assert outcomes["leeds"]  # found by reading it back, sent again within the run, and so in sync
    assert json.loads(website.read_text(encoding="utf-8"))["vehicles"][0]["price_gbp"] != 1.0


def test_a_destination_that_refuses_writes_fails_the_dealer_partition(paths, nightly, alerts):
    import shutil

    sell(paths, "leeds", 11, status="sold")
    folder = paths.outbox / "website"
    shutil.rmtree(folder)
    folder.write_text("not a folder: every write to it fails")  # a real fault of the file system, not a fake
    assert main(["run", "--dealer", "leeds"]) == 1
    results = check_results(dg.DagsterInstance.get(), "leeds")
    assert results[("website_feed", "delivered")] == (False, "ERROR")
    assert results[("website_feed", "drift_free")][0] is False
    assert "undelivered" in alerts.kinds()
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        row = db.execute("SELECT error FROM marketplace_drift_current WHERE dealer_id = 'leeds' AND marketplace = 'website'").fetchall()
    assert row and row[0][0]  # its state is unknown, which is drift too
    folder.unlink()
    assert main(["run", "--dealer", "leeds"]) == 0
