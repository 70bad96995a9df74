"""Benchmarks: each stage's wall time, rows per second and peak memory, next to DuckDB reading the same file in the same run."""

import json
import multiprocessing
import platform
import resource
import shutil
import subprocess
import time
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from dms_pipelines.config import Validation
from dms_pipelines.formats.profile import find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.marketplaces import google, website
from dms_pipelines.marketplaces.registry import SPECS
from dms_pipelines.marketplaces.base import render_for
from dms_pipelines.paths import PROJECT_ROOT, DataPaths
from dms_pipelines.sample.generator import SampleDealer, generate_group
from dms_pipelines.stock.history import empty_history, update_history
from dms_pipelines.stock.merge import apply_delta, apply_full
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, empty_stock
from dms_pipelines.stock.validate import validate_stock
from dms_pipelines.warehouse.tables import publish, rebuild_catalog

PROFILES = [PROJECT_ROOT / "data" / "profiles"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(stages: list, name: str, rows: int, action):
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    stages.append({"stage": name, "seconds": round(seconds, 3), "rows": rows, "rows_per_second": round(rows / seconds) if seconds else None, "peak_mb": round(_peak_mb())})
    return result


def bench_size(vehicles: int, work: Path, layout: str = "navigator_csv") -> dict:
    """The nightly path for one dealer's export of `vehicles` rows, stage by stage (run in a fresh process for a clean peak)."""
    from dms_pipelines.config import Address, Dealer, DealerMarketplace, LocalInboxSource

    export, delta = sorted((work / "inbox" / "bench").glob("*_full_*")) + sorted((work / "inbox" / "bench").glob("*_delta_*"))
    generate_seconds = float((work / "generate_seconds").read_text())
    profile = find_profile(layout, PROFILES)
    dealer = Dealer(
        id="bench", name="Bench Motors", address=Address(street="1 Road", city="Leeds", postcode="LS1 1AA"), phone="0113 000 0000",
        website="https://bench.example", source=LocalInboxSource(kind="local_inbox"), profile=layout,
        marketplaces={"google": DealerMarketplace(store_code="B1"), "website": DealerMarketplace()},
    )
    stages: list[dict] = []
    baseline_rows = []

    def duckdb_baseline():
        with duckdb.connect() as connection:
            delimiter = profile.csv.delimiter if profile.csv else ","
            connection.execute(
                f"COPY (SELECT * FROM read_csv('{export}', delim='{delimiter}', header=true, all_varchar=true, strict_mode=false, null_padding=true)) "
                f"TO '{work / 'baseline.parquet'}' (FORMAT parquet)"
            )
            baseline_rows.append(connection.execute(f"SELECT count(*) FROM '{work / 'baseline.parquet'}'").fetchall()[0][0])

    if layout != "star5_xml":
        _timed(stages, "baseline: duckdb read_csv -> parquet", vehicles, duckdb_baseline)
    parsed = _timed(stages, "parse", vehicles, lambda: read_export(export, profile, "bench"))
    checked = _timed(stages, "validate", vehicles, lambda: validate_stock(parsed.rows, export.name, Validation(), date(2026, 11, 21)))
    quarantined = set(checked.issues.loc[checked.issues["severity"] == "error", "stock_id"].dropna())
    merged = _timed(stages, "merge (full)", vehicles, lambda: apply_full(empty_stock(), checked.accepted, quarantined))
    stock = merged.stock
    rendered = _timed(stages, "render google + website", len(stock), lambda: {name: render_for(SPECS[name], stock, dealer, dealer.marketplaces[name]) for name in ("google", "website")})
    _timed(stages, "serialise google csv + website json", len(stock), lambda: (google.serialise(rendered["google"].items), website.serialise(rendered["website"].items, dealer)))
    history = _timed(stages, "history", len(stock), lambda: update_history(empty_history(), stock, datetime.now(timezone.utc)))
    paths = DataPaths(work / "data")
    _timed(stages, "warehouse publish + catalog", len(stock), lambda: (publish(paths, "bench", {"stock_current": stock.drop(columns=PRIVATE_COLUMNS), "stock_history": history}), rebuild_catalog(paths)))
    delta_parsed = read_export(delta, profile, "bench")
    _timed(stages, "hourly delta: parse + validate + merge", len(delta_parsed.rows), lambda: apply_delta(stock, validate_stock(delta_parsed.rows, delta.name, Validation(), date(2026, 11, 21)).accepted))
    pipeline = [s for s in stages if not s["stage"].startswith(("baseline", "hourly"))]
    total = sum(s["seconds"] for s in pipeline)
    baseline = next((s["seconds"] for s in stages if s["stage"].startswith("baseline")), None)
    result = {
        "vehicles": vehicles, "layout": layout, "file_bytes": export.stat().st_size, "generate_seconds": round(generate_seconds, 2),
        "stages": stages, "nightly_path_seconds": round(total, 3), "peak_mb": round(_peak_mb()),
        "duckdb_baseline_seconds": baseline, "ratio_to_duckdb": round(total / baseline, 1) if baseline else None,
        "rows_conserved": len(checked.accepted) + checked.quarantined_rows + int((parsed.issues["rule"] == "field_count").sum()) == vehicles,
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def generate_bench_files(vehicles: int, work: str, layout: str) -> None:
    """Run in its own process, so the sample generator's memory does not count in the pipeline's peak."""
    started = time.perf_counter()
    generate_group(Path(work) / "inbox", [SampleDealer("bench", "Bench Motors", layout)], vehicles, seed=42, deltas=1)
    (Path(work) / "generate_seconds").write_text(f"{time.perf_counter() - started:.2f}")


def _child(vehicles: int, work: str, layout: str, queue) -> None:
    queue.put(bench_size(vehicles, Path(work), layout))


def run_benchmarks(sizes: list[int], out_dir: Path, layout: str = "navigator_csv", echo=print) -> dict:
    """Each size in its own process (a clean memory peak); results printed and written as JSON under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    context = multiprocessing.get_context("spawn")
    for vehicles in sizes:
        work = out_dir / f"work-{vehicles}"
        work.mkdir(parents=True, exist_ok=True)
        generator = context.Process(target=generate_bench_files, args=(vehicles, str(work), layout))
        generator.start()
        generator.join()
        if generator.exitcode != 0:
            raise RuntimeError(f"generating {vehicles:,} vehicles failed (exit code {generator.exitcode})")
        queue = context.Queue()
        process = context.Process(target=_child, args=(vehicles, str(out_dir / f"work-{vehicles}"), layout, queue))
        process.start()
        process.join()
        if process.exitcode != 0 or queue.empty():
            raise RuntimeError(f"the {vehicles:,}-vehicle benchmark failed (exit code {process.exitcode}; out of memory?)")
        result = queue.get()
        results.append(result)
        echo(f"\n{vehicles:,} vehicles ({layout}, {result['file_bytes'] / 1e6:.0f} MB export; generated in {result['generate_seconds']} s)")
        echo(f"  {'stage':<42}{'seconds':>9}{'rows/s':>12}{'peak MB':>9}")
        for stage in result["stages"]:
            echo(f"  {stage['stage']:<42}{stage['seconds']:>9.3f}{stage['rows_per_second'] or 0:>12,}{stage['peak_mb']:>9,}")
        echo(f"  nightly path {result['nightly_path_seconds']:.2f} s, peak {result['peak_mb']:,} MB, {result['ratio_to_duckdb']}x the DuckDB baseline")
    document = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": multiprocessing.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "results": results,
    }
    target = out_dir / f"bench-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    target.write_text(json.dumps(document, indent=2))
    echo(f"\nwritten {target}")
    return document


def bench_sftp(server, size_mb: int, work: Path, rounds: int = 3) -> dict:
    """Our SftpSource.fetch against OpenSSH's sftp client on the same file from the same server, interleaved, `rounds` times each.

    One transfer of 100 MB takes under a second, so a single pair is at the mercy of whatever else the machine does;
    the medians of interleaved rounds compare the two under the same conditions.
    """
    import os
    import statistics

    from dms_pipelines.sources.sftp import SftpSettings, SftpSource

    remote = server.root_dir / "bench.bin"
    remote.write_bytes(os.urandom(size_mb << 20))
    settings = SftpSettings(host=server.host, port=server.port, username=server.username, known_hosts=server.known_hosts, remote_dir=str(server.root_dir), private_key_path=server.client_key_path)
    ours, theirs = [], []
    for _ in range(rounds):
        with SftpSource(settings) as source:
            [listed] = [f for f in source.list_files() if f.name == "bench.bin"]
            started = time.perf_counter()
            source.fetch(listed, work / "ours.bin")
            ours.append(size_mb / (time.perf_counter() - started))
        if (work / "ours.bin").stat().st_size != listed.size:
            raise RuntimeError("the benchmark download is incomplete")
        started = time.perf_counter()
        subprocess.run(
            ["sftp", "-q", "-b", "-", "-i", str(server.client_key_path), "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "BatchMode=yes", "-P", str(server.port), f"{server.username}@{server.host}"],
            input=f"get {remote} {work / 'openssh.bin'}\n", text=True, check=True, capture_output=True,
        )
        theirs.append(size_mb / (time.perf_counter() - started))
    remote.unlink()
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    return {
        "size_mb": size_mb, "rounds": rounds, "ours_mb_per_s": round(ours_median, 1), "openssh_mb_per_s": round(theirs_median, 1),
        "share": round(ours_median / theirs_median, 2), "ours_runs": [round(x, 1) for x in ours], "openssh_runs": [round(x, 1) for x in theirs],
    }
