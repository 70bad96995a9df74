"""The `dms-pipelines` command: demo, generate, run, and the operator's tools."""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from dms_pipelines.config import ConfigError, load_settings, operations_db_url
from dms_pipelines.paths import PROJECT_ROOT, DataPaths, data_root

SAMPLE_LAYOUTS = ("navigator_csv", "star5_xml", "pipe_cp1252_csv")


QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _ensure_dagster_home(paths: DataPaths) -> Path:
    """A persistent DAGSTER_HOME (data/dagster_home unless set), so `make dev` shows the runs made from the command line."""
    home = Path(os.environ.get("DAGSTER_HOME") or paths.root / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    template = PROJECT_ROOT / "data" / "config" / "dagster.yaml"
    if not instance_yaml.exists() and template.exists():
        shutil.copyfile(template, instance_yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_sync(dealer_ids: list[str] | None = None, release_held: bool = False, echo=print, trigger: str = "manual") -> dict[str, bool]:
    """Run the dealer_sync job for each dealer, then the account-wide feeds, through Dagster on the persistent instance.

    A dealer is ok only when its run succeeded and nothing is wrong for it afterwards (run_health.current_problems: a held
    export, a failed file, an undelivered feed, a change not acknowledged or refused, drift); each problem is printed.
    """
    import dagster as dg

    from dms_pipelines.definitions import build_definitions
    from dms_pipelines.operations.db import engine_for
    from dms_pipelines.orchestration.assets import CHANGE_SEEN_TAG, TRIGGER_TAG
    from dms_pipelines.operations.run_health import current_problems, in_scope_of_account_run, in_scope_of_dealer_run
    from dms_pipelines.sync import change_seen_at

    paths = DataPaths(data_root())
    settings = load_settings()
    _ensure_dagster_home(paths)
    defs = build_definitions(settings, paths)
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("dealer_sync")
    outcomes = {}
    run_config = dict(QUIET_LOGS) | ({"ops": {"landed_exports": {"config": {"release_held": True}}}} if release_held else {})
    engine = engine_for(operations_db_url(settings, paths))
    seen = []
    chosen = dealer_ids or [d.id for d in settings.dealers]
    for dealer_id in chosen:
        started = time.monotonic()
        result = job.execute_in_process(
            instance=instance, partition_key=dealer_id, run_config=run_config, raise_on_error=False, tags={TRIGGER_TAG: trigger}
        )
        problems = [p for p in current_problems(engine, dealer_id) if in_scope_of_dealer_run(p.key)]
        outcomes[dealer_id] = result.success and not problems
        seen.append(change_seen_at(engine, result.run_id))
        state = "ok" if outcomes[dealer_id] else "FAILED" if not result.success else f"{len(problems)} PROBLEM(S)"
        echo(f"  {dealer_id:<12} {state} in {time.monotonic() - started:.1f}s  (run {result.run_id[:8]})")
        _echo_problems(echo, problems, None if result.success else _failure_of(result))
    tags = {TRIGGER_TAG: trigger}
    if any(seen):
        tags[CHANGE_SEEN_TAG] = min(s for s in seen if s).isoformat()
    feeds = defs.resolve_job_def("account_feeds").execute_in_process(instance=instance, raise_on_error=False, tags=tags, run_config=QUIET_LOGS)
    account = [p for d in [*chosen, "*"] for p in current_problems(engine, d) if d == "*" or in_scope_of_account_run(p.key)]
    outcomes["account_feeds"] = feeds.success and not account
    state = "ok" if outcomes["account_feeds"] else "FAILED" if not feeds.success else f"{len(account)} PROBLEM(S)"
    echo(f"  {'google feed':<12} {state}  (run {feeds.run_id[:8]})")
    _echo_problems(echo, account, None if feeds.success else _failure_of(feeds))
    return outcomes


def _failure_of(result) -> str:
    """The first step failure's message of a failed in-process run."""
    for event in result.all_events:
        if event.is_step_failure:
            return event.event_specific_data.error.message.strip().splitlines()[0]
    return "the run failed"


def _echo_problems(echo, problems: list, failure: str | None) -> None:
    if failure:
        echo(f"      ! {failure}")
    for problem in problems:
        echo(f"      ! {problem.dealer_id}: {problem.message}" if problem.dealer_id == "*" else f"      ! {problem.message}")


def run_group_sync(echo=print) -> dict[str, bool]:
    """The nightly job as the schedule runs it: one group_sync run, a step per batch of dealers on the multiprocess executor.

    Every configured dealer is reported, a dealer whose sync crashed included, with what is wrong for it after the run.
    """
    import dagster as dg
    from sqlalchemy import select

    from dms_pipelines.operations.db import engine_for, sync_runs
    from dms_pipelines.operations.run_health import current_problems

    paths = DataPaths(data_root())
    settings = load_settings()
    _ensure_dagster_home(paths)
    os.environ.setdefault("DMS_PIPELINES_DATA", str(paths.root))  # the executor's processes load the same configuration
    from dms_pipelines.definitions import group_sync_job

    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(group_sync_job), instance=instance, run_config=QUIET_LOGS, tags={"dms_pipelines/trigger": "nightly"})
        seconds = time.monotonic() - started
        steps = sorted({e.step_key for e in result.all_events if e.step_key and e.step_key.startswith("sync_dealers[")})
    engine = engine_for(operations_db_url(settings, paths))
    with engine.connect() as connection:
        recorded = {row.dealer_id: row for row in connection.execute(select(sync_runs).where(sync_runs.c.run_id == result.run_id))}
    outcomes = {}
    for dealer in settings.dealers:
        row = recorded.get(dealer.id)
        problems = current_problems(engine, dealer.id)
        outcomes[dealer.id] = row is not None and not problems
        state = "CRASHED" if row is None else row.outcome if not problems else f"{len(problems)} PROBLEM(S)"
        echo(f"  {dealer.id:<12} {state:<13} {row.vehicles if row is not None else 0:>6} vehicles")
        _echo_problems(echo, problems, None if row is not None else "its sync did not finish: see the run's log")
    account = current_problems(engine, "*")
    _echo_problems(echo, account, None)
    echo(f"  group_sync run {result.run_id[:8]}: {'ok' if result.success else 'FAILED'} in {seconds:.1f}s, {len(settings.dealers)} dealers in {len(steps)} step(s) on the multiprocess executor")
    outcomes["group_sync"] = result.success and not account
    return outcomes


def cmd_generate(args) -> int:
    from dms_pipelines.sample.generator import default_dealers, generate_group

    started = time.monotonic()
    report = generate_group(Path(args.out), default_dealers(args.dealers), args.vehicles, args.seed, deltas=args.deltas)
    print(f"wrote {len(report.files)} files for {len(report.vehicles)} dealers ({sum(report.vehicles.values())} vehicles, {report.planted} planted defects) to {args.out} in {time.monotonic() - started:.1f}s")
    return 0


def cmd_demo(args) -> int:
    from dms_pipelines.sample.generator import SampleDealer, generate_group

    paths = DataPaths(data_root())
    settings = load_settings()
    dealers = [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers if d.profile in SAMPLE_LAYOUTS]
    print(f"dms-pipelines demo: {settings.group_name}, {len(settings.dealers)} dealers, data root {paths.root}")
    simulator = start_demo_simulator(settings)
    report = generate_group(paths.inbox, dealers, args.vehicles, args.seed, deltas=args.deltas)
    print(f"1. sample DMS exports: {len(report.files)} files ({sum(report.vehicles.values())} vehicles, 1 full + {args.deltas} hourly deltas per dealer) in {paths.inbox}")
    print("2. nightly sync through Dagster (the group_sync job the nightly schedule runs):")
    outcomes = run_group_sync(echo=print)
    print("3. summary")
    from dms_pipelines.warehouse.summary import print_summary

    print_summary(settings, paths)
    sellable = [d for d in settings.dealers if d.profile in SAMPLE_LAYOUTS]
    if sellable and all(outcomes.values()):
        from dms_pipelines.fast_path import sell_one_car

        sale = sell_one_car(paths, settings, sellable[0].id, run_sync)
        places = ", ".join(f"{m} {'gone' if gone else 'STILL LISTED'}" for m, gone in sale.gone_from.items())
        print(f"4. sold-car fast path: {sale.dealer_id} sold {sale.stock_id} in the DMS; {sale.seconds:.1f} s later: {places}")
        outcomes["fast_path"] = all(sale.gone_from.values())
    if simulator is not None:
        simulator.stop()
    return 0 if all(outcomes.values()) else 1


def start_demo_simulator(settings):
    """For the demo, the Auto Trader-style API is a simulator of its own on a free loopback port, never someone else's.

    When the destination's URL is on loopback, a simulator is started on a port the OS chooses and the destination's
    base_url_env variable (DMS_AUTOTRADER_BASE_URL in the demo configuration) is set to its URL before anything runs:
    the run's step processes inherit the environment, so every call goes to this simulator, and a second demo (or
    `make dev`) on the same machine has its own. A destination elsewhere (a real API) is left alone.
    """
    import ipaddress
    from urllib.parse import urlsplit

    from dms_pipelines.config import HttpApiDestination
    from dms_pipelines.delivery.simulator import StockApiSimulator

    market = settings.marketplaces.get("autotrader")
    if market is None or not isinstance(market.destination, HttpApiDestination):
        return None
    target = market.destination
    url = urlsplit(target.resolved_base_url())
    try:
        loopback = url.hostname == "localhost" or ipaddress.ip_address(url.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    token = os.environ.setdefault(target.token_env, "demo-token")
    if target.base_url_env is None:  # nothing to point the runs elsewhere with: the configured port or nothing
        try:
            simulator = StockApiSimulator(token=token, host=url.hostname, port=url.port or 80).start()
        except OSError as error:
            raise ConfigError(
                f"marketplaces.autotrader.destination: {target.base_url} is taken ({error.strerror}), maybe by another demo's "
                "simulator; the demo will not send the dealers' listings to it. Add base_url_env: DMS_AUTOTRADER_BASE_URL "
                "to that destination so that the demo can use a free port."
            ) from None
    else:
        simulator = StockApiSimulator(token=token, host="127.0.0.1", port=0).start()
        os.environ[target.base_url_env] = simulator.base_url
    print(f"   Auto Trader-style stock API simulator of this demo on {simulator.base_url}" + (f" ({target.base_url_env})" if target.base_url_env else ""))
    return simulator


def cmd_run(args) -> int:
    outcomes = run_sync(args.dealer or None, release_held=args.release_held)
    return 0 if all(outcomes.values()) else 1


def cmd_report(args) -> int:
    """KPIs and drift; exits 1 when a marketplace does not show what the DMS says (so a script can tell)."""
    from dms_pipelines.warehouse.report import drift, kpis, render_drift, render_json, render_table

    warehouse = DataPaths(data_root()).warehouse_db
    rows, drift_rows = kpis(warehouse), drift(warehouse)
    if args.format == "json":
        print(render_json(rows, drift_rows))
    else:
        print(render_table(rows))
        print("\ndrift (what each marketplace shows against what the DMS says, as last checked):")
        print(render_drift(drift_rows))
    return 1 if any(r["missing"] or r["extra"] or r["stale"] or r["sold_live"] or r["error"] for r in drift_rows) else 0


def cmd_bench(args) -> int:
    import json as json_module

    from dms_pipelines.bench import run_benchmarks

    out = DataPaths(data_root()).root / "bench"
    sizes = [10_000, 100_000, 1_000_000] if args.vehicles is None else [n for n in args.vehicles if n > 0]
    echo = (lambda line: None) if args.json else print
    if args.dealers and args.dealers > 1:
        from dms_pipelines.bench import bench_group

        document = {"group": [bench_group(args.dealers, n, out, args.max_concurrent, echo=echo) for n in sizes]}
        target = out / f"bench-group-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
        target.write_text(json_module.dumps(document, indent=2))
        echo(f"\nwritten {target}")
    else:
        document = run_benchmarks(sizes, out, layout=args.layout, echo=echo)
    if args.hourly_job:
        from dms_pipelines.bench import bench_hourly_job

        document["hourly_job"] = bench_hourly_job(args.hourly_job, out, echo=echo)
        target = out / f"bench-hourly-job-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
        target.write_text(json_module.dumps(document["hourly_job"], indent=2))
        echo(f"written {target}")
    if args.sftp:
        import tempfile

        from dms_pipelines.bench import bench_sftp
        from dms_pipelines.sources.sshd_harness import SshServer

        with tempfile.TemporaryDirectory() as folder:
            server = SshServer(Path(folder) / "sshd").start()
            try:
                document["sftp"] = bench_sftp(server, args.sftp, Path(folder))
            finally:
                server.stop()
        if not args.json:
            sftp = document["sftp"]
            print(
                f"SFTP download of {args.sftp} MB, median of {sftp['rounds']} interleaved rounds: ours {sftp['ours_mb_per_s']} MB/s "
                f"(runs {sftp['ours_runs']}), OpenSSH sftp {sftp['openssh_mb_per_s']} MB/s (runs {sftp['openssh_runs']}): {sftp['share']:.0%}"
            )
    if args.sold_latency:
        import tempfile

        from dms_pipelines.latency_bench import bench_sold_latency

        with tempfile.TemporaryDirectory() as folder:
            document["sold_latency"] = bench_sold_latency(Path(folder), echo=(lambda line: None) if args.json else print)
    if args.json:
        print(json_module.dumps(document, indent=2))
    return 0


def cmd_replay(args) -> int:
    from dms_pipelines.operations.db import engine_for
    from dms_pipelines.delivery.ledger import replay_dead_letters

    settings = load_settings()
    count = replay_dead_letters(engine_for(operations_db_url(settings, DataPaths(data_root()))), args.marketplace)
    print(f"{count} dead letter(s) queued again; the next run for their dealers resends them (idempotently)")
    return 0


def cmd_schema_docs(args) -> int:
    from dms_pipelines.stock.schema_docs import canonical_vehicle_markdown

    Path(args.out).write_text(canonical_vehicle_markdown(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dms-pipelines", description="DMS stock exports to marketplace feeds, orchestrated with Dagster.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate sample exports into the inbox, run the nightly sync for every dealer, print a summary")
    demo.add_argument("--vehicles", type=int, default=3000, help="vehicles across the group (default 3000)")
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--deltas", type=int, default=3, help="hourly delta exports per dealer after the full one")
    demo.set_defaults(handler=cmd_demo)

    generate = commands.add_parser("generate", help="write reproducible sample DMS exports")
    generate.add_argument("--vehicles", type=int, default=1000)
    generate.add_argument("--dealers", type=int, default=3)
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--deltas", type=int, default=0)
    generate.add_argument("--out", required=True)
    generate.set_defaults(handler=cmd_generate)

    run = commands.add_parser("run", help="run the sync through Dagster for some or all dealers")
    run.add_argument("--dealer", action="append", help="a dealer id (repeatable); default every dealer")
    run.add_argument("--release-held", action="store_true", help="apply held full exports despite the guards (delisting, distribution)")
    run.set_defaults(handler=cmd_run)

    bench = commands.add_parser("bench", help="benchmark the nightly path against DuckDB reading the same file")
    bench.add_argument("--vehicles", type=int, action="append", help="size (repeatable); default 10000, 100000, 1000000; 0 skips the sizes")
    bench.add_argument("--layout", default="navigator_csv", choices=SAMPLE_LAYOUTS)
    bench.add_argument("--dealers", type=int, default=1, help="spread each size over this many dealers and run the group_sync job through Dagster's multiprocess executor")
    bench.add_argument("--max-concurrent", type=int, default=None, help="processes for --dealers (default: the number of CPUs)")
    bench.add_argument("--sftp", type=int, default=0, metavar="MB", help="also time an SFTP download of this many MB against OpenSSH's sftp")
    bench.add_argument("--sold-latency", action="store_true", help="also time a sold car leaving every marketplace: the job alone, and through the sensor under a daemon")
    bench.add_argument("--hourly-job", type=int, default=0, metavar="VEHICLES", help="also time an hourly delta through the dealer_sync job against this many vehicles")
    bench.add_argument("--json", action="store_true", help="print the results as JSON only")
    bench.set_defaults(handler=cmd_bench)

    replay = commands.add_parser("replay-dead-letters", help="queue dead-lettered deliveries again (after fixing the cause)")
    replay.add_argument("--marketplace", default=None)
    replay.set_defaults(handler=cmd_replay)

    report = commands.add_parser("report", help="KPIs per dealer and marketplace from the warehouse")
    report.add_argument("--format", choices=["table", "json"], default="table")
    report.set_defaults(handler=cmd_report)

    schema_docs = commands.add_parser("schema-docs", help="regenerate docs/canonical-vehicle.md from the schema")
    schema_docs.add_argument("--out", default="docs/canonical-vehicle.md")
    schema_docs.set_defaults(handler=cmd_schema_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
