"""The operational database's tables and engine: SQLite under state/ by default, PostgreSQL by URL."""

import random
import sqlite3
import time
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

metadata = MetaData()

ingested_files = Table(
    "ingested_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("source_path", Text, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("source_mtime", Float, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("landed_path", Text),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("export_kind", String(16)),  # full | delta
    Column("export_timestamp", String(32)),  # sortable, from the file name (or its mtime)
    # landed -> processed | failed | duplicate | superseded | held | retry: operations.statuses.FileStatus
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("rows_total", Integer),
    Column("rows_accepted", Integer),
    Column("rows_quarantined", Integer),
    Column("encoding", String(32)),
    Column("error", Text),
    Column("warnings", Text),  # file-level findings that did not stop it: schema drift (columns named), encoding
    Column("processed_at", DateTime(timezone=True)),
    Column("run_id", String(64)),
    Column("released_by", Text),  # set when an operator released a held export on purpose
    Column("landed_run_id", String(64)),  # the run that took it from the source (run_id: the run that last processed it)
    Column("rows_skipped", Integer),  # records the mapping profile's skip rules left out (not for sale): neither stock nor quarantine
    Column("reprocessed_at", DateTime(timezone=True)),  # when an operator last asked for it to be read again (dms-pipelines reprocess)
    Column("reprocessed_by", Text),
    UniqueConstraint("dealer_id", "source_path", "size_bytes", "source_mtime", "sha256", name="uq_ingested_version"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("file_id", Integer, index=True),
    Column("source_file", Text, nullable=False),
    Column("source_row", Integer),
    Column("stock_id", Text),
    Column("field", String(64)),
    Column("rule", String(64), nullable=False),
    Column("value", Text),
    Column("severity", String(16), nullable=False),  # error (row quarantined) | warning (row went through)
    Column("message", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # open | resolved: operations.statuses.QuarantineStatus
)

file_observations = Table(
    "file_observations",
    metadata,
    Column("dealer_id", String(64), primary_key=True),
    Column("source_path", Text, primary_key=True),
    Column("size_bytes", Integer, nullable=False),
    Column("source_mtime", Float, nullable=False),
    Column("first_seen", Float, nullable=False),
)


listing_ledger = Table(
    "listing_ledger",
    metadata,
    Column("marketplace", String(32), primary_key=True),
    Column("dealer_id", String(64), primary_key=True),
    Column("item_key", Text, primary_key=True),  # stock number, or "file:<name>" for a snapshot file
    Column("content_hash", String(64)),  # what the marketplace last acknowledged
    Column("pending_hash", String(64)),  # what was last sent and not yet acknowledged (a crash in between shows here)
    Column("external_id", Text),  # the marketplace's own id of the listing (an API's stock id)
    Column("generation", Integer, nullable=False, default=0),  # bumped when the marketplace lost the listing
    Column("change_seq", Integer, nullable=False, default=0),  # bumped for each new change sent; one change's retries keep it (its idempotency key)
    Column("content", Text),  # the acknowledged item as JSON, so the next change can be sent as a minimal patch
    Column("state", String(32)),  # the marketplace-side state last acknowledged, e.g. FORECOURT, SOLD, DELETED
    Column("status", String(16), nullable=False),  # pending | acknowledged | failed | dead | withdrawn: operations.statuses.ListingStatus
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("acknowledged_at", DateTime(timezone=True)),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64)),
    Column("marketplace", String(32), nullable=False, index=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("item_key", Text, nullable=False),
    Column("action", String(16), nullable=False),  # file | create | update | delete | sold | lookup
    Column("content_hash", String(64)),
    Column("outcome", String(16), nullable=False),  # ok | failed | dead_letter | skipped
    Column("http_status", Integer),
    Column("calls", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("trigger", String(32)),  # nightly | hourly | sold_fast_path | manual
    Column("change_seen_at", DateTime(timezone=True)),  # when the change that caused this delivery was first seen
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("marketplace", String(32), nullable=False, index=True),
    Column("dealer_id", String(64), nullable=False),
    Column("item_key", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("content_hash", String(64)),
    Column("payload", Text),
    Column("http_status", Integer),
    Column("message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("replayed_at", DateTime(timezone=True)),
    Column("replay_outcome", String(16)),
)


sync_runs = Table(
    "sync_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("dealer_id", String(64), primary_key=True, index=True),  # a group_sync run has a row per dealer
    Column("trigger", String(32)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("files", Integer),
    Column("records", Integer),
    Column("accepted", Integer),
    Column("quarantined", Integer),
    Column("held", Integer),
    Column("vehicles", Integer),
    Column("problems", Integer),  # what was wrong for the dealer after the run (run_health), held exports included
    Column("landed", Integer),  # files the run took from the source
    Column("failed", Integer),  # files the run could not read (or fetch)
    Column("skipped", Integer),  # records left out by the profile's skip rules (not for sale)
    Column("quarantine_issues", Integer),  # error issues behind the `quarantined` vehicles (a vehicle can have several)
    Column("outcome", String(16), nullable=False),  # ok | held | problems | no_change
)


marketplace_drift = Table(
    "marketplace_drift",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64)),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("marketplace", String(32), nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("vehicles_checked", Integer, nullable=False),
    Column("missing", Integer, nullable=False),
    Column("extra", Integer, nullable=False),
    Column("stale", Integer, nullable=False),
    Column("sold_live", Integer, nullable=False),
    Column("error", Text),  # the marketplace could not be read back
    Column("stock_ids", Text),  # JSON: kind -> the first stock ids (the whole list is in drift_items)
)

source_listings = Table(
    "source_listings",
    metadata,
    Column("dealer_id", String(64), primary_key=True),
    Column("first_listed_at", DateTime(timezone=True), nullable=False),  # the dealer's source first listed: its freshness window starts here
    Column("listed_at", DateTime(timezone=True), nullable=False),
    Column("files", Integer, nullable=False),  # files ready in the source at the last listing
    Column("unmatched", Integer, nullable=False),  # of them, matching none of the profile's file patterns
    Column("unmatched_sample", Text),  # the first few of those names, one per line
)


drift_items = Table(
    "drift_items",
    metadata,
    Column("dealer_id", String(64), primary_key=True),
    Column("marketplace", String(32), primary_key=True),
    Column("stock_id", Text, primary_key=True),
    Column("kind", String(16), nullable=False),  # missing | extra | stale | sold_live, as of the last check
    Column("checked_at", DateTime(timezone=True), nullable=False),
)


incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),  # "*" for the account-wide files
    Column("key", Text, nullable=False),  # kind:scope, e.g. sold_live:<marketplace>, held_export:stock_full_20261122_0200.csv
    Column("kind", String(32), nullable=False),
    Column("scope", Text, nullable=False),
    Column("message", Text, nullable=False),  # as first seen
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),  # NULL while open
    Column("run_id", String(64)),  # the run that opened it
)


# Leads. These tables hold personal data (the buyer's name, e-mail, phone, message): the operational database is the one
# restricted store of it besides the CRM outbox; the warehouse gets masked copies only (docs/warehouse.md).
lead_files = Table(
    "lead_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("file_name", Text, nullable=False),  # the name in lead_landing/<dealer>/
    Column("origin", String(16), nullable=False),  # webhook | inbox | fetched (an Auto Trader deal read after its notification)
    Column("original_name", Text),  # the name in the inbox, for inbox files
    Column("source_key", Text, index=True),  # an inbox file's path, size and mtime: a file already landed is not read again
    Column("sha256", String(64), nullable=False, index=True),
    Column("size_bytes", Integer, nullable=False),
    Column("kind", String(32)),  # the parser's kind: meta_csv | adf | google | website | autotrader_deal | autotrader_notification
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # landed | processed | failed | duplicate | retry: operations.statuses.LeadFileStatus
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("leads_in", Integer),
    Column("leads_new", Integer),
    Column("leads_updated", Integer),
    Column("leads_repeated", Integer),
    Column("quarantined", Integer),
    Column("skipped", Integer),
    Column("parent_id", Integer),  # a fetched deal: the notification it was read for
    Column("run_id", String(64)),
    Column("processed_at", DateTime(timezone=True)),
    Column("acknowledged_at", DateTime(timezone=True)),  # an operator has seen why a failed file was not read (dms-pipelines leads acknowledge)
    Column("acknowledged_by", Text),
    Column("erased_at", DateTime(timezone=True)),  # an erasure removed the file (a payload of one person) or rewrote it without them
    UniqueConstraint("dealer_id", "file_name", name="uq_lead_file_name"),
)

leads = Table(
    "leads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("source", String(16), nullable=False),
    Column("source_lead_id", Text, nullable=False),
    Column("revision", Integer, nullable=False),  # 1, then +1 for each change of content (an updated deal), never for a repeat
    Column("content_hash", String(64), nullable=False),
    Column("lead", Text, nullable=False),  # the canonical lead as JSON (records.FIELD_NAMES)
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False),
    Column("repeats", Integer, nullable=False, default=0),  # identical copies received again (resent notifications, repeated ADF)
    Column("lead_file_id", Integer),  # the file of the current revision
    Column("linked_stock_id", Text),
    Column("linked_by", String(16)),  # advert_id | stock_id | vin | registration | None (not tied to a car)
    Column("vehicle_status", String(16)),  # the car's status when the lead was last delivered: available | reserved | sold | ...
    Column("alternatives", Text),  # JSON list of {dealer_id, stock_id} offered when the car is sold or reserved
    Column("delivery_status", String(16), nullable=False),  # pending | delivered | retry | dead_letter | no_crm: LeadDeliveryStatus
    Column("delivered_revision", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),  # for the revision being delivered
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dealer_id", "source", "source_lead_id", name="uq_lead_key"),
)

lead_versions = Table(
    "lead_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("source", String(16), nullable=False),
    Column("source_lead_id", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("lead", Text, nullable=False),
    Column("changed_fields", Text),  # comma-separated canonical fields that differ from the previous revision
    Column("lead_file_id", Integer),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dealer_id", "source", "source_lead_id", "revision", name="uq_lead_revision"),
)

lead_quarantine = Table(
    "lead_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("lead_file_id", Integer, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("record", Text, nullable=False),  # "row 7", "prospect 2", "payload"
    Column("field", Text, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("severity", String(16), nullable=False),  # error (quarantined) | warning (the lead went on)
    Column("message", Text, nullable=False),  # never holds a personal value
    Column("created_at", DateTime(timezone=True), nullable=False),
)

lead_deliveries = Table(
    "lead_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("lead_id", Integer, nullable=False, index=True),
    Column("source", String(16), nullable=False),
    Column("source_lead_id", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("destination", String(16), nullable=False),  # drop | email
    Column("reference", Text),  # the ADF file name, or the e-mail's Message-ID
    Column("acknowledged", Text),  # what the CRM side confirmed (the rename, the SMTP server's reply)
    Column("outcome", String(16), nullable=False),  # ok | failed | dead_letter
    Column("transient", Integer),
    Column("error", Text),  # never holds personal data
    Column("vehicle_status", String(16)),
    Column("run_id", String(64)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
)


# DMS customers and identity. Personal data again (names, contacts, addresses): kept here, in the CRM outbox and in the
# raw customer exports only; the warehouse gets masked copies. An erasure removes a person from every one of them.
customer_files = Table(
    "customer_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("file_name", Text, nullable=False),  # the name in customer_landing/<dealer>/
    Column("original_name", Text),
    Column("source_key", Text, index=True),  # path, size and mtime in the source: a file already landed is not taken again
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("export_kind", String(8)),  # full | delta (the profile's file patterns)
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # landed | processed | failed | duplicate: operations.statuses.LeadFileStatus
    Column("error", Text),
    Column("records_in", Integer),
    Column("accepted", Integer),
    Column("quarantined", Integer),
    Column("skipped", Integer),
    Column("run_id", String(64)),
    Column("processed_at", DateTime(timezone=True)),
    Column("rewritten_at", DateTime(timezone=True)),  # an erasure rewrote the file without a person (sha256 is then the new file's)
    Column("removed_at", DateTime(timezone=True)),  # retention removed the file (customer_exports_days)
    UniqueConstraint("dealer_id", "file_name", name="uq_customer_file_name"),
)

dms_customers = Table(
    "dms_customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("customer_number", Text, nullable=False),  # the DMS's own customer number, an exact string
    Column("record", Text, nullable=False),  # the canonical customer as JSON (customers.schema.CUSTOMER_COLUMNS)
    Column("content_hash", String(64), nullable=False),
    Column("customer_file_id", Integer),  # the file of the current content
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("present", Integer, nullable=False, default=1),  # 0: absent from the latest full export (kept for matching history)
    Column("linked_hash", String(64)),  # the content_hash identity last linked: a customer whose hash differs is linked again
    UniqueConstraint("dealer_id", "customer_number", name="uq_dms_customer"),
)

customer_quarantine = Table(
    "customer_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("customer_file_id", Integer, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("source_row", Integer),
    Column("customer_number", Text),
    Column("field", Text, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("severity", String(16), nullable=False),  # error (quarantined) | warning (the record went on)
    Column("message", Text, nullable=False),  # never holds a personal value
    Column("created_at", DateTime(timezone=True), nullable=False),
)

identity_records = Table(
    "identity_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("record_kind", String(16), nullable=False),  # customer | lead
    Column("record_key", Text, nullable=False),  # the DMS customer number, or the lead's id in leads
    Column("cluster_id", String(32), nullable=False, index=True),  # the customer's stable id (P-...), kept across runs
    Column("tier", String(16), nullable=False),  # email | phone | model | review | seed | new (identity.TIERS)
    Column("match_probability", Float),
    Column("content_hash", String(64), nullable=False),  # of the fields matched on, when last linked
    Column("source_hash", String(64)),  # the customer's or lead's own content_hash when last linked: a differing one is read again
    # the values matched on, when last linked (a run reads these instead of rebuilding every record from its source)
    Column("first_name", Text),
    Column("last_name", Text),
    Column("email", Text),
    Column("phones", Text),  # E.164 numbers, space-separated
    Column("postcode", Text),
    Column("town", Text),
    Column("model_version", String(64)),
    Column("linked_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64)),
    UniqueConstraint("dealer_id", "record_kind", "record_key", name="uq_identity_record"),
)

match_decisions = Table(
    "match_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("record_kind", String(16), nullable=False),
    Column("record_key", Text, nullable=False),
    Column("cluster_id", String(32), nullable=False),
    Column("candidate_key", Text),  # the record it was matched with (customer number or lead id)
    Column("tier", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),  # joined | new | review | accepted | rejected
    Column("match_probability", Float),
    Column("match_weight", Float),
    Column("reason", Text, nullable=False),  # e.g. "email exact", "model 0.997: name, postcode sector, phone"; no personal value
    Column("evidence", Text),  # JSON: each comparison's level and its contribution to the match weight (the waterfall)
    Column("model_version", String(64)),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("run_id", String(64)),
)

review_queue = Table(
    "review_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("record_kind", String(16), nullable=False),
    Column("record_key", Text, nullable=False),
    Column("candidate_cluster_id", String(32), nullable=False),
    Column("candidate_key", Text),
    Column("match_probability", Float, nullable=False),
    Column("match_weight", Float),
    Column("evidence", Text, nullable=False),  # JSON, as match_decisions.evidence
    Column("status", String(16), nullable=False),  # open | accepted | rejected
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", Text),
    Column("note", Text),
    UniqueConstraint("dealer_id", "record_kind", "record_key", "candidate_cluster_id", name="uq_review_pair"),
)

consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("record_kind", String(16), nullable=False),  # customer (a DMS export) | lead (what the buyer ticked)
    Column("record_key", Text, nullable=False),
    Column("channel", String(8), nullable=False),  # email | phone | sms | post
    Column("granted", Integer, nullable=False),  # 1 given, 0 declined or withdrawn; a channel never asked has no row
    Column("source", Text, nullable=False),  # the file it came from
    Column("wording", Text),
    Column("stated_at", DateTime(timezone=True), nullable=False),  # when the person gave it, as the source says
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dealer_id", "record_kind", "record_key", "channel", "stated_at", "granted", name="uq_consent_event"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # email | phone
    Column("value_hash", String(64), nullable=False, unique=True),  # HMAC-SHA256 of the normalised value with the salt
    Column("erasure_id", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("requested_by", Text),
    Column("criterion", String(16), nullable=False),  # email | phone | customer (never the value itself)
    Column("counts", Text, nullable=False),  # JSON: rows and files removed or rewritten, per table and folder
    Column("finished_at", DateTime(timezone=True)),
)


# Images: the last look at each photograph's URL (images.probe), so a nightly re-check only asks "changed?".
image_checks = Table(
    "image_checks",
    metadata,
    Column("url_hash", String(64), primary_key=True),  # sha256 of the URL: URLs can be longer than an index allows
    Column("url", Text, nullable=False),
    Column("status", String(16), nullable=False),  # ok | unreachable | http_error | not_an_image | broken | too_large | blocked
    Column("http_status", Integer),
    Column("content_type", Text),
    Column("format", String(16)),  # Pillow's format name: JPEG, PNG, WEBP, GIF
    Column("width", Integer),
    Column("height", Integer),
    Column("byte_size", BigInteger),  # a refused (too_large) image may declare more than 2 GiB
    Column("etag", Text),
    Column("last_modified", Text),
    Column("reason", Text),
    Column("checked_at", DateTime(timezone=True), nullable=False),
)


WAL_SWITCH_SECONDS = 60


def set_sqlite_pragmas(dbapi_connection, _record) -> None:
    """Set up a new SQLite connection (the engine's connect listener): wait for locks, WAL journal, synchronous=NORMAL."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")  # parallel dealers wait for the lock instead of failing
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor) -> None:
    """Put the database in WAL mode (a no-op once it is). Processes opening a new database at once can each hold the
    shared lock the switch must upgrade; SQLite then refuses one at once ("database is locked") instead of waiting, as
    waiting would deadlock, so the refused one tries again."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """One engine per URL per process, tables created on first use."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", set_sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _create_tables(engine)
    return engine


def _create_tables(engine: Engine, attempts: int | None = None) -> None:
    """Create missing tables and bring old ones up to date; processes starting at once may race, and the loser checks again.
    Each lost race means another process created a table, so there are as many attempts as tables (and a few more)."""
    attempts = attempts or len(metadata.tables) + 5
    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine)
            _key_sync_runs_by_dealer(engine)
            _add_missing_columns(engine)
            return
        except (OperationalError, ProgrammingError) as error:
            if attempt == attempts or not any(race in str(error) for race in ("already exists", "duplicate column", "no such table", "does not exist")):
                raise
            time.sleep(random.uniform(0, 0.02))


ADDED_COLUMNS = {
    "listing_ledger": {"change_seq": "INTEGER NOT NULL DEFAULT 0"},
    "sync_runs": {"problems": "INTEGER", "landed": "INTEGER", "failed": "INTEGER", "skipped": "INTEGER", "quarantine_issues": "INTEGER"},
    "ingested_files": {"landed_run_id": "VARCHAR(64)", "rows_skipped": "INTEGER", "reprocessed_at": "TIMESTAMP WITH TIME ZONE", "reprocessed_by": "TEXT"},
    "lead_files": {"erased_at": "TIMESTAMP WITH TIME ZONE"},
    "identity_records": {"source_hash": "VARCHAR(64)", "first_name": "TEXT", "last_name": "TEXT", "email": "TEXT", "phones": "TEXT", "postcode": "TEXT", "town": "TEXT"},
}  # columns newer than the table's first version


def _add_missing_columns(engine: Engine) -> None:
    """Databases made by an earlier version get the columns added since, with their defaults."""
    inspector = inspect(engine)
    for table, columns in ADDED_COLUMNS.items():
        present = {column["name"] for column in inspector.get_columns(table)}
        for name, definition in columns.items():
            if name not in present:
                with engine.begin() as connection:
                    connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {definition}"))


def _key_sync_runs_by_dealer(engine: Engine) -> None:
    """Databases made before group runs keyed sync_runs by run alone; rebuild the table keyed by run and dealer, rows kept."""
    inspector = inspect(engine)
    if inspector.get_pk_constraint("sync_runs")["constrained_columns"] != ["run_id"]:
        return
    present = {column["name"] for column in inspector.get_columns("sync_runs")}
    names = ", ".join(column.name for column in sync_runs.columns if column.name in present)  # columns added since keep their defaults
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE sync_runs RENAME TO sync_runs_keyed_by_run"))
        for index in sync_runs.indexes:
            connection.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
        sync_runs.create(connection)
        connection.execute(text(f"INSERT INTO sync_runs ({names}) SELECT {names} FROM sync_runs_keyed_by_run"))
        connection.execute(text("DROP TABLE sync_runs_keyed_by_run"))
