"""Publish, the last stage: what is wrong after a run (problems, incidents, alerts) and the dealer's rows of the analysts' tables."""

import logging
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.engine import Engine

from dms_pipelines.config import Settings
from dms_pipelines.delivery.drift import Drift
from dms_pipelines.delivery.snapshot import ACCOUNT
from dms_pipelines.marketplaces.base import MarketplaceSpec
from dms_pipelines.operations.lead_store import LEAD_PROBLEM_PREFIX
from dms_pipelines.operations.manifest import record_sync_run
from dms_pipelines.operations.run_health import Problem, current_problems, open_incidents, report_incidents
from dms_pipelines.paths import DataPaths
from dms_pipelines.stock.changes import ChangeLog
from dms_pipelines.stock.history_changes import history_path, read_history_log
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, empty_stock
from dms_pipelines.stock.store import stock_path, stored
from dms_pipelines.warehouse.export import operational_rows, publish_appended
from dms_pipelines.warehouse.listings import publish_listings
from dms_pipelines.warehouse.tables import ensure_catalog, publish, publish_history, publish_stock

log = logging.getLogger(__name__)


def account_wide(specs: list[MarketplaceSpec]) -> frozenset[str]:
    """The marketplaces whose file is the whole account's: their problems are the account run's to evaluate."""
    return frozenset(spec.name for spec in specs if spec.account_file is not None)


def dealer_run_covers(specs: list[MarketplaceSpec]) -> Callable[[str], bool]:
    """Which problem keys a dealer's run evaluates: everything but the account-wide files' (the account run evaluates those)."""
    accounts = account_wide(specs)
    return lambda key: key.rpartition(":")[2] not in accounts and not key.startswith(LEAD_PROBLEM_PREFIX)


def account_run_covers(specs: list[MarketplaceSpec]) -> Callable[[str], bool]:
    accounts = account_wide(specs)
    return lambda key: key.rpartition(":")[2] in accounts


def freshness_hours(settings: Settings, dealer_id: str) -> float:
    """The dealer's freshness window: no export received for longer is a problem."""
    return settings.rules_for(dealer_id).freshness_hours


@dataclass
class Published:
    """The warehouse stage of a dealer's run: rows per analysts' table, and what is wrong for the dealer after the run."""

    rows: dict[str, int]
    problems: list[Problem] = field(default_factory=list)


def finish_dealer_run(
    settings: Settings,
    specs: list[MarketplaceSpec],
    engine: Engine,
    dealer_id: str,
    run_id: str | None,
    logger=log,
    crashed: str | None = None,
) -> list[Problem]:
    """The dealer's problems after its run (all but the account-wide files'), each logged as an error, and its incidents
    opened and resolved with one alert each. `crashed`: why the run's own code failed, a problem too."""
    covers = dealer_run_covers(specs)
    problems = [p for p in current_problems(engine, dealer_id, freshness_hours(settings, dealer_id)) if covers(p.key)]
    if crashed:
        problems.append(Problem(dealer_id, "sync_failed", "", f"the sync failed: {crashed}"))
    for problem in problems:
        logger.error(f"{dealer_id}: {problem.message}")
    report_incidents(settings, engine, dealer_id, problems, covers, run_id, logger)
    return problems


def finish_account_run(
    settings: Settings,
    spec: MarketplaceSpec,
    engine: Engine,
    run_id: str | None,
    logger=log,
    drift: dict[str, Drift] | None = None,
) -> dict[str, list[Problem]]:
    """After an account-wide file: per dealer its problems with that marketplace, and the account's own ("*": a file not
    delivered), logged and reported as incidents. With this run's `drift`, a dealer in sync with no such incident open is
    skipped (nothing to open, nothing to resolve), so a good night costs no query per dealer."""
    covers = account_run_covers([spec])
    found = {}
    dealers = [d.id for d in settings.dealers if spec.name in d.marketplaces]
    if drift is not None:
        troubled = {row["dealer_id"] for row in open_incidents(engine) if covers(row["key"])}
        dealers = [d for d in dealers if d in troubled or d not in drift or not drift[d].clean]
    for dealer_id in dealers + [ACCOUNT]:
        problems = [p for p in current_problems(engine, dealer_id) if dealer_id == ACCOUNT or covers(p.key)]
        for problem in problems:
            logger.error(f"{dealer_id}: {problem.message}")
        report_incidents(settings, engine, dealer_id, problems, (lambda key: True) if dealer_id == ACCOUNT else covers, run_id, logger)
        found[dealer_id] = problems
    return found


def publish_dealer_warehouse(
    dealer_id: str,
    paths: DataPaths,
    engine: Engine,
    run_id: str,
    trigger: str,
    problems: int = 0,
    account_wide: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """The dealer's rows of every analysts' table (stock, history, quarantine, files, listings, deliveries, drift, runs);
    `problems`: how many finish_dealer_run found, for sync_runs; `account_wide`: the marketplaces whose drift the account
    run publishes.

    The stock and the history go as they are kept (a base copied only after a full export, and what deltas changed since),
    the listing rows are linked from where the feeds keep them, so a delta's publish costs what its changes cost.
    """
    base_generation, log_rows = stored(paths.state, dealer_id)
    changes = ChangeLog.latest(log_rows.rows) if log_rows is not None and len(log_rows.rows) else empty_stock()
    vehicles = publish_stock(paths, dealer_id, stock_path(paths.state, dealer_id), base_generation, changes.drop(columns=PRIVATE_COLUMNS))
    record_sync_run(engine, run_id, dealer_id, trigger, vehicles, problems)
    counts = publish(paths, dealer_id, operational_rows(engine, dealer_id, account_wide=account_wide))
    counts["deliveries"] = publish_appended(paths, engine, "deliveries", dealer_id)
    counts["marketplace_drift"] = publish_appended(paths, engine, "marketplace_drift", dealer_id, account_wide=account_wide)
    counts["stock_history"] = publish_history(paths, dealer_id, history_path(paths.state, dealer_id), read_history_log(paths.state, dealer_id))
    counts["stock_current"] = vehicles
    counts["marketplace_listings"] = publish_listings(paths, dealer_id)
    ensure_catalog(paths)
    return counts


def publish_stage(
    settings: Settings,
    specs: list[MarketplaceSpec],
    paths: DataPaths,
    engine: Engine,
    dealer_id: str,
    run_id: str,
    trigger: str,
    logger=log,
) -> Published:
    """What is wrong for the dealer after its run (each an incident, alerted once), then its warehouse rows."""
    problems = finish_dealer_run(settings, specs, engine, dealer_id, run_id, logger)
    return Published(publish_dealer_warehouse(dealer_id, paths, engine, run_id, trigger, len(problems), account_wide(specs)), problems)
