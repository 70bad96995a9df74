"""The sold-car latency benchmark: DMS delta written -> every marketplace has the car off sale, job alone and under the daemon."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dms_pipelines.devtools.demo import SAMPLE_CONFIG
from dms_pipelines.devtools.simulator import StockApiSimulator
from dms_pipelines.orchestration.drivers import DAGSTER_TEMPLATE
from dms_pipelines.paths import DataPaths

TOKEN = "bench-token"


def _sold_on_simulator(simulator: StockApiSimulator, stock_id: str) -> bool:
    return any(i["metadata"]["externalStockReference"] == stock_id and i["metadata"]["lifecycleState"] == "SOLD" for i in simulator.items())


def _off_google(paths: DataPaths, stock_id: str) -> bool:
    feed = paths.outbox / "google" / "vehicle_listings.csv"
    return feed.exists() and f"\n{stock_id}," not in feed.read_text(encoding="utf-8")


def bench_sold_latency(work: Path, vehicles: int = 600, timeout: float = 180.0, echo=print) -> dict:
    """Set up a demo group in `work`, then sell one car twice: once running the dealer job directly, once through the daemon."""
    from dms_pipelines.config import load_settings
    from dms_pipelines.devtools.fast_path import write_sale
    from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
    from dms_pipelines.orchestration.drivers import run_sync

    root = work / "data"
    (root / "config").mkdir(parents=True, exist_ok=True)
    home = work / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(DAGSTER_TEMPLATE, home / "dagster.yaml")
    simulator = StockApiSimulator(token=TOKEN).start()
    raw = yaml.safe_load(SAMPLE_CONFIG.read_text())
    raw["marketplaces"]["autotrader"]["destination"]["base_url"] = simulator.base_url
    raw["marketplaces"]["autotrader"]["destination"].pop("base_url_env", None)  # this simulator, whatever the environment says
    (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {"DMS_PIPELINES_DATA": str(root), "DAGSTER_HOME": str(home), "DMS_AUTOTRADER_TOKEN": TOKEN}
    os.environ.update(env)
    os.environ.pop("DMS_PIPELINES_CONFIG", None)
    paths = DataPaths(root)
    settings = load_settings(root / "config" / "dms_pipelines.yaml")
    generate_group(paths.inbox, [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers], vehicles, seed=3)
    run_sync(echo=lambda line: None, trigger="nightly")

    stock_id, _ = write_sale(paths, "leeds", "navigator_csv", _next_stamp(1))
    started = time.perf_counter()
    run_sync(["leeds"], echo=lambda line: None, trigger="sold_fast_path")
    job_seconds = time.perf_counter() - started
    assert _sold_on_simulator(simulator, stock_id) and _off_google(paths, stock_id)
    echo(f"sold-car fast path, job alone: {job_seconds:.2f} s ({stock_id})")
    from dms_pipelines.devtools.lead_demo import demo_secrets
    from dms_pipelines.leads.receiver import ReceiverServer
    from dms_pipelines.orchestration.drivers import run_leads

    demo_secrets(settings)  # the receiver's secret variables, set before the daemon starts (its runs inherit them)
    receiver = ReceiverServer(settings, paths).start()
    started = time.perf_counter()
    _post_lead(receiver.url, "LEAD-JOB-1")
    run_leads(["leeds"], echo=lambda line: None, trigger="bench")
    lead_job_seconds = time.perf_counter() - started if _in_crm_drop(paths, "LEAD-JOB-1") else None
    echo(f"lead posted to the receiver -> ADF in the CRM drop, job alone: {lead_job_seconds:.2f} s" if lead_job_seconds else "lead, job alone: NOT in the CRM drop")

    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "dms_pipelines.definitions"],  # the code location by module: no source tree needed
        cwd=work,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its code server and the runs it launches share its process group, stopped together
    )
    daemon_seconds = None
    try:
        time.sleep(20)  # the daemon loads the code location and runs its first sensor ticks (nothing new yet)
        stock_id, _ = write_sale(paths, "leeds", "navigator_csv", _next_stamp(2))
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if _sold_on_simulator(simulator, stock_id) and _off_google(paths, stock_id):
                daemon_seconds = time.perf_counter() - started
                break
            time.sleep(0.25)
        lead_daemon_seconds = None
        started = time.perf_counter()
        _post_lead(receiver.url, "LEAD-DAEMON-1")
        while time.perf_counter() - started < timeout:
            if _in_crm_drop(paths, "LEAD-DAEMON-1"):
                lead_daemon_seconds = time.perf_counter() - started
                break
            time.sleep(0.1)
        echo(
            "lead posted to the receiver -> ADF in the CRM drop, under the daemon (new_leads sensor, queued run): "
            + (f"{lead_daemon_seconds:.1f} s" if lead_daemon_seconds else f"not done within {timeout:.0f} s")
        )
    finally:
        stop_process_group(daemon)
        simulator.stop()
        receiver.stop()
    echo(
        "sold-car fast path, end to end under the daemon (sensor, queued run, account feed): "
        + (f"{daemon_seconds:.1f} s ({stock_id})" if daemon_seconds is not None else f"not done within {timeout:.0f} s")
    )
    return {
        "vehicles": vehicles,
        "job_alone_seconds": round(job_seconds, 2),
        "daemon_end_to_end_seconds": round(daemon_seconds, 1) if daemon_seconds else None,
        "lead_job_alone_seconds": round(lead_job_seconds, 2) if lead_job_seconds else None,
        "lead_daemon_end_to_end_seconds": round(lead_daemon_seconds, 1) if lead_daemon_seconds else None,
    }


def _post_lead(receiver_url: str, enquiry_id: str) -> None:
    import json
    import urllib.request

    from dms_pipelines.leads.receiver import WEBSITE_KEY_HEADER

    body = {"enquiry_id": enquiry_id, "stock_id": "LEE00002", "first_name": "Bench", "last_name": "Buyer", "email": f"{enquiry_id.lower()}@example.com", "message": "Still available?"}
    request = urllib.request.Request(
        f"{receiver_url}/webhooks/website/leeds", data=json.dumps(body).encode(), headers={"Content-Type": "application/json", WEBSITE_KEY_HEADER: os.environ["DMS_WEBSITE_LEAD_KEY"]}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _in_crm_drop(paths, enquiry_id: str) -> bool:
    return any(enquiry_id in path.name for path in (paths.root / "crm_drop" / "leeds").glob("*.xml"))


def stop_process_group(leader: subprocess.Popen, grace: float = 30.0) -> None:
    """Stop a process started with start_new_session and everything in its group: the Dagster daemon's code server and
    run workers outlive the daemon itself, and would go on writing into its DAGSTER_HOME after the caller removed it."""
    try:
        os.killpg(leader.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    try:
        leader.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    while True:
        leader.poll()  # reaped, so that a leader killed below does not linger as a member of its group
        try:
            os.killpg(leader.pid, signal.SIGKILL if time.monotonic() > deadline else 0)
        except ProcessLookupError:
            return  # the group is empty
        time.sleep(0.1)


def _next_stamp(hours: int):
    from datetime import datetime, timedelta

    return datetime(2026, 11, 21, 12, 0) + timedelta(hours=hours)
