"""A dealer's sync as plain functions: the feed and warehouse stages the assets call, every stage in one call, and the account file."""

import csv
import itertools
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Callable, Iterable

import pandas as pd
from sqlalchemy.engine import Engine

from dms_pipelines import sync
from dms_pipelines.config import Dealer, Settings
from dms_pipelines.delivery.api_delivery import ApiDeliveryReport, reconcile
from dms_pipelines.delivery.api_delivery import deliver as deliver_api
from dms_pipelines.delivery.destinations import api_client_for, destination_for
from dms_pipelines.delivery import feed_cache, ledger
from dms_pipelines.delivery.drift import Drift, api_drift, file_drift
from dms_pipelines.delivery.snapshot import ACCOUNT, Destination, SnapshotOutcome, deliver_file, record_verified, verified
from dms_pipelines.delivery.staging import StagedFile, stage
from dms_pipelines.delivery.stock_api import ApiError
from dms_pipelines.marketplaces import carsnip, google, meta, website
from dms_pipelines.marketplaces.base import Rendered
from dms_pipelines.marketplaces.registry import SPECS, render_dealer
from dms_pipelines.operations.drift_state import record_drift
from dms_pipelines.marketplaces.row_files import Built, RowFile, merged, spliced, whole
from dms_pipelines.paths import DataPaths
from dms_pipelines.operations.run_health import Problem, current_problems, in_scope_of_account_run, in_scope_of_dealer_run, open_incidents, report_incidents
from dms_pipelines.sources.landing import LandingReport
from dms_pipelines.stock.changes import ChangeLog
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, empty_stock
from dms_pipelines.stock.history_changes import history_path, read_history_log
from dms_pipelines.stock.store import StockView, stock_path, stored
from dms_pipelines.warehouse.export import operational_rows, publish_appended
from dms_pipelines.warehouse.listings import ListingCounts, patch_listings, publish_listings, save_listings
from dms_pipelines.warehouse.tables import ensure_catalog, publish, publish_history, publish_stock

log = logging.getLogger(__name__)

SNAPSHOT_MARKETPLACES = ("website", "meta", "carsnip")
HEAL_ROUNDS = 1  # after a delivery that left drift, what differs is sent again this many times before the run reports it


PREVIEW_ROWS = 10


@dataclass
class FeedOutcome:
    """What one marketplace got from one dealer's run (counts and a few rows, not the whole feed), and its delivery.

    `published` is False when the dealer does not publish there.
    """

    marketplace: str
    published: bool
    listed: int = 0
    held_back: int = 0
    mean_completeness: float = 0.0
    preview: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: list[SnapshotOutcome] = field(default_factory=list)
    api: ApiDeliveryReport | None = None
    reconciled: int = 0
    errors: list[str] = field(default_factory=list)
    drift: Drift | None = None  # what the marketplace holds against what the stock renders, after the delivery (None: not checked here)

    rows_changed: int | None = None  # rebuilt from the last files: the vehicles rendered (None: the whole stock was)

    @classmethod
    def of_listings(cls, marketplace: str, counts: ListingCounts, rendered: Rendered, rows_changed: int) -> "FeedOutcome":
        """The outcome of a rebuild from the changed vehicles: the counts over every vehicle, the preview from the changed ones."""
        return cls(
            marketplace, published=True, listed=counts.listed, held_back=counts.held_back, mean_completeness=counts.mean_completeness,
            preview=rendered.items.head(PREVIEW_ROWS).copy(), rows_changed=rows_changed,
        )

    @classmethod
    def of(cls, marketplace: str, rendered: Rendered | None) -> "FeedOutcome":
        if rendered is None:
            return cls(marketplace, published=False)
        scores = rendered.completeness["completeness"]
        return cls(
            marketplace, published=True, listed=len(rendered.items), held_back=len(rendered.held),
            mean_completeness=float(scores.mean()) if len(scores) else 0.0, preview=rendered.items.head(PREVIEW_ROWS).copy(),
        )


@dataclass
class DealerRun:
    """Everything one dealer's sync did, stage by stage, as counts (the parsed and validated rows are not kept)."""

    dealer_id: str
    landing: LandingReport
    files_parsed: int
    unreadable: dict[str, str]  # file name -> why it could not be read
    records: int
    accepted: int
    validated: list[sync.ValidationSummary]
    stock: sync.StockUpdate
    feeds: dict[str, FeedOutcome]
    warehouse_rows: dict[str, int]
    problems: list[Problem] = field(default_factory=list)  # what is wrong for the dealer after the run (run_health)
    hours_since_last_export: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def google_rows(dealer: Dealer, stock: StockView | pd.DataFrame, settings: Settings, paths: DataPaths, logger=log) -> FeedOutcome:
    """The dealer's rows of the account-wide Google file, kept under state/feeds/google/<dealer>/ until the account file is
    assembled; rebuilt from the changed vehicles when only deltas changed the stock since they were built."""
    view = stock if isinstance(stock, StockView) else StockView(paths.state, dealer.id, stock)
    (paths.state / "feeds" / "google" / f"{dealer.id}.parquet").unlink(missing_ok=True)  # where rendered rows were kept before
    if not _publishes("google", dealer, settings, paths):
        return FeedOutcome.of("google", None)
    files, rendered, outcome = _feed_files("google", dealer, view, settings, paths, delivered=lambda name, digest: True)
    for name, pieces in files.items():
        if not isinstance(pieces, feed_cache.CachedFile):  # the kept rows are already these rows
            staged = stage(paths.state / "staging" / "google", name, pieces)
            feed_cache.keep(paths.state, "google", dealer.id, name, staged, pieces.index, view.generation, _feed_fingerprint("google", name, dealer, settings))
    for row in rendered.held.itertuples(index=False):
        logger.warning(f"google: {row.stock_id} held back: {row.reasons}")
    return outcome


def row_files(marketplace: str, dealer: Dealer, file_format: str | None) -> dict[str, RowFile | None]:
    """The files built per dealer for `marketplace`, by name, each with its row layout (None: built whole every time).
    Google's is the dealer's rows of the account file, without the header."""
    if marketplace == "google":
        fmt = file_format or "csv"
        return {f"rows.{fmt}": google.row_file(fmt, header=False)}
    if marketplace == "website":
        return {f"{dealer.id}.json": website.row_file(dealer)}
    if marketplace == "meta":
        fmt = file_format or "csv"
        return {f"{dealer.id}.{fmt}": meta.row_file(fmt)}
    if marketplace == "carsnip":
        return {f"{dealer.id}_dealer.csv": None, f"{dealer.id}_vehicles.csv": carsnip.VEHICLE_FILE}
    raise ValueError(f"{marketplace} is not a per-dealer snapshot marketplace")


def snapshot_files(marketplace: str, rendered: Rendered, dealer: Dealer, file_format: str | None) -> dict[str, Iterable]:
    """The files a per-dealer snapshot marketplace receives, by name, each as the pieces of its bytes in order
    (a row file's pieces, once taken, also tell where each row lies: see row_files.Built)."""
    files = {}
    for name, layout in row_files(marketplace, dealer, file_format).items():
        if layout is not None:
            files[name] = whole(layout, rendered.items)
        elif marketplace == "carsnip":
            files[name] = [carsnip.serialise_dealer(dealer, dealer.marketplaces["carsnip"])]
        else:
            files[name] = meta.serialise_parts(rendered.items, file_format or "csv")
    return files


def deliver_pieces(
    engine: Engine, destination: Destination, paths: DataPaths, marketplace: str, dealer_id: str, name: str, pieces: Iterable,
    keep_as: tuple[int, str] | None = None, **delivery,
) -> SnapshotOutcome:
    """Write the file to the staging folder as it is built, then deliver it if its bytes changed. The staged copy never outlives
    the call, unless `keep_as` (stock generation, fingerprint) asks to keep it: a row file as the base of the next rebuild, and
    any file as what the destination should hold, for the drift oracle."""
    staged = stage(paths.state / "staging" / marketplace, name, pieces)
    try:
        outcome = deliver_file(engine, destination, marketplace, dealer_id, name, staged, **delivery)
    finally:
        if keep_as is None:
            staged.discard()
        else:
            feed_cache.keep(paths.state, marketplace, dealer_id, name, staged, pieces.index if isinstance(pieces, Built) else None, *keep_as)
    if keep_as is not None:
        outcome.expected = feed_cache.kept_path(paths.state, marketplace, dealer_id, name)
    return outcome


def _feed_fingerprint(marketplace: str, name: str, dealer: Dealer, settings: Settings) -> str:
    return feed_cache.fingerprint(marketplace, name, settings.marketplaces[marketplace].file_format, dealer)


def _spliced_files(
    marketplace: str, dealer: Dealer, view: StockView, settings: Settings, paths: DataPaths, delivered: Callable[[str, str], bool],
) -> tuple[dict[str, Iterable | None], Rendered, set[str]] | None:
    """The dealer's files rebuilt from the last ones built, when every one is kept and only deltas changed the stock since
    (the kept file itself for one that did not change and is `delivered(name, sha256)` already)."""
    layouts = row_files(marketplace, dealer, settings.marketplaces[marketplace].file_format)
    kept = {name: feed_cache.load(paths.state, marketplace, dealer.id, name, _feed_fingerprint(marketplace, name, dealer, settings)) for name, layout in layouts.items() if layout}
    generations = {cached.generation for cached in kept.values() if cached is not None}
    if not kept or None in kept.values() or len(generations) != 1:
        return None
    changed = view.changed_since(generations.pop())
    if changed is None:
        return None
    rendered = render_dealer(dealer, changed, marketplace)
    changed_ids = set(changed["stock_id"].astype(str))
    files: dict[str, Iterable | None] = {}
    for name, layout in layouts.items():
        if layout is None:
            files[name] = [carsnip.serialise_dealer(dealer, dealer.marketplaces["carsnip"])]
            continue
        if not changed_ids and delivered(name, kept[name].sha256):
            files[name] = kept[name]  # nothing changed since it was built, and the marketplace has it: not even copied
            continue
        built = spliced(layout, kept[name].path, kept[name].index, changed_ids, rendered.items)
        if built is None:
            return None
        files[name] = built
    return files, rendered, changed_ids


def _publishes(marketplace: str, dealer: Dealer, settings: Settings, paths: DataPaths) -> bool:
    """Whether the dealer publishes to `marketplace`; when not, its listing rows and kept files go."""
    if marketplace in settings.marketplaces and marketplace in dealer.marketplaces:
        return True
    save_listings(paths, marketplace, dealer.id, None)
    feed_cache.forget(paths.state, marketplace, dealer.id)
    return False


def _feed_files(
    marketplace: str, dealer: Dealer, view: StockView, settings: Settings, paths: DataPaths, delivered: Callable[[str, str], bool],
) -> tuple[dict[str, Iterable | None], Rendered, "FeedOutcome"]:
    """The dealer's files for `marketplace`, rebuilt from the changed vehicles when it can be, else from the whole stock;
    the listing rows saved for the warehouse."""
    spliced_files = _spliced_files(marketplace, dealer, view, settings, paths, delivered)
    if spliced_files is not None:
        files, rendered, changed_ids = spliced_files
        counts = patch_listings(paths, marketplace, dealer.id, rendered, changed_ids)
        return files, rendered, FeedOutcome.of_listings(marketplace, counts, rendered, rows_changed=len(changed_ids))
    rendered = render_dealer(dealer, view.whole(), marketplace)
    save_listings(paths, marketplace, dealer.id, rendered)
    return snapshot_files(marketplace, rendered, dealer, settings.marketplaces[marketplace].file_format), rendered, FeedOutcome.of(marketplace, rendered)


def snapshot_feed(
    marketplace: str, dealer: Dealer, stock: StockView | pd.DataFrame, settings: Settings, paths: DataPaths, engine: Engine,
    run_id: str | None, trigger: str, change_seen_at: datetime | None = None, logger=log,
) -> FeedOutcome:
    """Build the dealer's feed file(s) for `marketplace` and deliver each one whose bytes changed.

    When only deltas changed the stock since the files were last built, only the changed vehicles are rendered and the files
    are rebuilt from the last ones' bytes (the same bytes a whole build gives); otherwise the whole stock is rendered.
    """
    view = stock if isinstance(stock, StockView) else StockView(paths.state, dealer.id, stock)
    if not _publishes(marketplace, dealer, settings, paths):
        return FeedOutcome.of(marketplace, None)
    market = settings.marketplaces[marketplace]
    destination = destination_for(market, paths)
    files, rendered, outcome = _feed_files(
        marketplace, dealer, view, settings, paths, lambda name, digest: verified(engine, destination, marketplace, dealer.id, name, digest),
    )
    for name, pieces in files.items():
        if isinstance(pieces, feed_cache.CachedFile):
            outcome.files.append(SnapshotOutcome(destination.describe(name), sent=False, sha256=pieces.sha256, expected=pieces.path, name=name))
            continue
        keep_as = (view.generation, _feed_fingerprint(marketplace, name, dealer, settings))
        outcome.files.append(deliver_pieces(
            engine, destination, paths, marketplace, dealer.id, name, pieces, keep_as, run_id=run_id, trigger=trigger, change_seen_at=change_seen_at,
        ))
    outcome.drift = snapshot_drift(
        marketplace, dealer, view, destination, outcome.files, engine, outcome.listed, run_id=run_id, trigger=trigger, change_seen_at=change_seen_at,
    )
    outcome.errors += [f"{marketplace} file for {dealer.id} not delivered: {f.error}" for f in outcome.files if f.error]
    for error in outcome.errors:
        logger.error(error)
    if not outcome.drift.clean:
        logger.error(f"drift after delivery: {outcome.drift.describe()}")
    for row in rendered.held.itertuples(index=False):
        logger.warning(f"{marketplace}: {row.stock_id} held back: {row.reasons}")
    return outcome


def snapshot_drift(
    marketplace: str, dealer: Dealer, view: StockView, destination: Destination, files: list[SnapshotOutcome], engine: Engine, vehicles: int,
    heal_rounds: int = HEAL_ROUNDS, **delivery,
) -> Drift:
    """The dealer's files at their destination against the files built from its stock; a file that differs is sent again
    (up to `heal_rounds` times) before the drift is recorded and returned."""
    spec = SPECS[marketplace]
    for round_number in range(heal_rounds + 1):
        drift = Drift(dealer.id, marketplace, checked=vehicles)
        differing = []
        for file in files:
            if file.sha256 is None or verified(engine, destination, marketplace, dealer.id, file.name, file.sha256):
                continue
            expected = file.expected.read_bytes()
            actual = _read_back(destination, file.name)
            if isinstance(actual, str):
                drift.add(Drift(dealer.id, marketplace, error=f"{file.name}: {actual}"))
                differing.append(file)
                continue
            found = file_drift(dealer.id, marketplace, file.name, expected, actual, spec.read_back, lambda ids: _statuses(view, ids))
            if found.clean:
                record_verified(engine, destination, marketplace, dealer.id, file.name, file.sha256)
            else:
                differing.append(file)
            drift.add(found)
        if drift.clean or round_number == heal_rounds:
            break
        for file in differing:  # sent again from the copy kept of what it should hold
            staged = StagedFile(file.expected, file.sha256, file.expected.stat().st_size)
            resent = deliver_file(engine, destination, marketplace, dealer.id, file.name, staged, **delivery)
            file.error, file.sent = resent.error, file.sent or resent.sent
    record_drift(engine, dealer.id, marketplace, delivery.get("run_id"), drift.checked, drift.items(), drift.error)
    return drift


def _read_back(destination: Destination, name: str) -> bytes | None | str:
    """The file's bytes at the destination (None when absent), or why it could not be read."""
    try:
        return destination.read(name)
    except Exception as error:  # an unreachable destination: its state is unknown, which the oracle reports
        return f"cannot read it back: {type(error).__name__}: {error}"


def _statuses(view: StockView, stock_ids: list[str]) -> dict[str, str]:
    """The stock's status of each stock id (those it does not hold are absent)."""
    stock = view.whole()
    found = stock.loc[stock["stock_id"].isin(stock_ids), ["stock_id", "status"]]
    return dict(zip(found["stock_id"].astype(str), found["status"].astype(str)))


def autotrader_feed(
    dealer: Dealer, stock: StockView | pd.DataFrame, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, trigger: str,
    reconcile_first: bool, change_seen_at: datetime | None = None, logger=log,
) -> FeedOutcome:
    """Send the dealer's changed vehicles to the Auto Trader-style API; reconcile with the marketplace's own listing first when asked.

    When only deltas changed the stock since the last delivery and nothing sent is still unacknowledged, only the changed
    vehicles are rendered, hashed and compared with their own ledger rows; otherwise every vehicle is.
    """
    view = stock if isinstance(stock, StockView) else StockView(paths.state, dealer.id, stock)
    if not _publishes("autotrader", dealer, settings, paths):
        return FeedOutcome.of("autotrader", None)
    fingerprint = feed_cache.fingerprint("autotrader", dealer, settings.marketplaces["autotrader"])
    changed = None
    if not reconcile_first and not ledger.unsettled(engine, "autotrader", dealer.id):
        generation = feed_cache.delivered_generation(paths.state, "autotrader", dealer.id, fingerprint)
        changed = view.changed_since(generation) if generation is not None else None
    if changed is not None:
        rendered = render_dealer(dealer, changed, "autotrader")
        scope = set(changed["stock_id"].astype(str))
        outcome = FeedOutcome.of_listings("autotrader", patch_listings(paths, "autotrader", dealer.id, rendered, scope), rendered, rows_changed=len(scope))
    else:
        rendered, scope = render_dealer(dealer, view.whole(), "autotrader"), None
        save_listings(paths, "autotrader", dealer.id, rendered)
        outcome = FeedOutcome.of("autotrader", rendered)
    client = api_client_for(settings.marketplaces["autotrader"])
    advertiser = dealer.marketplaces["autotrader"].setting("advertiser_id") or dealer.id
    if reconcile_first:
        try:
            outcome.reconciled = reconcile(engine, client, dealer.id, advertiser, rendered.items)
        except ApiError as error:
            logger.error(f"autotrader reconciliation for {dealer.id} failed: {error}; delivering from the ledger alone")
    delivery = dict(run_id=run_id, trigger=trigger, change_seen_at=change_seen_at)
    outcome.api = deliver_api(engine, client, dealer.id, advertiser, rendered.items, scope=scope, **delivery)
    feed_cache.record_delivered(paths.state, "autotrader", dealer.id, view.generation, fingerprint)  # what failed stays unsettled in the ledger
    whole_items = rendered.items if scope is None else render_dealer(dealer, view.whole(), "autotrader").items
    outcome.drift = api_feed_drift(dealer, view, client, advertiser, whole_items, engine, outcome.api, **delivery)
    outcome.errors = [f"autotrader: {error}" for error in outcome.api.errors]
    for error in outcome.errors:
        logger.error(error)
    if not outcome.drift.clean:
        logger.error(f"drift after delivery: {outcome.drift.describe()}")
    return outcome


def api_feed_drift(
    dealer: Dealer, view: StockView, client, advertiser: str, items: pd.DataFrame, engine: Engine, report: ApiDeliveryReport,
    heal_rounds: int = HEAL_ROUNDS, **delivery,
) -> Drift:
    """The marketplace's own stock search against every vehicle the stock renders for it. What differs is healed (the ledger
    repaired from the search, the drifting vehicles sent again in full) up to `heal_rounds` times; the rest is recorded."""
    marketplace = "autotrader"
    for round_number in range(heal_rounds + 1):
        try:
            drift = api_drift(dealer.id, marketplace, items, client.search(advertiser), lambda ids: _statuses(view, ids))
        except ApiError as error:
            drift = Drift(dealer.id, marketplace, checked=len(items), error=f"the stock search failed: {error}")
            break
        if drift.clean or round_number == heal_rounds:
            break
        try:
            reconcile(engine, client, dealer.id, advertiser, items)
        except ApiError as error:
            drift.error = f"reconciliation failed: {error}"
            break
        ledger.mark_unsettled(engine, marketplace, dealer.id, set(drift.stale) | set(drift.sold_live) | set(drift.missing))
        healed = deliver_api(engine, client, dealer.id, advertiser, items, **delivery)
        for name in ("created", "updated", "deleted", "failed", "dead_lettered", "calls", "repaired"):
            setattr(report, name, getattr(report, name) + getattr(healed, name))
        report.errors += healed.errors
    record_drift(engine, dealer.id, marketplace, delivery.get("run_id"), drift.checked, drift.items(), drift.error)
    return drift


def publish_dealer_warehouse(dealer_id: str, paths: DataPaths, engine: Engine, run_id: str, trigger: str, problems: int = 0) -> dict[str, int]:
    """The dealer's rows of every analysts' table (stock, history, quarantine, files, listings, deliveries, drift, runs);
    `problems`: how many finish_dealer_run found, for sync_runs.

    The stock and the history go as they are kept (a base copied only after a full export, and what deltas changed since),
    the listing rows are linked from where the feeds keep them, so a delta's publish costs what its changes cost.
    """
    base_generation, log = stored(paths.state, dealer_id)
    changes = ChangeLog.latest(log.rows) if log is not None and len(log.rows) else empty_stock()
    vehicles = publish_stock(paths, dealer_id, stock_path(paths.state, dealer_id), base_generation, changes.drop(columns=PRIVATE_COLUMNS))
    sync.record_sync_run(engine, run_id, dealer_id, trigger, vehicles, problems)
    counts = publish(paths, dealer_id, operational_rows(engine, dealer_id))
    counts["deliveries"] = publish_appended(paths, engine, "deliveries", dealer_id)
    counts["marketplace_drift"] = publish_appended(paths, engine, "marketplace_drift", dealer_id)
    counts["stock_history"] = publish_history(paths, dealer_id, history_path(paths.state, dealer_id), read_history_log(paths.state, dealer_id))
    counts["stock_current"] = vehicles
    counts["marketplace_listings"] = publish_listings(paths, dealer_id)
    ensure_catalog(paths)
    return counts


def sync_dealer(
    dealer_id: str, settings: Settings, paths: DataPaths, engine: Engine, run_id: str, trigger: str, release_held: bool = False, logger=log,
    price_reference: pd.DataFrame | None = None,
) -> DealerRun:
    """Every stage for one dealer, in the order the per-dealer assets run them: land, parse, validate, stock, feeds, warehouse.

    `price_reference`: the group's stock for the price-outlier warning, when the caller already read it (see sync.validate_parsed).
    """
    dealer = settings.dealer(dealer_id)
    if release_held:
        sync.release_held_files(engine, dealer.id, released_by=f"run {run_id}")
    landing = sync.land(dealer, paths, engine, run_id=run_id)
    for failure in landing.failed:
        logger.error(failure)
    parsed = sync.parse_pending(dealer, paths, engine, settings.validation.max_uncompressed_mb)
    files_parsed, unreadable = len(parsed), {p.file_name: p.error for p in parsed if p.error}
    validated = sync.validate_parsed(parsed, settings, paths, engine, price_reference=price_reference)
    del parsed  # the rows live on in `validated`; holding both would double the peak for a big export
    records, accepted = sum(v.records_total for v in validated), sum(len(v.accepted) for v in validated)
    summaries = [sync.ValidationSummary.of(v) for v in validated]
    update = sync.update_stock(dealer, validated, settings, paths, engine, run_id=run_id)
    del validated
    for name, reason in update.held.items():
        logger.error(f"{name} held: {reason}")
    seen = sync.change_seen_at(engine, run_id)
    stock = StockView(paths.state, dealer.id, update.whole)  # after deltas alone the whole stock is read only if a feed needs it
    feeds = {"google": google_rows(dealer, stock, settings, paths, logger)}
    for marketplace in SNAPSHOT_MARKETPLACES:
        feeds[marketplace] = snapshot_feed(marketplace, dealer, stock, settings, paths, engine, run_id, trigger, seen, logger)
    feeds["autotrader"] = autotrader_feed(dealer, stock, settings, paths, engine, run_id, trigger, trigger == "nightly", seen, logger)
    problems = finish_dealer_run(settings, engine, dealer.id, run_id, logger)
    rows = publish_dealer_warehouse(dealer.id, paths, engine, run_id, trigger, len(problems))
    return DealerRun(
        dealer.id, landing, files_parsed, unreadable, records, accepted, summaries, update, feeds, rows, problems, sync.hours_since_last_export(engine, dealer.id),
    )


def finish_dealer_run(settings: Settings, engine: Engine, dealer_id: str, run_id: str | None, logger=log, crashed: str | None = None) -> list[Problem]:
    """The dealer's problems after its run (all but the account-wide Google file's), each logged as an error, and its
    incidents opened and resolved with one alert each. `crashed`: why the run's own code failed, a problem too."""
    problems = [p for p in current_problems(engine, dealer_id) if in_scope_of_dealer_run(p.key)]
    if crashed:
        problems.append(Problem(dealer_id, "sync_failed", "", f"the sync failed: {crashed}"))
    for problem in problems:
        logger.error(f"{dealer_id}: {problem.message}")
    report_incidents(settings, engine, dealer_id, problems, in_scope_of_dealer_run, run_id, logger)
    return problems


def finish_account_run(settings: Settings, engine: Engine, run_id: str | None, logger=log, drift: dict[str, Drift] | None = None) -> dict[str, list[Problem]]:
    """After the account-wide files: per dealer its Google problems, and the account's own ("*": the file not delivered),
    logged and reported as incidents. With this run's `drift`, a dealer in sync with no Google incident open is skipped
    (nothing to open, nothing to resolve), so a good night costs no query per dealer."""
    found = {}
    dealers = [d.id for d in settings.dealers if "google" in d.marketplaces]
    if drift is not None:
        troubled = {row["dealer_id"] for row in open_incidents(engine) if in_scope_of_account_run(row["key"])}
        dealers = [d for d in dealers if d in troubled or d not in drift or not drift[d].clean]
    for dealer_id in dealers + [ACCOUNT]:
        problems = [p for p in current_problems(engine, dealer_id) if dealer_id == ACCOUNT or in_scope_of_account_run(p.key)]
        for problem in problems:
            logger.error(f"{dealer_id}: {problem.message}")
        report_incidents(settings, engine, dealer_id, problems, (lambda key: True) if dealer_id == ACCOUNT else in_scope_of_account_run, run_id, logger)
        found[dealer_id] = problems
    return found


@dataclass
class AccountFile:
    """The account-wide Google file as assembled: how many rows, from how many dealers, a few of its rows, its delivery and drift."""

    listed: int
    dealers: int
    preview: pd.DataFrame
    outcome: SnapshotOutcome
    drift: dict[str, Drift] = field(default_factory=dict)  # per dealer, its rows in the file at the destination against its rows as built


def google_account_file(settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, trigger: str, change_seen_at: datetime | None = None) -> AccountFile:
    """Assemble every dealer's last good Google rows into the one account file (their bytes, copied), deliver it if its
    bytes changed, then check the file at its destination against each dealer's rows (the drift oracle)."""
    marketplace = settings.marketplaces["google"]
    file_format = marketplace.file_format or "csv"
    name, account_name = f"rows.{file_format}", f"vehicle_listings.{file_format}"
    destination = destination_for(marketplace, paths)
    delivery = dict(run_id=run_id, trigger=trigger, change_seen_at=change_seen_at)
    with ExitStack() as opened:
        parts = {}  # each part opened with its index read for that very file: a dealer's run may replace it meanwhile
        for dealer in settings.dealers:
            part = feed_cache.open_kept(paths.state, "google", dealer.id, name) if "google" in dealer.marketplaces else None
            if part is not None:
                parts[dealer.id] = (opened.enter_context(part[0]), part[1])
        staged = stage(paths.state / "staging" / "google", account_name, merged(google.header(file_format), list(parts.values())))
        try:
            outcome = deliver_file(engine, destination, "google", ACCOUNT, account_name, staged, **delivery)
            drift = account_drift(settings, paths, engine, destination, account_name, staged, parts, **delivery)
        finally:
            staged.discard()
        listed = sum(len(index) if index is not None else _rows_in(handle, file_format) for handle, index in parts.values())
        preview = _first_rows(list(parts.values()), file_format)
    publish(paths, "account", operational_rows(engine, ACCOUNT, ("dead_letters",)))
    publish_appended(paths, engine, "deliveries", ACCOUNT, file_key="account")
    publish(paths, "account_drift", operational_rows(engine, None, ("drift_items",)))  # every dealer's Google drift, at once
    publish_appended(paths, engine, "marketplace_drift", None, file_key="account_drift")
    ensure_catalog(paths)
    return AccountFile(listed, len(parts), preview, outcome, drift)


def account_drift(
    settings: Settings, paths: DataPaths, engine: Engine, destination: Destination, name: str, staged: StagedFile, parts: dict,
    heal_rounds: int = HEAL_ROUNDS, **delivery,
) -> dict[str, Drift]:
    """Per dealer, its rows in the account file at the destination against its rows as built; a file that differs is sent
    again (up to `heal_rounds` times) before each dealer's drift is recorded."""
    file_format = settings.marketplaces["google"].file_format or "csv"
    header = google.header(file_format)
    read_back = SPECS["google"].read_back
    for round_number in range(heal_rounds + 1):
        drifts = {dealer_id: Drift(dealer_id, "google", checked=_part_rows(part, file_format)) for dealer_id, part in parts.items()}
        if verified(engine, destination, "google", ACCOUNT, name, staged.sha256):
            break
        actual = _read_back(destination, name)
        if actual == staged.path.read_bytes():
            record_verified(engine, destination, "google", ACCOUNT, name, staged.sha256)
            break
        for dealer_id, (handle, _) in parts.items():
            if isinstance(actual, str):
                drifts[dealer_id].error = f"{name}: {actual}"
                continue
            store = settings.dealer(dealer_id).marketplaces["google"].setting("store_code") or dealer_id
            view = StockView(paths.state, dealer_id)

            def mine(rows: dict[str, str], prefix: str = f"{store}|") -> dict[str, str]:
                return {key[len(prefix):]: row for key, row in rows.items() if key.startswith(prefix)}

            drifts[dealer_id] = file_drift(dealer_id, "google", name, header + _part_bytes(handle), actual, read_back, lambda ids, v=view: _statuses(v, ids), select=mine)
            if drifts[dealer_id].stale == [f"(file) {name}"]:  # this dealer's rows are right; what differs is another's or the header
                drifts[dealer_id].stale = []
        if round_number == heal_rounds or all(d.clean for d in drifts.values()):
            break
        deliver_file(engine, destination, "google", ACCOUNT, name, staged, **delivery)
    for dealer_id, drift in drifts.items():
        record_drift(engine, dealer_id, "google", delivery.get("run_id"), drift.checked, drift.items(), drift.error)
    return drifts


def _part_bytes(handle: BinaryIO) -> bytes:
    """The whole part, read through a second descriptor so `handle` stays where it is."""
    with open(os.dup(handle.fileno()), "rb") as part:
        part.seek(0)
        return part.read()


def _part_rows(part: tuple, file_format: str) -> int:
    handle, index = part
    return len(index) if index is not None else _rows_in(handle, file_format)


def _csv_rows(handle: BinaryIO, file_format: str, rows: int | None = None) -> list[list[str]]:
    """The part's first `rows` rows (all by default), read through a second descriptor so `handle` stays open."""
    with open(os.dup(handle.fileno()), encoding="utf-8", newline="") as text:
        text.seek(0)
        return list(itertools.islice(csv.reader(text, delimiter="\t" if file_format == "tsv" else ","), rows))


def _rows_in(handle: BinaryIO, file_format: str) -> int:
    return len(_csv_rows(handle, file_format))


def _first_rows(parts: list, file_format: str, rows: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first rows of the first dealer's part, as the account file shows them (for the materialisation's preview)."""
    for handle, _ in parts:
        if first := _csv_rows(handle, file_format, rows):
            return pd.DataFrame(first, columns=google.COLUMNS)
    return pd.DataFrame(columns=google.COLUMNS)
