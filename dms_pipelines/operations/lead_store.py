"""The lead manifest, the leads with their revisions, their quarantine and the CRM delivery ledger, in the operational database."""

import hashlib
import json
import math
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from dms_pipelines.operations.db import incidents, lead_deliveries, lead_files, lead_quarantine, lead_versions, leads
from dms_pipelines.operations.manifest import utc_aware, utc_now
from dms_pipelines.operations.run_health import Problem
from dms_pipelines.operations.statuses import LeadDeliveryStatus, LeadFileStatus

LEAD_PROBLEM_PREFIX = "lead_"  # the kinds of the lead runs' problems: only a lead run evaluates (and resolves) them
INBOX_UNREACHABLE = "lead_inbox_unreachable"  # opened by the landing stage, open until the inbox is read again
UNHASHED_FIELDS = ("received_at", "record")  # when and where a copy arrived is not part of what the lead says


def plain(value):
    """A lead value as JSON holds it: None for every kind of missing, ISO 8601 for times."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def lead_json(lead: dict) -> dict:
    return {name: plain(value) for name, value in lead.items()}


def content_hash(lead: dict) -> str:
    body = {name: value for name, value in sorted(lead.items()) if name not in UNHASHED_FIELDS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


# The manifest of landed lead files.


def register_file(engine: Engine, dealer_id: str, file_name: str, origin: str, sha256: str, size: int, received_at: datetime, run_id: str | None, **values) -> int:
    with engine.begin() as connection:
        return connection.execute(
            insert(lead_files).values(
                dealer_id=dealer_id,
                file_name=file_name,
                origin=origin,
                sha256=sha256,
                size_bytes=size,
                received_at=received_at,
                status=values.pop("status", LeadFileStatus.LANDED),
                attempts=0,
                run_id=run_id,
                **values,
            )
        ).inserted_primary_key[0]


def registered_names(engine: Engine, dealer_id: str) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(lead_files.c.file_name).where(lead_files.c.dealer_id == dealer_id)).scalars())


def inbox_hashes(engine: Engine, dealer_id: str) -> set[str]:
    """Checksums of the inbox files already landed for the dealer: the same bytes dropped again are a duplicate."""
    with engine.connect() as connection:
        query = select(lead_files.c.sha256).where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.origin == "inbox", lead_files.c.status != LeadFileStatus.DUPLICATE))
        return set(connection.execute(query).scalars())


def files_to_read(engine: Engine, dealer_id: str, now: datetime | None = None) -> list:
    """The dealer's landed lead files not read yet, and those whose retry is due, oldest first."""
    now = now or utc_now()
    with engine.connect() as connection:
        rows = connection.execute(
            select(lead_files)
            .where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.status.in_([LeadFileStatus.LANDED, LeadFileStatus.RETRY])))
            .order_by(lead_files.c.received_at, lead_files.c.id)
        ).all()
    return [row for row in rows if row.status == LeadFileStatus.LANDED or (utc_aware(row.next_attempt_at) or now) <= now]


def finish_file(engine: Engine, file_id: int, **values) -> None:
    with engine.begin() as connection:
        connection.execute(update(lead_files).where(lead_files.c.id == file_id).values(**values))


def problem_files(engine: Engine, dealer_id: str) -> list:
    """The dealer's lead files the operator must see: unreadable, or waiting on a deal that cannot be fetched."""
    with engine.connect() as connection:
        return connection.execute(
            select(lead_files).where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.status.in_([LeadFileStatus.FAILED, LeadFileStatus.RETRY]))).order_by(lead_files.c.id)
        ).all()


# Leads, one row per (dealer, source, source lead id), with a version row per revision.


def store_lead(connection: Connection, lead: dict, file_id: int, received_at: datetime, delivery_status: str) -> str:
    """Insert or update one validated lead by its idempotency key (dealer, source, source lead id): 'new', 'updated'
    (its content changed: a new revision, to deliver again) or 'repeated' (the same content again: counted, nothing else)."""
    values = lead_json(lead)
    digest = content_hash(values)
    key = and_(leads.c.dealer_id == values["dealer_id"], leads.c.source == values["source"], leads.c.source_lead_id == values["source_lead_id"])
    current = connection.execute(select(leads).where(key)).first()
    now = utc_now()
    if current is None:
        connection.execute(
            insert(leads).values(
                dealer_id=values["dealer_id"],
                source=values["source"],
                source_lead_id=values["source_lead_id"],
                revision=1,
                content_hash=digest,
                lead=json.dumps(values),
                first_received_at=received_at,
                last_received_at=received_at,
                repeats=0,
                lead_file_id=file_id,
                delivery_status=delivery_status,
                delivered_revision=0,
                attempts=0,
                updated_at=now,
            )
        )
        _version(connection, values, 1, digest, None, file_id, received_at)
        return "new"
    if current.content_hash == digest:
        connection.execute(update(leads).where(leads.c.id == current.id).values(repeats=current.repeats + 1, last_received_at=received_at, updated_at=now))
        return "repeated"
    before = json.loads(current.lead)
    changed = sorted(name for name in values if name not in UNHASHED_FIELDS and before.get(name) != values[name])
    values["received_at"] = before.get("received_at") or values["received_at"]  # the lead arrived when it first arrived
    revision = current.revision + 1
    connection.execute(
        update(leads)
        .where(leads.c.id == current.id)
        .values(
            revision=revision,
            content_hash=digest,
            lead=json.dumps(values),
            last_received_at=received_at,
            lead_file_id=file_id,
            delivery_status=delivery_status,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            updated_at=now,
        )
    )
    _version(connection, values, revision, digest, ",".join(changed), file_id, received_at)
    return "updated"


def store_leads(connection: Connection, dealer_id: str, batch: list[dict], file_id: int, received_at: datetime, delivery_status: str) -> dict[str, int]:
    """store_lead for many leads of one file: the new ones inserted together (the usual case), the known ones one by one."""
    counts = {"new": 0, "updated": 0, "repeated": 0}
    known: set[tuple[str, str]] = set()
    pairs = [(lead["source"], lead["source_lead_id"]) for lead in batch]
    for source in {source for source, _ in pairs}:
        ids = [lead_id for s, lead_id in pairs if s == source]
        for start in range(0, len(ids), 500):
            query = select(leads.c.source_lead_id).where(and_(leads.c.dealer_id == dealer_id, leads.c.source == source, leads.c.source_lead_id.in_(ids[start : start + 500])))
            known.update((source, lead_id) for lead_id in connection.execute(query).scalars())
    fresh, now = [], utc_now()
    for lead in batch:
        if (lead["source"], lead["source_lead_id"]) in known:
            counts[store_lead(connection, lead, file_id, received_at, delivery_status)] += 1
        else:
            values = lead_json(lead)
            fresh.append((values, content_hash(values)))
    if fresh:
        connection.execute(
            insert(leads),
            [
                {
                    "dealer_id": values["dealer_id"],
                    "source": values["source"],
                    "source_lead_id": values["source_lead_id"],
                    "revision": 1,
                    "content_hash": digest,
                    "lead": json.dumps(values),
                    "first_received_at": received_at,
                    "last_received_at": received_at,
                    "repeats": 0,
                    "lead_file_id": file_id,
                    "delivery_status": delivery_status,
                    "delivered_revision": 0,
                    "attempts": 0,
                    "updated_at": now,
                }
                for values, digest in fresh
            ],
        )
        connection.execute(
            insert(lead_versions),
            [
                {
                    "dealer_id": values["dealer_id"],
                    "source": values["source"],
                    "source_lead_id": values["source_lead_id"],
                    "revision": 1,
                    "content_hash": digest,
                    "lead": json.dumps(values),
                    "changed_fields": None,
                    "lead_file_id": file_id,
                    "received_at": received_at,
                }
                for values, digest in fresh
            ],
        )
        counts["new"] += len(fresh)
    return counts


def delete_leads(connection: Connection, lead_ids: list[int]) -> dict[str, int]:
    """Delete leads with every revision and delivery row of theirs (erasure, retention); rows deleted per table."""
    if not lead_ids:
        return {"lead_versions": 0, "lead_deliveries": 0, "leads": 0}
    keys = connection.execute(select(leads.c.dealer_id, leads.c.source, leads.c.source_lead_id).where(leads.c.id.in_(lead_ids))).all()
    versions = sum(connection.execute(delete(lead_versions).where(and_(lead_versions.c.dealer_id == d, lead_versions.c.source == s, lead_versions.c.source_lead_id == i))).rowcount for d, s, i in keys)
    deliveries = connection.execute(delete(lead_deliveries).where(lead_deliveries.c.lead_id.in_(lead_ids))).rowcount
    return {"lead_versions": versions, "lead_deliveries": deliveries, "leads": connection.execute(delete(leads).where(leads.c.id.in_(lead_ids))).rowcount}


def acknowledged_by_lead(engine: Engine, dealer_id: str) -> dict[tuple[int, int], set[str]]:
    """Per (lead id, revision), the CRM destinations that acknowledged it, for the dealer's leads still to deliver."""
    owed = and_(leads.c.dealer_id == dealer_id, leads.c.delivery_status.in_([LeadDeliveryStatus.PENDING, LeadDeliveryStatus.RETRY]))
    query = (
        select(lead_deliveries.c.lead_id, lead_deliveries.c.revision, lead_deliveries.c.destination)
        .join(leads, and_(leads.c.id == lead_deliveries.c.lead_id, leads.c.revision == lead_deliveries.c.revision))
        .where(and_(owed, lead_deliveries.c.outcome == "ok"))
    )
    found: dict[tuple[int, int], set[str]] = {}
    with engine.connect() as connection:
        for lead_id, revision, destination in connection.execute(query):
            found.setdefault((lead_id, revision), set()).add(destination)
    return found


def delivery_row(lead_row, destination: str, outcome: str, started_at: datetime, run_id: str | None, **values) -> dict:
    row = {
        "dealer_id": lead_row.dealer_id,
        "lead_id": lead_row.id,
        "source": lead_row.source,
        "source_lead_id": lead_row.source_lead_id,
        "revision": lead_row.revision,
        "destination": destination,
        "outcome": outcome,
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": utc_now(),
    }
    return row | {name: values.get(name) for name in ("reference", "acknowledged", "transient", "error", "vehicle_status")}


def record_deliveries(engine: Engine, rows: list[dict], changes: list[dict]) -> None:
    """Ledger rows and the leads' new delivery states in one transaction."""
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(lead_deliveries), rows)
    set_leads(engine, changes)


def _version(connection: Connection, values: dict, revision: int, digest: str, changed: str | None, file_id: int, received_at: datetime) -> None:
    connection.execute(
        insert(lead_versions).values(
            dealer_id=values["dealer_id"],
            source=values["source"],
            source_lead_id=values["source_lead_id"],
            revision=revision,
            content_hash=digest,
            lead=json.dumps(values),
            changed_fields=changed,
            lead_file_id=file_id,
            received_at=received_at,
        )
    )


def record_issues(connection: Connection, dealer_id: str, file_id: int, file_name: str, issues) -> None:
    rows = [
        {
            "dealer_id": dealer_id,
            "lead_file_id": file_id,
            "file_name": file_name,
            "record": issue.record,
            "field": issue.field,
            "rule": issue.rule,
            "severity": issue.severity,
            "message": issue.message,
            "created_at": utc_now(),
        }
        for issue in issues
    ]
    if rows:
        connection.execute(insert(lead_quarantine), rows)


def leads_to_deliver(engine: Engine, dealer_id: str, now: datetime | None = None) -> list:
    """The dealer's leads whose current revision is not delivered yet: new ones, and retries that are due."""
    now = now or utc_now()
    with engine.connect() as connection:
        rows = connection.execute(
            select(leads)
            .where(and_(leads.c.dealer_id == dealer_id, leads.c.delivery_status.in_([LeadDeliveryStatus.PENDING, LeadDeliveryStatus.RETRY])))
            .order_by(leads.c.first_received_at, leads.c.id)
        ).all()
    return [row for row in rows if row.delivery_status == LeadDeliveryStatus.PENDING or (utc_aware(row.next_attempt_at) or now) <= now]


def acknowledged_destinations(engine: Engine, lead_id: int, revision: int) -> set[str]:
    """The CRM destinations that acknowledged this revision of the lead: never sent it again."""
    with engine.connect() as connection:
        query = select(lead_deliveries.c.destination).where(and_(lead_deliveries.c.lead_id == lead_id, lead_deliveries.c.revision == revision, lead_deliveries.c.outcome == "ok"))
        return set(connection.execute(query).scalars())


def record_delivery(engine: Engine, lead_row, destination: str, outcome: str, started_at: datetime, run_id: str | None, **values) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(lead_deliveries).values(
                dealer_id=lead_row.dealer_id,
                lead_id=lead_row.id,
                source=lead_row.source,
                source_lead_id=lead_row.source_lead_id,
                revision=lead_row.revision,
                destination=destination,
                outcome=outcome,
                run_id=run_id,
                started_at=started_at,
                finished_at=utc_now(),
                **values,
            )
        )


def set_lead(engine: Engine, lead_id: int, **values) -> None:
    with engine.begin() as connection:
        connection.execute(update(leads).where(leads.c.id == lead_id).values(updated_at=utc_now(), **values))


def set_leads(engine: Engine, changes: list[dict]) -> None:
    """Update many leads in one transaction: each dict has `lead_id` and the columns to set."""
    if not changes:
        return
    now = utc_now()
    by_columns: dict[tuple[str, ...], list[dict]] = {}
    for change in changes:
        by_columns.setdefault(tuple(sorted(k for k in change if k != "lead_id")), []).append(change)
    with engine.begin() as connection:
        for columns, group in by_columns.items():
            # bound under other names: SQLAlchemy reserves a column's own name for the SET clause
            statement = update(leads).where(leads.c.id == bindparam("lead_id")).values(updated_at=now, **{name: bindparam(f"new_{name}") for name in columns})
            connection.execute(statement, [{"lead_id": item["lead_id"], **{f"new_{name}": item[name] for name in columns}} for item in group])


def retry_at(attempts: int, base_seconds: float = 30.0, cap_seconds: float = 3600.0) -> datetime:
    return utc_now() + timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(0, attempts - 1)))


def lead_counts(engine: Engine, dealer_id: str) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(leads.c.delivery_status, func.count()).where(leads.c.dealer_id == dealer_id).group_by(leads.c.delivery_status)).all()
    return {status: count for status, count in rows}


def lead_problems(engine: Engine, dealer_id: str) -> list[Problem]:
    """What is wrong with the dealer's leads now: lead files that could not be read (until acknowledged), deals still
    waiting to be fetched, and leads not delivered (retrying, dead-lettered, or kept for want of a CRM)."""
    with engine.connect() as connection:
        open_inbox = connection.execute(select(incidents.c.message).where(and_(incidents.c.dealer_id == dealer_id, incidents.c.kind == INBOX_UNREACHABLE, incidents.c.resolved_at.is_(None)))).first()
    problems = [Problem(dealer_id, INBOX_UNREACHABLE, "", open_inbox.message)] if open_inbox else []
    for row in problem_files(engine, dealer_id):
        if row.status == LeadFileStatus.FAILED and row.acknowledged_at is None:
            problems.append(Problem(dealer_id, "lead_file_failed", row.file_name, f"lead file {row.file_name} was not read: {row.error}"))
        elif row.status == LeadFileStatus.RETRY:
            problems.append(Problem(dealer_id, "lead_file_retrying", row.file_name, f"lead file {row.file_name}: its deal is not read yet (attempt {row.attempts}): {row.error}"))
    with engine.connect() as connection:
        rows = connection.execute(
            select(leads.c.delivery_status, func.count(), func.min(leads.c.last_error))
            .where(and_(leads.c.dealer_id == dealer_id, leads.c.delivery_status.in_([LeadDeliveryStatus.RETRY, LeadDeliveryStatus.DEAD_LETTER, LeadDeliveryStatus.NO_CRM])))
            .group_by(leads.c.delivery_status)
        ).all()
    for status, count, error in rows:
        if status == LeadDeliveryStatus.NO_CRM:
            problems.append(Problem(dealer_id, "lead_no_crm", "", f"{count} lead(s) kept but not delivered: the dealer has no crm configured"))
        elif status == LeadDeliveryStatus.RETRY:
            problems.append(Problem(dealer_id, "lead_retrying", "", f"{count} lead(s) not delivered to the CRM yet, retried: {error}"))
        else:
            problems.append(
                Problem(dealer_id, "lead_dead_letter", "", f"{count} lead(s) dead-lettered (not delivered to the CRM): {error}; replay with dms-pipelines leads replay --dealer {dealer_id}")
            )
    return problems


def acknowledge_failed_files(engine: Engine, dealer_id: str, file_name: str | None = None, by: str | None = None) -> int:
    """Mark the dealer's failed lead files (or one) as seen by an operator: no longer a problem."""
    query = update(lead_files).where(and_(lead_files.c.dealer_id == dealer_id, lead_files.c.status == LeadFileStatus.FAILED, lead_files.c.acknowledged_at.is_(None)))
    if file_name is not None:
        query = query.where(lead_files.c.file_name == file_name)
    with engine.begin() as connection:
        return connection.execute(query.values(acknowledged_at=utc_now(), acknowledged_by=by)).rowcount
