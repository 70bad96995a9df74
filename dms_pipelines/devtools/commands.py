"""The dev tools' subcommands of `dms-pipelines` (demo, generate, bench), registered through the dms_pipelines.commands entry point."""

import os
import time
from pathlib import Path

from dms_pipelines.config import ConfigError, load_settings
from dms_pipelines.devtools.image_demo import report_images, start_image_demo, write_imaging_feeds
from dms_pipelines.orchestration.drivers import run_group_sync, run_sync
from dms_pipelines.paths import DataPaths, data_root

SAMPLE_LAYOUTS = ("navigator_csv", "star5_xml", "pipe_cp1252_csv")


def cmd_generate(args) -> int:
    from dms_pipelines.devtools.sample.generator import default_dealers, generate_group

    started = time.monotonic()
    report = generate_group(Path(args.out), default_dealers(args.dealers), args.vehicles, args.seed, deltas=args.deltas)
    print(
        f"wrote {len(report.files)} files for {len(report.vehicles)} dealers ({sum(report.vehicles.values())} vehicles, {report.planted} planted defects) to {args.out} in {time.monotonic() - started:.1f}s"
    )
    return 0


def cmd_demo(args) -> int:
    from dms_pipelines.devtools.demo import ensure_sample_config
    from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group

    paths = DataPaths(data_root())
    written = ensure_sample_config(paths)
    if written is not None:
        print(f"dms-pipelines demo: no configuration in {written.parent}; wrote the demo's sample configuration to {written}")
    settings = load_settings()
    dealers = [SampleDealer(d.id, d.name, d.profile) for d in settings.dealers if d.profile in SAMPLE_LAYOUTS]
    print(f"dms-pipelines demo: {settings.group_name}, {len(settings.dealers)} dealers, data root {paths.root}")
    simulator = start_demo_simulator(settings)
    image_demo = start_image_demo(settings)
    try:
        extra = {"image_base": image_demo.dms_image_base} if image_demo is not None else {}
        report = generate_group(paths.inbox, dealers, args.vehicles, args.seed, deltas=args.deltas, **extra)
        print(f"1. sample DMS exports: {len(report.files)} files ({sum(report.vehicles.values())} vehicles, 1 full + {args.deltas} hourly deltas per dealer) in {paths.inbox}")
        if image_demo is not None:
            feeds = write_imaging_feeds(image_demo, settings, paths, report.fleets)
            print(f"   imaging-service feeds: {len(feeds)} file(s) in {paths.image_inbox} (some photo sets planted on the wrong car, one URL on two cars)")
        print("2. nightly sync through Dagster (the group_sync job the nightly schedule runs):")
        outcomes = run_group_sync(echo=print)
        print("3. summary")
        from dms_pipelines.warehouse.summary import print_summary

        if image_demo is not None:
            print("   images (the vehicle_images asset; the warehouse's vehicle_images and vehicles_held_for_images):")
            outcomes["images"] = report_images(image_demo, paths)
        print_summary(settings, paths)
        sellable = [d for d in settings.dealers if d.profile in SAMPLE_LAYOUTS]
        if sellable and all(outcomes.values()):
            from dms_pipelines.devtools.fast_path import sell_one_car

            sale = sell_one_car(paths, settings, sellable[0].id, run_sync)
            places = ", ".join(f"{m} {'gone' if gone else 'STILL LISTED'}" for m, gone in sale.gone_from.items())
            print(f"4. sold-car fast path: {sale.dealer_id} sold {sale.stock_id} in the DMS; {sale.seconds:.1f} s later: {places}")
            outcomes["fast_path"] = all(sale.gone_from.values())
            outcomes["leads"] = show_enquiries(settings, paths, simulator, sale.stock_id)
    finally:
        if simulator is not None:
            simulator.stop()
        if image_demo is not None:
            image_demo.stop()
    return 0 if all(outcomes.values()) else 1


def show_enquiries(settings, paths: DataPaths, simulator, sold_stock_id: str | None) -> bool:
    """Step 5: enquiries from every channel reach the CRM drop as ADF; one from a marketplace is shown (its vehicle part)."""
    from dms_pipelines.devtools.lead_demo import run_lead_demo
    from dms_pipelines.leads.adf import validate_adf
    from dms_pipelines.orchestration.drivers import run_leads

    if not any(dealer.crm is not None for dealer in settings.dealers):  # a configuration from before leads: said, not failed
        print("5. enquiries: skipped, no dealer has a crm: section in the configuration (see docs/configuration.md; the sample configuration has one)")
        return True
    print("5. enquiries back to the CRM (lead_sync through Dagster):")
    demo = run_lead_demo(settings, paths, simulator, run_leads, sold_stock_id)
    valid = [path for path in demo.adf_files if not validate_adf(path.read_bytes())]
    print(f"   CRM drop: {len(demo.adf_files)} ADF file(s), {len(valid)} valid against the ADF 1.0 DTD")
    shown = next((path for path in demo.adf_files if "-autotrader-" in path.name), demo.adf_files[0] if demo.adf_files else None)
    if shown is not None:
        from lxml import etree

        vehicle = etree.fromstring(shown.read_bytes(), etree.XMLParser(resolve_entities=False, no_network=True)).find("prospect/vehicle")
        parts = (
            [f"{child.tag}={(child.text or '').strip()}" for child in vehicle if child.tag in ("year", "make", "model", "stock", "comments") and (child.text or "").strip()]
            if vehicle is not None
            else []
        )
        print(f"   an enquiry from a marketplace, in the CRM drop: {shown}\n     vehicle: {'; '.join(parts)}")
    return bool(demo.adf_files) and len(valid) == len(demo.adf_files) and demo.refused_forgery and all(demo.outcomes.values())


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
    from dms_pipelines.devtools.simulator import StockApiSimulator

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


def cmd_bench(args) -> int:
    import json as json_module

    from dms_pipelines.devtools.bench import run_benchmarks

    out = DataPaths(data_root()).root / "bench"
    sizes = [10_000, 100_000, 1_000_000] if args.vehicles is None else [n for n in args.vehicles if n > 0]
    echo = (lambda line: None) if args.json else print
    if args.dealers and args.dealers > 1:
        from dms_pipelines.devtools.bench import bench_group

        document = {"group": [bench_group(args.dealers, n, out, args.max_concurrent, echo=echo) for n in sizes]}
        target = out / f"bench-group-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
        target.write_text(json_module.dumps(document, indent=2))
        echo(f"\nwritten {target}")
    else:
        document = run_benchmarks(sizes, out, layout=args.layout, echo=echo)
    if args.hourly_job:
        from dms_pipelines.devtools.bench import bench_hourly_job

        document["hourly_job"] = bench_hourly_job(args.hourly_job, out, echo=echo)
        target = out / f"bench-hourly-job-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
        target.write_text(json_module.dumps(document["hourly_job"], indent=2))
        echo(f"written {target}")
    if args.sftp:
        import tempfile

        from dms_pipelines.devtools.bench import bench_sftp
        from dms_pipelines.devtools.sshd_harness import SshServer

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

        from dms_pipelines.devtools.latency_bench import bench_sold_latency

        with tempfile.TemporaryDirectory() as folder:
            document["sold_latency"] = bench_sold_latency(Path(folder), echo=(lambda line: None) if args.json else print)
    if args.leads:
        import tempfile

        from dms_pipelines.devtools.lead_bench import bench_leads

        with tempfile.TemporaryDirectory() as folder:
            document["leads"] = [bench_leads(n, Path(folder), echo=echo) for n in args.leads]
    if args.json:
        print(json_module.dumps(document, indent=2))
    return 0


def register(commands) -> None:
    """The dms_pipelines.commands entry point: adds demo, generate and bench to the `dms-pipelines` subparsers."""
    demo = commands.add_parser("demo", help="generate sample exports into the inbox, run the nightly sync for every dealer, print a summary")
    demo.add_argument("--vehicles", type=int, default=3000, help="vehicles across the group (default 3000)")
    demo.add_argument("--seed", type=int, default=2026)
    demo.add_argument("--deltas", type=int, default=3, help="hourly delta exports per dealer after the full one")
    demo.set_defaults(func=cmd_demo)

    generate = commands.add_parser("generate", help="write reproducible sample DMS exports")
    generate.add_argument("--vehicles", type=int, default=1000)
    generate.add_argument("--dealers", type=int, default=3)
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--deltas", type=int, default=0)
    generate.add_argument("--out", required=True)
    generate.set_defaults(func=cmd_generate)

    bench = commands.add_parser("bench", help="benchmark the nightly path against DuckDB reading the same file")
    bench.add_argument("--vehicles", type=int, action="append", help="size (repeatable); default 10000, 100000, 1000000; 0 skips the sizes")
    bench.add_argument("--layout", default="navigator_csv", choices=SAMPLE_LAYOUTS)
    bench.add_argument("--dealers", type=int, default=1, help="spread each size over this many dealers and run the group_sync job through Dagster's multiprocess executor")
    bench.add_argument("--max-concurrent", type=int, default=None, help="processes for --dealers (default: the number of CPUs)")
    bench.add_argument("--sftp", type=int, default=0, metavar="MB", help="also time an SFTP download of this many MB against OpenSSH's sftp")
    bench.add_argument("--sold-latency", action="store_true", help="also time a sold car leaving every marketplace: the job alone, and through the sensor under a daemon")
    bench.add_argument("--hourly-job", type=int, default=0, metavar="VEHICLES", help="also time an hourly delta through the dealer_sync job against this many vehicles")
    bench.add_argument(
        "--leads", type=int, action="append", default=None, metavar="LEADS", help="also time this many leads from Meta CSV exports to ADF in the CRM drop and the warehouse (repeatable)"
    )
    bench.add_argument("--json", action="store_true", help="print the results as JSON only")
    bench.set_defaults(func=cmd_bench)
