"""The review queue as an operator reads it: each possible match with both records side by side (contacts masked unless asked) and its evidence."""

import json

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine

from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import dms_customers, identity_records, leads
from dms_pipelines.warehouse.leads import mask_email, mask_phone

SHOWN = ("first_name", "last_name", "full_name", "email", "phone", "phone_mobile", "phone_home", "postcode", "town", "customer_number", "channel", "enquired_at")


def _record(engine: Engine, dealer_id: str, kind: str, key: str) -> dict:
    with engine.connect() as connection:
        if kind == "lead" and key.isdigit():
            row = connection.execute(select(leads.c.lead, leads.c.source).where(leads.c.id == int(key))).first()
            return {**json.loads(row.lead), "kind": f"lead {key} ({row.source})"} if row else {"kind": f"lead {key} (gone)"}
        row = connection.execute(select(dms_customers.c.record).where(and_(dms_customers.c.dealer_id == dealer_id, dms_customers.c.customer_number == key))).first()
        return {**json.loads(row.record), "kind": f"DMS customer {key}"} if row else {"kind": f"DMS customer {key} (gone)"}


def _candidate(engine: Engine, dealer_id: str, cluster_id: str, key: str | None) -> dict:
    if key:
        with engine.connect() as connection:
            member = connection.execute(
                select(identity_records.c.record_kind).where(and_(identity_records.c.dealer_id == dealer_id, identity_records.c.record_key == key, identity_records.c.cluster_id == cluster_id))
            ).first()
        if member is not None:
            return _record(engine, dealer_id, member.record_kind, key)
    return {"kind": f"customer {cluster_id}"}


def _shown(record: dict, unmask: bool) -> dict:
    out = {"record": record.get("kind")}
    for name in SHOWN:
        value = record.get(name)
        if value in (None, ""):
            continue
        if not unmask and name == "email":
            value = mask_email(value)
        elif not unmask and name.startswith("phone"):
            value = mask_phone(value)
        out[name] = value
    return out


def review_entries(engine: Engine, dealer_id: str | None = None, status: str | None = "open", unmask: bool = False) -> list[dict]:
    """The entries with both sides of each pair and the evidence, oldest first."""
    entries = []
    for entry in identity_store.reviews(engine, dealer_id, status):
        entries.append(
            {
                "id": entry.id,
                "dealer_id": entry.dealer_id,
                "status": entry.status,
                "match_probability": round(entry.match_probability, 4),
                "match_weight": None if entry.match_weight is None else round(entry.match_weight, 2),
                "record": _shown(_record(engine, entry.dealer_id, entry.record_kind, entry.record_key), unmask),
                "candidate_customer": entry.candidate_cluster_id,
                "candidate": _shown(_candidate(engine, entry.dealer_id, entry.candidate_cluster_id, entry.candidate_key), unmask),
                "evidence": entry.evidence,
                "created_at": entry.created_at,
                "decided_by": entry.decided_by,
                "decided_at": entry.decided_at,
                "note": entry.note,
            }
        )
    return entries


def _evidence_line(item: dict) -> str:
    name = item.get("comparison") or item.get("column_name") or item.get("name") or "?"
    level = item.get("level") or item.get("label_for_charts") or item.get("label") or ""
    weight = item.get("contribution_log2", item.get("weight", item.get("log2_bayes_factor")))
    return f"{name}: {level}" + (f" ({float(weight):+.2f})" if isinstance(weight, (int, float)) else "")


def render_reviews(entries: list[dict]) -> str:
    if not entries:
        return "the review queue is empty"
    blocks = []
    for entry in entries:
        lines = [f"#{entry['id']} {entry['dealer_id']} [{entry['status']}] p={entry['match_probability']} weight={entry['match_weight']} -> customer {entry['candidate_customer']}"]
        for side in ("record", "candidate"):
            values = entry[side]
            lines.append(f"  {side:9} {values.get('record')}: " + ", ".join(f"{k}={v}" for k, v in values.items() if k != "record"))
        lines.append("  evidence  " + "; ".join(_evidence_line(item) for item in entry["evidence"]))
        if entry["status"] != "open":
            lines.append(f"  decided   by {entry['decided_by']} at {entry['decided_at']}" + (f": {entry['note']}" if entry["note"] else ""))
        blocks.append("\n".join(lines))
    blocks.append(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}; decide with `dms-pipelines review accept ID` or `dms-pipelines review reject ID`")
    return "\n\n".join(blocks)
