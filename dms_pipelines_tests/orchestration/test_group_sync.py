"""The whole group's nightly run in one Dagster run: a step per batch of dealers on the multiprocess executor, then the account file."""

import csv

import dagster as dg
import duckdb

from dms_pipelines.definitions import group_sync_job
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.stock.store import read_stock

# A forkserver keeps the environment of the test that started it, and each test has its own data root: the others spawn.
SPAWNED = {"max_concurrent": 2, "start_method": "spawn"}


def test_group_sync_runs_every_dealer_in_its_own_process(paths, settings):
    dealers = [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers]
    generate_group(paths.inbox, dealers, vehicles=120, seed=5, deltas=0)
    with dg.instance_for_test() as instance:
        # the production start method (forkserver); the only test that uses it, as a forkserver keeps its first environment
        run_config = {"execution": {"config": {"max_concurrent": 2}}, "ops": {"dealers_to_sync": {"config": {"dealers_per_step": 2}}}}
        result = dg.execute_job(dg.reconstructable(group_sync_job), instance=instance, run_config=run_config)
        assert result.success
        step_keys = {event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"}
        assert {"sync_dealers[leeds__york]", "sync_dealers[sheffield]", "account_files"} <= step_keys
        processes = {event.pid for event in result.all_events if event.step_key and event.step_key.startswith("sync_dealers[")}
        assert len(processes) >= 2  # the steps did not all run in the run's own process
        materialised = {(event.asset_key.to_user_string(), event.partition) for event in result.all_events if event.event_type_value == "ASSET_MATERIALIZATION"}
        for dealer in settings.dealers:
            assert {("dealer_stock", dealer.id), ("warehouse_tables", dealer.id), ("website_feed", dealer.id)} <= materialised
        assert ("google_feed", None) in materialised
        run_id = result.run_id

    for dealer in settings.dealers:
        assert len(read_stock(paths.state, dealer.id)) > 20
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        runs = db.execute("SELECT dealer_id, trigger, outcome, files, vehicles FROM sync_runs WHERE run_id = ?", [run_id]).fetchall()
        vehicles = dict(db.execute("SELECT dealer_id, count(*) FROM stock_current GROUP BY ALL").fetchall())
    assert {r[0] for r in runs} == {d.id for d in settings.dealers}
    from sqlalchemy import select

    from dms_pipelines.config import operations_db_url
    from dms_pipelines.operations.db import engine_for, sync_runs

    with engine_for(operations_db_url(settings, paths)).connect() as connection:  # the operational record keeps every dealer's row too
        kept = {row.dealer_id for row in connection.execute(select(sync_runs.c.dealer_id).where(sync_runs.c.run_id == run_id))}
    assert kept == {d.id for d in settings.dealers}
    assert all(trigger == "nightly" and outcome == "ok" and files == 1 for _, trigger, outcome, files, _ in runs)
    assert {r[0]: r[4] for r in runs} == vehicles
    google_rows = list(csv.DictReader(open(paths.outbox / "google" / "vehicle_listings.csv", encoding="utf-8")))
    stores = {d.marketplaces["google"].setting("store_code") for d in settings.dealers if "google" in d.marketplaces}
    assert {r["store_code"] for r in google_rows} == stores


def test_a_failing_dealer_fails_the_run_but_not_the_other_dealers(paths, settings, tmp_path):
    import yaml

    from dms_pipelines.devtools.sshd_harness import free_port

    config_file = paths.root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(config_file.read_text())
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "key").write_text("not a key")
    raw["dealers"][1]["source"] = {  # york's SFTP server is down
        "kind": "sftp",
        "host": "127.0.0.1",
        "port": free_port(),
        "username": "dms",
        "known_hosts": str(tmp_path / "known_hosts"),
        "private_key_path": str(tmp_path / "key"),
        "connect_timeout": 2,
    }
    config_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    dealers = [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers]
    generate_group(paths.inbox, dealers, vehicles=90, seed=6, deltas=0)
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(group_sync_job), instance=instance, run_config={"execution": {"config": SPAWNED}})
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "account_files" and "york" in failure.event_specific_data.error.message
        synced = {e.partition for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.to_user_string() == "dealer_stock"}
    assert synced == {"leeds", "sheffield"}
    assert len(read_stock(paths.state, "leeds")) > 10 and len(read_stock(paths.state, "sheffield")) > 10
    assert (paths.outbox / "google" / "vehicle_listings.csv").exists()  # the account file was still assembled


def test_after_a_bad_night_the_failing_dealer_and_marketplace_show_in_its_partition_checks(paths, settings, stock_api, capsys):
    """One dealer's Auto Trader deliveries all fail: the nightly run fails naming it, that dealer's partition of
    autotrader_listings fails `delivered` and `drift_free`, the other dealers' partitions pass, and the report lists the drift."""
    import yaml

    from dms_pipelines.cli import main

    config_file = paths.root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(config_file.read_text())
    raw["marketplaces"]["autotrader"]["destination"]["max_attempts"] = 1
    config_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    dealers = [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers]
    generate_group(paths.inbox, dealers, vehicles=90, seed=8, deltas=0)
    for reference in [f"LEE{n:05d}" for n in range(1, 60)]:
        stock_api.reject(reference, status=503, message="service unavailable")  # every call for leeds' cars fails
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(group_sync_job), instance=instance, run_config={"execution": {"config": SPAWNED}})
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error.message
        assert failure.step_key == "account_files" and "leeds" in message and "autotrader" in message and "sheffield:" not in message
        checks = {
            (e.asset_check_evaluation_data.asset_key.to_user_string(), e.asset_check_evaluation_data.check_name, e.asset_check_evaluation_data.partition): e.asset_check_evaluation_data.passed
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
    assert checks[("autotrader_listings", "delivered", "leeds")] is False and checks[("autotrader_listings", "drift_free", "leeds")] is False
    assert checks[("autotrader_listings", "delivered", "sheffield")] is True and checks[("autotrader_listings", "drift_free", "sheffield")] is True
    assert checks[("website_feed", "drift_free", "leeds")] is True  # the marketplace that is wrong is named, not the dealer's others
    assert checks[("validated_exports", "rows_conserved", "york")] is True  # the nightly run evaluates every check, per dealer
    assert ("google_listings", "drift_free", "york") in checks
    capsys.readouterr()
    assert main(["report"]) == 1
    assert "leeds        autotrader  DRIFT" in capsys.readouterr().out


def _logged(events) -> tuple[dict, set]:
    """Per (asset, partition), the keys of its materialisation's metadata (but where the IO manager stored an asset's
    value, which only an asset has); and every check evaluation with its outcome."""
    materialised = {
        (e.asset_key.to_user_string(), e.partition): sorted(k for k in e.event_specific_data.materialization.metadata if not k.startswith("dagster/") and k != "path")
        for e in events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    evaluated = {
        (e.asset_check_evaluation_data.asset_key.to_user_string(), e.asset_check_evaluation_data.check_name, e.asset_check_evaluation_data.partition, e.asset_check_evaluation_data.passed)
        for e in events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    return materialised, evaluated


def test_the_group_run_logs_the_materialisations_and_checks_the_dealer_assets_log(paths, settings, tmp_path, monkeypatch):
    """The same exports through group_sync and through the per-dealer assets (dealer_sync per dealer, then account_feeds):
    the same assets materialised per partition with the same metadata keys, and the same check evaluations, outcomes included."""
    import shutil

    from dms_pipelines.config import load_settings
    from dms_pipelines.definitions import build_definitions
    from dms_pipelines.orchestration.assets import TRIGGER_TAG
    from dms_pipelines.paths import DataPaths

    dealers = [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers]
    generate_group(paths.inbox, dealers, vehicles=60, seed=9, deltas=0)
    twin = tmp_path / "twin"
    shutil.copytree(paths.root, twin)
    with dg.instance_for_test() as instance:
        group = dg.execute_job(dg.reconstructable(group_sync_job), instance=instance, run_config={"execution": {"config": SPAWNED}})
        assert group.success
        grouped = _logged(group.all_events)

    monkeypatch.setenv("DMS_PIPELINES_DATA", str(twin))
    defs = build_definitions(load_settings(twin / "config" / "dms_pipelines.yaml"), DataPaths(twin), twin / "config" / "dms_pipelines.yaml")
    events = []
    with dg.instance_for_test() as instance:
        for dealer in settings.dealers:
            run = defs.resolve_job_def("dealer_sync").execute_in_process(instance=instance, partition_key=dealer.id, tags={TRIGGER_TAG: "nightly"})
            assert run.success
            events += run.all_events
        run = defs.resolve_job_def("account_feeds").execute_in_process(instance=instance, tags={TRIGGER_TAG: "nightly"})
        assert run.success
        events += run.all_events
        for dealer in settings.dealers:  # the nightly run picks up each dealer's leads as the lead assets would
            run = defs.resolve_job_def("lead_sync").execute_in_process(instance=instance, partition_key=dealer.id, tags={TRIGGER_TAG: "nightly"})
            assert run.success
            events += run.all_events
    by_assets = _logged(events)

    assert grouped[0] == by_assets[0]
    assert grouped[1] == by_assets[1]
    for dealer in settings.dealers:
        assert ("validated_exports", "rows_conserved", dealer.id, True) in grouped[1]
        assert ("google_listings", "drift_free", dealer.id, True) in grouped[1]
