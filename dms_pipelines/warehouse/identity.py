"""Publish one dealer's identity tables to the warehouse: DMS customers (contacts masked), customer clusters, records, match decisions, the review queue, consent and purchases."""

import json
import re

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import dms_customers, leads, match_decisions, review_queue
from dms_pipelines.paths import DataPaths
from dms_pipelines.stock.store import read_stock
from dms_pipelines.warehouse.leads import mask_email, mask_phone, postcode_district
from dms_pipelines.warehouse.tables import publish

NOT_KEY = re.compile(r"[^A-Z0-9]")
OWNED_SEPARATOR = "|"


def _key(value) -> str:
    return NOT_KEY.sub("", str(value or "").upper())


def _rows(engine: Engine, table, dealer_id: str) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(select(table).where(table.c.dealer_id == dealer_id).order_by(table.c.id), connection)


def identity_tables(paths: DataPaths, engine: Engine, dealer_id: str) -> dict[str, pd.DataFrame]:
    """The dealer's identity tables as the warehouse shows them (no e-mail, phone, name or address in full)."""
    members = identity_store.cluster_members(engine, dealer_id)
    cluster_of = {(kind, key): cluster for kind, key, cluster in members[["record_kind", "record_key", "cluster_id"]].itertuples(index=False)}
    with engine.connect() as connection:
        customer_rows = connection.execute(
            select(dms_customers.c.customer_number, dms_customers.c.record, dms_customers.c.present, dms_customers.c.first_seen_at, dms_customers.c.updated_at).where(
                dms_customers.c.dealer_id == dealer_id
            )
        ).all()
        lead_rows = connection.execute(select(leads.c.id, leads.c.lead, leads.c.first_received_at).where(leads.c.dealer_id == dealer_id)).all()
    stock = read_stock(paths.state, dealer_id)
    stock_by_key = {}
    for row in stock[["stock_id", "vin", "registration"]].itertuples(index=False):
        for value in (row.vin, row.registration):
            if isinstance(value, str) and value:
                stock_by_key[_key(value)] = str(row.stock_id)
    customers, purchases = [], []
    for number, text, present, first_seen, updated in customer_rows:
        record = json.loads(text)
        cluster = cluster_of.get(("customer", number))
        owned = [item for item in str(record.get("owned_vehicles") or "").split(OWNED_SEPARATOR) if item.strip()]
        customers.append(
            {
                "dealer_id": dealer_id,
                "customer_number": number,
                "customer_id": cluster,
                "email_masked": mask_email(record.get("email")),
                "phone_masked": mask_phone(record.get("phone_mobile") or record.get("phone_home") or record.get("phone_work")),
                "postcode_district": postcode_district(record.get("postcode")),
                "owned_vehicles": len(owned),
                "present": bool(present),
                "first_seen_at": first_seen,
                "updated_at": updated,
            }
        )
        purchases += [{"dealer_id": dealer_id, "customer_id": cluster, "stock_id": stock_by_key[_key(item)]} for item in owned if cluster and _key(item) in stock_by_key]
    enquiries: dict[str, list] = {}
    for lead_id, text, received in lead_rows:
        cluster = cluster_of.get(("lead", str(lead_id)))
        if cluster:
            enquiries.setdefault(cluster, []).append(pd.Timestamp(json.loads(text).get("enquired_at") or received))
    dms_count = members[members["record_kind"] == "customer"].groupby("cluster_id").size().to_dict() if len(members) else {}
    clusters = [
        {
            "dealer_id": dealer_id,
            "customer_id": cluster,
            "is_dms_customer": dms_count.get(cluster, 0) > 0,
            "dms_records": dms_count.get(cluster, 0),
            "leads": len(enquiries.get(cluster, [])),
            "first_enquiry_at": min(enquiries[cluster]) if enquiries.get(cluster) else None,
            "last_enquiry_at": max(enquiries[cluster]) if enquiries.get(cluster) else None,
        }
        for cluster in sorted(set(members["cluster_id"]))
        if len(members)
    ]
    consent = identity_store.current_consent(engine, dealer_id)
    if len(consent):
        consent = consent.rename(columns={"cluster_id": "customer_id", "record_kind": "source_kind"}).assign(dealer_id=dealer_id, granted=lambda f: f["granted"].astype(bool))
    records = members.rename(columns={"cluster_id": "customer_id"}).assign(dealer_id=dealer_id)
    records = (
        records.merge(identity_store.linked_records(engine, dealer_id)[["record_kind", "record_key", "match_probability"]], on=["record_kind", "record_key"], how="left") if len(records) else records
    )
    return {
        "customers": pd.DataFrame(customers),
        "customer_clusters": pd.DataFrame(clusters),
        "customer_records": records,
        "match_decisions": _rows(engine, match_decisions, dealer_id).rename(columns={"cluster_id": "customer_id"}),
        "review_queue": _rows(engine, review_queue, dealer_id).rename(columns={"candidate_cluster_id": "candidate_customer_id"}),
        "consent": consent,
        "customer_purchases": pd.DataFrame(purchases).drop_duplicates() if purchases else pd.DataFrame(purchases),
    }


def publish_identity(paths: DataPaths, engine: Engine, dealer_id: str) -> dict[str, int]:
    """Replace the dealer's file of each identity table; returns rows per table. The caller ensures the catalog."""
    return publish(paths, dealer_id, identity_tables(paths, engine, dealer_id))
