"""The DMS customer manifest, the stored customers (one canonical record per dealer and customer number) and their quarantine, in the operational database."""

import hashlib
import json
import math
from datetime import datetime

import pandas as pd
from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from dms_pipelines.operations.db import customer_files, customer_quarantine, dms_customers
from dms_pipelines.operations.manifest import utc_now
from dms_pipelines.operations.statuses import LeadFileStatus

LINEAGE = ("source_file", "source_row")  # where a copy came from is not part of what the record says
BATCH = 5000  # rows per executemany
STORED_COLUMNS = ["content_hash", "present"]  # what customers_of adds after the canonical columns


def _plain(value):
    """A value as JSON holds it: None for every kind of missing, ISO 8601 (UTC) for times, plain Python for numpy scalars."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).tz_convert("UTC").isoformat() if pd.Timestamp(value).tzinfo else pd.Timestamp(value).isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def record_json(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def content_hash(record: dict) -> str:
    """sha256 of the canonical record without its lineage, keys sorted."""
    body = {name: value for name, value in record.items() if name not in LINEAGE}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def plain_records(frame: pd.DataFrame) -> list[dict]:
    """The rows of a canonical customer frame as JSON-ready dicts, in column order."""
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
            columns[name] = [None if value is pd.NaT or value is None else _plain(value) for value in series]
        else:
            columns[name] = [_plain(value) for value in series.astype(object)]
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())] if names else []


# The manifest of landed customer files.


def register_file(engine: Engine, dealer_id: str, file_name: str, sha256: str, size: int, received_at: datetime, run_id: str | None, **values) -> int:
    """A customer_files row for a file in customer_landing/<dealer>/ (status landed unless given); its id."""
    with engine.begin() as connection:
        return connection.execute(
            insert(customer_files).values(
                dealer_id=dealer_id, file_name=file_name, sha256=sha256, size_bytes=size, received_at=received_at, status=values.pop("status", LeadFileStatus.LANDED), run_id=run_id, **values
            )
        ).inserted_primary_key[0]


def source_keys(engine: Engine, dealer_id: str) -> set[str]:
    """The source keys (path, size, mtime) of every file already taken or refused: not looked at again."""
    with engine.connect() as connection:
        return set(connection.execute(select(customer_files.c.source_key).where(and_(customer_files.c.dealer_id == dealer_id, customer_files.c.source_key.is_not(None)))).scalars())


def landed_hashes(engine: Engine, dealer_id: str) -> set[str]:
    """Checksums of the dealer's landed files: the same bytes delivered again are a duplicate."""
    with engine.connect() as connection:
        query = select(customer_files.c.sha256).where(
            and_(customer_files.c.dealer_id == dealer_id, customer_files.c.status.in_([LeadFileStatus.LANDED, LeadFileStatus.PROCESSED]), customer_files.c.sha256 != "")
        )
        return set(connection.execute(query).scalars())


def files_to_read(engine: Engine, dealer_id: str) -> list:
    """The dealer's landed files not read yet, in the order they apply: received time, then a full before a delta, then name."""
    with engine.connect() as connection:
        rows = connection.execute(select(customer_files).where(and_(customer_files.c.dealer_id == dealer_id, customer_files.c.status == LeadFileStatus.LANDED))).all()
    return sorted(rows, key=lambda row: (row.received_at, row.export_kind != "full", row.original_name or row.file_name, row.id))


def finish_file(engine_or_connection: Engine | Connection, file_id: int, status: str, error: str | None = None, **counts) -> None:
    """The file's outcome: status (processed | failed), the error naming the file (never a personal value), the counts."""
    statement = update(customer_files).where(customer_files.c.id == file_id).values(status=status, error=error, processed_at=utc_now(), **counts)
    if isinstance(engine_or_connection, Connection):
        engine_or_connection.execute(statement)
        return
    with engine_or_connection.begin() as connection:
        connection.execute(statement)


def file_rows(engine: Engine, dealer_id: str) -> list:
    with engine.connect() as connection:
        return connection.execute(select(customer_files).where(customer_files.c.dealer_id == dealer_id).order_by(customer_files.c.id)).all()


# The stored customers.


def store_customers(connection: Connection, dealer_id: str, accepted: pd.DataFrame, file_id: int, full: bool, seen: set[str] | None = None, now: datetime | None = None) -> dict[str, int]:
    """Upsert the accepted canonical customers by (dealer, customer number), in batches; on a full export, mark the
    dealer's customers it does not hold present=0 (never deleted). `seen`: every customer number the file held,
    quarantined rows included (a customer whose row was bad this time is not absent). Counts new, changed, unchanged, absent."""
    now = now or utc_now()
    existing = {
        row.customer_number: row
        for row in connection.execute(select(dms_customers.c.id, dms_customers.c.customer_number, dms_customers.c.content_hash, dms_customers.c.present).where(dms_customers.c.dealer_id == dealer_id))
    }
    inserts, changes, returned = [], [], []
    for record in plain_records(accepted):
        number, digest = record["customer_number"], content_hash(record)
        stored = existing.get(number)
        if stored is None:
            inserts.append(
                {
                    "dealer_id": dealer_id,
                    "customer_number": number,
                    "record": record_json(record),
                    "content_hash": digest,
                    "customer_file_id": file_id,
                    "first_seen_at": now,
                    "updated_at": now,
                    "present": 1,
                }
            )
            existing[number] = None  # a repeat in the same batch is an update, never a second insert
        elif stored is not None and stored.content_hash != digest:
            changes.append({"row_id": stored.id, "record": record_json(record), "content_hash": digest, "customer_file_id": file_id, "updated_at": now, "present": 1})
        elif stored is not None and not stored.present:
            returned.append({"row_id": stored.id, "present": 1})
    for start in range(0, len(inserts), BATCH):
        connection.execute(insert(dms_customers), inserts[start : start + BATCH])
    by_id = dms_customers.c.id == bindparam("row_id")
    changed_values = {name: bindparam(name) for name in ("record", "content_hash", "customer_file_id", "updated_at", "present")}
    for start in range(0, len(changes), BATCH):
        connection.execute(update(dms_customers).where(by_id).values(changed_values), changes[start : start + BATCH])
    for start in range(0, len(returned), BATCH):
        connection.execute(update(dms_customers).where(by_id).values(present=bindparam("present")), returned[start : start + BATCH])
    absent = []
    if full:
        held = set(accepted["customer_number"].dropna()) | set(seen or ())
        absent = [{"row_id": row.id, "present": 0} for number, row in existing.items() if row is not None and row.present and number not in held]
        for start in range(0, len(absent), BATCH):
            connection.execute(update(dms_customers).where(by_id).values(present=bindparam("present")), absent[start : start + BATCH])
    return {"new": len(inserts), "changed": len(changes), "unchanged": len(accepted) - len(inserts) - len(changes), "absent": len(absent)}


def record_quarantine(connection: Connection, dealer_id: str, file_id: int, file_name: str, issues: pd.DataFrame, now: datetime | None = None) -> int:
    """One customer_quarantine row per issue (errors: the row was quarantined; warnings: it went on); messages never hold a value."""
    if issues is None or issues.empty:
        return 0
    now = now or utc_now()
    rows = [
        {
            "dealer_id": dealer_id,
            "customer_file_id": file_id,
            "file_name": file_name,
            "source_row": _plain(issue["source_row"]),
            "customer_number": _plain(issue["customer_number"]),
            "field": _plain(issue["field"]) or "(row)",
            "rule": str(issue["rule"])[:64],
            "severity": str(issue["severity"]),
            "message": str(issue["message"]),
            "created_at": now,
        }
        for issue in issues.to_dict("records")
    ]
    for start in range(0, len(rows), BATCH):
        connection.execute(insert(customer_quarantine), rows[start : start + BATCH])
    return len(rows)


def quarantine_rows(engine: Engine, dealer_id: str) -> list:
    with engine.connect() as connection:
        return connection.execute(select(customer_quarantine).where(customer_quarantine.c.dealer_id == dealer_id).order_by(customer_quarantine.c.id)).all()


def customer_hashes(engine: Engine, dealer_id: str) -> dict[str, str]:
    """Each stored customer's number and content_hash (what identity compares with the hash it last linked)."""
    with engine.connect() as connection:
        return dict(connection.execute(select(dms_customers.c.customer_number, dms_customers.c.content_hash).where(dms_customers.c.dealer_id == dealer_id)).all())


def customers_of(engine: Engine, dealer_id: str, changed_only: bool = False, numbers: set[str] | None = None) -> pd.DataFrame:
    """The dealer's stored customers: the canonical record's columns (times as UTC datetimes, consents as nullable
    booleans), then content_hash and present (0: absent from the latest full export). changed_only: those not linked
    since their content last changed (content_hash differs from linked_hash, or never linked); numbers: only these."""
    query = select(dms_customers.c.record, dms_customers.c.content_hash, dms_customers.c.present).where(dms_customers.c.dealer_id == dealer_id)
    if changed_only:
        query = query.where(or_(dms_customers.c.linked_hash.is_(None), dms_customers.c.linked_hash != dms_customers.c.content_hash))
    with engine.connect() as connection:
        if numbers is None:
            rows = connection.execute(query.order_by(dms_customers.c.customer_number)).all()
        else:
            wanted = sorted(numbers)
            rows = []
            for start in range(0, len(wanted), BATCH):
                rows += connection.execute(query.where(dms_customers.c.customer_number.in_(wanted[start : start + BATCH])).order_by(dms_customers.c.customer_number)).all()
    records = [json.loads(row.record) for row in rows]
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for name in frame.columns:
        if name.endswith("_at"):
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
        elif name.startswith("consent_") and name != "consent_wording":
            frame[name] = frame[name].astype("boolean")
        elif name == "source_row":
            frame[name] = frame[name].astype("Int64")
        else:
            frame[name] = frame[name].astype("string")
    frame["content_hash"] = pd.array([row.content_hash for row in rows], dtype="string")
    frame["present"] = pd.array([row.present for row in rows], dtype="Int64")
    return frame.reset_index(drop=True)


def mark_linked(engine: Engine, dealer_id: str, hashes: dict[str, str]) -> int:
    """Record that identity linked each customer (number -> the content_hash it linked); the rows updated."""
    if not hashes:
        return 0
    rows = [{"number": number, "linked": digest} for number, digest in hashes.items()]
    statement = update(dms_customers).where(and_(dms_customers.c.dealer_id == dealer_id, dms_customers.c.customer_number == bindparam("number"))).values(linked_hash=bindparam("linked"))
    updated = 0
    with engine.begin() as connection:
        for start in range(0, len(rows), BATCH):
            updated += connection.execute(statement, rows[start : start + BATCH]).rowcount
    return updated
