"""Build the Definitions for a configuration: the dealers become the partitions, the registry's marketplaces the feed assets."""

from pathlib import Path

import dagster as dg

from dms_pipelines.config import Settings
from dms_pipelines.marketplaces.registry import specs_for
from dms_pipelines.orchestration.assets import account_asset, dealer_assets
from dms_pipelines.orchestration.celery import group_sync_celery
from dms_pipelines.orchestration.checks import account_checks
from dms_pipelines.orchestration.group import group_sync
from dms_pipelines.orchestration.io_manager import FrameFilesystemIOManager
from dms_pipelines.orchestration.lead_assets import lead_assets, lead_job, lead_sensor
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.orchestration.schedules import build_jobs, build_schedules
from dms_pipelines.orchestration.sensors import build_sensors
from dms_pipelines.paths import DataPaths, config_path

CODE_LOCATION = "dms_pipelines.definitions"  # the module workspace.yaml loads; it holds `defs` and `group_sync_job`


def build_definitions(settings: Settings, paths: DataPaths, config_file: Path | None = None) -> dg.Definitions:
    """Definitions for this configuration: the dealers become the partitions, the marketplaces it publishes to (from the
    registry) the feed assets."""
    dealer_ids = [dealer.id for dealer in settings.dealers]
    partitions = dg.StaticPartitionsDefinition(dealer_ids)
    specs = specs_for(settings, paths.root)
    accounts = [spec for spec in specs if spec.account_file is not None]
    dealer_sync, account_feeds = build_jobs(partitions, specs)
    lead_sync = lead_job(partitions)
    return dg.Definitions(
        assets=[*dealer_assets(partitions, specs), *[account_asset(spec) for spec in accounts], *lead_assets(partitions)],
        asset_checks=[check for spec in accounts for check in account_checks(spec, partitions)],
        jobs=[dealer_sync, account_feeds, group_sync, group_sync_celery, lead_sync],
        schedules=build_schedules(dealer_sync, account_feeds, group_sync, dealer_ids),
        sensors=[*build_sensors(dealer_sync, account_feeds), lead_sensor(lead_sync)],
        resources={
            "pipeline": PipelineResource(data_root=str(paths.root), config_path=str(config_file or config_path())),
            "io_manager": FrameFilesystemIOManager(base_dir=str(paths.state / "dagster_io")),
        },
    )
