"""Publish one dealer's leads to the warehouse: the lead manifest, quarantine and CRM deliveries as kept, the leads with their contact details masked."""

import json
import re

import pandas as pd
import phonenumbers
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import lead_deliveries, lead_files, lead_quarantine, leads
from dms_pipelines.operations.identity_store import lead_clusters
from dms_pipelines.paths import DataPaths
from dms_pipelines.warehouse.tables import publish

LEAD_ROW_COLUMNS = (
    "id",
    "dealer_id",
    "source",
    "source_lead_id",
    "revision",
    "first_received_at",
    "last_received_at",
    "repeats",
    "linked_stock_id",
    "linked_by",
    "vehicle_status",
    "delivery_status",
    "delivered_revision",
)  # the operational row's columns the warehouse shows (not `lead`: it holds the contact details; not `last_error`)
LEAD_FIELDS_SHOWN = ("channel", "lead_status", "enquired_at", "vehicle_ref", "part_exchange", "finance_interest", "consent_email", "consent_phone", "consent_sms", "consent_post")
OUTWARD_CODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?|[A-Z][0-9]{2}|D6W)$")  # a UK district (LS3, EC1A) or an Eircode routing key (D02)
KEPT_PHONE_DIGITS = 3


def mask_email(email: str | None) -> str | None:
    """The e-mail's first character and its domain: "jane@example.com" -> "j***@example.com"; None when there is none."""
    if not email:
        return None
    local, at, domain = str(email).strip().rpartition("@")
    if not at or not local or not domain:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_phone(phone: str | None) -> str | None:
    """The number with every digit but the country code and the last three hidden: "+441134960123" -> "+44*******123"."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", str(phone))
    prefix = ""
    if str(phone).strip().startswith("+"):
        try:
            country_code = str(phonenumbers.parse(str(phone), None).country_code)
        except phonenumbers.NumberParseException:
            country_code = ""
        if country_code and digits.startswith(country_code):
            prefix, digits = f"+{country_code}", digits[len(country_code) :]
    kept = digits[-KEPT_PHONE_DIGITS:] if len(digits) > KEPT_PHONE_DIGITS else ""
    return prefix + "*" * (len(digits) - len(kept)) + kept


def postcode_district(postcode: str | None) -> str | None:
    """The postcode's outward code ("LS3 1AB" -> "LS3"), or None when the value does not start with one (nothing else is shown)."""
    if not postcode:
        return None
    text = str(postcode).strip().upper()
    if " " in text:
        outward = text.split()[0]
    else:
        outward = text[:-3] if len(text) > 4 else text  # the inward code is always three characters
    return outward if OUTWARD_CODE.match(outward) else None


def masked_lead_row(row: dict, lead: dict, customer_id: str | None = None) -> dict:
    """One warehouse row of `leads`: the operational row's columns, the lead's non-personal fields and the masked contact columns."""
    shown = {name: row[name] for name in LEAD_ROW_COLUMNS}
    shown["lead_id"] = shown.pop("id")
    shown["received_at"] = shown.pop("first_received_at")
    shown |= {name: lead.get(name) for name in LEAD_FIELDS_SHOWN}
    shown["email_masked"] = mask_email(lead.get("email"))
    shown["phone_masked"] = mask_phone(lead.get("phone"))
    shown["postcode_district"] = postcode_district(lead.get("postcode"))
    shown["has_message"] = bool((lead.get("message") or "").strip())
    shown["customer_id"] = customer_id
    return shown


def masked_leads(engine: Engine, dealer_id: str) -> pd.DataFrame:
    """The dealer's leads (current revision) as the warehouse shows them."""
    clusters = lead_clusters(engine, dealer_id)
    with engine.connect() as connection:
        query = select(*(leads.c[name] for name in LEAD_ROW_COLUMNS), leads.c.lead).where(leads.c.dealer_id == dealer_id).order_by(leads.c.id)
        rows = [masked_lead_row(row._mapping, json.loads(row.lead), clusters.get(row.id)) for row in connection.execute(query)]
    frame = pd.DataFrame(rows)
    if len(frame):
        # times from the lead JSON are ISO 8601 with any offset (and with or without fractions): read them as such
        frame["enquired_at"] = pd.to_datetime(frame["enquired_at"], utc=True, format="ISO8601")
    return frame


def _dealer_rows(engine: Engine, table, dealer_id: str) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(select(table).where(table.c.dealer_id == dealer_id).order_by(table.c.id), connection)


def publish_leads(paths: DataPaths, engine: Engine, dealer_id: str) -> dict[str, int]:
    """Replace the dealer's files of `leads` (masked), `lead_deliveries`, `lead_quarantine` and `lead_files`; returns rows per
    table. Each is written whole: a dealer's leads are hundreds a day, not the stock's millions. The caller ensures the catalog."""
    tables = {
        "leads": masked_leads(engine, dealer_id),
        "lead_deliveries": _dealer_rows(engine, lead_deliveries, dealer_id),
        "lead_quarantine": _dealer_rows(engine, lead_quarantine, dealer_id),
        "lead_files": _dealer_rows(engine, lead_files, dealer_id),
    }
    return publish(paths, dealer_id, tables)
