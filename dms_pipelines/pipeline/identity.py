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


def _dealer_leads(engine: Engine, dealer_id: str) -> list:
    with engine.connect() as connection:
        return connection.execute(
            select(leads.c.id, leads.c.lead, leads.c.source, leads.c.source_lead_id, leads.c.first_received_at, lead_files.c.file_name)
            .select_from(leads.outerjoin(lead_files, lead_files.c.id == leads.c.lead_file_id))
            .where(leads.c.dealer_id == dealer_id)
            .order_by(leads.c.id)
        ).all()


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
    for row in customers.to_dict("records"):
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
    their ids. Decisions from the review queue are applied; consent statements of what was linked are kept."""
    logger = logger or log
    model, version = load_pinned_model(settings)
    run = IdentityRun(model_version=version)
    customers = customer_store.customers_of(engine, dealer.id)
    lead_rows = _dealer_leads(engine, dealer.id)
    records = pd.concat(
        [records_from_customers(customers), records_from_leads([{**json.loads(row.lead), "dealer_id": dealer.id} for row in lead_rows], [str(row.id) for row in lead_rows])],
        ignore_index=True,
    )
    hashes = {(row["record_kind"], row["record_key"]): _record_hash(row) for row in records.to_dict("records")}
    linked = identity_store.linked_records(engine, dealer.id)
    known = {(kind, key): (cluster, digest, tier) for kind, key, cluster, digest, tier in linked[["record_kind", "record_key", "cluster_id", "content_hash", "tier"]].itertuples(index=False)}

    def settled(kind: str, key: str) -> bool:
        """Linked on the same values and not in review: not scored again. A record in review is resubmitted every run, so
        that the operator's decision, once taken, is applied (an open entry is not queued twice)."""
        return (kind, key) in known and known[(kind, key)][1] == hashes[(kind, key)] and known[(kind, key)][2] != "review"

    keys = list(zip(records["record_kind"], records["record_key"]))
    unchanged = np.array([settled(kind, key) for kind, key in keys], dtype=bool)
    existing = records.loc[unchanged].assign(cluster_id=[known[key][0] for key, same in zip(keys, unchanged) if same])
    fresh = records.loc[~unchanged]
    assignments = []
    decisions = _decisions(engine, dealer.id)
    for kind, lower in (("customer", settings.identity.upper_threshold), ("lead", settings.identity.lower_threshold)):
        # DMS customers first, without review: the DMS is the system of record, its customer numbers are distinct people
        # unless the exact tier or the model at the upper threshold says otherwise; then leads against them, with review.
        batch = fresh[fresh["record_kind"] == kind]
        if batch.empty:
            continue
        result = reconcile(existing, batch, model, settings.identity.upper_threshold, lower, decisions)
        saved = identity_store.save_assignments(engine, dealer.id, result.assignments, hashes, run_id, version)
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
        fresh_keys = set(zip(fresh["record_kind"], fresh["record_key"]))
        events = []
        if len(customers):
            changed_customers = customers[[("customer", str(number)) in fresh_keys for number in customers["customer_number"]]]
            customer_store.mark_linked(engine, dealer.id, dict(zip(changed_customers["customer_number"].astype(str), changed_customers["content_hash"])))
            events = _customer_consents(changed_customers)
        events += _lead_consents([row for row in lead_rows if ("lead", str(row.id)) in fresh_keys])
        run.consents = identity_store.record_consents(engine, dealer.id, events)
        logger.info(f"{dealer.id}: identity linked {run.customers_linked} customer record(s) and {run.leads_linked} lead(s): {run.by_outcome}")
    run.open_reviews = len(identity_store.reviews(engine, dealer.id))
    run.labels = _label_agreement(engine, dealer.id, settings.identity.upper_threshold)
    return run
