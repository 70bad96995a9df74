"""Shared fixtures: a fresh data root with the demo's sample configuration, the stock API simulator, a real sshd."""

import uuid
from pathlib import Path

import pytest
import yaml

from dms_pipelines.config import load_settings
from dms_pipelines.devtools.demo import ensure_sample_config
from dms_pipelines.devtools.simulator import StockApiSimulator
from dms_pipelines.devtools.sshd_harness import SshServer, find_sshd
from dms_pipelines.paths import PROJECT_ROOT, DataPaths
from dms_pipelines_tests.support import STATS, TEST_TOKEN, config_without_images


def pytest_sessionstart(session):
    """The repository's own data root gets the sample configuration when it has none, as `make demo` and `make test` do:
    the tests that load the real workspace (dagster definitions validate, the webserver) read it from ./data/config."""
    ensure_sample_config(DataPaths(PROJECT_ROOT / "data"), environ={})


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory):
    """A real OpenSSH sshd on a free loopback port for the whole session (never skipped: CI installs it)."""
    binary, reason = find_sshd()
    if binary is None:
        pytest.fail(reason)
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def remote_dir(sshd_server) -> Path:
    """A fresh remote folder on the sshd for one test."""
    folder = sshd_server.root_dir / uuid.uuid4().hex[:8]
    folder.mkdir()
    return folder


@pytest.fixture
def stock_api():
    """The Auto Trader-style stock API simulator on a free loopback port (the one outside service we fake)."""
    with StockApiSimulator(token=TEST_TOKEN) as simulator:
        yield simulator


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch, stock_api) -> Path:
    """A data root in a temporary folder holding the sample configuration (API pointed at the simulator), as DMS_PIPELINES_DATA."""
    root = tmp_path / "data"
    (root / "config").mkdir(parents=True)
    raw = config_without_images()
    raw["marketplaces"]["autotrader"]["destination"]["base_url"] = stock_api.base_url
    raw["marketplaces"]["autotrader"]["destination"]["max_retry_delay_seconds"] = 0.2
    (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("DMS_AUTOTRADER_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("DMS_PIPELINES_DATA", str(root))
    monkeypatch.delenv("DMS_PIPELINES_CONFIG", raising=False)
    monkeypatch.delenv("DMS_AUTOTRADER_BASE_URL", raising=False)  # the config names it (base_url_env): the simulator above, not an exported URL
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return root


@pytest.fixture
def paths(data_root: Path) -> DataPaths:
    return DataPaths(data_root)


@pytest.fixture
def settings(data_root: Path):
    return load_settings(data_root / "config" / "dms_pipelines.yaml")


def pytest_terminal_summary(terminalreporter):
    """The hostile-input and fault figures the issue asks `make test` to report."""
    if STATS:
        terminalreporter.write_sep("-", "hostile inputs and faults")
        for name in ("hostile inputs tried", "faults injected", "rows lost", "duplicate deliveries", "secrets or foreign content leaked"):
            terminalreporter.write_line(f"{name}: {STATS.get(name, 0)}")
