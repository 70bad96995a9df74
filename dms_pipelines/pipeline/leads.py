"""One dealer's lead stages in order: land (inbox files, webhook payloads, Auto Trader deals), read and check, link to the car, deliver as ADF."""

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import and_, select, update
from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer, HttpApiDestination, LocalDestination, LocalInboxSource, Settings
from dms_pipelines.kernels.atomic import rename_into_place, temporary_sibling
from dms_pipelines.leads import adf, crm, linking, privacy
from dms_pipelines.leads.deals_client import DealsApiError, fetch_deal
from dms_pipelines.leads.parsers import parse_lead_file
from dms_pipelines.leads.records import LeadFileError, land_payload
from dms_pipelines.leads.validate import LeadIssue, validate_leads
from dms_pipelines.operations import customer_store, lead_store
from dms_pipelines.operations.db import leads as leads_table
from dms_pipelines.operations.db import listing_ledger
from dms_pipelines.operations.manifest import utc_aware, utc_now
from dms_pipelines.operations.run_health import Problem, report_incidents
from dms_pipelines.operations.statuses import LeadDeliveryStatus, LeadFileStatus
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline import erasure
from dms_pipelines.pipeline.customer_context import customer_matches
from dms_pipelines.pipeline.customers import CustomerSync, sync_customers
from dms_pipelines.pipeline.identity import IdentityRun, identify
from dms_pipelines.pipeline.retention import RetentionReport, apply_retention
from dms_pipelines.sources.base import RemoteFile, SourceError, shown
from dms_pipelines.sources.landing import safe_local_name, sha256_of
from dms_pipelines.stock.store import read_stock
from dms_pipelines.warehouse.identity import publish_identity
from dms_pipelines.warehouse.leads import publish_leads
from dms_pipelines.warehouse.tables import ensure_catalog

log = logging.getLogger(__name__)
DEAL_FETCH_ATTEMPTS = 5  # a notification whose deal cannot be fetched after this many runs is a failed file
INBOX_UNREACHABLE = lead_store.INBOX_UNREACHABLE
DELIVERY_BATCH = 200  # leads delivered between two writes of the ledger
ERASED_BEFORE = "this person's data was erased on their request before; the new enquiry is kept (it is new processing): check its lawful basis before marketing to them"
PROVIDER_NAMES = {"autotrader": "Auto Trader", "meta": "Meta lead ads", "google": "Google lead form", "website": "Dealer website", "adf": "ADF e-mail"}


@dataclass
class LeadLanding:
    """What one landing pass took: file names, for the run's metadata (never their contents)."""

    landed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "name: reason"


@dataclass
class LeadReading:
    files: int = 0
    leads_in: int = 0
    new: int = 0
    updated: int = 0
    repeated: int = 0
    quarantined: int = 0
    skipped: int = 0
    warnings: int = 0
    failed: list[str] = field(default_factory=list)  # "name: reason"
    rules: dict[str, int] = field(default_factory=dict)  # quarantine and warnings per rule


@dataclass
class LeadLinking:
    linked: int = 0
    unlinked: int = 0
    on_unavailable: int = 0  # tied to a car that is sold or reserved: offered alternatives
    by: dict[str, int] = field(default_factory=dict)


@dataclass
class LeadDelivery:
    delivered: int = 0
    retrying: int = 0
    dead_lettered: int = 0
    no_crm: int = 0
    failures: list[str] = field(default_factory=list)  # "source lead id: reason" (no personal data)
    files: list[str] = field(default_factory=list)


def lead_folder(paths: DataPaths, dealer_id: str) -> Path:
    return paths.lead_landing / dealer_id


def lead_inbox(dealer: Dealer, paths: DataPaths):
    """The dealer's lead inbox: lead_inbox/<dealer> unless its configuration names another folder or an SFTP source."""
    source = dealer.leads.source
    if source is None or isinstance(source, LocalInboxSource):
        from dms_pipelines.sources.local_inbox import LocalInboxSource as LocalInbox

        folder = paths.resolve(source.path) if source is not None and source.path else paths.lead_inbox / dealer.id
        return LocalInbox(folder)
    from dms_pipelines.sources.sftp import SftpSettings, SftpSource

    return SftpSource(SftpSettings.from_config(source, resolve=paths.resolve))


def land_leads(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, logger=None, environ=None) -> LeadLanding:
    """Take the dealer's new lead files into lead_landing/<dealer>/ with a checksum and a manifest row each: inbox files
    (once per content), webhook payloads the receiver wrote there, and the deal behind each Auto Trader notification."""
    logger = logger or log
    report = LeadLanding()
    folder = lead_folder(paths, dealer.id)
    folder.mkdir(parents=True, exist_ok=True)
    _land_inbox(dealer, paths, engine, run_id, folder, report, logger)
    unreachable = [Problem(dealer.id, INBOX_UNREACHABLE, "", f"the lead inbox could not be read: {message}") for message in report.failed if message.startswith("lead inbox:")]
    report_incidents(settings, engine, dealer.id, unreachable[:1], lambda key: key.startswith(INBOX_UNREACHABLE), run_id, logger)  # opened, or resolved once it is read
    known = lead_store.registered_names(engine, dealer.id)
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in known or not path.is_file():
            continue
        received = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        lead_store.register_file(engine, dealer.id, path.name, "webhook", sha256_of(path), path.stat().st_size, received, run_id)
        report.landed.append(path.name)
    _fetch_deals(dealer, settings, paths, engine, run_id, folder, report, logger, environ)
    return report


def _land_inbox(dealer: Dealer, paths: DataPaths, engine: Engine, run_id, folder: Path, report: LeadLanding, logger) -> None:
    try:
        source = lead_inbox(dealer, paths)
    except SourceError as error:
        report.failed.append(f"lead inbox: {error}")
        return
    try:
        listing = source.list_files()
        seen_keys = _inbox_keys(engine, dealer.id)
        hashes = lead_store.inbox_hashes(engine, dealer.id)
        for remote in [*source.refused, *listing]:
            key = f"{remote.path}:{remote.size}:{remote.mtime}"
            if key in seen_keys:
                continue
            if remote.problem:
                _refuse(engine, dealer.id, run_id, remote, key, remote.problem, report)
                continue
            _land_one(source, remote, key, dealer.id, engine, run_id, folder, hashes, report, logger)
    except SourceError as error:
        report.failed.append(f"lead inbox: {error}")
    finally:
        source.close()


def _inbox_keys(engine: Engine, dealer_id: str) -> set[str]:
    from dms_pipelines.operations.db import lead_files

    with engine.connect() as connection:
        return set(connection.execute(select(lead_files.c.source_key).where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.source_key.is_not(None)))).scalars())


def _refuse(engine: Engine, dealer_id: str, run_id, remote: RemoteFile, key: str, problem: str, report: LeadLanding) -> None:
    name = f"refused-{utc_now():%Y%m%dT%H%M%S%f}-{safe_local_name(remote.name)}"
    lead_store.register_file(engine, dealer_id, name, "inbox", "", remote.size, utc_now(), run_id, original_name=shown(remote.name), source_key=key, status=LeadFileStatus.FAILED, error=problem)
    report.failed.append(f"{shown(remote.name)}: {problem}")


def _land_one(source, remote: RemoteFile, key: str, dealer_id: str, engine: Engine, run_id, folder: Path, hashes: set[str], report: LeadLanding, logger) -> None:
    received = utc_now()
    name = f"inbox-{received:%Y%m%dT%H%M%S%f}-{safe_local_name(remote.name)}"
    target = folder / name
    temporary = temporary_sibling(target)
    try:
        source.fetch(remote, temporary)
        digest = sha256_of(temporary)
        if digest in hashes:
            temporary.unlink(missing_ok=True)
            lead_store.register_file(engine, dealer_id, name, "inbox", digest, remote.size, received, run_id, original_name=remote.name, source_key=key, status=LeadFileStatus.DUPLICATE)
            report.duplicates.append(shown(remote.name))
            return
        rename_into_place(temporary, target)
    except SourceError as error:
        temporary.unlink(missing_ok=True)
        if error.transient:
            logger.warning(f"{dealer_id}: lead file {shown(remote.name)} not taken this time: {error}")
            return
        _refuse(engine, dealer_id, run_id, remote, key, str(error), report)
        return
    hashes.add(digest)
    lead_store.register_file(engine, dealer_id, name, "inbox", digest, remote.size, received, run_id, original_name=remote.name, source_key=key)
    report.landed.append(name)


def _fetch_deals(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id, folder: Path, report: LeadLanding, logger, environ) -> None:
    """Read the deal each Auto Trader notification names (with its components) and land it as a file of its own."""
    notifications = [row for row in lead_store.files_to_read(engine, dealer.id) if row.origin == "webhook" and row.file_name.startswith("autotrader-")]
    if not notifications:
        return
    environ = os.environ if environ is None else environ
    marketplace = settings.marketplaces.get("autotrader")
    target = marketplace.destination if marketplace is not None else None
    for row in notifications:
        attempts = row.attempts + 1
        try:
            notification = json.loads((folder / row.file_name).read_bytes())
            data = notification.get("data") if isinstance(notification, dict) else None
            if not isinstance(data, dict) or not data.get("dealId"):
                raise LeadFileError(f"{row.file_name}: not an Auto Trader deal notification (no data.dealId)")
            if not isinstance(target, HttpApiDestination):
                raise LeadFileError(f"{row.file_name}: no Auto Trader API is configured (marketplaces.autotrader with an http_api destination) to read deal {data['dealId']} from")
            token = environ.get(target.token_env)
            if not token:
                raise LeadFileError(f"{row.file_name}: environment variable {target.token_env} is not set; deal {data['dealId']} cannot be read")
            account = dealer.marketplaces.get("autotrader")
            advertiser = str(data.get("advertiserId") or (account.setting("advertiser_id") if account is not None else "") or "")
            deal = fetch_deal(target.resolved_base_url(environ), token, advertiser, str(data["dealId"]), timeout=target.timeout_seconds)
        except (ValueError, LeadFileError) as error:
            message = str(error) if isinstance(error, LeadFileError) else f"{row.file_name}: not valid JSON ({error})"
            lead_store.finish_file(engine, row.id, status=LeadFileStatus.FAILED, kind="autotrader_notification", attempts=attempts, error=message, processed_at=utc_now(), run_id=run_id)
            report.failed.append(message)
            continue
        except DealsApiError as error:
            if error.transient and attempts < DEAL_FETCH_ATTEMPTS:
                lead_store.finish_file(engine, row.id, status=LeadFileStatus.RETRY, attempts=attempts, error=str(error), next_attempt_at=lead_store.retry_at(attempts, base_seconds=15), run_id=run_id)
                logger.warning(f"{dealer.id}: deal of {row.file_name} not read yet (attempt {attempts}): {error}")
            else:
                lead_store.finish_file(engine, row.id, status=LeadFileStatus.FAILED, attempts=attempts, error=str(error), processed_at=utc_now(), run_id=run_id)
                report.failed.append(f"{row.file_name}: {error}")
            continue
        body = json.dumps({"notification": notification, "deal": deal}, sort_keys=True).encode()
        path = land_payload(folder, "autotrader", body)
        lead_store.register_file(engine, dealer.id, path.name, "fetched", hashlib.sha256(body).hexdigest(), len(body), utc_now(), run_id, parent_id=row.id)
        lead_store.finish_file(engine, row.id, status=LeadFileStatus.PROCESSED, kind="autotrader_notification", attempts=attempts, leads_in=0, processed_at=utc_now(), run_id=run_id, error=None)
        report.fetched.append(path.name)


def read_leads(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, logger=None) -> LeadReading:
    """Read every landed lead file of the dealer: each lead checked, stored once by its source id (a changed one as a new
    revision), the bad ones quarantined with reasons; an unreadable file fails alone, the others go on."""
    logger = logger or log
    reading = LeadReading()
    folder = lead_folder(paths, dealer.id)
    delivery_status = LeadDeliveryStatus.PENDING if dealer.crm is not None else LeadDeliveryStatus.NO_CRM
    salt = erasure.erasure_salt(settings, paths) if erasure.any_suppressions(engine) else None
    for row in lead_store.files_to_read(engine, dealer.id):
        if row.origin == "webhook" and row.file_name.startswith("autotrader-"):
            continue  # a notification: its deal is fetched (and read) as a file of its own
        reading.files += 1
        received = utc_aware(row.received_at)
        try:
            parsed = parse_lead_file(folder / row.file_name)
        except LeadFileError as error:
            _fail_file(engine, row, str(error), run_id, reading)
            continue
        except Exception as error:  # a parser bug must not take the dealer's other files down; the file waits for a fix
            logger.exception(f"{dealer.id}: reading {row.file_name} failed unexpectedly")
            _fail_file(engine, row, f"{row.file_name}: could not be read ({type(error).__name__}); reported as a fault", run_id, reading)
            continue
        checked = validate_leads(parsed.records, row.file_name, dealer.id, received, country=dealer.market.country)
        problems = [LeadIssue(row.file_name, p.record, p.field, p.rule, p.message, "error") for p in parsed.problems]
        if salt is not None:
            problems += [
                LeadIssue(row.file_name, str(lead.get("record")), "email" if lead.get("email") else "phone", "erased_before", ERASED_BEFORE, "warning")
                for lead in checked.leads.to_dict("records")
                if erasure.suppressed(engine, salt, lead.get("email") or None, lead.get("phone") or None)
            ]
        with engine.begin() as connection:
            counts = lead_store.store_leads(connection, dealer.id, checked.leads.to_dict("records"), row.id, received, delivery_status)
            lead_store.record_issues(connection, dealer.id, row.id, row.file_name, [*problems, *checked.issues])
        quarantined = len(checked.quarantined) + sum(problem.severity == "error" for problem in problems)
        skipped = sum(parsed.skipped.values())
        lead_store.finish_file(
            engine,
            row.id,
            status=LeadFileStatus.PROCESSED,
            kind=parsed.kind,
            leads_in=len(parsed.records) + len(parsed.problems),
            leads_new=counts["new"],
            leads_updated=counts["updated"],
            leads_repeated=counts["repeated"],
            quarantined=quarantined,
            skipped=skipped,
            processed_at=utc_now(),
            run_id=run_id,
            error=None,
        )
        reading.leads_in += len(parsed.records) + len(parsed.problems)
        reading.new += counts["new"]
        reading.updated += counts["updated"]
        reading.repeated += counts["repeated"]
        reading.quarantined += quarantined
        reading.skipped += skipped
        for issue in [*problems, *checked.issues]:
            reading.rules[issue.rule] = reading.rules.get(issue.rule, 0) + 1
            reading.warnings += issue.severity == "warning"
    return reading


def _fail_file(engine: Engine, row, message: str, run_id, reading: LeadReading) -> None:
    lead_store.finish_file(engine, row.id, status=LeadFileStatus.FAILED, error=message, processed_at=utc_now(), run_id=run_id)
    reading.failed.append(message)


def _advert_ids(engine: Engine, dealer_id: str) -> dict[str, str]:
    """The dealer's Auto Trader advert ids (the marketplace's own stock ids) and the DMS stock ids they list."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(listing_ledger.c.external_id, listing_ledger.c.item_key).where(
                and_(listing_ledger.c.dealer_id == dealer_id, listing_ledger.c.marketplace == "autotrader", listing_ledger.c.external_id.is_not(None))
            )
        ).all()
    return {str(external): str(key) for external, key in rows}


def group_stock(settings: Settings, paths: DataPaths) -> pd.DataFrame:
    """Every dealer's current stock, for the alternatives offered on a sold car."""
    frames = [read_stock(paths.state, dealer.id) for dealer in settings.dealers]
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else read_stock(paths.state, settings.dealers[0].id)


class GroupStock:
    """Every dealer's current stock, read when first asked for: only a lead on a sold or reserved car needs it (for the
    alternatives it offers), and reading it for every dealer's run made a group's night grow with the square of its dealers."""

    def __init__(self, settings: Settings, paths: DataPaths, frame: pd.DataFrame | None = None):
        self.settings, self.paths, self._frame, self._keyed = settings, paths, frame, None

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = group_stock(self.settings, self.paths)
        return self._frame

    def keyed(self) -> dict[tuple[str, str], dict]:
        """Each vehicle by (dealer, stock id)."""
        if self._keyed is None:
            self._keyed = {(str(row["dealer_id"]), str(row["stock_id"])): row for row in self.frame().to_dict("records")}
        return self._keyed


def _group(settings: Settings, paths: DataPaths, group: pd.DataFrame | GroupStock | None) -> GroupStock:
    return group if isinstance(group, GroupStock) else GroupStock(settings, paths, group)


def link_leads(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, group: pd.DataFrame | GroupStock | None = None) -> LeadLinking:
    """Tie each lead still to deliver to the dealer's car (by advert id, stock id, VIN or registration); a lead on a sold or
    reserved car gets up to `leads.alternatives` similar available cars of the group."""
    index = linking.StockIndex(read_stock(paths.state, dealer.id), _advert_ids(engine, dealer.id))
    group = _group(settings, paths, group)
    result = LeadLinking()
    links, finder = [], None
    for row in lead_store.leads_to_deliver(engine, dealer.id):
        lead = json.loads(row.lead)
        link = index.link(lead)
        offered = []
        if link.vehicle_status in linking.UNAVAILABLE:
            vehicle = index.vehicle(link.stock_id) or {}
            finder = finder or linking.Alternatives(group.frame())
            offered = [{"dealer_id": str(car["dealer_id"]), "stock_id": str(car["stock_id"])} for car in finder.like(vehicle, settings.leads.alternatives)]
            result.on_unavailable += 1
        if link.stock_id is None:
            result.unlinked += 1
        else:
            result.linked += 1
            result.by[link.linked_by] = result.by.get(link.linked_by, 0) + 1
        links.append({"lead_id": row.id, "linked_stock_id": link.stock_id, "linked_by": link.linked_by, "vehicle_status": link.vehicle_status, "alternatives": json.dumps(offered)})
    lead_store.set_leads(engine, links)
    return result


def _vehicles(keyed: dict[tuple[str, str], dict], wanted: list[dict]) -> list[dict]:
    return [keyed[key] for key in ((item["dealer_id"], item["stock_id"]) for item in wanted) if key in keyed]


def deliver_leads(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, logger=None, environ=None, group: pd.DataFrame | GroupStock | None = None) -> LeadDelivery:
    """Send each lead's current revision to the dealer's CRM as ADF 1.0 (checked against the DTD first) to every
    destination that has not acknowledged it; transient failures are retried on later runs, the rest dead-lettered."""
    logger = logger or log
    result = LeadDelivery()
    if dealer.crm is None:
        result.no_crm = lead_store.lead_counts(engine, dealer.id).get(LeadDeliveryStatus.NO_CRM, 0)
        return result
    _queue_kept_leads(engine, dealer.id)
    group = _group(settings, paths, group)
    stock = read_stock(paths.state, dealer.id)
    by_id = {str(row["stock_id"]): row for row in stock.to_dict("records")}
    configured = {name for name, target in (("drop", dealer.crm.drop), ("email", dealer.crm.email)) if target is not None}
    acknowledged = lead_store.acknowledged_by_lead(engine, dealer.id)
    ledger, changes = [], []
    owed = lead_store.leads_to_deliver(engine, dealer.id)
    matches = customer_matches(engine, dealer, [row.id for row in owed], by_id)
    for position, row in enumerate(owed):
        if len(changes) >= DELIVERY_BATCH:  # each file is durable before its ledger row; a crash in between resends at most a batch, under the same names
            lead_store.record_deliveries(engine, ledger, changes)
            ledger, changes = [], []
        lead = json.loads(row.lead)
        vehicle = by_id.get(row.linked_stock_id) if row.linked_stock_id else None
        wanted = json.loads(row.alternatives or "[]")
        offered = _vehicles(group.keyed(), wanted) if wanted else []
        link_status = row.vehicle_status if row.vehicle_status in ("available", "reserved", "sold") else ("available" if vehicle is not None else "unlinked")
        name = adf.adf_file_name(lead, row.revision)
        started = utc_now()
        document = adf.render_adf(lead, dealer, vehicle, link_status, offered, PROVIDER_NAMES.get(row.source, row.source), matches.get(row.id))
        errors = adf.validate_adf(document)
        if errors:  # never send what the CRM's parser may reject: a fault of ours, dead-lettered and alerted
            message = f"the ADF written for lead {row.source}:{row.source_lead_id} fails the ADF 1.0 DTD: {errors[0]}"
            ledger.append(lead_store.delivery_row(row, "document", "dead_letter", started, run_id, error=message, transient=0))
            changes.append({"lead_id": row.id, "delivery_status": LeadDeliveryStatus.DEAD_LETTER, "attempts": row.attempts + 1, "last_error": message, "next_attempt_at": None})
            result.dead_lettered += 1
            result.failures.append(f"{row.source}:{row.source_lead_id}: {message}")
            continue
        wanted = configured - acknowledged.get((row.id, row.revision), set())
        outcome = crm.deliver_adf(dealer.crm, dealer, paths, name, document, environ=environ, only=wanted)
        for receipt in outcome.receipts:
            ledger.append(lead_store.delivery_row(row, receipt.destination, "ok", started, run_id, reference=receipt.reference, acknowledged=receipt.acknowledged, vehicle_status=link_status))
        if not outcome.failures:
            changes.append({"lead_id": row.id, "delivery_status": LeadDeliveryStatus.DELIVERED, "delivered_revision": row.revision, "last_error": None, "next_attempt_at": None})
            result.delivered += 1
            result.files.append(name)
            continue
        attempts = row.attempts + 1
        message = "; ".join(str(failure) for failure in outcome.failures)
        transient = all(failure.transient for failure in outcome.failures)
        if transient and attempts < dealer.crm.max_attempts:
            ledger += [lead_store.delivery_row(row, f.destination, "failed", started, run_id, error=str(f), transient=1, vehicle_status=link_status) for f in outcome.failures]
            changes.append({"lead_id": row.id, "delivery_status": LeadDeliveryStatus.RETRY, "attempts": attempts, "last_error": message, "next_attempt_at": lead_store.retry_at(attempts)})
            result.retrying += 1
            result.failures.append(f"{row.source}:{row.source_lead_id}: {message} (attempt {attempts} of {dealer.crm.max_attempts}; retried)")
        else:
            ledger += [lead_store.delivery_row(row, f.destination, "dead_letter", started, run_id, error=str(f), transient=int(f.transient), vehicle_status=link_status) for f in outcome.failures]
            changes.append({"lead_id": row.id, "delivery_status": LeadDeliveryStatus.DEAD_LETTER, "attempts": attempts, "last_error": message, "next_attempt_at": None})
            result.dead_lettered += 1
            result.failures.append(f"{row.source}:{row.source_lead_id}: {message} (dead-lettered)")
        if transient:  # the CRM is down: the other leads wait for the next attempt instead of each waiting for a timeout
            later = f"not tried: the CRM failed for an earlier lead of this run ({message})"
            for waiting in owed[position + 1 :]:
                changes.append(
                    {"lead_id": waiting.id, "delivery_status": LeadDeliveryStatus.RETRY, "attempts": waiting.attempts, "last_error": later, "next_attempt_at": lead_store.retry_at(attempts)}
                )
                result.retrying += 1
            break
    lead_store.record_deliveries(engine, ledger, changes)
    return result


def _queue_kept_leads(engine: Engine, dealer_id: str) -> None:
    """Leads kept while the dealer had no CRM are delivered once it has one."""
    with engine.begin() as connection:
        connection.execute(
            update(leads_table).where(and_(leads_table.c.dealer_id == dealer_id, leads_table.c.delivery_status == LeadDeliveryStatus.NO_CRM)).values(delivery_status=LeadDeliveryStatus.PENDING)
        )


def replay_dead_letters(engine: Engine, dealer_id: str) -> int:
    """Queue the dealer's dead-lettered leads for delivery again (after the CRM or its configuration is fixed)."""
    with engine.begin() as connection:
        return connection.execute(
            update(leads_table)
            .where(and_(leads_table.c.dealer_id == dealer_id, leads_table.c.delivery_status == LeadDeliveryStatus.DEAD_LETTER))
            .values(delivery_status=LeadDeliveryStatus.PENDING, attempts=0, next_attempt_at=None)
        ).rowcount


@dataclass
class LeadRun:
    """One dealer's lead run, stage by stage, and what is wrong afterwards."""

    dealer_id: str
    landing: LeadLanding
    reading: LeadReading
    linking: LeadLinking
    delivery: LeadDelivery
    warehouse_rows: dict[str, int]
    problems: list[Problem]
    leaks: list[str]
    customers: "CustomerSync | None" = None  # None: the dealer has no DMS customer export configured
    identity: "IdentityRun | None" = None
    retention: "RetentionReport | None" = None


def crm_folders(settings: Settings, paths: DataPaths) -> list[Path]:
    """The local CRM drop folders of every dealer: the only place in the data root where leads' contact details may be."""
    return [paths.resolve(dealer.crm.drop.path) for dealer in settings.dealers if dealer.crm is not None and isinstance(dealer.crm.drop, LocalDestination)]


def personal_data_leaks(settings: Settings, paths: DataPaths, engine: Engine, dealer_id: str) -> list[str]:
    """Files of the outbox (marketplace feeds) and the warehouse that hold an e-mail or phone of the dealer's leads."""
    emails, phones = set(), set()
    with engine.connect() as connection:
        for (text,) in connection.execute(select(leads_table.c.lead).where(leads_table.c.dealer_id == dealer_id)):
            lead = json.loads(text)
            emails.add(lead.get("email") or "")
            phones.add(lead.get("phone") or "")
    emails.discard("")
    phones.discard("")
    if not emails and not phones:
        return []
    region = settings.dealer(dealer_id).market.country
    return privacy.leaks([paths.outbox, paths.warehouse_tables], emails, phones, crm_folders(settings, paths), region=region)


def customer_file_problems(engine: Engine, dealer_id: str) -> list[Problem]:
    """DMS customer exports that failed and that no full export processed since has superseded."""
    rows = customer_store.file_rows(engine, dealer_id)
    last_full = max((row.id for row in rows if row.export_kind == "full" and row.status == LeadFileStatus.PROCESSED), default=0)
    failed = [row for row in rows if row.status == LeadFileStatus.FAILED and row.id > last_full]
    return [Problem(dealer_id, "lead_customer_file_failed", row.file_name, f"DMS customer export {row.file_name} was not read: {row.error}") for row in failed]


def lead_run_problems(engine: Engine, dealer_id: str) -> list[Problem]:
    """Everything wrong with the dealer's leads and DMS customer exports now."""
    return lead_store.lead_problems(engine, dealer_id) + customer_file_problems(engine, dealer_id)


def finish_lead_run(settings: Settings, engine: Engine, dealer_id: str, run_id: str | None, logger=None, leaks: list[str] | None = None) -> list[Problem]:
    """The dealer's lead problems now (customer exports not read included), each an incident alerted once (and resolved, said so, once gone)."""
    problems = lead_run_problems(engine, dealer_id)
    if leaks:
        problems.append(Problem(dealer_id, "lead_personal_data_leak", "", f"personal data of leads found outside the CRM destinations: {'; '.join(leaks[:5])}"))
    report_incidents(settings, engine, dealer_id, problems, lambda key: key.startswith(lead_store.LEAD_PROBLEM_PREFIX), run_id, logger)
    return problems


def publish_lead_warehouse(paths: DataPaths, engine: Engine, dealer_id: str) -> dict[str, int]:
    rows = publish_leads(paths, engine, dealer_id) | publish_identity(paths, engine, dealer_id)
    ensure_catalog(paths)
    return rows


def sync_leads(
    dealer_id: str,
    settings: Settings,
    paths: DataPaths,
    engine: Engine,
    run_id: str | None,
    logger=None,
    environ=None,
    group: pd.DataFrame | GroupStock | None = None,
    apply_retention_now: bool = True,
) -> LeadRun:
    """Every lead stage for one dealer, in order (what the lead assets run one by one, and the group's nightly run per
    dealer, which also applies the retention periods)."""
    dealer = settings.dealer(dealer_id)
    customers = sync_customers(dealer_id, settings, paths, engine, run_id, logger) if dealer.customers is not None else None
    landing = land_leads(dealer, settings, paths, engine, run_id, logger, environ)
    reading = read_leads(dealer, settings, paths, engine, run_id, logger)
    group = _group(settings, paths, group)
    linked = link_leads(dealer, settings, paths, engine, group)
    identity = identify(dealer, settings, paths, engine, run_id, logger)
    delivery = deliver_leads(dealer, settings, paths, engine, run_id, logger, environ, group)
    retention = apply_retention(settings, paths, engine, dealer_id) if apply_retention_now else None
    rows = publish_lead_warehouse(paths, engine, dealer_id)
    found = personal_data_leaks(settings, paths, engine, dealer_id)
    problems = finish_lead_run(settings, engine, dealer_id, run_id, logger, found)
    return LeadRun(dealer_id, landing, reading, linked, delivery, rows, problems, found, customers, identity, retention)


def leads_waiting(dealer: Dealer, paths: DataPaths, engine: Engine) -> list[str]:
    """Keys of what a lead run would do for the dealer now (for a sensor's run key): payloads not yet registered, inbox files
    not yet taken, lead files to read and leads to deliver (a retry that is due counts again, by its attempt)."""
    keys = []
    folder = lead_folder(paths, dealer.id)
    if folder.exists():
        known = lead_store.registered_names(engine, dealer.id)
        keys += [f"payload:{path.name}" for path in folder.iterdir() if not path.name.startswith(".") and path.name not in known]
    source = lead_inbox(dealer, paths)
    try:
        seen = _inbox_keys(engine, dealer.id)
        keys += [f"inbox:{key}" for key in (f"{f.path}:{f.size}:{f.mtime}" for f in [*source.list_files(), *source.refused]) if key not in seen]
    finally:
        source.close()
    keys += [f"file:{row.id}:{row.attempts}" for row in lead_store.files_to_read(engine, dealer.id)]
    if dealer.crm is not None:
        keys += [f"lead:{row.id}:{row.revision}:{row.attempts}" for row in lead_store.leads_to_deliver(engine, dealer.id)]
    return keys
