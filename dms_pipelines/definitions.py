"""The Dagster code location: the Definitions built from the configuration the environment names."""

import dagster as dg

from dms_pipelines.config import load_settings
from dms_pipelines.orchestration.build import build_definitions
from dms_pipelines.paths import DataPaths, data_root

defs = build_definitions(load_settings(), DataPaths(data_root()))


def group_sync_job() -> dg.JobDefinition:
    """The group_sync job with its resources bound, for `dg.reconstructable`: the multiprocess executor rebuilds it in each process."""
    return defs.resolve_job_def("group_sync")
