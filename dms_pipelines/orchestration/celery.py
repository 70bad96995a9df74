"""The group run on Celery workers: group_sync's graph, ops and resources on dagster-celery's executor, for PostgreSQL-backed instances."""

import dagster as dg
from dagster_celery import celery_executor

from dms_pipelines.orchestration.group import group_sync
from dms_pipelines.orchestration.io_manager import FrameFilesystemIOManager
from dms_pipelines.orchestration.resources import PipelineResource
from dms_pipelines.paths import DataPaths, config_path, data_root

JOB_NAME = "group_sync_celery"
BROKER_ENV = "DMS_CELERY_BROKER_URL"  # e.g. redis://:password@redis.internal:6379/0; a secret when it holds a password
BACKEND_ENV = "DMS_CELERY_BACKEND_URL"  # e.g. redis://:password@redis.internal:6379/1


@dg.configured(
    celery_executor,
    config_schema={
        "broker_env": dg.Field(str, default_value=BROKER_ENV, description="the environment variable holding the broker's URL"),
        "backend_env": dg.Field(str, default_value=BACKEND_ENV, description="the environment variable holding the result backend's URL"),
    },
)
def group_celery_executor(config: dict) -> dict:
    """dagster-celery's executor with its broker and result backend named by environment variable: run config and the run's
    record in Dagster's storage hold the variables' names, never the URLs (which may hold a password)."""
    return {"broker": {"env": config["broker_env"]}, "backend": {"env": config["backend_env"]}}


group_sync_celery = group_sync.graph.to_job(
    name=JOB_NAME,
    executor_def=group_celery_executor,
    tags=dict(group_sync.tags),
    description="group_sync with each step (a batch of dealers) sent to a Celery worker: the same ops and code, another executor.",
)


def pipeline_resources(paths: DataPaths | None = None) -> dict:
    """The resources the code location binds (orchestration.build), for the configuration the environment names."""
    paths = paths or DataPaths(data_root())
    return {
        "pipeline": PipelineResource(data_root=str(paths.root), config_path=str(config_path())),
        "io_manager": FrameFilesystemIOManager(base_dir=str(paths.state / "dagster_io")),
    }


def group_sync_celery_job() -> dg.JobDefinition:
    """group_sync_celery with its resources bound, for `dg.reconstructable`: each Celery worker rebuilds it from the
    configuration its own environment names (DMS_PIPELINES_DATA, DMS_PIPELINES_CONFIG), as the run's process does."""
    return dg.Definitions(jobs=[group_sync_celery], resources=pipeline_resources()).resolve_job_def(JOB_NAME)
