"""Shared fixtures: a fresh data root with the committed configuration, and the settings loaded from it."""

import shutil
from pathlib import Path

import pytest

from dms_pipelines.config import load_settings
from dms_pipelines.paths import PROJECT_ROOT, DataPaths

COMMITTED_CONFIG = PROJECT_ROOT / "data" / "config" / "dms_pipelines.yaml"


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch) -> Path:
    """A data root in a temporary folder holding a copy of the committed configuration, set as DMS_PIPELINES_DATA."""
    root = tmp_path / "data"
    (root / "config").mkdir(parents=True)
    shutil.copy(COMMITTED_CONFIG, root / "config" / "dms_pipelines.yaml")
    monkeypatch.setenv("DMS_PIPELINES_DATA", str(root))
    monkeypatch.delenv("DMS_PIPELINES_CONFIG", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return root


@pytest.fixture
def paths(data_root: Path) -> DataPaths:
    return DataPaths(data_root)


@pytest.fixture
def settings(data_root: Path):
    return load_settings(data_root / "config" / "dms_pipelines.yaml")
