"""The `dms-pipelines` command: run, report and the operator's tools; other packages add theirs through entry points."""

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from dms_pipelines.config import ConfigError, load_settings, operations_db_url
from dms_pipelines.formats.profile import ProfileError
from dms_pipelines.orchestration.drivers import run_sync
from dms_pipelines.paths import DataPaths, config_path, data_root

COMMANDS_GROUP = "dms_pipelines.commands"  # each entry point: register(subparsers), adding subcommands with set_defaults(func=...)


def cmd_run(args) -> int:
    outcomes = run_sync(args.dealer or None, release_held=args.release_held)
    return 0 if all(outcomes.values()) else 1


def cmd_reprocess(args) -> int:
    """Read a dealer's failed files (or one named file) again through the current mapping profile, then run its sync."""
    import getpass

    from dms_pipelines.operations.db import engine_for
    from dms_pipelines.operations.manifest import reprocess_files

    settings = load_settings()
    try:
        settings.dealer(args.dealer)
    except KeyError:
        print(f"error: no dealer '{args.dealer}' in the configuration (dealers: {', '.join(d.id for d in settings.dealers)})", file=sys.stderr)
        return 2
    engine = engine_for(operations_db_url(settings, DataPaths(data_root())))
    try:
        queued, superseded = reprocess_files(engine, args.dealer, args.file, requested_by=f"dms-pipelines reprocess ({getpass.getuser()})")
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in superseded:
        print(f"  {row.file_name}: not reprocessed, superseded by a newer full export already applied")
    if not queued:
        why = "every one was superseded" if superseded else "no failed file" + (" (use --file NAME for another landed file)" if args.file is None else "")
        print(f"nothing to reprocess for {args.dealer}: {why}")
        return 0
    print(f"reprocessing {len(queued)} file(s) of {args.dealer} through profile {settings.dealer(args.dealer).profile}: {', '.join(row.file_name for row in queued)}")
    outcomes = run_sync([args.dealer], trigger="reprocess")
    return 0 if all(outcomes.values()) else 1


def cmd_profile_check(args) -> int:
    """Dry-run a mapping profile on a sample export; exits 1 on a profile error, 2 when the command cannot run."""
    if _is_images_profile(args.profile):
        return _check_imaging_feed(args)
    from dms_pipelines.marketplaces.registry import FEED_PROFILES, known_specs, specs_for
    from dms_pipelines.pipeline.profile_check import check_profile, dealer_for_check, render_text, resolve_profile

    paths = DataPaths(data_root())
    export = Path(args.export)
    if not export.is_file():
        print(f"error: {export}: no such export file", file=sys.stderr)
        return 2
    settings = load_settings() if config_path().exists() else None
    if args.dealer and settings is None:
        print(f"error: --dealer {args.dealer}: no configuration at {config_path()} to find the dealer in", file=sys.stderr)
        return 2
    try:
        profile, profile_file = resolve_profile(args.profile, paths.profile_dirs())
    except ProfileError as error:
        print(f"profile error: {error}", file=sys.stderr)
        return 1
    specs = specs_for(settings, paths.root) if settings is not None else list(known_specs([paths.root / FEED_PROFILES]).values())
    try:
        dealer, rules, specs = dealer_for_check(settings, args.dealer, profile.name, specs)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    report = check_profile(profile, profile_file, export, specs, dealer, rules)
    print(report.to_json() if args.format == "json" else render_text(report))
    return 0 if report.ok else 1


def _is_images_profile(name: str) -> bool:
    from dms_pipelines.formats.profile import find_profile, load_profile

    try:
        profile = load_profile(Path(name)) if name.endswith((".yaml", ".yml")) else find_profile(name, DataPaths(data_root()).profile_dirs())
    except (ProfileError, OSError):
        return False  # the vehicle check says what is wrong with it
    return profile.record == "images"


def _check_imaging_feed(args) -> int:
    """An imaging feed read through its profile (record: images), touching no state: what was read, what was left out and why."""
    from dms_pipelines.formats.values import MappingError
    from dms_pipelines.images.sources import read_imaging_feed

    try:
        feed = read_imaging_feed(Path(args.export), args.profile, args.dealer or "check", DataPaths(data_root()).profile_dirs())
    except (ProfileError, MappingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    vehicles = feed.frame[["stock_id", "vin", "registration"]].astype("string").fillna("").agg("|".join, axis=1).nunique() if len(feed.frame) else 0
    print(
        f"{feed.file_name} through {feed.profile_name}: {feed.records_total} records, {feed.images_read} images read: {len(feed.frame)} accepted for {vehicles} vehicles, "
        f"{len(feed.quarantined)} left out, {feed.duplicates} repeated; skipped by the profile: {feed.skipped or 'none'}"
    )
    for message in feed.issues["message"].head(50):
        print(f"  {message}")
    return 0 if feed.quarantined.empty else 1


def cmd_report(args) -> int:
    """KPIs and drift; exits 1 when a marketplace does not show what the DMS says (so a script can tell)."""
    from dms_pipelines.warehouse.report import drift, image_completeness, kpis, lead_channels, render_drift, render_image_completeness, render_json, render_lead_channels, render_table

    warehouse = DataPaths(data_root()).warehouse_db
    rows, drift_rows, channel_rows, image_rows = kpis(warehouse), drift(warehouse), lead_channels(warehouse), image_completeness(warehouse)
    if args.format == "json":
        print(render_json(rows, drift_rows, channel_rows, image_rows))
    else:
        print(render_table(rows))
        print("\ndrift (what each marketplace shows against what the DMS says, as last checked):")
        print(render_drift(drift_rows))
        print("\nleads per channel (enquiries, on sold or reserved cars, delivered to the CRM, dead-lettered, quarantined):")
        print(render_lead_channels(channel_rows))
        print("\nimage completeness (vehicles held back for their images, good images per listing, images left out):")
        print(render_image_completeness(image_rows))
    return 1 if any(r["missing"] or r["extra"] or r["stale"] or r["sold_live"] or r["error"] for r in drift_rows) else 0


def cmd_replay(args) -> int:
    from dms_pipelines.delivery.ledger import replay_dead_letters
    from dms_pipelines.operations.db import engine_for

    settings = load_settings()
    count = replay_dead_letters(engine_for(operations_db_url(settings, DataPaths(data_root()))), args.marketplace)
    print(f"{count} dead letter(s) queued again; the next run for their dealers resends them (idempotently)")
    return 0


def cmd_leads_run(args) -> int:
    from dms_pipelines.orchestration.drivers import run_leads

    outcomes = run_leads(args.dealer or None)
    return 0 if all(outcomes.values()) else 1


def _lead_dealer(args):
    settings = load_settings()
    try:
        settings.dealer(args.dealer)
    except KeyError:
        print(f"error: no dealer '{args.dealer}' in the configuration (dealers: {', '.join(d.id for d in settings.dealers)})", file=sys.stderr)
        return settings, None
    from dms_pipelines.operations.db import engine_for

    return settings, engine_for(operations_db_url(settings, DataPaths(data_root())))


def cmd_leads_replay(args) -> int:
    """Queue a dealer's dead-lettered leads again (after fixing the CRM or its configuration), then run its leads."""
    from dms_pipelines.orchestration.drivers import run_leads
    from dms_pipelines.pipeline.leads import replay_dead_letters

    _, engine = _lead_dealer(args)
    if engine is None:
        return 2
    print(f"{replay_dead_letters(engine, args.dealer)} dead-lettered lead(s) of {args.dealer} queued again")
    return 0 if all(run_leads([args.dealer], trigger="replay").values()) else 1


def cmd_leads_acknowledge(args) -> int:
    """Mark a dealer's unreadable lead files as seen (the operator has read why): they stop failing its runs."""
    import getpass

    from dms_pipelines.operations.lead_store import acknowledge_failed_files

    _, engine = _lead_dealer(args)
    if engine is None:
        return 2
    count = acknowledge_failed_files(engine, args.dealer, args.file, by=f"dms-pipelines leads acknowledge ({getpass.getuser()})")
    print(f"{count} unreadable lead file(s) of {args.dealer} acknowledged")
    return 0 if count or args.file is None else 2


def cmd_leads_receive(args) -> int:
    from dms_pipelines.leads.receiver import main as receiver_main

    receiver_main([*(["--host", args.host] if args.host else []), *(["--port", str(args.port)] if args.port is not None else [])])
    return 0


def _operations_engine():
    from dms_pipelines.operations.db import engine_for

    settings = load_settings()
    paths = DataPaths(data_root())
    return settings, paths, engine_for(operations_db_url(settings, paths))


def cmd_review_list(args) -> int:
    """The review queue: possible matches between the thresholds, with each comparison's part in the match weight."""
    from dms_pipelines.pipeline.review import render_reviews, review_entries

    settings, _, engine = _operations_engine()
    entries = review_entries(engine, args.dealer, None if args.all else "open", unmask=args.unmask)
    print(json.dumps(entries, indent=2, default=str) if args.format == "json" else render_reviews(entries))
    return 0


def _decide(args, accepted: bool) -> int:
    import getpass

    from dms_pipelines.operations.identity_store import ReviewError, decide_review

    _, _, engine = _operations_engine()
    try:
        entry = decide_review(engine, args.id, accepted, decided_by=args.by or getpass.getuser(), note=args.note)
    except ReviewError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    verb = "accepted: the record joins" if accepted else "rejected: the record is kept apart from"
    print(f"review {entry.id} {verb} customer {entry.candidate_cluster_id}; applied from the dealer's next lead run (dms-pipelines leads run --dealer {entry.dealer_id})")
    return 0


def cmd_review_accept(args) -> int:
    return _decide(args, True)


def cmd_review_reject(args) -> int:
    return _decide(args, False)


def cmd_erase(args) -> int:
    """Erase one person from every table and file under the data root; exits 1 when anything of them could not be removed."""
    import getpass

    from dms_pipelines.pipeline.erasure import ErasureError, erase

    settings, paths, engine = _operations_engine()
    if args.dealer:
        settings.dealer(args.dealer)
    try:
        report = erase(settings, paths, engine, email=args.email, phone=args.phone, customer=args.customer, dealer_id=args.dealer, requested_by=args.by or getpass.getuser(), dry_run=args.dry_run)
    except ErasureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = report.counts
    print(
        f"{'would erase' if report.dry_run else 'erased'} ({report.criterion}): {found['leads_found']} lead(s), {found['customers_found']} DMS customer record(s), {found['clusters_found']} customer cluster(s)"
    )
    if report.dry_run:
        print(f"files holding them: {len(report.files_rewritten)}")
        for name in report.files_rewritten:
            print(f"  {name}")
        return 0
    for key in sorted(found):
        if key not in ("leads_found", "customers_found", "clusters_found"):
            print(f"  {key}: {found[key]}")
    for name in report.files_removed:
        print(f"  removed {name}")
    for name in report.files_rewritten:
        print(f"  rewritten without them: {name}")
    for problem in report.problems:
        print(f"  NOT ERASED: {problem}", file=sys.stderr)
    for name in report.residue:
        print(f"  STILL HOLDS THEM: {name}", file=sys.stderr)
    print(f"erasure {report.erasure_id} logged in the erasures table and state/erasure_log.jsonl; their contacts are on the suppression list (salted hashes)")
    return 0 if report.ok else 1


def cmd_schema_docs(args) -> int:
    from dms_pipelines.stock.schema_docs import canonical_vehicle_markdown

    Path(args.out).write_text(canonical_vehicle_markdown(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dms-pipelines", description="DMS stock exports to marketplace feeds, orchestrated with Dagster.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the sync through Dagster for some or all dealers")
    run.add_argument("--dealer", action="append", help="a dealer id (repeatable); default every dealer")
    run.add_argument("--release-held", action="store_true", help="apply held full exports despite the guards (delisting, distribution)")
    run.set_defaults(func=cmd_run)

    reprocess = commands.add_parser("reprocess", help="read a dealer's failed files again through the current mapping profile (after fixing it), then sync")
    reprocess.add_argument("--dealer", required=True, help="the dealer id")
    reprocess.add_argument("--file", default=None, help="one landed file by name, whatever its status (default: every failed file)")
    reprocess.set_defaults(func=cmd_reprocess)

    profile = commands.add_parser("profile", help="mapping profiles: check one on a sample export before onboarding a dealer")
    profile_commands = profile.add_subparsers(dest="profile_command", required=True)
    check = profile_commands.add_parser("check", help="dry-run a profile on a sample export (touches no state): fill rates, drift, quarantine, skipped, held back")
    check.add_argument("profile", help="a profile name (searched in <data root>/profiles, then the shipped ones) or a path to a .yaml file; an imaging feed's profile (record: images) checks the feed")
    check.add_argument("export", help="a sample export file (.csv, .xml, .gz or .zip)")
    check.add_argument("--dealer", default=None, help="check as this configured dealer (its market, rules and marketplaces); default: a dealer on this profile, else a GB placeholder")
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.set_defaults(func=cmd_profile_check)

    replay = commands.add_parser("replay-dead-letters", help="queue dead-lettered deliveries again (after fixing the cause)")
    replay.add_argument("--marketplace", default=None)
    replay.set_defaults(func=cmd_replay)

    leads = commands.add_parser("leads", help="enquiries: run the lead pipeline, replay dead letters, acknowledge unreadable files, start the webhook receiver")
    lead_commands = leads.add_subparsers(dest="leads_command", required=True)
    lead_run = lead_commands.add_parser("run", help="land, read, link and deliver new leads to the CRM as ADF, through Dagster")
    lead_run.add_argument("--dealer", action="append", help="a dealer id (repeatable); default every dealer")
    lead_run.set_defaults(func=cmd_leads_run)
    lead_replay = lead_commands.add_parser("replay", help="deliver a dealer's dead-lettered leads again (after fixing the cause)")
    lead_replay.add_argument("--dealer", required=True)
    lead_replay.set_defaults(func=cmd_leads_replay)
    lead_ack = lead_commands.add_parser("acknowledge", help="mark a dealer's unreadable lead files as seen, so they stop failing its runs")
    lead_ack.add_argument("--dealer", required=True)
    lead_ack.add_argument("--file", default=None, help="one lead file by its landed name (default: every unreadable one)")
    lead_ack.set_defaults(func=cmd_leads_acknowledge)
    receive = lead_commands.add_parser("receive", help="run the webhook receiver (Auto Trader deals, Google lead forms, the website form) until stopped")
    receive.add_argument("--host", default=None)
    receive.add_argument("--port", type=int, default=None)
    receive.set_defaults(func=cmd_leads_receive)

    review = commands.add_parser("review", help="the identity review queue: possible matches of a lead to a customer, for an operator to decide")
    review_commands = review.add_subparsers(dest="review_command", required=True)
    review_list = review_commands.add_parser("list", help="open entries with their evidence (each comparison's part in the match weight)")
    review_list.add_argument("--dealer", default=None)
    review_list.add_argument("--all", action="store_true", help="decided entries too")
    review_list.add_argument("--unmask", action="store_true", help="show the records' contact details in full (default: masked)")
    review_list.add_argument("--format", choices=["text", "json"], default="text")
    review_list.set_defaults(func=cmd_review_list)
    for name, func, meaning in (("accept", cmd_review_accept, "the record is that customer"), ("reject", cmd_review_reject, "the record is not that customer")):
        decide = review_commands.add_parser(name, help=f"{meaning}: kept, applied on every later run and used as a label to check the model")
        decide.add_argument("id", type=int, help="the entry's id, from `review list`")
        decide.add_argument("--note", default=None)
        decide.add_argument("--by", default=None, help="who decided (default: the login name)")
        decide.set_defaults(func=func)

    erase = commands.add_parser("erase", help="erase one person from every table and file (UK GDPR erasure), keep a suppression entry, log the counts")
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--phone")
    who.add_argument("--customer", help="a DMS customer number, or a customer (cluster) id P-...")
    erase.add_argument("--dealer", default=None, help="only this dealer's records (default: every dealer's)")
    erase.add_argument("--dry-run", action="store_true", help="say what would be erased; change nothing")
    erase.add_argument("--by", default=None, help="who asked for it, for the log (default: the login name)")
    erase.set_defaults(func=cmd_erase)

    report = commands.add_parser("report", help="KPIs per dealer and marketplace from the warehouse")
    report.add_argument("--format", choices=["table", "json"], default="table")
    report.set_defaults(func=cmd_report)

    schema_docs = commands.add_parser("schema-docs", help="regenerate docs/canonical-vehicle.md from the schema")
    schema_docs.add_argument("--out", default="docs/canonical-vehicle.md")
    schema_docs.set_defaults(func=cmd_schema_docs)
    register_plugin_commands(commands)
    return parser


def register_plugin_commands(commands) -> None:
    """The subcommands of installed packages (the dev tools' demo, generate, bench), found through the entry-point group.

    One entry point per name (the first distribution on sys.path wins, as importlib.metadata orders them); one that
    cannot be loaded is reported on stderr and skipped, so that the operator's own commands always work.
    """
    seen = set()
    for entry_point in entry_points(group=COMMANDS_GROUP):
        if entry_point.name in seen:
            continue
        seen.add(entry_point.name)
        try:
            register = entry_point.load()
            register(commands)
        except Exception as error:  # a broken plug-in must not take the operator's commands down with it
            print(f"dms-pipelines: the commands of {entry_point.value} are not available: {type(error).__name__}: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except ProfileError as error:
        print(f"profile error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
