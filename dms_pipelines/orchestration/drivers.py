"""The Dagster run drivers: the dealer_sync and group_sync jobs run on the persistent instance, outcomes and problems reported."""

import os
import shutil
import time
from pathlib import Path

import dagster as dg
from sqlalchemy import select

from dms_pipelines.config import load_settings, operations_db_url
from dms_pipelines.formats.profile import ProfileError, find_profile
from dms_pipelines.marketplaces.registry import specs_for
from dms_pipelines.operations.db import engine_for, sync_runs
from dms_pipelines.operations.manifest import change_seen_at, sync_run_figures
from dms_pipelines.operations.run_health import current_problems
from dms_pipelines.orchestration.assets import CHANGE_SEEN_TAG, TRIGGER_TAG
from dms_pipelines.orchestration.build import CODE_LOCATION, build_definitions
from dms_pipelines.paths import DataPaths, data_root
from dms_pipelines.pipeline.publish import account_run_covers, dealer_run_covers, freshness_hours

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DAGSTER_TEMPLATE = Path(__file__).resolve().parent / "dagster.yaml"  # the instance settings a new DAGSTER_HOME gets (package data)


def _ensure_dagster_home(paths: DataPaths) -> Path:
    """A persistent DAGSTER_HOME (data/dagster_home unless set), so `make dev` shows the runs made from the command line."""
    home = Path(os.environ.get("DAGSTER_HOME") or paths.root / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists():
        shutil.copyfile(DAGSTER_TEMPLATE, instance_yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_sync(dealer_ids: list[str] | None = None, release_held: bool = False, echo=print, trigger: str = "manual") -> dict[str, bool]:
    """Run the dealer_sync job for each dealer, then the account-wide feeds, through Dagster on the persistent instance.

    A dealer is ok only when its run succeeded and nothing is wrong for it afterwards (run_health.current_problems: a held
    export, a failed file, an undelivered feed, a change not acknowledged or refused, drift); each problem is printed.
    """
    paths = DataPaths(data_root())
    settings = load_settings()
    _ensure_dagster_home(paths)
    defs = build_definitions(settings, paths)
    specs = specs_for(settings, paths.root)
    dealer_covers, account_covers = dealer_run_covers(specs), account_run_covers(specs)
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("dealer_sync")
    outcomes = {}
    run_config = dict(QUIET_LOGS) | ({"ops": {"landed_exports": {"config": {"release_held": True}}}} if release_held else {})
    engine = engine_for(operations_db_url(settings, paths))
    seen = []
    chosen = dealer_ids or [d.id for d in settings.dealers]
    for dealer_id in chosen:
        broken = _profile_error(settings.dealer(dealer_id), paths)
        if broken:  # nothing can be landed or read without the profile: said plainly, not as a run's stack trace
            outcomes[dealer_id] = False
            echo(f"  {dealer_id:<12} FAILED: its mapping profile cannot be used (nothing was landed or read)")
            echo("      ! " + "\n        ".join(broken.splitlines()))
            continue
        started = time.monotonic()
        result = job.execute_in_process(instance=instance, partition_key=dealer_id, run_config=run_config, raise_on_error=False, tags={TRIGGER_TAG: trigger})
        problems = [p for p in current_problems(engine, dealer_id, freshness_hours(settings, dealer_id)) if dealer_covers(p.key)]
        outcomes[dealer_id] = result.success and not problems
        seen.append(change_seen_at(engine, result.run_id))
        state = "ok" if outcomes[dealer_id] else "FAILED" if not result.success else f"{len(problems)} PROBLEM(S)"
        echo(f"  {dealer_id:<12} {state} in {time.monotonic() - started:.1f}s  (run {result.run_id[:8]})")
        figures = sync_run_figures(engine, result.run_id, dealer_id)
        if figures is not None:
            echo(f"      {figures_line(figures)}")
        _echo_problems(echo, problems, None if result.success else _failure_of(result))
    tags = {TRIGGER_TAG: trigger}
    if any(seen):
        tags[CHANGE_SEEN_TAG] = min(s for s in seen if s).isoformat()
    feeds = defs.resolve_job_def("account_feeds").execute_in_process(instance=instance, raise_on_error=False, tags=tags, run_config=QUIET_LOGS)
    account = [p for d in [*chosen, "*"] for p in current_problems(engine, d) if d == "*" or account_covers(p.key)]
    outcomes["account_feeds"] = feeds.success and not account
    state = "ok" if outcomes["account_feeds"] else "FAILED" if not feeds.success else f"{len(account)} PROBLEM(S)"
    echo(f"  {'account feeds':<12} {state}  (run {feeds.run_id[:8]})")
    _echo_problems(echo, account, None if feeds.success else _failure_of(feeds))
    return outcomes


def _profile_error(dealer, paths: DataPaths) -> str | None:
    """Why the dealer's mapping profile cannot be used, or None when it loads."""
    try:
        find_profile(dealer.profile, paths.profile_dirs())
    except ProfileError as error:
        return str(error)
    return None


def figures_line(row) -> str:
    """A dealer run's counts as the operator reads them (a sync_runs row): files, vehicles, quarantine, skipped, held."""
    return (
        f"files landed {row.landed or 0}, failed {row.failed or 0}; vehicles in {row.records or 0}, accepted {row.accepted or 0}, "
        f"quarantined {row.quarantined or 0} ({row.quarantine_issues or 0} issues), skipped by profile {row.skipped or 0}; "
        f"exports held {row.held or 0}; in stock {row.vehicles or 0}"
    )


def _failure_of(result) -> str:
    """The first step failure's message of a failed in-process run, every line of it (a profile error lists each problem)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"):
                error = error.cause
            return "\n        ".join(line for line in error.message.strip().splitlines() if line.strip())
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
    paths = DataPaths(data_root())
    settings = load_settings()
    _ensure_dagster_home(paths)
    os.environ.setdefault("DMS_PIPELINES_DATA", str(paths.root))  # the executor's processes load the same configuration
    job = dg.build_reconstructable_job(CODE_LOCATION, "group_sync_job")  # the code location's job, rebuilt in each step's process
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(job, instance=instance, run_config=QUIET_LOGS, tags={"dms_pipelines/trigger": "nightly"})
        seconds = time.monotonic() - started
        steps = sorted({e.step_key for e in result.all_events if e.step_key and e.step_key.startswith("sync_dealers[")})
    engine = engine_for(operations_db_url(settings, paths))
    with engine.connect() as connection:
        recorded = {row.dealer_id: row for row in connection.execute(select(sync_runs).where(sync_runs.c.run_id == result.run_id))}
    outcomes = {}
    for dealer in settings.dealers:
        row = recorded.get(dealer.id)
        problems = current_problems(engine, dealer.id, freshness_hours(settings, dealer.id))
        outcomes[dealer.id] = row is not None and not problems
        state = "CRASHED" if row is None else row.outcome if not problems else f"{len(problems)} PROBLEM(S)"
        echo(f"  {dealer.id:<12} {state:<13} {row.vehicles if row is not None else 0:>6} vehicles")
        if row is not None:
            echo(f"      {figures_line(row)}")
        _echo_problems(echo, problems, None if row is not None else "its sync did not finish: see the run's log")
    account = current_problems(engine, "*")
    _echo_problems(echo, account, None)
    echo(f"  group_sync run {result.run_id[:8]}: {'ok' if result.success else 'FAILED'} in {seconds:.1f}s, {len(settings.dealers)} dealers in {len(steps)} step(s) on the multiprocess executor")
    outcomes["group_sync"] = result.success and not account
    return outcomes


def run_leads(dealer_ids: list[str] | None = None, echo=print, trigger: str = "manual") -> dict[str, bool]:
    """Run the lead_sync job for each dealer through Dagster on the persistent instance. A dealer is ok only when its run
    succeeded and none of its leads is left undelivered or unread (each problem printed)."""
    from dms_pipelines.orchestration.lead_assets import LEAD_JOB
    from dms_pipelines.pipeline.leads import lead_run_problems as lead_problems

    paths = DataPaths(data_root())
    settings = load_settings()
    _ensure_dagster_home(paths)
    job = build_definitions(settings, paths).resolve_job_def(LEAD_JOB)
    engine = engine_for(operations_db_url(settings, paths))
    instance = dg.DagsterInstance.get()
    outcomes = {}
    for dealer_id in dealer_ids or [d.id for d in settings.dealers]:
        started = time.monotonic()
        result = job.execute_in_process(instance=instance, partition_key=dealer_id, run_config=QUIET_LOGS, raise_on_error=False, tags={TRIGGER_TAG: trigger})
        problems = lead_problems(engine, dealer_id)
        outcomes[dealer_id] = result.success and not problems
        state = "ok" if outcomes[dealer_id] else "FAILED" if not result.success else f"{len(problems)} PROBLEM(S)"
        echo(f"  {dealer_id:<12} leads {state} in {time.monotonic() - started:.1f}s  (run {result.run_id[:8]})")
        echo(f"      {lead_figures_line(engine, result.run_id, dealer_id)}")
        _echo_problems(echo, problems, None if result.success else _failure_of(result))
    return outcomes


def lead_figures_line(engine, run_id: str, dealer_id: str) -> str:
    """A lead run's counts as the operator reads them: files, leads new/updated/repeated, quarantined, delivered."""
    from sqlalchemy import and_, func, select

    from dms_pipelines.operations.db import customer_files, lead_deliveries, lead_files, match_decisions

    with engine.connect() as connection:
        files = connection.execute(
            select(
                func.count(),
                func.coalesce(func.sum(lead_files.c.leads_new), 0),
                func.coalesce(func.sum(lead_files.c.leads_updated), 0),
                func.coalesce(func.sum(lead_files.c.leads_repeated), 0),
                func.coalesce(func.sum(lead_files.c.quarantined), 0),
                func.count().filter(lead_files.c.status == "failed"),
            ).where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.run_id == run_id))
        ).one()
        delivered = connection.execute(select(func.count()).where(and_(lead_deliveries.c.run_id == run_id, lead_deliveries.c.dealer_id == dealer_id, lead_deliveries.c.outcome == "ok"))).scalar()
        matched = dict(
            connection.execute(
                select(match_decisions.c.outcome, func.count()).where(and_(match_decisions.c.run_id == run_id, match_decisions.c.dealer_id == dealer_id)).group_by(match_decisions.c.outcome)
            ).all()
        )
        customers = connection.execute(
            select(func.count(), func.coalesce(func.sum(customer_files.c.accepted), 0), func.coalesce(func.sum(customer_files.c.quarantined), 0)).where(
                and_(customer_files.c.dealer_id == dealer_id, customer_files.c.run_id == run_id)
            )
        ).one()
    line = f"lead files {files[0]} (unreadable {files[5]}); leads new {files[1]}, updated {files[2]}, repeated {files[3]}, quarantined {files[4]}; CRM deliveries acknowledged {delivered}"
    if customers[0]:
        line += f"\n      DMS customer exports {customers[0]}: customers accepted {customers[1]}, quarantined {customers[2]}"
    if matched:
        line += "\n      identity: " + ", ".join(f"{outcome} {count}" for outcome, count in sorted(matched.items()))
    return line
