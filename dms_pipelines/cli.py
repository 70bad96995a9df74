"""The `dms-pipelines` command: run, report and the operator's tools; other packages add theirs through entry points."""

import argparse
import sys
from importlib.metadata import entry_points
from pathlib import Path

from dms_pipelines.config import ConfigError, load_settings, operations_db_url
from dms_pipelines.orchestration.drivers import run_sync
from dms_pipelines.paths import DataPaths, data_root

COMMANDS_GROUP = "dms_pipelines.commands"  # each entry point: register(subparsers), adding subcommands with set_defaults(func=...)


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


def cmd_replay(args) -> int:
    from dms_pipelines.delivery.ledger import replay_dead_letters
    from dms_pipelines.operations.db import engine_for

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

    run = commands.add_parser("run", help="run the sync through Dagster for some or all dealers")
    run.add_argument("--dealer", action="append", help="a dealer id (repeatable); default every dealer")
    run.add_argument("--release-held", action="store_true", help="apply held full exports despite the guards (delisting, distribution)")
    run.set_defaults(func=cmd_run)

    replay = commands.add_parser("replay-dead-letters", help="queue dead-lettered deliveries again (after fixing the cause)")
    replay.add_argument("--marketplace", default=None)
    replay.set_defaults(func=cmd_replay)

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
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
