"""The installed package runs the demo without the source tree: its YAML files (profiles, templates, sample config) are package data."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from dms_pipelines.paths import PROJECT_ROOT

# Run in the installed copy: report where every dms_pipelines module came from, whatever the demo's outcome.
DEMO = """
import sys
import dms_pipelines
print("imported", dms_pipelines.__file__, flush=True)
from dms_pipelines.cli import main
try:
    code = main(["demo"])
finally:
    for name, module in sorted(sys.modules.items()):
        if name.startswith("dms_pipelines") and getattr(module, "__file__", None):
            print("module", module.__file__, flush=True)
sys.exit(code)
"""


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_the_installed_wheel_runs_the_demo_from_an_empty_folder(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    shutil.copytree(PROJECT_ROOT / "dms_pipelines", source / "dms_pipelines", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "-w", str(wheels), str(source), cwd=tmp_path)
    [wheel] = wheels.glob("dms_pipelines-*.whl")
    packaged = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".yaml")}
    in_tree = {path.relative_to(source).as_posix() for path in (source / "dms_pipelines").rglob("*.yaml")}
    assert {"dms_pipelines/formats/profiles/navigator_csv.yaml", "dms_pipelines/orchestration/dagster.yaml", "dms_pipelines/devtools/demo/dms_pipelines.yaml"} <= in_tree
    assert packaged == in_tree  # every YAML file of the package, in whichever folder, is package data
    _pip("install", "--no-deps", "--no-index", "--quiet", "--target", str(site), str(wheel), cwd=tmp_path)
    shutil.rmtree(source)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "DAGSTER_")) and k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # before the editable install's finder, which sys.meta_path asks only after the path
    result = subprocess.run([sys.executable, "-c", DEMO], cwd=work, env=env, capture_output=True, text=True, timeout=280)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    modules = [Path(line.split(" ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("module ")]
    assert f"imported {site / 'dms_pipelines' / '__init__.py'}" in result.stdout
    assert "dms_pipelines/devtools/commands.py" in {m.relative_to(site).as_posix() for m in modules if m.is_relative_to(site)}
    assert [m for m in modules if not m.is_relative_to(site)] == []  # nothing from the source tree

    data = work.resolve() / "data"
    config = data / "config" / "dms_pipelines.yaml"
    assert f"wrote the demo's sample configuration to {config}" in result.stdout
    assert config.read_bytes() == (site / "dms_pipelines" / "devtools" / "demo" / "dms_pipelines.yaml").read_bytes()
    assert (data / "dagster_home" / "dagster.yaml").read_bytes() == (site / "dms_pipelines" / "orchestration" / "dagster.yaml").read_bytes()
    assert (data / "warehouse.duckdb").stat().st_size > 0
    assert (data / "outbox" / "google" / "vehicle_listings.csv").stat().st_size > 0
    for feed in ("website/leeds.json", "meta/leeds.csv", "carsnip/leeds_vehicles.csv"):
        assert (data / "outbox" / feed).stat().st_size > 0, feed
    assert "4. sold-car fast path" in result.stdout
