"""Ingest, the first stages of a dealer's run as plain functions: land its exports, parse, validate, and apply them to its stock."""

import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer, LocalInboxSource, Settings
from dms_pipelines.formats.profile import MappingProfile, find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError, ParseResult
from dms_pipelines.operations.manifest import last_full_rows, pending_files, record_source_listing, retry_due, seen_files, set_status, supersede_held_before, utc_now
from dms_pipelines.operations.quarantine import record_quarantine
from dms_pipelines.paths import DataPaths
from dms_pipelines.sources.base import RemoteFile, Source, shown
from dms_pipelines.sources.landing import LandingReport, land_files
from dms_pipelines.sources.local_inbox import LocalInboxSource as LocalInbox
from dms_pipelines.stock.changes import next_log, write_log
from dms_pipelines.stock.guards import delisting_guard, distribution_guard
from dms_pipelines.stock.history import update_history
from dms_pipelines.stock.history_changes import read_history, record_versions, write_history
from dms_pipelines.stock.merge import apply_delta, apply_full
from dms_pipelines.stock.schema import empty_stock
from dms_pipelines.stock.store import (
    counts_by_status,
    read_price_reference,
    read_stock,
    status_counts,
    stock_ids,
    stored,
    with_new_ids,
    write_stock,
)
from dms_pipelines.stock.validate import validate_stock

log = logging.getLogger(__name__)


@dataclass
class ParsedExport:
    """One landed file after its mapping profile ran: rows and value issues, or the reason it could not be read."""

    file_id: int
    file_name: str
    export_kind: str
    export_timestamp: str
    result: ParseResult | None = None
    error: str | None = None
    released_by: str | None = None
    earlier_fulls: list = field(default_factory=list)  # older full exports of the batch it superseded (manifest rows, newest first)


@dataclass
class ValidatedExport:
    file_id: int
    file_name: str
    export_kind: str
    export_timestamp: str
    records_total: int
    accepted: pd.DataFrame
    issues: pd.DataFrame
    quarantined_rows: int
    encoding: str
    warnings: list[str] = field(default_factory=list)
    released_by: str | None = None
    sold_in_quarantine: set[str] = field(default_factory=set)  # a quarantined row that still says "sold" is believed
    earlier_fulls: list = field(default_factory=list)  # see ParsedExport: what applies instead when a guard holds this one
    skipped: int = 0  # records the profile's skip rules left out (not for sale): not in records_total


@dataclass(frozen=True)
class ValidationSummary:
    """What the checks and the UI show of one validated export, without its rows: counts, issues per rule, the first issues."""

    file_name: str
    records_total: int
    accepted_rows: int
    quarantined_rows: int
    issues_per_rule: dict[str, int]  # "severity:rule" -> issues
    first_issues: list[dict]  # source_row, stock_id, field, rule, value, severity: the first SHOWN_ISSUES, errors first
    skipped: int = 0  # records the profile's skip rules left out (not in records_total)

    @classmethod
    def of(cls, item: ValidatedExport) -> "ValidationSummary":
        issues = item.issues
        per_rule = {f"{severity}:{rule}": int(n) for (severity, rule), n in issues.groupby(["severity", "rule"]).size().items()} if len(issues) else {}
        ordered = issues.sort_values(["severity", "source_row"], kind="stable").head(SHOWN_ISSUES) if len(issues) else issues
        first = ordered[["source_row", "stock_id", "field", "rule", "value", "severity"]].astype("string").fillna("").to_dict(orient="records") if len(issues) else []
        return cls(item.file_name, item.records_total, len(item.accepted), item.quarantined_rows, per_rule, first, item.skipped)


SHOWN_ISSUES = 20


@dataclass
class StockUpdate:
    """What applying a dealer's validated exports did to its stock (the whole stock is read only when asked for)."""

    dealer_id: str
    state_dir: Path
    whole: pd.DataFrame | None = field(default=None, repr=False)
    applied: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    removed: int = 0
    kept_last_good: int = 0
    generation: int | None = None  # the stock generation written (stock.changes); None when nothing was applied

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    @property
    def stock(self) -> pd.DataFrame:
        """The dealer's whole stock after the update; read from disk when the update did not need it whole (only deltas)."""
        if self.whole is None:
            self.whole = read_stock(self.state_dir, self.dealer_id)
        return self.whole

    def status_counts(self) -> dict[str, int]:
        """ "vehicles" and vehicles by status, without reading the whole stock when it was not read."""
        if self.whole is None:
            return status_counts(self.state_dir, self.dealer_id)
        return counts_by_status(self.whole)


def profile_for(dealer: Dealer, paths: DataPaths) -> MappingProfile:
    return find_profile(dealer.profile, paths.profile_dirs())


def open_source(dealer: Dealer, paths: DataPaths) -> Source:
    """The dealer's configured source, ready to list and fetch."""
    if isinstance(dealer.source, LocalInboxSource):
        folder = paths.resolve(dealer.source.path) if dealer.source.path else paths.inbox / dealer.id
        return LocalInbox(folder)
    from dms_pipelines.sources.sftp import SftpSettings, SftpSource

    return SftpSource(SftpSettings.from_config(dealer.source, resolve=paths.resolve))


def ready_files(source: Source, dealer: Dealer, engine: Engine, now: float) -> list[RemoteFile]:
    """Files complete enough to take: per the dealer's marker or stability rule (see sources.readiness).

    What the source refused (links, empty files) is ready by the same rule, so each is reported once, when it is stable.
    """
    listing = source.list_files() + list(getattr(source, "refused", []))
    stability = dealer.source.stability_seconds
    marker = dealer.source.marker_pattern
    if not stability and not marker:
        return listing
    from dms_pipelines.sources.observations import ready_with_observations

    return ready_with_observations(source, listing, dealer.id, engine, now, stability, marker)


def land(dealer: Dealer, paths: DataPaths, engine: Engine, run_id: str | None = None) -> LandingReport:
    """Copy every ready, not yet landed export of the dealer into landing/<dealer>/."""
    profile = profile_for(dealer, paths)
    source = open_source(dealer, paths)
    try:
        files = ready_files(source, dealer, engine, utc_now().timestamp())
        report = land_files(source, files, dealer.id, profile, paths.landing, engine, run_id=run_id)
        record_source_listing(engine, dealer.id, len(files), report.skipped_unmatched)
        return report
    finally:
        source.close()


def parse_pending(dealer: Dealer, paths: DataPaths, engine: Engine, max_uncompressed_mb: int = 2048) -> list[ParsedExport]:
    """Parse the dealer's landed files in export order: the newest readable full export, and every delta.

    Full exports older than that full one are superseded; a newer full export that cannot be read is marked failed and
    never hides the good one before it. Deltas older than it are parsed too and come before it: if the full export is
    applied they are superseded by it (update_stock), but if a guard holds it they still apply (a held export must not
    take the changes before it down with it).
    """
    profile = profile_for(dealer, paths)
    pending = pending_files(engine, dealer.id)
    limit = max_uncompressed_mb << 20

    def parse(row) -> ParsedExport:
        return _parse_file(row, profile, dealer, limit, engine)

    parsed: list[ParsedExport] = []
    base = None
    for row in reversed([r for r in pending if r.export_kind == "full"]):
        item = parse(row)
        parsed.append(item)
        if item.result is not None:
            base = row
            break
    failed_ids = {item.file_id for item in parsed if item.error}
    if base is not None:
        earlier = [row for row in pending if row.export_kind == "full" and row.export_timestamp <= base.export_timestamp and row.id != base.id and row.id not in failed_ids]
        for row in earlier:
            set_status(engine, row.id, status="superseded", processed_at=utc_now(), error=f"superseded by the newer full export {base.file_name}")
        next(item for item in parsed if item.file_id == base.id).earlier_fulls = list(reversed(earlier))
    deltas = {row.id: parse(row) for row in pending if row.export_kind == "delta"}
    readable = [row for row in pending if (row.id in deltas and deltas[row.id].result is not None) or (base is not None and row.id == base.id)]
    ordered = [deltas.get(row.id) or next(item for item in parsed if item.file_id == row.id) for row in readable]  # pending is in export order
    return [item for item in parsed if item.error] + [item for item in deltas.values() if item.error] + ordered


def _parse_file(row, profile: MappingProfile, dealer: Dealer, limit: int, engine: Engine) -> ParsedExport:
    """One landed file through the dealer's mapping profile; a file that cannot be read is marked failed, with why."""
    item = ParsedExport(row.id, row.file_name, row.export_kind, row.export_timestamp, released_by=row.released_by)
    try:
        item.result = read_export(Path(row.landed_path), profile, dealer.id, file_name=row.file_name, max_uncompressed_bytes=limit)
    except MappingError as error:
        item.error = str(error)
    except OSError as error:
        item.error = f"{shown(row.file_name)}: cannot read the landed copy {row.landed_path}: {error.strerror}"
    if item.error:
        set_status(engine, row.id, status="failed", error=item.error, processed_at=utc_now())
        log.error("%s", item.error)
    return item


def validate_parsed(
    parsed: list[ParsedExport],
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    today: date | None = None,
    price_reference: pd.DataFrame | None = None,
) -> list[ValidatedExport]:
    """Row rules on every parsed export; errors and warnings recorded in the quarantine table (replacing earlier runs' rows for the file).

    `price_reference` (the stock of the group's dealers in the same currency, for the price-outlier warning) is read from
    the stock store unless given: a step syncing several dealers reads it once per currency.
    """
    today = today or utc_now().date()
    if not any(item.result is not None for item in parsed):
        return []
    if price_reference is None:
        first = next(item.result for item in parsed if item.result is not None)
        dealer_id = str(first.rows["dealer_id"].iloc[0]) if len(first.rows) else None
        reference = read_price_reference(paths.state, same_currency_dealers(settings, dealer_id))
    else:
        reference = price_reference
    validated = []
    for item in parsed:
        if item.result is None:
            continue
        result = item.result
        dealer_id = str(result.rows["dealer_id"].iloc[0]) if len(result.rows) else None  # the rules and market are the dealer's
        checked = validate_stock(result.rows, item.file_name, settings.rules_for(dealer_id), today, price_reference=reference, market=settings.market_for(dealer_id))
        issues = pd.concat([result.issues, checked.issues], ignore_index=True)
        parse_error_rows = set(result.issues.loc[result.issues["severity"] == "error", "source_row"].dropna().astype(int))
        parse_failed = checked.accepted["source_row"].isin(parse_error_rows).to_numpy(dtype=bool)
        accepted = checked.accepted[~parse_failed].reset_index(drop=True) if parse_failed.any() else checked.accepted  # no copy for nothing
        quarantined = result.records_total - len(accepted)
        rejected = result.rows[~result.rows["source_row"].isin(accepted["source_row"])]
        sold = set(rejected.loc[(rejected["status"] == "sold").fillna(False).astype(bool), "stock_id"].dropna().astype(str))
        validated.append(
            ValidatedExport(
                item.file_id,
                item.file_name,
                item.export_kind,
                item.export_timestamp,
                result.records_total,
                accepted,
                issues,
                quarantined,
                result.encoding,
                result.warnings,
                item.released_by,
                sold,
                item.earlier_fulls,
                sum(result.skipped.values()),
            )
        )
        record_quarantine(engine, checked_dealer(accepted, result), item.file_id, item.file_name, issues, item.export_kind)
    return validated


def same_currency_dealers(settings: Settings, dealer_id: str | None) -> list[str]:
    """The dealers whose prices the price-outlier rule may compare the dealer's with: those selling in its currency."""
    currency = settings.market_for(dealer_id).currency
    return [d.id for d in settings.dealers if d.market.currency == currency]


def checked_dealer(accepted: pd.DataFrame, result: ParseResult) -> str:
    return str(result.rows["dealer_id"].iloc[0]) if len(result.rows) else str(accepted["dealer_id"].iloc[0]) if len(accepted) else ""


def update_stock(dealer: Dealer, validated: list[ValidatedExport], settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None = None) -> StockUpdate:
    """Apply exports in order: a full one replaces the stock (unless the delisting or distribution guard holds it), deltas patch it.

    When every export is a delta (an hourly run, a sale), only the stock numbers are read and only the changed vehicles
    are written (to the stock's log): the cost follows the delta, not the stock.
    """
    if validated and all(item.export_kind == "delta" and not item.sold_in_quarantine for item in validated):
        return _apply_deltas(dealer, validated, paths, engine, run_id)
    stock = read_stock(paths.state, dealer.id)
    outcome = StockUpdate(dealer.id, paths.state, stock)
    applied_deltas: list[ValidatedExport] = []  # the deltas before a full export of this batch: superseded once it applies
    changed_ids: set[str] | None = set()  # None once a full export is applied: every vehicle may have changed
    for item in validated:
        if item.export_kind == "full":
            reason = _guard(dealer, item, stock, settings, engine)
            if reason and item.released_by:
                log.warning("%s: applied although %s (released by %s)", item.file_name, reason, item.released_by)
            elif reason and (fallback := _earlier_full(dealer, item, stock, settings, paths, engine)) is not None:
                return _instead_of_held(dealer, validated, item, reason, fallback, settings, paths, engine, run_id)
            elif reason:  # held by itself: the stock stays as it was, and the deltas after it apply to it
                outcome.held[item.file_name] = reason
                _hold(engine, item, reason, run_id)
                continue
            quarantined_ids = set(item.issues.loc[item.issues["severity"] == "error", "stock_id"].dropna().astype(str))
            merged = apply_full(stock, item.accepted, quarantined_ids)
            changed_ids = None
            for earlier in applied_deltas:
                set_status(engine, earlier.file_id, status="superseded", error=f"superseded by the newer full export {item.file_name}")
                outcome.applied.remove(earlier.file_name)
                outcome.superseded.append(earlier.file_name)
            applied_deltas = []
        else:
            merged = apply_delta(stock, item.accepted)
            applied_deltas.append(item)
            if changed_ids is not None:
                changed_ids |= set(item.accepted["stock_id"].dropna().astype(str)) | item.sold_in_quarantine
        stock = merged.stock
        if item.sold_in_quarantine:
            # the row is unusable, but a sale must never keep a car advertised: that part of it is applied
            stock.loc[stock["stock_id"].isin(item.sold_in_quarantine), "status"] = "sold"
        outcome.added += merged.added
        outcome.updated += merged.updated
        outcome.removed += merged.removed
        outcome.kept_last_good += merged.kept_last_good
        outcome.applied.append(item.file_name)
        _processed(engine, dealer.id, item, run_id)
    outcome.whole = stock
    if outcome.applied:
        _store(paths, dealer.id, outcome, stock, changed_ids)
    return outcome


def _earlier_full(dealer: Dealer, held: ValidatedExport, stock: pd.DataFrame, settings: Settings, paths: DataPaths, engine: Engine) -> ValidatedExport | None:
    """The newest full export of the batch older than `held` (which parse_pending superseded with it) that is readable and
    that the guards let through, parsed and validated now: when a guard holds the newest full export, the good one
    before it is still the DMS's last word. One the guards would hold too stays superseded."""
    profile = profile_for(dealer, paths)
    for number, row in enumerate(held.earlier_fulls):
        parsed = _parse_file(row, profile, dealer, settings.rules_for(dealer.id).max_uncompressed_mb << 20, engine)
        if parsed.result is None:
            continue
        candidate = validate_parsed([parsed], settings, paths, engine)[0]
        if candidate.released_by or not _guard(dealer, candidate, stock, settings, engine):
            candidate.earlier_fulls = held.earlier_fulls[number + 1 :]
            return candidate
    return None


def _guard(dealer: Dealer, item: ValidatedExport, stock: pd.DataFrame, settings: Settings, engine: Engine) -> str | None:
    """Why the delisting or the distribution guard holds the full export (None: they let it through)."""
    rules = settings.rules_for(dealer.id)
    return delisting_guard(item.records_total, last_full_rows(engine, dealer.id), rules.min_full_export_share) or distribution_guard(item.accepted, stock, rules)


def _instead_of_held(
    dealer: Dealer,
    validated: list[ValidatedExport],
    held: ValidatedExport,
    reason: str,
    fallback: ValidatedExport,
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    run_id: str | None,
) -> StockUpdate:
    """`held` is held; the batch is applied again from `fallback`, the full export before it, with the deltas after
    `fallback` (before `held` and after it). The deltas before `fallback` are superseded by it."""
    _hold(engine, held, reason, run_id)
    older = [v for v in validated if v.export_kind == "delta" and v.export_timestamp <= fallback.export_timestamp]
    for item in older:
        set_status(engine, item.file_id, status="superseded", error=f"superseded by the newer full export {fallback.file_name}")
    later = [v for v in validated if v.export_kind == "delta" and v.export_timestamp > fallback.export_timestamp]
    log.warning("%s held (%s); the full export before it, %s, applies instead", held.file_name, reason, fallback.file_name)
    outcome = update_stock(dealer, [fallback, *later], settings, paths, engine, run_id)
    outcome.held[held.file_name] = reason
    outcome.superseded += [item.file_name for item in older]
    return outcome


def _hold(engine: Engine, item: ValidatedExport, reason: str, run_id: str | None) -> None:
    """The export is held by a guard, with its figures and why, until the next full export applied or a release."""
    set_status(
        engine,
        item.file_id,
        status="held",
        error=reason,
        rows_total=item.records_total,
        rows_accepted=len(item.accepted),
        rows_quarantined=item.quarantined_rows,
        rows_skipped=item.skipped,
        encoding=item.encoding,
        run_id=run_id,
    )


def _processed(engine: Engine, dealer_id: str, item: ValidatedExport, run_id: str | None) -> None:
    """The export is applied; a full one supersedes the dealer's older exports still held (nothing is left to release)."""
    set_status(
        engine,
        item.file_id,
        status="processed",
        rows_total=item.records_total,
        rows_accepted=len(item.accepted),
        rows_quarantined=item.quarantined_rows,
        rows_skipped=item.skipped,
        encoding=item.encoding,
        processed_at=utc_now(),
        error=None,
        run_id=run_id,
        warnings="\n".join(item.warnings) or None,
    )
    if item.export_kind == "full":
        supersede_held_before(engine, dealer_id, item.export_timestamp, item.file_name)


def _store(paths: DataPaths, dealer_id: str, outcome: StockUpdate, stock: pd.DataFrame, changed_ids: set[str] | None, stock_size: int | None = None) -> None:
    """Write the new generation: a new base and an empty log (a full export, or a log grown past its cap), else the log
    alone; then the history of the vehicles that changed. `stock`: the whole stock, or (deltas) the changed vehicles."""
    base_generation, previous_log = stored(paths.state, dealer_id)
    generation = (previous_log.generation if previous_log is not None else base_generation) + 1
    change_log = next_log(previous_log, stock, changed_ids, generation, stock_size)
    if change_log.full_generation == generation:
        if changed_ids is not None and outcome.whole is None:  # a compaction after deltas: the new base needs the whole stock
            stock = apply_delta(read_stock(paths.state, dealer_id), stock).stock
            outcome.whole = stock
        write_stock(paths.state, dealer_id, stock, generation)
    write_log(paths.state, dealer_id, change_log)
    outcome.generation = generation
    if changed_ids is None:  # a full export: every vehicle is compared, and the history becomes a new base
        write_history(paths.state, dealer_id, update_history(read_history(paths.state, dealer_id), stock, utc_now()), generation)
    else:
        record_versions(paths.state, dealer_id, stock, utc_now(), changed_ids, generation)


def _apply_deltas(dealer: Dealer, validated: list[ValidatedExport], paths: DataPaths, engine: Engine, run_id: str | None) -> StockUpdate:
    """Deltas only: the changed vehicles are merged among themselves (a later file wins) and counted against the stock
    numbers already held; the whole stock is never read."""
    outcome = StockUpdate(dealer.id, paths.state)
    held = stock_ids(paths.state, dealer.id)  # Arrow strings: a million of them are looked up without a Python set
    vehicles = len(held)
    changed = empty_stock()
    for item in validated:
        new_ids = sorted(set(item.accepted["stock_id"].dropna().astype(str)))
        grown = with_new_ids(held, new_ids)
        added = len(grown) - len(held)
        held = grown
        changed = apply_delta(changed, item.accepted).stock
        outcome.added += added
        outcome.updated += len(new_ids) - added
        outcome.applied.append(item.file_name)
        _processed(engine, dealer.id, item, run_id)
    if outcome.applied:
        _store(paths, dealer.id, outcome, changed, set(changed["stock_id"].astype(str)), stock_size=vehicles + outcome.added)
    return outcome


def files_waiting(dealer: Dealer, paths: DataPaths, engine: Engine) -> list[RemoteFile]:
    """Ready files of the dealer that are not landed yet (or whose retry is due): what a sensor should start a run for."""
    profile = profile_for(dealer, paths)
    source = open_source(dealer, paths)
    try:
        listing = [f for f in ready_files(source, dealer, engine, utc_now().timestamp()) if profile.export_kind(f.name)]
    finally:
        source.close()
    if not listing:
        return []
    seen = seen_files(engine, dealer.id)
    now = utc_now()
    waiting = []
    for remote in listing:
        row = seen.get((remote.path, remote.size, remote.mtime))
        if row is None or retry_due(row, now):
            waiting.append(remote)
    return waiting
