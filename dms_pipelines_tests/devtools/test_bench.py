"""The benchmarks: the single-dealer one runs every stage on a small export and reports what docs/benchmarks.md quotes;
the sold-car one leaves no process of the daemon behind."""

import json
import os
import subprocess
import time

from dms_pipelines.devtools.bench import run_benchmarks
from dms_pipelines.devtools.latency_bench import stop_process_group

NIGHTLY_STAGES = [
    "parse",
    "validate",
    "merge (full)",
    "store the stock (base file)",
    "render google",
    "serialise + write google",
    "assemble the google account file",
    "render website",
    "serialise + write website",
    "render meta",
    "serialise + write meta",
    "render carsnip",
    "serialise + write carsnip",
    "render autotrader",
    "diff autotrader (hash items, compare with ledger)",
    "history (versions compared, written as the base)",
    "warehouse publish + catalog",
]


def test_bench_reports_each_stage_with_wall_and_cpu_time_beside_the_duckdb_baseline(tmp_path):
    printed: list[str] = []
    document = run_benchmarks([1_000], tmp_path, echo=printed.append)

    [written] = tmp_path.glob("bench-*.json")
    assert json.loads(written.read_text()) == document
    [result] = document["results"]
    assert result["vehicles"] == 1_000 and result["rows_conserved"] is True
    names = [stage["stage"] for stage in result["stages"]]
    assert names[: len(NIGHTLY_STAGES)] == NIGHTLY_STAGES
    assert names[len(NIGHTLY_STAGES)] == "baseline: duckdb read_csv -> parquet"
    assert any(name.startswith("hourly: rebuild") for name in names) and any(name.startswith("limit: copy") for name in names)
    for stage in result["stages"]:
        assert stage["seconds"] > 0 and stage["cpu_seconds"] >= 0 and stage["peak_mb"] > 0, stage
    nightly = result["stages"][: len(NIGHTLY_STAGES)]
    assert result["nightly_path_seconds"] == round(sum(stage["seconds"] for stage in nightly), 3)
    assert result["nightly_path_cpu_seconds"] == round(sum(stage["cpu_seconds"] for stage in nightly), 3)
    assert result["ratio_to_duckdb"] == round(result["nightly_path_seconds"] / result["duckdb_baseline_seconds"], 1)
    assert result["hourly_files_bytes"] > 0
    summary = next(line for line in printed if "nightly path" in line)
    assert f"{result['nightly_path_seconds']:.2f} s" in summary and "cores busy" in summary and "DuckDB baseline" in summary
    assert not any(path.name.startswith("work-") for path in tmp_path.iterdir())  # the generated files are removed


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_stopping_the_daemons_group_stops_the_processes_it_started_too(tmp_path):
    # the leader ends on SIGTERM, as the daemon does; one child ends with it, the other ignores SIGTERM and outlives it,
    # as the daemon's code server and a busy run worker may
    script = "(trap '' TERM; sleep 60) & sleep 60 & wait"
    leader = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    time.sleep(0.3)
    assert _group_alive(leader.pid)
    started = time.monotonic()
    stop_process_group(leader, grace=1.0)
    assert not _group_alive(leader.pid)
    assert leader.returncode is not None
    assert time.monotonic() - started < 10  # not the children's 60 s


def test_the_lead_benchmark_takes_every_lead_to_the_crm_drop_and_the_warehouse(tmp_path):
    from dms_pipelines.devtools.lead_bench import bench_leads

    result = bench_leads(300, tmp_path)
    assert (result["stored"], result["linked"], result["delivered"], result["warehouse_leads"], result["quarantined"]) == (300, 300, 300, 300, 0)
    assert len(list((tmp_path / "leads-300" / "crm_drop" / "leeds").glob("*.xml"))) == 300
    assert set(result["seconds"]) == {"land", "read_and_check", "link", "deliver_adf", "warehouse", "total"}
