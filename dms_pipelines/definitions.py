"""The Dagster Definitions: every asset, check, job, schedule and resource, built from the configuration."""

from pathlib import Path

import dagster as dg

from dms_pipelines.config import Settings, load_settings
from dms_pipelines.orchestration.assets import dealer_assets, google_feed
from dms_pipelines.orchestration.checks import CHECKS, google_drift_check
from dms_pipelines.orchestration.group import group_sync
from dms_pipelines.orchestration.io_manager import FrameFilesystemIOManager
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.orchestration.schedules import build_jobs, build_schedules
from dms_pipelines.orchestration.sensors import build_sensors
from dms_pipelines.paths import DataPaths, config_path, data_root


def build_definitions(settings: Settings, paths: DataPaths, config_file: Path | None = None) -> dg.Definitions:
    """Definitions for this configuration; the dealers become the partitions."""
    dealer_ids = [dealer.id for dealer in settings.dealers]
    partitions = dg.StaticPartitionsDefinition(dealer_ids)
    dealer_sync, account_feeds = build_jobs(partitions)
    return dg.Definitions(
        assets=[*dealer_assets(partitions), google_feed],
        asset_checks=[*CHECKS, google_drift_check(partitions)],
        jobs=[dealer_sync, account_feeds, group_sync],
        schedules=build_schedules(dealer_sync, account_feeds, group_sync, dealer_ids),
        sensors=build_sensors(dealer_sync, account_feeds),
        resources={
            "pipeline": PipelineResource(data_root=str(paths.root), config_path=str(config_file or config_path())),
            "io_manager": FrameFilesystemIOManager(base_dir=str(paths.state / "dagster_io")),
        },
    )


defs = build_definitions(load_settings(), DataPaths(data_root()))


def group_sync_job() -> dg.JobDefinition:
    """The group_sync job with its resources bound, for `dg.reconstructable`: the multiprocess executor rebuilds it in each process."""
    return defs.resolve_job_def("group_sync")
