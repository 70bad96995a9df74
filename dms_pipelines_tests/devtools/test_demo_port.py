"""The demo and `make dev` never talk to another process's simulator: each starts its own on a free loopback port."""

import http.server
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml

from dms_pipelines.config import load_settings
from dms_pipelines.delivery.destinations import api_client_for
from dms_pipelines.devtools.commands import start_demo_simulator
from dms_pipelines.paths import PROJECT_ROOT

BASE_URL_ENV = "DMS_AUTOTRADER_BASE_URL"


class ForeignListener:
    """Someone else's HTTP server on a loopback port (another demo's simulator, say): records every request it gets."""

    def __init__(self):
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                listener.requests.append(f"{self.command} {self.path}")
                body = b'{"results": [], "totalResults": 0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def foreign():
    listener = ForeignListener()
    yield listener
    listener.stop()


@pytest.fixture
def demo_env(monkeypatch):
    """start_demo_simulator writes os.environ: record the variables first so that monkeypatch puts them back."""
    for name in (BASE_URL_ENV, "DMS_AUTOTRADER_TOKEN"):
        monkeypatch.setenv(name, "placeholder")
    monkeypatch.delenv(BASE_URL_ENV)
    monkeypatch.setenv("DMS_AUTOTRADER_TOKEN", "demo-test-token")


def _config_pointing_at(data_root, url: str, base_url_env: str | None = BASE_URL_ENV):
    path = data_root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["marketplaces"]["autotrader"]["destination"]["base_url"] = url
    if base_url_env:
        raw["marketplaces"]["autotrader"]["destination"]["base_url_env"] = base_url_env
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_settings(path)


def test_demo_starts_its_own_simulator_instead_of_using_a_foreign_listener(data_root, demo_env, foreign):
    settings = _config_pointing_at(data_root, foreign.url)
    simulator = start_demo_simulator(settings)
    try:
        assert simulator is not None
        # the step processes reload the configuration from the file and inherit the environment: they see the new URL
        reloaded = load_settings(data_root / "config" / "dms_pipelines.yaml")
        resolved = reloaded.marketplaces["autotrader"].destination.resolved_base_url()
        assert resolved == simulator.base_url == os.environ[BASE_URL_ENV]
        assert resolved != foreign.url
        assert api_client_for(reloaded.marketplaces["autotrader"]).search("10001") == []
        assert simulator.calls == 1
        assert foreign.requests == []
    finally:
        if simulator is not None:
            simulator.stop()


def test_demo_ignores_a_loopback_url_left_in_the_environment(data_root, demo_env, foreign, monkeypatch):
    settings = _config_pointing_at(data_root, "http://127.0.0.1:9")
    monkeypatch.setenv(BASE_URL_ENV, foreign.url)  # e.g. exported from another terminal's demo
    simulator = start_demo_simulator(settings)
    try:
        assert simulator is not None and os.environ[BASE_URL_ENV] == simulator.base_url != foreign.url
        api_client_for(settings.marketplaces["autotrader"]).search("10001")
        assert simulator.calls == 1 and foreign.requests == []
    finally:
        if simulator is not None:
            simulator.stop()


def test_two_demos_at_once_each_get_their_own_simulator(data_root, demo_env):
    settings = _config_pointing_at(data_root, "http://127.0.0.1:8765")
    first = start_demo_simulator(settings)
    try:
        second = start_demo_simulator(settings)  # the configured URL now resolves to the first demo's simulator
        try:
            assert first is not None and second is not None
            assert first.base_url != second.base_url
            assert os.environ[BASE_URL_ENV] == second.base_url
            api_client_for(settings.marketplaces["autotrader"]).search("10001")
            assert (first.calls, second.calls) == (0, 1)
        finally:
            if second is not None:
                second.stop()
    finally:
        if first is not None:
            first.stop()


def test_demo_leaves_a_real_api_alone(data_root, demo_env):
    settings = _config_pointing_at(data_root, "https://api.autotrader.example")
    assert start_demo_simulator(settings) is None
    assert BASE_URL_ENV not in os.environ
    assert settings.marketplaces["autotrader"].destination.resolved_base_url() == "https://api.autotrader.example"


def _simulator_process(*args):
    env = {k: v for k, v in os.environ.items() if k != BASE_URL_ENV}
    return subprocess.Popen(
        [sys.executable, "-m", "dms_pipelines.devtools.simulator", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_simulator_command_on_a_free_port_writes_its_url(tmp_path):
    url_file = tmp_path / "sim.url"
    process = _simulator_process("--port", "0", "--token", "t", "--url-file", str(url_file))
    try:
        deadline = time.monotonic() + 20
        while not (url_file.exists() and url_file.read_text().strip()) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        url = url_file.read_text().strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        request = urllib.request.Request(f"{url}/stock?advertiserId=1", headers={"Authorization": "Bearer t"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_simulator_command_refuses_a_port_in_use(foreign, tmp_path):
    url_file = tmp_path / "sim.url"
    process = _simulator_process("--port", foreign.url.rsplit(":", 1)[1], "--url-file", str(url_file))
    try:
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert "already in use" in err and "Traceback" not in err
    assert not url_file.exists()
