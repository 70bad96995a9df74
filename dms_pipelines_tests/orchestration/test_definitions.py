"""The real Definitions load and resolve: every asset, check, job and schedule, from the committed configuration."""

import os
import subprocess
import sys
from datetime import datetime

import dagster as dg

from dms_pipelines.paths import PROJECT_ROOT

LEAD_ASSETS = {"dms_customer_records", "landed_leads", "validated_leads", "linked_leads", "identified_leads", "delivered_leads", "lead_warehouse"}
DEALER_ASSETS = {
    "landed_exports",
    "parsed_exports",
    "validated_exports",
    "dealer_stock",
    "vehicle_images",
    "google_listings",
    "website_feed",
    "meta_feed",
    "carsnip_feed",
    "autotrader_listings",
    "warehouse_tables",
}


def test_module_definitions_load_and_resolve(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.delenv("DMS_PIPELINES_DATA", raising=False)
    monkeypatch.delenv("DMS_PIPELINES_CONFIG", raising=False)
    from dms_pipelines.definitions import defs

    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert keys == DEALER_ASSETS | LEAD_ASSETS | {"google_feed"}
    dealer_stock = repository.asset_graph.get(dg.AssetKey("dealer_stock"))
    assert dealer_stock.partitions_def.get_partition_keys() == ["leeds", "york", "sheffield"]
    assert {job.name for job in repository.get_all_jobs()} >= {"dealer_sync", "account_feeds", "group_sync"}
    assert {s.name for s in repository.schedule_defs} == {"nightly_sync", "hourly_sync", "account_feeds_after_sync"}
    checks = {key.name for key in repository.asset_graph.asset_check_keys}
    assert {"rows_conserved", "pass_rate", "files_readable", "stock_present", "no_held_exports", "export_freshness", "google_feed_allowlisted"} <= checks


def test_nightly_schedule_asks_for_one_group_run_and_hourly_for_one_run_per_dealer(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    from dms_pipelines.definitions import defs

    repository = defs.get_repository_def()
    context = dg.build_schedule_context(repository_def=repository, scheduled_execution_time=datetime(2026, 11, 22, 2, 30))
    [nightly] = list(repository.get_schedule_def("nightly_sync").evaluate_tick(context).run_requests)
    assert repository.get_schedule_def("nightly_sync").job_name == "group_sync"
    assert nightly.run_key == "nightly-20261122" and nightly.tags["dms_pipelines/trigger"] == "nightly"
    context = dg.build_schedule_context(repository_def=repository, scheduled_execution_time=datetime(2026, 11, 22, 9, 5))
    hourly = list(repository.get_schedule_def("hourly_sync").evaluate_tick(context).run_requests)
    assert [r.partition_key for r in hourly] == ["leeds", "york", "sheffield"]
    assert len({r.run_key for r in hourly}) == 3


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DMS_PIPELINES_DATA", "DMS_PIPELINES_CONFIG")} | {"DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
