"""Benchmarks: each stage's wall time, CPU time, rows per second and peak memory, next to DuckDB reading the same file in the same run."""

import json
import multiprocessing
import os
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
from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
from dms_pipelines.formats.profile import find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.marketplaces import google, website
from dms_pipelines.marketplaces.base import render_for
from dms_pipelines.marketplaces.registry import SPECS
from dms_pipelines.orchestration.drivers import DAGSTER_TEMPLATE
from dms_pipelines.paths import BUILTIN_PROFILES, DataPaths
from dms_pipelines.stock.history import empty_history, update_history
from dms_pipelines.stock.history_changes import history_path, read_history_log, record_versions, write_history
from dms_pipelines.stock.merge import apply_delta, apply_full
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, empty_stock
from dms_pipelines.stock.validate import validate_stock
from dms_pipelines.warehouse.tables import publish, publish_history, rebuild_catalog

PROFILES = [BUILTIN_PROFILES]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User and system time of this process so far, over all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(stages: list, name: str, rows: int, action):
    cpu, started = _cpu_seconds(), time.perf_counter()
    result = action()
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    stages.append(
        {
            "stage": name,
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3),
            "rows": rows,
            "rows_per_second": round(rows / seconds) if seconds else None,
            "peak_mb": round(_peak_mb()),
        }
    )
    return result


HOURLY_CHANGES = 100
WARM_UP_VEHICLES = 200


def _hourly_delta(stock: pd.DataFrame, layout: str, folder: Path) -> Path:
    """A delta export of HOURLY_CHANGES vehicles from `stock` with new prices, in the dealer's own layout."""
    from dms_pipelines.devtools.sample.generator import render_export

    changed = stock[stock["status"] == "available"].head(HOURLY_CHANGES).copy()
    changed["price"] = (changed["price"] - 250).clip(lower=500)
    changed["location"] = "Forecourt"  # the DMS layouts carry it; the canonical stock does not
    path = folder / "stock_delta_20261121_1005.csv"
    path.write_bytes(render_export(changed.reset_index(drop=True), layout))
    return path


def bench_size(vehicles: int, work: Path, layout: str = "navigator_csv") -> dict:
    """The nightly path for one dealer's export of `vehicles` rows, stage by stage (run in a fresh process for a clean peak)."""
    from dms_pipelines.config import Address, Dealer, DealerMarketplace, LocalInboxSource
    from dms_pipelines.delivery.api_delivery import item_hashes
    from dms_pipelines.delivery.diff import diff
    from dms_pipelines.delivery.staging import stage
    from dms_pipelines.marketplaces import meta
    from dms_pipelines.marketplaces.row_files import Built, spliced, whole
    from dms_pipelines.marketplaces.row_files import merged as merged_rows
    from dms_pipelines.stock.changes import ChangeLog, next_log, write_log
    from dms_pipelines.stock.store import PRICE_REFERENCE_COLUMNS, stock_ids, write_stock

    [export] = sorted((work / "inbox" / "bench").glob("*_full_*"))
    generate_seconds = float((work / "generate_seconds").read_text())
    profile = find_profile(layout, PROFILES)
    dealer = Dealer(
        id="bench",
        name="Bench Motors",
        address=Address(street="1 Road", city="Leeds", postcode="LS1 1AA"),
        phone="0113 000 0000",
        website="https://bench.example",
        source=LocalInboxSource(kind="local_inbox"),
        profile=layout,
        marketplaces={
            "google": DealerMarketplace(store_code="B1"),
            "website": DealerMarketplace(),
            "meta": DealerMarketplace(catalog_id="B1"),
            "carsnip": DealerMarketplace(feed_id="B1"),
            "autotrader": DealerMarketplace(advertiser_id="10001"),
        },
    )
    # Google: the dealer's rows (a row file without the header), then the account file assembled from them, as a run does
    layouts = {
        "google": google.row_file("csv", header=False),
        "website": website.row_file(dealer),
        "meta": meta.row_file("csv"),
        "carsnip": next(f.rows for f in SPECS["carsnip"].files(dealer, dealer.marketplaces["carsnip"], "csv") if f.rows),
    }
    serialisers = {name: (lambda items, name=name: whole(layouts[name], items)) for name in layouts}  # built a slice at a time, written as built

    def account_file():
        staged, index = kept["google"]
        with staged.path.open("rb") as part:
            write_feed("google account", merged_rows(google.header(), [(part, index)]))

    kept: dict[str, tuple] = {}  # the per-dealer files as built, with their row index: what the hourly rebuild starts from

    def write_feed(name: str, pieces) -> None:
        staged = stage(work / "staging", name, pieces)
        if isinstance(pieces, Built) and pieces.index is not None:
            kept[name] = (staged, pieces.index)
        else:
            staged.discard()

    def copy_file(path: Path) -> None:
        target = work / "staging" / "copy"
        with path.open("rb") as source, target.open("wb") as copy:
            shutil.copyfileobj(source, copy, 4 << 20)
            copy.flush()
            os.fsync(copy.fileno())
        target.unlink()

    baseline_rows = []

    def duckdb_baseline():
        with duckdb.connect() as connection:
            delimiter = profile.csv.delimiter if profile.csv else ","
            connection.execute(
                f"COPY (SELECT * FROM read_csv('{export}', delim='{delimiter}', header=true, all_varchar=true, strict_mode=false, null_padding=true)) TO '{work / 'baseline.parquet'}' (FORMAT parquet)"
            )
            baseline_rows.append(connection.execute(f"SELECT count(*) FROM '{work / 'baseline.parquet'}'").fetchall()[0][0])

    def nightly_path(export: Path, rows: int, paths: DataPaths, stages: list[dict]):
        parsed = _timed(stages, "parse", rows, lambda: read_export(export, profile, "bench"))
        checked = _timed(stages, "validate", rows, lambda: validate_stock(parsed.rows, export.name, Validation(), date(2026, 11, 21)))
        quarantined = set(checked.issues.loc[checked.issues["severity"] == "error", "stock_id"].dropna())
        conserved = len(checked.accepted) + checked.quarantined_rows + int((parsed.issues["rule"] == "field_count").sum()) == rows
        parsed = None  # as in a dealer run: the parsed rows are dropped once validated, each feed once delivered
        merged = _timed(stages, "merge (full)", rows, lambda: apply_full(empty_stock(), checked.accepted, quarantined))
        checked = None
        stock = merged.stock
        _timed(stages, "store the stock (base file)", rows, lambda: write_stock(paths.state, "bench", stock, 1))
        for name in ("google", "website", "meta", "carsnip", "autotrader"):
            rendered = _timed(stages, f"render {name}", len(stock), lambda: render_for(SPECS[name], stock, dealer, dealer.marketplaces[name]))
            if name in serialisers:
                _timed(stages, f"serialise + write {name}", len(rendered.items), lambda: write_feed(name, serialisers[name](rendered.items)))
                if name == "google":
                    _timed(stages, "assemble the google account file", len(rendered.items), account_file)
            else:
                _timed(stages, f"diff {name} (hash items, compare with ledger)", len(rendered.items), lambda: diff(item_hashes(SPECS[name], rendered.items), {}))
            rendered = None
        _timed(
            stages, "history (versions compared, written as the base)", len(stock), lambda: write_history(paths.state, "bench", update_history(empty_history(), stock, datetime.now(timezone.utc)), 1)
        )
        _timed(
            stages,
            "warehouse publish + catalog",
            len(stock),
            lambda: (
                publish(paths, "bench", {"stock_current": stock.drop(columns=PRIVATE_COLUMNS)}),
                publish_history(paths, "bench", history_path(paths.state, "bench"), read_history_log(paths.state, "bench")),
                rebuild_catalog(paths),
            ),
        )
        return stock, conserved

    # Every stage once on a small export first: the one-off cost of first use in a fresh process (lazy imports, kernels
    # and thread pools started, schemas built) is reported apart and does not count as the cost of the vehicles.
    [warm_up_export] = sorted((work / "warm_up" / "inbox" / "bench").glob("*_full_*"))
    started = time.perf_counter()
    nightly_path(warm_up_export, WARM_UP_VEHICLES, DataPaths(work / "warm_up" / "data"), [])
    warm_up_seconds = time.perf_counter() - started
    for staged, _ in kept.values():
        staged.discard()
    kept.clear()
    stages: list[dict] = []
    paths = DataPaths(work / "data")
    stock, rows_conserved = nightly_path(export, vehicles, paths, stages)
    total = sum(s["seconds"] for s in stages)
    total_cpu = sum(s["cpu_seconds"] for s in stages)
    if layout != "star5_xml":  # after the path: DuckDB's threads and memory do not disturb the stages timed before it
        _timed(stages, "baseline: duckdb read_csv -> parquet", vehicles, duckdb_baseline)

    delta = _hourly_delta(stock, layout, work)
    reference = stock[PRICE_REFERENCE_COLUMNS]
    hourly: list[dict] = []
    delta_parsed = _timed(hourly, "hourly: parse delta", HOURLY_CHANGES, lambda: read_export(delta, profile, "bench"))
    delta_checked = _timed(
        hourly, "hourly: validate delta (group price reference)", HOURLY_CHANGES, lambda: validate_stock(delta_parsed.rows, delta.name, Validation(), date(2026, 11, 21), price_reference=reference)
    )
    # as update_stock does for deltas alone: the stock numbers read (not the stock), the changed vehicles merged and logged
    known = _timed(hourly, "hourly: read the stock numbers", len(stock), lambda: stock_ids(paths.state, "bench"))
    changed_rows = _timed(hourly, "hourly: merge the changed vehicles", HOURLY_CHANGES, lambda: apply_delta(empty_stock(), delta_checked.accepted).stock)
    changed_ids = set(changed_rows["stock_id"])
    _timed(hourly, "hourly: history (changed vehicles only, to its log)", HOURLY_CHANGES, lambda: record_versions(paths.state, "bench", changed_rows, datetime.now(timezone.utc), changed_ids, 2))
    base = ChangeLog(1, 1, next_log(None, stock, None, 1).rows)  # as a full export leaves it: a base, an empty log
    _timed(hourly, "hourly: write the stock's change log", HOURLY_CHANGES, lambda: write_log(paths.state, "bench", next_log(base, changed_rows, changed_ids, 2, len(known) + len(changed_ids))))
    core_hourly = sum(s["seconds"] for s in hourly)
    files: list[dict] = []
    for name, (staged, index) in kept.items():

        def rebuild(name=name, staged=staged, index=index):
            rendered = render_for(SPECS[name], changed_rows, dealer, dealer.marketplaces[name])
            built = spliced(layouts[name], staged.path, index, changed_ids, rendered.items)
            stage(work / "staging", f"{name}.rebuilt", built if built is not None else whole(layouts[name], rendered.items)).discard()
            return built is not None

        # Each starts with nothing left to write back from the stages before it: an fsync on ext4 also waits for that.
        os.sync()
        if not _timed(files, f"hourly: rebuild {name} from the changed vehicles", HOURLY_CHANGES, rebuild):
            raise RuntimeError(f"the hourly {name} file was not rebuilt from the changed vehicles")
        os.sync()
        _timed(files, f"limit: copy the {name} file, flushed", len(stock), lambda staged=staged: copy_file(staged.path))
        if name == "google":
            os.sync()
            _timed(files, "hourly: assemble the google account file", len(stock), account_file)
            os.sync()
            _timed(files, "limit: copy the google account file, flushed", len(stock), lambda staged=staged: copy_file(staged.path))
        staged.discard()
    hourly += files
    baseline = next((s["seconds"] for s in stages if s["stage"].startswith("baseline")), None)
    result = {
        "vehicles": vehicles,
        "layout": layout,
        "file_bytes": export.stat().st_size,
        "generate_seconds": round(generate_seconds, 2),
        "warm_up_vehicles": WARM_UP_VEHICLES,
        "warm_up_seconds": round(warm_up_seconds, 3),
        "stages": stages + hourly,
        "nightly_path_seconds": round(total, 3),
        "nightly_path_cpu_seconds": round(total_cpu, 3),
        "peak_mb": round(_peak_mb()),
        "duckdb_baseline_seconds": baseline,
        "ratio_to_duckdb": round(round(total, 3) / baseline, 1) if baseline else None,  # of the figures reported, so that they agree
        "hourly_changes": HOURLY_CHANGES,
        "hourly_core_seconds": round(core_hourly, 3),
        "hourly_files_seconds": round(sum(f["seconds"] for f in files if f["stage"].startswith("hourly")), 3),
        "hourly_files_copy_seconds": round(sum(f["seconds"] for f in files if f["stage"].startswith("limit")), 3),
        "hourly_files_bytes": sum(staged.size for staged, _ in kept.values()) + (kept["google"][0].size if "google" in kept else 0),
        "rows_conserved": rows_conserved,
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def generate_bench_files(vehicles: int, work: str, layout: str) -> None:
    """Run in its own process, so the sample generator's memory does not count in the pipeline's peak."""
    started = time.perf_counter()
    generate_group(Path(work) / "inbox", [SampleDealer("bench", "Bench Motors", layout)], vehicles, seed=42, deltas=0)
    generate_group(Path(work) / "warm_up" / "inbox", [SampleDealer("bench", "Bench Motors", layout)], WARM_UP_VEHICLES, seed=7, deltas=0)
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
        echo(f"  {'stage':<52}{'seconds':>9}{'CPU s':>9}{'rows/s':>12}{'peak MB':>9}")
        for stage in result["stages"]:
            echo(f"  {stage['stage']:<52}{stage['seconds']:>9.3f}{stage['cpu_seconds']:>9.3f}{stage['rows_per_second'] or 0:>12,}{stage['peak_mb']:>9,}")
        cores = result["nightly_path_cpu_seconds"] / result["nightly_path_seconds"] if result["nightly_path_seconds"] else 0
        echo(
            f"  nightly path {result['nightly_path_seconds']:.2f} s ({result['nightly_path_cpu_seconds']:.1f} CPU s: {cores:.2f} of "
            f"{multiprocessing.cpu_count()} cores busy), peak {result['peak_mb']:,} MB, {result['ratio_to_duckdb']}x the DuckDB baseline"
        )
        echo(f"  (first use of every stage in the fresh process, on {result['warm_up_vehicles']} vehicles before the timed run: {result['warm_up_seconds']:.2f} s)")
        echo(f"  hourly delta of {result['hourly_changes']} changes: {result['hourly_core_seconds']:.2f} s to parse, validate, merge, version and store")
        echo(
            f"  its feed files (Google rows and account file, website, Meta, Carsnip: {result['hourly_files_bytes'] / 1e6:,.0f} MB) rebuilt "
            f"from the changed vehicles in {result['hourly_files_seconds']:.2f} s; copying the same files takes {result['hourly_files_copy_seconds']:.2f} s"
        )
    document = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": multiprocessing.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": results,
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
            [
                "sftp",
                "-q",
                "-b",
                "-",
                "-i",
                str(server.client_key_path),
                "-o",
                f"UserKnownHostsFile={server.known_hosts}",
                "-o",
                "BatchMode=yes",
                "-P",
                str(server.port),
                f"{server.username}@{server.host}",
            ],
            input=f"get {remote} {work / 'openssh.bin'}\n",
            text=True,
            check=True,
            capture_output=True,
        )
        theirs.append(size_mb / (time.perf_counter() - started))
    remote.unlink()
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    return {
        "size_mb": size_mb,
        "rounds": rounds,
        "ours_mb_per_s": round(ours_median, 1),
        "openssh_mb_per_s": round(theirs_median, 1),
        "share": round(ours_median / theirs_median, 2),
        "ours_runs": [round(x, 1) for x in ours],
        "openssh_runs": [round(x, 1) for x in theirs],
    }


def _group_config(sample_dealers) -> dict:
    """A configuration for the group benchmark: every dealer on the four file marketplaces, local inboxes and outboxes."""
    return {
        "group_name": "Benchmark Group",
        "marketplaces": {
            "google": {"destination": {"kind": "local", "path": "outbox/google"}, "file_format": "csv"},
            "website": {"destination": {"kind": "local", "path": "outbox/website"}},
            "meta": {"destination": {"kind": "local", "path": "outbox/meta"}, "file_format": "csv"},
            "carsnip": {"destination": {"kind": "local", "path": "outbox/carsnip"}},
        },
        "dealers": [
            {
                "id": d.dealer_id,
                "name": d.name,
                "phone": "0113 496 0000",
                "website": f"https://bench.example/{d.dealer_id}",
                "address": {"street": "1 Bench Road", "city": "Leeds", "postcode": "LS1 1AA"},
                "source": {"kind": "local_inbox"},
                "profile": d.layout,
                "marketplaces": {"google": {"store_code": d.dealer_id.upper()}, "website": {}, "meta": {"catalog_id": d.dealer_id}, "carsnip": {"feed_id": d.dealer_id}},
            }
            for d in sample_dealers
        ],
    }


def _group_data(dealers: int, vehicles: int, work: str):
    """A data root and a Dagster home under `work` with `vehicles` spread over `dealers` generated dealers; the environment
    points at them. Returns (data root, sample dealers, seconds generating)."""
    import os

    import yaml

    from dms_pipelines.devtools.sample.generator import default_dealers

    root = Path(work) / "data"
    (root / "config").mkdir(parents=True, exist_ok=True)
    sample_dealers = default_dealers(dealers)
    (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(_group_config(sample_dealers), sort_keys=False))
    started = time.perf_counter()
    generate_group(root / "inbox", sample_dealers, vehicles, seed=42, deltas=0)
    generate_seconds = time.perf_counter() - started
    home = Path(work) / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(DAGSTER_TEMPLATE, home / "dagster.yaml")
    os.environ.update({"DMS_PIPELINES_DATA": str(root), "DAGSTER_HOME": str(home)})
    os.environ.pop("DMS_PIPELINES_CONFIG", None)
    return root, sample_dealers, generate_seconds


# The parts of a dealer's fixed cost the profile names: (part, a file the function is in, its name). The stages first,
# then what cuts across them (their time is inside the stages' too).
FIXED_COST_STAGES = [
    ("land", "pipeline/dealer.py", "land_stage"),
    ("parse", "pipeline/dealer.py", "parse_stage"),
    ("validate", "pipeline/dealer.py", "validate_stage"),
    ("stock", "pipeline/dealer.py", "stock_stage"),
    ("images", "pipeline/images.py", "image_stage"),
    ("feeds", "pipeline/feeds.py", "publish_feed"),
    ("warehouse", "pipeline/publish.py", "publish_stage"),
    ("leads", "pipeline/leads.py", "sync_leads"),
    ("Dagster event writes", "op_execution_context.py", "log_event"),
]
FIXED_COST_ACROSS = [
    ("configuration and profiles loaded", "dms_pipelines/config.py", "load_settings"),
    ("mapping profiles loaded", "formats/profile.py", "load_profile"),
    ("Pandera validation", "pandera/api/pandas/container.py", "validate"),
    ("SQLite statements", "~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
    ("SQLite batches", "~", "<method 'executemany' of 'sqlite3.Cursor' objects>"),
    ("SQLite commits", "~", "<method 'commit' of 'sqlite3.Connection' objects>"),
    ("fsyncs", "~", "<built-in method posix.fsync>"),
    ("Parquet writes", "kernels/frame_files.py", "write_parquet_atomically"),
    ("warehouse catalog", "warehouse/tables.py", "ensure_catalog"),
]


def _profile_parts(profile, dealers: int) -> dict:
    """Per dealer, the seconds of each named part in a cProfile of a run of `dealers` dealers (cumulative, each function
    once: a recursive call is not counted twice)."""
    import pstats

    stats = pstats.Stats(profile).stats

    def seconds(where: str, name: str) -> tuple[float, int]:
        total, calls = 0.0, 0
        for (filename, _, function), (_, primitive_calls, _, cumulative, _) in stats.items():
            if function == name and (where == "~" and filename == "~" or where != "~" and filename.endswith(where)):
                total, calls = total + cumulative, calls + primitive_calls
        return total, calls

    def part(entries) -> list[dict]:
        rows = []
        for label, where, name in entries:
            total, calls = seconds(where, name)
            rows.append({"part": label, "ms_per_dealer": round(1000 * total / dealers, 1), "calls_per_dealer": round(calls / dealers, 1)})
        return rows

    return {"stages": part(FIXED_COST_STAGES), "across_stages": part(FIXED_COST_ACROSS)}


def _fixed_cost_child(dealers: int, vehicles: int, work: str, queue) -> None:
    """In a fresh process: the group_sync job in this one process (Dagster's in-process executor) under cProfile, for the
    parts of a dealer's fixed cost (the profiler slows Python code, so the parts are for comparing with each other)."""
    import cProfile

    _group_data(dealers, vehicles, work)
    import dagster as dg

    from dms_pipelines.definitions import group_sync_job

    with dg.DagsterInstance.get() as instance:
        job = group_sync_job()
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        result = job.execute_in_process(instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        profile.disable()
        seconds = time.perf_counter() - started
    queue.put({"dealers": dealers, "vehicles": vehicles, "profiled_seconds": round(seconds, 2), "success": result.success, **_profile_parts(profile, dealers)})


def bench_fixed_cost(dealers: int, vehicles: int, out_dir: Path, echo=print) -> dict:
    """The parts of a dealer's fixed cost, from a profile of `dealers` dealers of `vehicles // dealers` vehicles each."""
    result = _in_fresh_process(_fixed_cost_child, out_dir / f"fixed-cost-{dealers}x{vehicles}", "the fixed-cost profile", dealers, vehicles)
    echo(f"\nwhere a dealer's time goes: {dealers} dealers of {vehicles // dealers} vehicles, group_sync in one process under cProfile ({result['profiled_seconds']} s in all):")
    for section in ("stages", "across_stages"):
        echo("  " + ("per stage" if section == "stages" else "of which, across the stages"))
        for row in result[section]:
            echo(f"    {row['part']:<36} {row['ms_per_dealer']:>8.1f} ms per dealer  ({row['calls_per_dealer']:g} calls)")
    return result


def _group_child(dealers: int, vehicles: int, work: str, queue, max_concurrent: int) -> None:
    root, sample_dealers, generate_seconds = _group_data(dealers, vehicles, work)
    import dagster as dg

    from dms_pipelines.definitions import group_sync_job
    from dms_pipelines.stock.store import read_stock

    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        run_config = {
            "execution": {"config": {"max_concurrent": max_concurrent}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        }
        result = dg.execute_job(dg.reconstructable(group_sync_job), instance=instance, run_config=run_config)
        seconds = time.perf_counter() - started
        steps = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS" and e.step_key.startswith("sync_dealers[")]
        entries = [entry for entry in instance.all_logs(result.run_id) if entry.dagster_event is not None]
        worker_started = {e.step_key: e.timestamp for e in entries if e.dagster_event.event_type_value == "STEP_WORKER_STARTING"}
        step_started = {e.step_key: e.timestamp for e in entries if e.dagster_event.event_type_value == "STEP_START"}
        step_start_seconds = [step_started[key] - worker_started[key] for key in step_started if key in worker_started]
        processes = {e.pid for e in result.all_events if e.step_key and e.step_key.startswith("sync_dealers[")}
        synced = {e.partition for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.to_user_string() == "dealer_stock"}
        success = result.success
    vehicles_in_stock = sum(len(read_stock(root / "state", d.dealer_id)) for d in sample_dealers)
    queue.put(
        {
            "dealers": dealers,
            "vehicles": vehicles,
            "max_concurrent": max_concurrent,
            "generate_seconds": round(generate_seconds, 2),
            "seconds": round(seconds, 2),
            "success": success,
            "dealers_synced": len(synced),
            "steps": len(steps),
            "step_processes": len(processes),
            "mean_step_process_start_seconds": round(sum(step_start_seconds) / len(step_start_seconds), 2) if step_start_seconds else None,
            "vehicles_in_stock": vehicles_in_stock,
            "peak_mb_run_process": round(_peak_mb()),
        }
    )


def bench_group(dealers: int, vehicles: int, out_dir: Path, max_concurrent: int | None = None, echo=print, profile_dealers: int = 20) -> dict:
    """`vehicles` spread over `dealers` dealers, through Dagster's group_sync job on the multiprocess executor, in a fresh
    process; beside it the same vehicles as one dealer's export through the same job, the fixed cost per dealer that the
    difference gives, and a profile of `profile_dealers` dealers of the same size naming where that cost goes."""
    max_concurrent = max_concurrent or multiprocessing.cpu_count()
    result = _in_fresh_process(_group_child, out_dir / f"group-{dealers}x{vehicles}", f"the {dealers}-dealer benchmark", dealers, vehicles, max_concurrent=max_concurrent)
    single = _in_fresh_process(_group_child, out_dir / f"group-1x{vehicles}", "the one-dealer benchmark", 1, vehicles, max_concurrent=max_concurrent)
    result["single_export_seconds"] = single["seconds"]
    result["ratio_to_single_export"] = round(result["seconds"] / single["seconds"], 2) if single["seconds"] else None
    result["fixed_cost_seconds_per_dealer"] = round(max(0.0, result["seconds"] - single["seconds"]) * max_concurrent / dealers, 3)
    echo(
        f"\n{dealers} dealers, {vehicles:,} vehicles through Dagster (group_sync, multiprocess executor, max_concurrent {max_concurrent}): "
        f"{result['seconds']:.1f} s, {result['dealers_synced']} dealers synced in {result['steps']} steps ({result['step_processes']} processes), "
        f"{result['vehicles_in_stock']:,} vehicles in stock, run {'succeeded' if result['success'] else 'FAILED'}"
    )
    echo(
        f"the same {vehicles:,} vehicles as one dealer's export through the same job: {single['seconds']:.1f} s; the group takes {result['ratio_to_single_export']}x as long: "
        f"{result['fixed_cost_seconds_per_dealer']} s of process time per dealer beyond its vehicles' work; a step process starts in {result['mean_step_process_start_seconds']} s"
    )
    if profile_dealers:
        result["fixed_cost_parts"] = bench_fixed_cost(min(profile_dealers, dealers), max(1, vehicles // dealers) * min(profile_dealers, dealers), out_dir, echo=echo)
    return result


def _in_fresh_process(child, work: Path, what: str, *args, **kwargs) -> dict:
    """`child(*args, work, queue, **kwargs)` in a spawned process (a clean memory peak, nothing imported before), in an
    empty scratch folder `work` removed afterwards; returns what the child put on the queue."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=child, args=(*args, str(work), queue), kwargs=kwargs)
    process.start()
    process.join()
    if process.exitcode != 0 or queue.empty():
        raise RuntimeError(f"{what} failed (exit code {process.exitcode})")
    result = queue.get()
    shutil.rmtree(work, ignore_errors=True)
    return result


def _hourly_job_child(vehicles: int, work: str, queue) -> None:
    """In a fresh process: one dealer of `vehicles` synced nightly through the dealer_sync job, then a delta of
    HOURLY_CHANGES changes (three of them sales) through the same job and the account_feeds job, each step timed."""
    import os

    import yaml

    root = Path(work) / "data"
    (root / "config").mkdir(parents=True, exist_ok=True)
    dealer = SampleDealer("bench", "Bench Motors", "navigator_csv")
    (root / "config" / "dms_pipelines.yaml").write_text(yaml.safe_dump(_group_config([dealer]), sort_keys=False))
    generate_group(root / "inbox", [dealer], vehicles, seed=42, deltas=0)
    home = Path(work) / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(DAGSTER_TEMPLATE, home / "dagster.yaml")
    os.environ.update({"DMS_PIPELINES_DATA": str(root), "DAGSTER_HOME": str(home)})
    os.environ.pop("DMS_PIPELINES_CONFIG", None)

    import dagster as dg

    from dms_pipelines.config import load_settings
    from dms_pipelines.definitions import build_definitions
    from dms_pipelines.devtools.sample.generator import render_export
    from dms_pipelines.stock.store import read_stock

    paths = DataPaths(root)
    defs = build_definitions(load_settings(), paths)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.DagsterInstance.get() as instance:

        def run(job: str, trigger: str, **partition) -> tuple[float, dict[str, float]]:
            started = time.perf_counter()
            result = defs.resolve_job_def(job).execute_in_process(instance=instance, tags={"dms_pipelines/trigger": trigger}, run_config=quiet, **partition)
            seconds = time.perf_counter() - started
            if not result.success:
                raise RuntimeError(f"{job} ({trigger}) failed")
            steps = {s.step_key: round(s.end_time - s.start_time, 3) for s in instance.get_run_step_stats(result.run_id)}
            return round(seconds, 2), steps

        nightly_seconds, nightly_steps = run("dealer_sync", "nightly", partition_key="bench")
        nightly_account_seconds, _ = run("account_feeds", "nightly")
        stock = read_stock(paths.state, "bench")
        changed = stock[stock["status"] == "available"].sample(HOURLY_CHANGES, random_state=7).copy()
        changed["price"] = (changed["price"] - 250).clip(lower=500)
        changed.loc[changed.index[:3], "status"] = "sold"
        changed["location"] = "Forecourt"
        del stock
        (paths.inbox / "bench" / "stock_delta_20261122_1005.csv").write_bytes(render_export(changed.reset_index(drop=True), "navigator_csv"))
        os.sync()  # the hourly run starts with nothing of the nightly run's files left to write back
        hourly_seconds, hourly_steps = run("dealer_sync", "hourly", partition_key="bench")
        account_seconds, account_steps = run("account_feeds", "hourly")
    feed_bytes = sum(f.stat().st_size for f in paths.outbox.rglob("*") if f.is_file())
    queue.put(
        {
            "vehicles": vehicles,
            "changes": HOURLY_CHANGES,
            "nightly_job_seconds": nightly_seconds,
            "nightly_steps": nightly_steps,
            "nightly_account_feeds_seconds": nightly_account_seconds,
            "hourly_job_seconds": hourly_seconds,
            "hourly_steps": hourly_steps,
            "account_feeds_seconds": account_seconds,
            "account_steps": account_steps,
            "outbox_bytes": feed_bytes,
        }
    )


def bench_hourly_job(vehicles: int, out_dir: Path, echo=print) -> dict:
    """The hourly delta through Dagster's dealer_sync job against a stock of `vehicles`, in a fresh process."""
    result = _in_fresh_process(_hourly_job_child, out_dir / f"hourly-job-{vehicles}", f"the hourly job benchmark at {vehicles:,} vehicles", vehicles)
    echo(
        f"\nhourly delta of {result['changes']} changes against {vehicles:,} vehicles through Dagster (dealer_sync, then account_feeds): "
        f"{result['hourly_job_seconds']:.2f} s + {result['account_feeds_seconds']:.2f} s (the nightly run before it: {result['nightly_job_seconds']:.1f} s; "
        f"feed files in the outbox: {result['outbox_bytes'] / 1e9:.2f} GB)"
    )
    echo(f"  {'step':<44}{'nightly':>8}{'hourly':>8}")
    for step, seconds in result["hourly_steps"].items():
        echo(f"  {step:<44}{result['nightly_steps'].get(step, 0):>8.2f}{seconds:>8.2f}")
    for step, seconds in result["account_steps"].items():
        echo(f"  {step:<44}{'':>8}{seconds:>8.2f}")
    return result
