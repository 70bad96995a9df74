"""The one Dagster resource: where the configuration, the data root and the operational database are."""

from pathlib import Path

import dagster as dg
from sqlalchemy.engine import Engine

from dms_pipelines.config import Settings, load_settings, operations_db_url
from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.marketplaces.registry import specs_for
from dms_pipelines.operations.db import engine_for
from dms_pipelines.paths import DataPaths, config_path, data_root


class PipelineResource(dg.ConfigurableResource):
    """Settings, paths, the marketplaces and the operational database for the assets; empty fields fall back to the environment."""

    data_root: str = ""
    config_path: str = ""

    def paths(self) -> DataPaths:
        return DataPaths(Path(self.data_root).resolve() if self.data_root else data_root())

    def settings(self) -> Settings:
        return load_settings(Path(self.config_path) if self.config_path else config_path())

    def specs(self) -> list[MarketplaceSpec]:
        """The marketplaces the configuration publishes to (checked against the registry)."""
        return specs_for(self.settings(), self.paths().root)

    def engine(self) -> Engine:
        return engine_for(operations_db_url(self.settings(), self.paths()))
