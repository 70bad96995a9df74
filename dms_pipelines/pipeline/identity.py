"""One dealer's identity stage: its new or changed DMS customers and leads tied to customers (exact, then the pinned model, then the review queue), and their consent statements kept."""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer, Settings
from dms_pipelines.identity.reconcile import reconcile
from dms_pipelines.identity.records import RECORD_COLUMNS, records_from_customers, records_from_leads
from dms_pipelines.operations import customer_store, identity_store
from dms_pipelines.operations.db import lead_files, leads
from dms_pipelines.operations.manifest import utc_now
from dms_pipelines.paths import DataPaths

log = logging.getLogger(__name__)
MODEL_PACKAGE = "dms_pipelines.identity.models"
CONSENT_CHANNELS = identity_store.CONSENT_CHANNELS


class IdentityModelError(ValueError):
    """The configured match model cannot be loaded; the message names the file and why."""


@dataclass
class IdentityRun:
    """What one identity stage did, in counts (never a person's values)."""

    customers_linked: int = 0
    leads_linked: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    queued: int = 0  # entries added to the review queue this run
    open_reviews: int = 0  # entries waiting for an operator now
    consents: int = 0  # consent statements stored this run
    labels: dict[str, int] = field(default_factory=dict)  # operator decisions and how the model's tier agrees with them
    model_version: str = ""


def model_file(name: str) -> Path:
    """The model a configuration names: a path to a .json file, or a file of the package's identity/models."""
    candidate = Path(name).expanduser()
    if candidate.suffix == ".json":
        return candidate
    return Path(str(resources.files(MODEL_PACKAGE).joinpath(f"{name}.json")))


def load_pinned_model(settings: Settings) -> tuple[dict, str]:
    """The configured model and its version (the name and the start of its sha256: two runs on one version score alike)."""
    path = model_file(settings.identity.model)
    try:
        data = path.read_bytes()
        model = json.loads(data)
    except (OSError, ValueError) as error:
        raise IdentityModelError(f"identity.model {settings.identity.model!r}: {path} cannot be read as a match model ({error})") from error
    return model, f"{path.stem}@{hashlib.sha256(data).hexdigest()[:12]}"


def _record_hash(row: dict) -> str:
    values = {name: row[name] for name in RECORD_COLUMNS if name not in ("record_kind", "record_key")}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=list).encode()).hexdigest()


def _lead_hashes(engine: Engine, dealer_id: str) -> list:
    with engine.connect() as connection:
        return connection.execute(select(leads.c.id, leads.c.content_hash).where(leads.c.dealer_id == dealer_id)).all()


LEAD_BATCH = 5_000


def _dealer_leads(engine: Engine, dealer_id: str, ids: set[int]) -> list:
    """The leads of `ids`, with their file's name, in id order."""
    wanted, rows = sorted(ids), []
    query = (
        select(leads.c.id, leads.c.lead, leads.c.source, leads.c.source_lead_id, leads.c.first_received_at, lead_files.c.file_name)
        .select_from(leads.outerjoin(lead_files, lead_files.c.id == leads.c.lead_file_id))
        .where(leads.c.dealer_id == dealer_id)
    )
    with engine.connect() as connection:
        for start in range(0, len(wanted), LEAD_BATCH):
            rows += connection.execute(query.where(leads.c.id.in_(wanted[start : start + LEAD_BATCH])).order_by(leads.c.id)).all()
    return rows


def _lead_records(dealer_id: str, rows: list) -> pd.DataFrame | None:
    if not rows:
        return None
    return records_from_leads([{**json.loads(row.lead), "dealer_id": dealer_id} for row in rows], [str(row.id) for row in rows])


def _flag(value) -> bool | None:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return None
    return bool(value)


def _stamp(*values):
    for value in values:
        if value is None or value is pd.NaT or (isinstance(value, float) and pd.isna(value)):
            continue
        stamp = pd.Timestamp(value)
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()
    return utc_now()


def _customer_consents(customers: pd.DataFrame) -> list[dict]:
    events = []
    used = ["customer_number", *(f"consent_{channel}" for channel in CONSENT_CHANNELS), "source_file", "consent_wording", "consent_updated_at", "updated_at"]
    for row in customers[[column for column in used if column in customers.columns]].to_dict("records"):
        for channel in CONSENT_CHANNELS:
            granted = _flag(row.get(f"consent_{channel}"))
            if granted is None:
                continue  # never asked: no statement, and none is inferred
            events.append(
                {
                    "record_kind": "customer",
                    "record_key": str(row["customer_number"]),
                    "channel": channel,
                    "granted": granted,
                    "source": str(row.get("source_file") or "DMS customer export"),
                    "wording": row.get("consent_wording") if isinstance(row.get("consent_wording"), str) else None,
                    "stated_at": _stamp(row.get("consent_updated_at"), row.get("updated_at")),
                }
            )
    return events


def _lead_consents(rows: list) -> list[dict]:
    events = []
    for row in rows:
        lead = json.loads(row.lead)
        for channel in CONSENT_CHANNELS:
            granted = _flag(lead.get(f"consent_{channel}"))
            if granted is None:
                continue
            events.append(
                {
                    "record_kind": "lead",
                    "record_key": str(row.id),
                    "channel": channel,
                    "granted": granted,
                    "source": row.file_name or f"{row.source} lead {row.source_lead_id}",
                    "wording": lead.get("consent_wording"),
                    "stated_at": _stamp(lead.get("consent_at"), lead.get("enquired_at"), row.first_received_at),
                }
            )
    return events


def _decisions(engine: Engine, dealer_id: str) -> pd.DataFrame:
    labels = identity_store.decisions_for_matching(engine, dealer_id)
    return pd.DataFrame(
        {
            "record_kind": labels["record_kind"],
            "record_key": labels["record_key"],
            "cluster_id": labels["cluster_id"],
            "decision": ["accept" if accepted else "reject" for accepted in labels["accepted"]],
        }
    )


def _label_agreement(engine: Engine, dealer_id: str, upper: float) -> dict[str, int]:
    """The operator's decisions as labels for the model: how many were accepted and rejected, and how many the model's
    probability at the time would have decided the same way (accepted at or above the upper threshold; rejected below it)."""
    counts = {"accepted": 0, "rejected": 0, "model_agrees": 0}
    for entry in identity_store.reviews(engine, dealer_id, status=None):
        if entry.status == identity_store.REVIEW_OPEN:
            continue
        accepted = entry.status == identity_store.REVIEW_ACCEPTED
        counts["accepted" if accepted else "rejected"] += 1
        counts["model_agrees"] += (entry.match_probability >= upper) == accepted
    return counts


def identify(dealer: Dealer, settings: Settings, paths: DataPaths, engine: Engine, run_id: str | None, logger=None) -> IdentityRun:
    """Tie the dealer's DMS customers and leads not yet linked (or changed since) to customers; existing customers keep
    their ids. Decisions from the review queue are applied; consent statements of what was read again are kept.

    Only the customers and leads whose own content_hash moved since they were linked are read; the rest come from what
    identity_records kept of them, so a run's cost follows what changed, not the dealer's size."""
    logger = logger or log
    model, version = load_pinned_model(settings)
    run = IdentityRun(model_version=version)
    stored = identity_store.stored_records(engine, dealer.id)
    sources = pd.DataFrame(
        [("customer", number, digest) for number, digest in customer_store.customer_hashes(engine, dealer.id).items()]
        + [("lead", str(lead_id), digest) for lead_id, digest in _lead_hashes(engine, dealer.id)],
        columns=["record_kind", "record_key", "source_now"],
    )
    # a record whose source still holds what it was linked on is not read again; one in review is, every run, so that
    # the operator's decision, once taken, is applied (an open entry is not queued twice)
    linked = sources.merge(stored, on=["record_kind", "record_key"], how="left")
    unread = (linked["source_hash"].notna() & (linked["source_hash"] == linked["source_now"]) & (linked["tier"] != "review")).to_numpy()
    existing = linked.loc[unread].assign(dealer_id=dealer.id)[[*RECORD_COLUMNS, "cluster_id"]]
    to_read = linked.loc[~unread]
    customer_numbers = set(to_read.loc[to_read["record_kind"] == "customer", "record_key"])
    customers = customer_store.customers_of(engine, dealer.id, numbers=customer_numbers) if customer_numbers else pd.DataFrame()
    lead_rows = _dealer_leads(engine, dealer.id, {int(key) for key in to_read.loc[to_read["record_kind"] == "lead", "record_key"]})
    read = [frame for frame in (records_from_customers(customers) if len(customers) else None, _lead_records(dealer.id, lead_rows)) if frame is not None and len(frame)]
    records = pd.concat(read, ignore_index=True) if read else pd.DataFrame(columns=RECORD_COLUMNS)
    prior = records[["record_kind", "record_key"]].merge(to_read, on=["record_kind", "record_key"], how="left")
    keys = list(zip(records["record_kind"], records["record_key"]))
    rows = records.to_dict("records")
    hashes = {key: _record_hash(row) for key, row in zip(keys, rows)}
    values = {key: identity_store.matched_values(row, source) for key, row, source in zip(keys, rows, prior["source_now"])}
    # read again but matched on the same values (a consent or an address line changed): not matched again
    same = ((prior["content_hash"].to_numpy() == np.array([hashes[key] for key in keys], dtype=object)) & (prior["tier"] != "review").to_numpy()).astype(bool)
    identity_store.refresh_linked_values(engine, dealer.id, {key: values[key] for key, unchanged in zip(keys, same) if unchanged})
    existing = pd.concat([existing, records.loc[same].assign(cluster_id=prior.loc[same, "cluster_id"].to_numpy())], ignore_index=True)
    fresh = records.loc[~same]
    assignments = []
    decisions = _decisions(engine, dealer.id)
    for kind, lower in (("customer", settings.identity.upper_threshold), ("lead", settings.identity.lower_threshold)):
        # DMS customers first, without review: the DMS is the system of record, its customer numbers are distinct people
        # unless the exact tier or the model at the upper threshold says otherwise; then leads against them, with review.
        batch = fresh[fresh["record_kind"] == kind]
        if batch.empty:
            continue
        result = reconcile(existing, batch, model, settings.identity.upper_threshold, lower, decisions)
        saved = identity_store.save_assignments(engine, dealer.id, result.assignments, hashes, run_id, version, values)
        run.queued += saved["queued"]
        assignments.append(result.assignments)
        linked_now = batch.merge(result.assignments[["record_kind", "record_key", "cluster_id"]], on=["record_kind", "record_key"], how="left")
        existing = pd.concat([existing, linked_now], ignore_index=True)
    if assignments:
        done = pd.concat(assignments, ignore_index=True)
        run.customers_linked = int((done["record_kind"] == "customer").sum())
        run.leads_linked = int((done["record_kind"] == "lead").sum())
        run.by_tier = {str(k): int(v) for k, v in done["tier"].value_counts().sort_index().items()}
        run.by_outcome = {str(k): int(v) for k, v in done["outcome"].value_counts().sort_index().items()}
        logger.info(f"{dealer.id}: identity linked {run.customers_linked} customer record(s) and {run.leads_linked} lead(s): {run.by_outcome}")
    if len(records):
        # every customer and lead read again states its consent again (a newer statement wins; a repeated one is not kept twice)
        events = _customer_consents(customers) if len(customers) else []
        if len(customers):
            customer_store.mark_linked(engine, dealer.id, dict(zip(customers["customer_number"].astype(str), customers["content_hash"])))
        run.consents = identity_store.record_consents(engine, dealer.id, events + _lead_consents(lead_rows))
    run.open_reviews = len(identity_store.reviews(engine, dealer.id))
    run.labels = _label_agreement(engine, dealer.id, settings.identity.upper_threshold)
    return run
