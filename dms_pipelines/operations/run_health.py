"""What is wrong for a dealer now, read from the operational state, and incidents opened and resolved once each, with one alert each."""

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Engine

from dms_pipelines.config import Settings
from dms_pipelines.operations.alerts import notify
from dms_pipelines.operations.db import incidents, ingested_files, listing_ledger, source_listings
from dms_pipelines.operations.drift_state import KINDS, describe_drift, ids_text, latest_drift
from dms_pipelines.operations.manifest import utc_aware
from dms_pipelines.operations.statuses import PROBLEM_FILE_STATUSES, PROBLEM_LISTING_STATUSES, FileStatus, ListingStatus


@dataclass(frozen=True)
class Problem:
    """One thing the operator must know of: `kind` (what), `scope` (a marketplace or a file; '' for the dealer), and the message."""

    dealer_id: str
    kind: str  # held_export | file_failed | file_retrying | stale | sync_failed | undelivered | changes_failed | dead_lettered | drift | sold_live
    scope: str
    message: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.scope}"


def current_problems(engine: Engine, dealer_id: str, freshness_hours: float | None = None, now: datetime | None = None) -> list[Problem]:
    """Everything wrong for the dealer as the state stands: a held export, a file that failed and that no full export
    applied since has replaced, a file still being retried, a feed file or API change not acknowledged, a refused change,
    drift as last checked, and (given the dealer's `freshness_hours`) no export received for longer than that."""
    problems: list[Problem] = []
    with engine.connect() as connection:
        files = connection.execute(
            select(ingested_files.c.id, ingested_files.c.file_name, ingested_files.c.status, ingested_files.c.error, ingested_files.c.export_timestamp).where(
                and_(ingested_files.c.dealer_id == dealer_id, ingested_files.c.status.in_(PROBLEM_FILE_STATUSES))
            )
        ).fetchall()
        newest_full = (
            connection.execute(
                select(func.max(ingested_files.c.export_timestamp)).where(
                    and_(ingested_files.c.dealer_id == dealer_id, ingested_files.c.status == FileStatus.PROCESSED, ingested_files.c.export_kind == "full")
                )
            ).scalar()
            or ""
        )
        unsettled = connection.execute(
            select(listing_ledger.c.marketplace, listing_ledger.c.item_key, listing_ledger.c.status, listing_ledger.c.last_error).where(
                and_(listing_ledger.c.dealer_id == dealer_id, listing_ledger.c.status.in_(PROBLEM_LISTING_STATUSES))
            )
        ).fetchall()
    for file in files:
        if file.status == FileStatus.HELD:
            problems.append(Problem(dealer_id, "held_export", file.file_name, f"{file.file_name} held: {file.error}"))
        elif file.status == FileStatus.RETRY:
            problems.append(Problem(dealer_id, "file_retrying", file.file_name, f"{file.file_name} not landed yet, retrying: {file.error}"))
        elif (file.export_timestamp or "") >= newest_full:  # a failed delta's changes are lost until a full export says them again
            problems.append(Problem(dealer_id, "file_failed", file.file_name, f"{file.file_name} failed: {file.error}"))
    by_marketplace: dict[tuple[str, str], list] = {}
    for row in unsettled:
        kind = "dead_lettered" if row.status == ListingStatus.DEAD else "undelivered" if row.item_key.startswith("file:") else "changes_failed"
        by_marketplace.setdefault((row.marketplace, kind), []).append(row)
    for (marketplace, kind), rows in sorted(by_marketplace.items()):
        keys = [r.item_key.removeprefix("file:") for r in rows]
        what = {"dead_lettered": "refused by the marketplace", "undelivered": "file(s) not delivered", "changes_failed": "change(s) not acknowledged"}[kind]
        last_error = next((r.last_error for r in rows if r.last_error), "")
        problems.append(Problem(dealer_id, kind, marketplace, f"{marketplace}: {len(rows)} {what} ({ids_text(keys)}){': ' + last_error if last_error else ''}"))
    for check in latest_drift(engine, dealer_id):
        stock_ids = json.loads(check["stock_ids"] or "{}")
        if check["sold_live"]:
            sold = ids_text(stock_ids.get("sold_live", []), check["sold_live"])
            problems.append(Problem(dealer_id, "sold_live", check["marketplace"], f"{check['marketplace']}: {check['sold_live']} sold car(s) still offered ({sold})"))
        others = describe_drift({kind: check[kind] for kind in KINDS if kind != "sold_live"}, stock_ids, check["error"])
        if others:
            problems.append(Problem(dealer_id, "drift", check["marketplace"], f"{check['marketplace']} does not show what the DMS says: {others}"))
    if freshness_hours is not None:
        problems += _staleness(engine, dealer_id, freshness_hours, now or datetime.now(timezone.utc))
    return problems


def _staleness(engine: Engine, dealer_id: str, freshness_hours: float, now: datetime) -> list[Problem]:
    """No export received for longer than the dealer's freshness window (counted from its first listing when it never
    sent one), or its source holds files while none ever matched the profile's file patterns."""
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(ingested_files.c.received_at)).where(ingested_files.c.dealer_id == dealer_id)).scalar()
        listing = connection.execute(select(source_listings).where(source_listings.c.dealer_id == dealer_id)).first()
    unmatched = ""
    if listing is not None and listing.unmatched:
        names = (listing.unmatched_sample or "").splitlines()
        unmatched = f"; {listing.unmatched} file(s) in its source match none of its profile's file patterns (files.full, files.delta), e.g. {', '.join(names)}"
    if newest is not None:
        hours = (now - utc_aware(newest)).total_seconds() / 3600
        if hours <= freshness_hours:
            return []
        return [Problem(dealer_id, "stale", "", f"no export received for {hours:.1f} h (freshness window {freshness_hours:g} h){unmatched}")]
    if listing is None:
        return []
    waited = (now - utc_aware(listing.first_listed_at)).total_seconds() / 3600
    if unmatched:
        return [Problem(dealer_id, "stale", "", f"no export received yet{unmatched}: fix the patterns, see `dms-pipelines profile check`")]
    if waited > freshness_hours:
        return [Problem(dealer_id, "stale", "", f"no export received in the {waited:.1f} h since its source was first listed (freshness window {freshness_hours:g} h)")]
    return []


@dataclass
class IncidentChanges:
    opened: list[Problem]
    resolved: list[dict]  # the incidents' rows


def update_incidents(engine: Engine, dealer_id: str, problems: list[Problem], covers: Callable[[str], bool], run_id: str | None = None) -> IncidentChanges:
    """Open an incident for each problem not already open; resolve each open one this evaluation `covers` that is gone."""
    now = datetime.now(timezone.utc)
    current = {p.key: p for p in problems if covers(p.key)}
    with engine.begin() as connection:
        open_rows = {row["key"]: dict(row) for row in connection.execute(select(incidents).where(and_(incidents.c.dealer_id == dealer_id, incidents.c.resolved_at.is_(None)))).mappings()}
        opened = [p for key, p in current.items() if key not in open_rows]
        for problem in opened:
            connection.execute(
                insert(incidents).values(
                    dealer_id=dealer_id,
                    key=problem.key,
                    kind=problem.kind,
                    scope=problem.scope,
                    message=problem.message[:2000],
                    opened_at=now,
                    last_seen_at=now,
                    run_id=run_id,
                )
            )
        still = [row["id"] for key, row in open_rows.items() if key in current]
        if still:
            connection.execute(update(incidents).where(incidents.c.id.in_(still)).values(last_seen_at=now))
        resolved = [row for key, row in open_rows.items() if key not in current and covers(key)]
        if resolved:
            connection.execute(update(incidents).where(incidents.c.id.in_([r["id"] for r in resolved])).values(resolved_at=now))
    return IncidentChanges(opened, resolved)


def report_incidents(settings: Settings, engine: Engine, dealer_id: str, problems: list[Problem], covers: Callable[[str], bool], run_id: str | None = None, logger=None) -> IncidentChanges:
    """Update the dealer's incidents and send one alert per incident opened and one when it is resolved."""
    changes = update_incidents(engine, dealer_id, problems, covers, run_id)
    for problem in changes.opened:
        notify(settings, problem.kind, f"{dealer_id}: {problem.message}", logger)
    for row in changes.resolved:
        notify(settings, "resolved", f"{dealer_id}: resolved: {row['message']}", logger, level="info")
    return changes


def open_incidents(engine: Engine, dealer_id: str | None = None) -> list[dict]:
    query = select(incidents).where(incidents.c.resolved_at.is_(None)).order_by(incidents.c.dealer_id, incidents.c.opened_at)
    if dealer_id is not None:
        query = query.where(incidents.c.dealer_id == dealer_id)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]
