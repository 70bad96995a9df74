"""Feeds, the stage after stock: render a dealer's stock for each marketplace it publishes to, deliver what changed, read it back."""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

import pandas as pd
from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer, Settings
from dms_pipelines.delivery import feed_cache, ledger
from dms_pipelines.delivery.api_delivery import ApiDeliveryReport, reconcile
from dms_pipelines.delivery.api_delivery import deliver as deliver_api
from dms_pipelines.delivery.destinations import api_client_for, destination_for
from dms_pipelines.delivery.drift import Drift, api_drift, file_drift
from dms_pipelines.delivery.snapshot import Destination, SnapshotOutcome, deliver_file, record_verified, verified
from dms_pipelines.delivery.staging import StagedFile, stage
from dms_pipelines.delivery.stock_api import ApiError
from dms_pipelines.marketplaces.base import FeedFile, MarketplaceSpec, Rendered, render_for
from dms_pipelines.marketplaces.row_files import Built, spliced, whole
from dms_pipelines.operations.drift_state import record_drift
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline.images import judged
from dms_pipelines.stock.store import StockView
from dms_pipelines.warehouse.listings import ListingCounts, patch_listings, save_listings

log = logging.getLogger(__name__)

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
            marketplace,
            published=True,
            listed=counts.listed,
            held_back=counts.held_back,
            mean_completeness=counts.mean_completeness,
            preview=rendered.items.head(PREVIEW_ROWS).copy(),
            rows_changed=rows_changed,
        )

    @classmethod
    def of(cls, marketplace: str, rendered: Rendered | None) -> "FeedOutcome":
        if rendered is None:
            return cls(marketplace, published=False)
        scores = rendered.completeness["completeness"]
        return cls(
            marketplace,
            published=True,
            listed=len(rendered.items),
            held_back=len(rendered.held),
            mean_completeness=float(scores.mean()) if len(scores) else 0.0,
            preview=rendered.items.head(PREVIEW_ROWS).copy(),
        )


HELD_NAMED = 5  # vehicles held back named in the log, per reason; the rest counted (all are in the warehouse's marketplace_listings)


def log_held(spec: MarketplaceSpec, rendered: Rendered, logger) -> None:
    """One warning per reason a vehicle is held back, naming a few of them and counting the rest."""
    if rendered.held.empty:
        return
    for reasons, ids in rendered.held.groupby("reasons", sort=True)["stock_id"]:
        named = ", ".join(map(str, ids.iloc[:HELD_NAMED]))
        more = f" and {len(ids) - HELD_NAMED} more" if len(ids) > HELD_NAMED else ""
        logger.warning(f"{spec.name}: {len(ids)} vehicle(s) held back ({named}{more}): {reasons}")


def render_dealer(spec: MarketplaceSpec, dealer: Dealer, stock: pd.DataFrame) -> Rendered:
    """The dealer's feed for the marketplace (the caller knows the dealer publishes there)."""
    return render_for(spec, stock, dealer, dealer.marketplaces[spec.name])


def feed_files(spec: MarketplaceSpec, dealer: Dealer, settings: Settings) -> list[FeedFile]:
    """The files the dealer's feed is for a snapshot marketplace (for an account-wide one: the dealer's part of it)."""
    return spec.files(dealer, dealer.marketplaces[spec.name], spec.file_format(settings.marketplaces[spec.name].file_format))


def file_pieces(spec: MarketplaceSpec, rendered: Rendered, dealer: Dealer, settings: Settings) -> dict[str, Iterable]:
    """The files a dealer's snapshot feed is, by name, each as the pieces of its bytes in order (a row file's pieces, once
    taken, also tell where each row lies: see row_files.Built)."""
    account = dealer.marketplaces[spec.name]
    return {file.name: whole(file.rows, rendered.items) if file.rows is not None else file.build(rendered.items, dealer, account) for file in feed_files(spec, dealer, settings)}


def deliver_pieces(
    engine: Engine,
    destination: Destination,
    paths: DataPaths,
    marketplace: str,
    dealer_id: str,
    name: str,
    pieces: Iterable,
    keep_as: tuple[int, str] | None = None,
    **delivery,
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


def file_fingerprint(spec: MarketplaceSpec, name: str, dealer: Dealer, settings: Settings) -> str:
    """What besides the stock decides the file's bytes (a kept file built under another is rebuilt whole)."""
    return feed_cache.fingerprint(spec.name, name, settings.marketplaces[spec.name].file_format, dealer, spec.fingerprint)


def publishes(spec: MarketplaceSpec, dealer: Dealer, settings: Settings, paths: DataPaths) -> bool:
    """Whether the dealer publishes to the marketplace; when not, its listing rows and kept files go."""
    if spec.name in settings.marketplaces and spec.name in dealer.marketplaces:
        return True
    save_listings(paths, spec.name, dealer.id, None)
    feed_cache.forget(paths.state, spec.name, dealer.id)
    return False


def _spliced_files(
    spec: MarketplaceSpec,
    dealer: Dealer,
    view: StockView,
    settings: Settings,
    paths: DataPaths,
    delivered: Callable[[str, str], bool],
) -> tuple[dict[str, Iterable | None], Rendered, set[str]] | None:
    """The dealer's files rebuilt from the last ones built, when every file built from the vehicles is a kept row file and
    only deltas changed the stock since (the kept file itself for one that did not change and is `delivered(name, sha256)`)."""
    files = feed_files(spec, dealer, settings)
    if any(file.rows is None and file.uses_items for file in files):
        return None
    kept = {file.name: feed_cache.load(paths.state, spec.name, dealer.id, file.name, file_fingerprint(spec, file.name, dealer, settings)) for file in files if file.rows}
    generations = {cached.generation for cached in kept.values() if cached is not None}
    if not kept or None in kept.values() or len(generations) != 1:
        return None
    changed = view.changed_since(generations.pop())
    if changed is None:
        return None
    rendered = render_dealer(spec, dealer, changed)
    changed_ids = set(changed["stock_id"].astype(str))
    built: dict[str, Iterable | None] = {}
    for file in files:
        if file.rows is None:
            built[file.name] = file.build(rendered.items, dealer, dealer.marketplaces[spec.name])
            continue
        cached = kept[file.name]
        if not changed_ids and delivered(file.name, cached.sha256):
            built[file.name] = cached  # nothing changed since it was built, and the marketplace has it: not even copied
            continue
        pieces = spliced(file.rows, cached.path, cached.index, changed_ids, rendered.items)
        if pieces is None:
            return None
        built[file.name] = pieces
    return built, rendered, changed_ids


def _files_and_listings(
    spec: MarketplaceSpec,
    dealer: Dealer,
    view: StockView,
    settings: Settings,
    paths: DataPaths,
    delivered: Callable[[str, str], bool],
) -> tuple[dict[str, Iterable | None], Rendered, FeedOutcome]:
    """The dealer's files for the marketplace, rebuilt from the changed vehicles when they can be, else from the whole
    stock; the listing rows saved for the warehouse."""
    spliced_files = _spliced_files(spec, dealer, view, settings, paths, delivered)
    if spliced_files is not None:
        files, rendered, changed_ids = spliced_files
        counts = patch_listings(paths, spec.name, dealer.id, rendered, changed_ids)
        return files, rendered, FeedOutcome.of_listings(spec.name, counts, rendered, rows_changed=len(changed_ids))
    rendered = render_dealer(spec, dealer, view.whole())
    save_listings(paths, spec.name, dealer.id, rendered)
    return file_pieces(spec, rendered, dealer, settings), rendered, FeedOutcome.of(spec.name, rendered)


def publish_feed(
    spec: MarketplaceSpec,
    dealer: Dealer,
    stock: StockView | pd.DataFrame,
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    run_id: str | None,
    trigger: str,
    change_seen_at: datetime | None = None,
    logger=log,
    reconcile_first: bool | None = None,
) -> FeedOutcome:
    """The dealer's feed for one marketplace, as its spec says it is delivered: its own files, its part of an account-wide
    file (delivered by the account's run), or API calls. `reconcile_first` (API): compare with the marketplace's own listing
    before delivering (default: on the nightly run). A dealer whose images are judged has each vehicle show only its good
    images, and a vehicle with too few held back (pipeline/images.py)."""
    spec = judged(spec, dealer, paths.state)
    if spec.mode == "api":
        reconcile_first = trigger == "nightly" if reconcile_first is None else reconcile_first
        return api_feed(spec, dealer, stock, settings, paths, engine, run_id, trigger, reconcile_first, change_seen_at, logger)
    if spec.account_file is not None:
        return account_part(spec, dealer, stock, settings, paths, logger)
    return snapshot_feed(spec, dealer, stock, settings, paths, engine, run_id, trigger, change_seen_at, logger)


def account_part(spec: MarketplaceSpec, dealer: Dealer, stock: StockView | pd.DataFrame, settings: Settings, paths: DataPaths, logger=log) -> FeedOutcome:
    """The dealer's rows of an account-wide file, kept under state/feeds/<marketplace>/<dealer>/ until the account's run
    assembles the file; rebuilt from the changed vehicles when only deltas changed the stock since they were built."""
    view = stock if isinstance(stock, StockView) else StockView(paths.state, dealer.id, stock)
    (paths.state / "feeds" / spec.name / f"{dealer.id}.parquet").unlink(missing_ok=True)  # where rendered rows were kept before
    if not publishes(spec, dealer, settings, paths):
        return FeedOutcome.of(spec.name, None)
    files, rendered, outcome = _files_and_listings(spec, dealer, view, settings, paths, delivered=lambda name, digest: True)
    for name, pieces in files.items():
        if not isinstance(pieces, feed_cache.CachedFile):  # the kept rows are already these rows
            staged = stage(paths.state / "staging" / spec.name, name, pieces)
            feed_cache.keep(paths.state, spec.name, dealer.id, name, staged, pieces.index, view.generation, file_fingerprint(spec, name, dealer, settings))
    log_held(spec, rendered, logger)
    return outcome


def snapshot_feed(
    spec: MarketplaceSpec,
    dealer: Dealer,
    stock: StockView | pd.DataFrame,
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    run_id: str | None,
    trigger: str,
    change_seen_at: datetime | None = None,
    logger=log,
) -> FeedOutcome:
    """Build the dealer's feed file(s) for the marketplace and deliver each one whose bytes changed, then read them back.

    When only deltas changed the stock since the files were last built, only the changed vehicles are rendered and the files
    are rebuilt from the last ones' bytes (the same bytes a whole build gives); otherwise the whole stock is rendered.
    """
    view = stock if isinstance(stock, StockView) else StockView(paths.state, dealer.id, stock)
    if not publishes(spec, dealer, settings, paths):
        return FeedOutcome.of(spec.name, None)
    destination = destination_for(settings.marketplaces[spec.name], paths)
    files, rendered, outcome = _files_and_listings(
        spec,
        dealer,
        view,
        settings,
        paths,
        lambda name, digest: verified(engine, destination, spec.name, dealer.id, name, digest),
    )
    for name, pieces in files.items():
        if isinstance(pieces, feed_cache.CachedFile):
            outcome.files.append(SnapshotOutcome(destination.describe(name), sent=False, sha256=pieces.sha256, expected=pieces.path, name=name))
            continue
        keep_as = (view.generation, file_fingerprint(spec, name, dealer, settings))
        outcome.files.append(
            deliver_pieces(
                engine,
                destination,
                paths,
                spec.name,
                dealer.id,
                name,
                pieces,
                keep_as,
                run_id=run_id,
                trigger=trigger,
                change_seen_at=change_seen_at,
            )
        )
    outcome.drift = snapshot_drift(
        spec,
        dealer,
        view,
        destination,
        outcome.files,
        engine,
        outcome.listed,
        run_id=run_id,
        trigger=trigger,
        change_seen_at=change_seen_at,
    )
    outcome.errors += [f"{spec.name} file for {dealer.id} not delivered: {f.error}" for f in outcome.files if f.error]
    for error in outcome.errors:
        logger.error(error)
    if not outcome.drift.clean:
        logger.error(f"drift after delivery: {outcome.drift.describe()}")
    log_held(spec, rendered, logger)
    return outcome


def snapshot_drift(
    spec: MarketplaceSpec,
    dealer: Dealer,
    view: StockView,
    destination: Destination,
    files: list[SnapshotOutcome],
    engine: Engine,
    vehicles: int,
    heal_rounds: int = HEAL_ROUNDS,
    **delivery,
) -> Drift:
    """The dealer's files at their destination against the files built from its stock; a file that differs is sent again
    (up to `heal_rounds` times) before the drift is recorded and returned."""
    marketplace = spec.name
    for round_number in range(heal_rounds + 1):
        drift = Drift(dealer.id, marketplace, checked=vehicles)
        differing = []
        for file in files:
            if file.sha256 is None or verified(engine, destination, marketplace, dealer.id, file.name, file.sha256):
                continue
            expected = file.expected.read_bytes()
            actual = read_back(destination, file.name)
            if isinstance(actual, str):
                drift.add(Drift(dealer.id, marketplace, error=f"{file.name}: {actual}"))
                differing.append(file)
                continue
            found = file_drift(dealer.id, marketplace, file.name, expected, actual, spec.read_back, lambda ids: statuses(view, ids))
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


def read_back(destination: Destination, name: str) -> bytes | None | str:
    """The file's bytes at the destination (None when absent), or why it could not be read."""
    try:
        return destination.read(name)
    except Exception as error:  # an unreachable destination: its state is unknown, which the oracle reports
        return f"cannot read it back: {type(error).__name__}: {error}"


def statuses(view: StockView, stock_ids: list[str]) -> dict[str, str]:
    """The stock's status of each stock id (those it does not hold are absent)."""
    stock = view.whole()
    found = stock.loc[stock["stock_id"].isin(stock_ids), ["stock_id", "status"]]
    return dict(zip(found["stock_id"].astype(str), found["status"].astype(str)))


def api_feed(
    spec: MarketplaceSpec,
    dealer: Dealer,
    stock: StockView | pd.DataFrame,
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    run_id: str | None,
    trigger: str,
    reconcile_first: bool,
    change_seen_at: datetime | None = None,
    logger=log,
) -> FeedOutcome:
    """Send the dealer's changed vehicles to the marketplace's API; reconcile with its own listing first when asked.

    When only deltas changed the stock since the last delivery and nothing sent is still unacknowledged, only the changed
    vehicles are rendered, hashed and compared with their own ledger rows; otherwise every vehicle is.
    """
    marketplace = spec.name
    view = stock if isinstance(stock, StockView) else StockView(paths.state, dealer.id, stock)
    if not publishes(spec, dealer, settings, paths):
        return FeedOutcome.of(marketplace, None)
    fingerprint = feed_cache.fingerprint(marketplace, dealer, settings.marketplaces[marketplace], spec.fingerprint)
    changed = None
    if not reconcile_first and not ledger.unsettled(engine, marketplace, dealer.id):
        generation = feed_cache.delivered_generation(paths.state, marketplace, dealer.id, fingerprint)
        changed = view.changed_since(generation) if generation is not None else None
    if changed is not None:
        rendered = render_dealer(spec, dealer, changed)
        scope = set(changed["stock_id"].astype(str))
        outcome = FeedOutcome.of_listings(marketplace, patch_listings(paths, marketplace, dealer.id, rendered, scope), rendered, rows_changed=len(scope))
    else:
        rendered, scope = render_dealer(spec, dealer, view.whole()), None
        save_listings(paths, marketplace, dealer.id, rendered)
        outcome = FeedOutcome.of(marketplace, rendered)
    client = api_client_for(settings.marketplaces[marketplace])
    account_id = spec.api.account_id(dealer, dealer.marketplaces[marketplace])
    if reconcile_first:
        try:
            outcome.reconciled = reconcile(engine, client, spec, dealer.id, account_id, rendered.items)
        except ApiError as error:
            logger.error(f"{marketplace} reconciliation for {dealer.id} failed: {error}; delivering from the ledger alone")
    delivery = dict(run_id=run_id, trigger=trigger, change_seen_at=change_seen_at)
    outcome.api = deliver_api(engine, client, spec, dealer.id, account_id, rendered.items, scope=scope, **delivery)
    feed_cache.record_delivered(paths.state, marketplace, dealer.id, view.generation, fingerprint)  # what failed stays unsettled in the ledger
    whole_items = rendered.items if scope is None else render_dealer(spec, dealer, view.whole()).items
    outcome.drift = api_feed_drift(spec, dealer, view, client, account_id, whole_items, engine, outcome.api, **delivery)
    outcome.errors = [f"{marketplace}: {error}" for error in outcome.api.errors]
    for error in outcome.errors:
        logger.error(error)
    if not outcome.drift.clean:
        logger.error(f"drift after delivery: {outcome.drift.describe()}")
    return outcome


def api_feed_drift(
    spec: MarketplaceSpec,
    dealer: Dealer,
    view: StockView,
    client,
    account_id: str,
    items: pd.DataFrame,
    engine: Engine,
    report: ApiDeliveryReport,
    heal_rounds: int = HEAL_ROUNDS,
    **delivery,
) -> Drift:
    """The marketplace's own stock search against every vehicle the stock renders for it. What differs is healed (the ledger
    repaired from the search, the drifting vehicles sent again in full) up to `heal_rounds` times; the rest is recorded."""
    marketplace = spec.name
    for round_number in range(heal_rounds + 1):
        try:
            drift = api_drift(dealer.id, spec, items, client.search(account_id), lambda ids: statuses(view, ids))
        except ApiError as error:
            drift = Drift(dealer.id, marketplace, checked=len(items), error=f"the stock search failed: {error}")
            break
        if drift.clean or round_number == heal_rounds:
            break
        try:
            reconcile(engine, client, spec, dealer.id, account_id, items)
        except ApiError as error:
            drift.error = f"reconciliation failed: {error}"
            break
        ledger.mark_unsettled(engine, marketplace, dealer.id, set(drift.stale) | set(drift.sold_live) | set(drift.missing))
        healed = deliver_api(engine, client, spec, dealer.id, account_id, items, **delivery)
        for name in ("created", "updated", "deleted", "failed", "dead_lettered", "calls", "repaired"):
            setattr(report, name, getattr(report, name) + getattr(healed, name))
        report.errors += healed.errors
    record_drift(engine, dealer.id, marketplace, delivery.get("run_id"), drift.checked, drift.items(), drift.error)
    return drift
