"""Smoke test: the Dagster webserver on the real workspace.yaml loads every asset, check, sensor and schedule (GraphQL)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from dms_pipelines.paths import PROJECT_ROOT

QUERY = """
{
  assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name sensors { name } schedules { name } } } }
  workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } } } }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def test_webserver_loads_everything(tmp_path):
    port = free_port()
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path))
    env.pop("DMS_PIPELINES_DATA", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        data = None
        while time.monotonic() < deadline:
            try:
                data = graphql(port, QUERY)
                if data["workspaceOrError"]["locationEntries"][0]["locationOrLoadError"]:
                    break
            except (OSError, KeyError, IndexError, TypeError):
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            time.sleep(1)
        assert data is not None, "the webserver did not answer within 120 s"
        location = data["workspaceOrError"]["locationEntries"][0]["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        assets = {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
        assert {"landed_exports", "parsed_exports", "validated_exports", "dealer_stock", "google_listings", "website_feed", "warehouse_tables", "google_feed"} <= assets
        checks = {c["name"] for node in data["assetNodes"] for c in (node["assetChecksOrError"].get("checks") or [])}
        assert {"rows_conserved", "files_readable", "no_held_exports", "google_feed_allowlisted"} <= checks
        repository = data["repositoriesOrError"]["nodes"][0]
        assert {"new_exports", "account_feeds_after_dealer_run", "alert_on_run_failure"} <= {s["name"] for s in repository["sensors"]}
        assert {"nightly_sync", "hourly_sync"} <= {s["name"] for s in repository["schedules"]}
    finally:
        server.terminate()
        server.wait(timeout=30)
