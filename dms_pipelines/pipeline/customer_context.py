"""What the CRM is told of the customer behind each lead: their DMS customer number, earlier enquiries and owned vehicles, from the identity clusters."""

import json

import pandas as pd
from sqlalchemy import and_, select
from sqlalchemy.engine import Engine

from dms_pipelines.config import Dealer
from dms_pipelines.leads.adf import CustomerMatch, EarlierEnquiry
from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import dms_customers, identity_records, leads

OWNED_SEPARATOR = "|"


def _when(lead: dict, received) -> pd.Timestamp:
    value = lead.get("enquired_at") or received
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _vehicle_text(lead: dict, stock_id: str | None, stock: dict[str, dict]) -> str | None:
    car = stock.get(stock_id) if stock_id else None
    if car:
        name = " ".join(str(part) for part in (car.get("make"), car.get("model")) if isinstance(part, str) and part)
        return f"{name} ({stock_id})" if name else stock_id
    return lead.get("vehicle_ref") or None


def customer_matches(engine: Engine, dealer: Dealer, lead_ids: list[int], stock: dict[str, dict]) -> dict[int, CustomerMatch]:
    """Each lead's customer as the identity stage left it (leads not yet identified are left out)."""
    clusters = identity_store.lead_clusters(engine, dealer.id)
    wanted = {clusters[i] for i in lead_ids if i in clusters}
    if not wanted:
        return {}
    with engine.connect() as connection:
        members = connection.execute(
            select(identity_records.c.record_kind, identity_records.c.record_key, identity_records.c.cluster_id, identity_records.c.tier).where(
                and_(identity_records.c.dealer_id == dealer.id, identity_records.c.cluster_id.in_(sorted(wanted)))
            )
        ).all()
        numbers = sorted({key for kind, key, _, _ in members if kind == "customer"})
        records = {
            row.customer_number: (json.loads(row.record), row.present, row.updated_at)
            for row in connection.execute(
                select(dms_customers.c.customer_number, dms_customers.c.record, dms_customers.c.present, dms_customers.c.updated_at).where(
                    and_(dms_customers.c.dealer_id == dealer.id, dms_customers.c.customer_number.in_(numbers))
                )
            )
        }
        member_leads = sorted({int(key) for kind, key, _, _ in members if kind == "lead" and key.isdigit()})
        lead_rows = {
            row.id: (json.loads(row.lead), row.first_received_at, row.linked_stock_id)
            for row in connection.execute(select(leads.c.id, leads.c.lead, leads.c.first_received_at, leads.c.linked_stock_id).where(leads.c.id.in_(member_leads)))
        }
    by_cluster: dict[str, list] = {}
    for kind, key, cluster, tier in members:
        by_cluster.setdefault(cluster, []).append((kind, key, tier))
    open_reviews = {entry.record_key for entry in identity_store.reviews(engine, dealer.id, identity_store.REVIEW_OPEN) if entry.record_kind == "lead"}
    matches = {}
    for lead_id in lead_ids:
        cluster = clusters.get(lead_id)
        if cluster is None or lead_id not in lead_rows:
            continue
        here = _when(lead_rows[lead_id][0], lead_rows[lead_id][1])
        customers = [key for kind, key, _ in by_cluster[cluster] if kind == "customer" and key in records]
        customers.sort(key=lambda number: (not records[number][1], -(pd.Timestamp(records[number][2]).value if records[number][2] is not None else 0), number))  # present first, then the newest
        number = customers[0] if customers else None
        owned = []
        for customer in customers:
            owned += [item.strip() for item in str(records[customer][0].get("owned_vehicles") or "").split(OWNED_SEPARATOR) if item.strip()]
        earlier = []
        for kind, key, _ in by_cluster[cluster]:
            if kind != "lead" or not key.isdigit() or int(key) == lead_id or int(key) not in lead_rows:
                continue
            lead, received, stock_id = lead_rows[int(key)]
            when = _when(lead, received)
            if when <= here:
                earlier.append(EarlierEnquiry(when, lead.get("channel"), _vehicle_text(lead, stock_id, stock)))
        matches[lead_id] = CustomerMatch(
            cluster_id=cluster,
            customer_number=number,
            customer_source=f"{dealer.name} DMS",
            returning=bool(number or earlier),
            earlier_enquiries=tuple(earlier),
            owned_vehicles=tuple(dict.fromkeys(owned)),
            under_review=str(lead_id) in open_reviews,
        )
    return matches
