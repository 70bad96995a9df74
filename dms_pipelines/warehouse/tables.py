"""The analysts' warehouse: one Parquet file per table and dealer, and a DuckDB file of views swapped in atomically."""

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dms_pipelines.kernels.atomic import link_into_place, replace_with, write_bytes_atomically
from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.paths import DataPaths
from dms_pipelines.stock.changes import GENERATION_KEY
from dms_pipelines.stock.history import stock_history_dtypes
from dms_pipelines.stock.history_changes import HistoryLog
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, STOCK_COLUMNS, empty_stock

EMPTY_FILE = "_empty.parquet"
LISTING_DTYPES = {
    "dealer_id": "string",
    "marketplace": "string",
    "stock_id": "string",
    "listed": "boolean",
    "offered": "boolean",
    "completeness": "Float64",
    "missing": "string",
    "held_reasons": "string",
}  # as kept: `listed` says the vehicle is in the feed; the view of the same name says what the marketplace shows


def _typed(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def stock_current_empty() -> pd.DataFrame:
    return empty_stock()[[c for c in STOCK_COLUMNS if c not in PRIVATE_COLUMNS]]


TABLE_SCHEMAS: dict[str, pd.DataFrame] = {
    "stock_current": stock_current_empty(),  # its files are the base; the view of that name puts the changes in place
    "stock_current_changes": stock_current_empty(),
    "quarantine": _typed(
        {
            "dealer_id": "string",
            "file_id": "Int64",
            "source_file": "string",
            "source_row": "Int64",
            "stock_id": "string",
            "field": "string",
            "rule": "string",
            "value": "string",
            "severity": "string",
            "message": "string",
            "first_seen": "datetime64[us, UTC]",
            "status": "string",
        }
    ),
    "ingested_files": _typed(
        {
            "id": "Int64",
            "dealer_id": "string",
            "source_path": "string",
            "file_name": "string",
            "size_bytes": "Int64",
            "source_mtime": "Float64",
            "sha256": "string",
            "landed_path": "string",
            "received_at": "datetime64[us, UTC]",
            "export_kind": "string",
            "export_timestamp": "string",
            "status": "string",
            "attempts": "Int64",
            "rows_total": "Int64",
            "rows_accepted": "Int64",
            "rows_quarantined": "Int64",
            "encoding": "string",
            "error": "string",
            "warnings": "string",
            "processed_at": "datetime64[us, UTC]",
        }
    ),
}

TABLE_SCHEMAS |= {
    "stock_history": _typed(stock_history_dtypes()),  # its files are the base; the view of that name puts the log in place
    "stock_history_opened": _typed(stock_history_dtypes()),
    "stock_history_closed": _typed({"dealer_id": "string", "stock_id": "string", "valid_to": "datetime64[us, UTC]"}),
    "marketplace_listings": _typed(LISTING_DTYPES),  # its files are the base; the view of that name puts the changes in place
    "marketplace_listings_changes": _typed(LISTING_DTYPES | {"removed": "boolean"}),
    "deliveries": _typed(
        {
            "id": "Int64",
            "run_id": "string",
            "marketplace": "string",
            "dealer_id": "string",
            "item_key": "string",
            "action": "string",
            "content_hash": "string",
            "outcome": "string",
            "http_status": "Int64",
            "calls": "Int64",
            "error": "string",
            "trigger": "string",
            "change_seen_at": "datetime64[us, UTC]",
            "started_at": "datetime64[us, UTC]",
            "finished_at": "datetime64[us, UTC]",
        }
    ),
    "dead_letters": _typed(
        {
            "id": "Int64",
            "marketplace": "string",
            "dealer_id": "string",
            "item_key": "string",
            "action": "string",
            "content_hash": "string",
            "payload": "string",
            "http_status": "Int64",
            "message": "string",
            "created_at": "datetime64[us, UTC]",
            "replayed_at": "datetime64[us, UTC]",
            "replay_outcome": "string",
        }
    ),
    "marketplace_drift": _typed(
        {
            "id": "Int64",
            "run_id": "string",
            "dealer_id": "string",
            "marketplace": "string",
            "checked_at": "datetime64[us, UTC]",
            "vehicles_checked": "Int64",
            "missing": "Int64",
            "extra": "Int64",
            "stale": "Int64",
            "sold_live": "Int64",
            "error": "string",
            "stock_ids": "string",
        }
    ),
    "drift_items": _typed({"dealer_id": "string", "marketplace": "string", "stock_id": "string", "kind": "string", "checked_at": "datetime64[us, UTC]"}),
    "sync_runs": _typed(
        {
            "run_id": "string",
            "dealer_id": "string",
            "trigger": "string",
            "started_at": "datetime64[us, UTC]",
            "finished_at": "datetime64[us, UTC]",
            "files": "Int64",
            "records": "Int64",
            "accepted": "Int64",
            "quarantined": "Int64",
            "held": "Int64",
            "vehicles": "Int64",
            "problems": "Int64",
            "outcome": "string",
        }
    ),
}

TABLE_SCHEMAS |= {
    "leads": _typed(
        {
            "lead_id": "Int64",
            "dealer_id": "string",
            "source": "string",
            "source_lead_id": "string",
            "revision": "Int64",
            "channel": "string",
            "lead_status": "string",
            "received_at": "datetime64[us, UTC]",
            "last_received_at": "datetime64[us, UTC]",
            "enquired_at": "datetime64[us, UTC]",
            "repeats": "Int64",
            "vehicle_ref": "string",
            "linked_stock_id": "string",
            "linked_by": "string",
            "vehicle_status": "string",
            "delivery_status": "string",
            "delivered_revision": "Int64",
            "part_exchange": "boolean",
            "finance_interest": "boolean",
            "consent_email": "boolean",
            "consent_phone": "boolean",
            "consent_sms": "boolean",
            "consent_post": "boolean",
            "email_masked": "string",
            "phone_masked": "string",
            "postcode_district": "string",
            "has_message": "boolean",
            "customer_id": "string",
        }
    ),  # contact details masked only: the real ones stay in the operational database's `leads` (warehouse/leads.py)
    "lead_deliveries": _typed(
        {
            "id": "Int64",
            "dealer_id": "string",
            "lead_id": "Int64",
            "source": "string",
            "source_lead_id": "string",
            "revision": "Int64",
            "destination": "string",
            "reference": "string",
            "acknowledged": "string",
            "outcome": "string",
            "transient": "Int64",
            "error": "string",
            "vehicle_status": "string",
            "run_id": "string",
            "started_at": "datetime64[us, UTC]",
            "finished_at": "datetime64[us, UTC]",
        }
    ),
    "lead_quarantine": _typed(
        {
            "id": "Int64",
            "dealer_id": "string",
            "lead_file_id": "Int64",
            "file_name": "string",
            "record": "string",
            "field": "string",
            "rule": "string",
            "severity": "string",
            "message": "string",
            "created_at": "datetime64[us, UTC]",
        }
    ),
    "lead_files": _typed(
        {
            "id": "Int64",
            "dealer_id": "string",
            "file_name": "string",
            "origin": "string",
            "original_name": "string",
            "source_key": "string",
            "sha256": "string",
            "size_bytes": "Int64",
            "kind": "string",
            "received_at": "datetime64[us, UTC]",
            "status": "string",
            "attempts": "Int64",
            "next_attempt_at": "datetime64[us, UTC]",
            "error": "string",
            "leads_in": "Int64",
            "leads_new": "Int64",
            "leads_updated": "Int64",
            "leads_repeated": "Int64",
            "quarantined": "Int64",
            "skipped": "Int64",
            "parent_id": "Int64",
            "run_id": "string",
            "processed_at": "datetime64[us, UTC]",
            "acknowledged_at": "datetime64[us, UTC]",
            "acknowledged_by": "string",
        }
    ),
}
TABLE_SCHEMAS |= {  # the image stage's (pipeline/images.py): what each vehicle's photographs are and what each marketplace may show
    "vehicle_images": _typed(
        {
            "dealer_id": "string",
            "stock_id": "string",
            "position": "Int64",
            "url": "string",
            "source": "string",
            "status": "string",
            "format": "string",
            "width": "Int64",
            "height": "Int64",
            "byte_size": "Int64",
            "reason": "string",
        }
    ),
    "vehicle_image_sources": _typed({"dealer_id": "string", "stock_id": "string", "source": "string", "image_count": "Int64", "flags": "string"}),
    "image_flags": _typed({"dealer_id": "string", "stock_id": "string", "flag": "string", "reason": "string", "other_stock_id": "string", "url": "string"}),
    "marketplace_images": _typed(
        {
            "dealer_id": "string",
            "marketplace": "string",
            "stock_id": "string",
            "good_images": "Int64",
            "left_out": "Int64",
            "left_out_reasons": "string",
            "held": "boolean",
            "held_reason": "string",
        }
    ),
}

BASE_VIEWS = {
    "stock_current": "stock_current_base",
    "stock_history": "stock_history_base",
    "marketplace_listings": "marketplace_listings_base",
}  # tables whose files are a base, shown under their name by a view below

VIEWS: dict[str, str] = {
    "stock_current": """
        SELECT * FROM stock_current_base b
        WHERE NOT EXISTS (SELECT 1 FROM stock_current_changes c WHERE c.dealer_id = b.dealer_id AND c.stock_id = b.stock_id)
        UNION ALL BY NAME SELECT * FROM stock_current_changes""",
    "stock_history": """
        SELECT b.* REPLACE (coalesce(b.valid_to, c.valid_to) AS valid_to) FROM stock_history_base b
        LEFT JOIN stock_history_closed c ON c.dealer_id = b.dealer_id AND c.stock_id = b.stock_id AND b.valid_to IS NULL
        UNION ALL BY NAME SELECT * FROM stock_history_opened""",
    "marketplace_listings": """
        WITH kept AS (
            SELECT * FROM marketplace_listings_base b
            WHERE NOT EXISTS (
                SELECT 1 FROM marketplace_listings_changes c WHERE c.dealer_id = b.dealer_id AND c.marketplace = b.marketplace AND c.stock_id = b.stock_id
            )
            UNION ALL BY NAME SELECT * EXCLUDE (removed) FROM marketplace_listings_changes WHERE NOT removed
        )
        SELECT k.dealer_id, k.marketplace, k.stock_id,
               CASE d.kind WHEN 'missing' THEN false WHEN 'sold_live' THEN true WHEN 'extra' THEN true ELSE coalesce(k.offered, k.listed) END AS listed,
               k.listed AS in_feed, coalesce(k.offered, k.listed) AS offered, d.kind AS drift, d.checked_at AS drift_checked_at,
               k.completeness, k.missing, k.held_reasons
        FROM kept k LEFT JOIN drift_items d ON d.dealer_id = k.dealer_id AND d.marketplace = k.marketplace AND d.stock_id = k.stock_id
        UNION ALL BY NAME
        SELECT d.dealer_id, d.marketplace, d.stock_id, true AS listed, false AS in_feed, false AS offered, d.kind AS drift, d.checked_at AS drift_checked_at
        FROM drift_items d
        WHERE d.kind IN ('extra', 'sold_live')
          AND NOT EXISTS (SELECT 1 FROM kept k WHERE k.dealer_id = d.dealer_id AND k.marketplace = d.marketplace AND k.stock_id = d.stock_id)""",
    # the vehicles a marketplace would list but for their images: those it does not take (a status it does not list) are not counted
    "vehicles_held_for_images": """
        SELECT m.dealer_id, m.marketplace, m.stock_id, s.source AS image_source, m.good_images, m.held_reason, m.left_out_reasons
        FROM marketplace_images m
        JOIN marketplace_listings l ON l.dealer_id = m.dealer_id AND l.marketplace = m.marketplace AND l.stock_id = m.stock_id
        LEFT JOIN vehicle_image_sources s ON s.dealer_id = m.dealer_id AND s.stock_id = m.stock_id
        WHERE m.held""",
    "image_completeness": """
        SELECT m.dealer_id, m.marketplace, count(*) AS vehicles, count(*) FILTER (WHERE m.held) AS held_for_images,
               round(avg(m.good_images), 2) AS mean_good_images, sum(m.left_out) AS images_left_out
        FROM marketplace_images m
        JOIN marketplace_listings l ON l.dealer_id = m.dealer_id AND l.marketplace = m.marketplace AND l.stock_id = m.stock_id
        GROUP BY ALL""",
    "marketplace_drift_current": """
        SELECT * FROM marketplace_drift QUALIFY row_number() OVER (PARTITION BY dealer_id, marketplace ORDER BY id DESC) = 1""",
    "price_changes": """
        SELECT dealer_id, stock_id, make, model, valid_from AS changed_at, previous_price AS old_price, price AS new_price,
               price - previous_price AS change
        FROM (SELECT *, lag(price) OVER (PARTITION BY dealer_id, stock_id ORDER BY valid_from) AS previous_price FROM stock_history)
        WHERE previous_price IS NOT NULL AND price IS DISTINCT FROM previous_price""",
    "days_in_stock": """
        SELECT dealer_id, stock_id, make, model, status, price, date_in_stock,
               date_diff('day', CAST(date_in_stock AS DATE), current_date) AS days_in_stock
        FROM stock_current WHERE date_in_stock IS NOT NULL""",
    "listing_completeness": """
        SELECT dealer_id, marketplace, count(*) FILTER (WHERE in_feed) AS listed, count(*) FILTER (WHERE NOT in_feed AND drift IS NULL) AS held_back,
               round(avg(completeness) FILTER (WHERE in_feed), 4) AS mean_completeness
        FROM marketplace_listings GROUP BY dealer_id, marketplace""",
    "sync_success_rate": """
        SELECT dealer_id, marketplace, count(*) AS deliveries, count(*) FILTER (WHERE outcome = 'ok') AS succeeded,
               round(count(*) FILTER (WHERE outcome = 'ok') / count(*), 4) AS success_rate, sum(calls) AS calls
        FROM deliveries WHERE outcome <> 'skipped' GROUP BY dealer_id, marketplace""",
    "sold_latency": """
        SELECT dealer_id, marketplace, item_key AS stock_id, change_seen_at, finished_at,
               date_diff('millisecond', change_seen_at, finished_at) / 1000.0 AS latency_seconds
        FROM deliveries WHERE action IN ('sold', 'delete', 'file') AND outcome = 'ok' AND change_seen_at IS NOT NULL""",
}

TABLE_SCHEMAS |= {  # identity (warehouse/identity.py): contacts masked, owned vehicles only as stock ids of the dealer's own stock
    "customers": _typed(
        {
            "dealer_id": "string",
            "customer_number": "string",
            "customer_id": "string",
            "email_masked": "string",
            "phone_masked": "string",
            "postcode_district": "string",
            "owned_vehicles": "Int64",
            "present": "boolean",
            "first_seen_at": "datetime64[us, UTC]",
            "updated_at": "datetime64[us, UTC]",
        }
    ),
    "customer_clusters": _typed(
        {
            "dealer_id": "string",
            "customer_id": "string",
            "is_dms_customer": "boolean",
            "dms_records": "Int64",
            "leads": "Int64",
            "first_enquiry_at": "datetime64[us, UTC]",
            "last_enquiry_at": "datetime64[us, UTC]",
        }
    ),
    "customer_records": _typed({"dealer_id": "string", "record_kind": "string", "record_key": "string", "customer_id": "string", "tier": "string", "match_probability": "float64"}),
    "match_decisions": _typed(
        {
            "id": "Int64",
            "dealer_id": "string",
            "record_kind": "string",
            "record_key": "string",
            "customer_id": "string",
            "candidate_key": "string",
            "tier": "string",
            "outcome": "string",
            "match_probability": "float64",
            "match_weight": "float64",
            "reason": "string",
            "evidence": "string",
            "model_version": "string",
            "decided_at": "datetime64[us, UTC]",
            "run_id": "string",
        }
    ),
    "review_queue": _typed(
        {
            "id": "Int64",
            "dealer_id": "string",
            "record_kind": "string",
            "record_key": "string",
            "candidate_customer_id": "string",
            "match_probability": "float64",
            "match_weight": "float64",
            "evidence": "string",
            "status": "string",
            "created_at": "datetime64[us, UTC]",
            "decided_at": "datetime64[us, UTC]",
            "decided_by": "string",
        }
    ),
    "consent": _typed(
        {
            "dealer_id": "string",
            "customer_id": "string",
            "channel": "string",
            "granted": "boolean",
            "source": "string",
            "source_kind": "string",
            "wording": "string",
            "stated_at": "datetime64[us, UTC]",
        }
    ),  # each customer's consent per channel now: the newest statement wins; a channel never asked has no row
    "customer_purchases": _typed({"dealer_id": "string", "customer_id": "string", "stock_id": "string"}),
}

LOCAL_ZONE = "Europe/London"  # a lead's day, and a vehicle's, is the dealers' calendar day
LEAD_FILE_CHANNEL = """CASE WHEN f.kind = 'meta_csv' THEN 'meta' WHEN f.kind = 'adf' THEN 'email' WHEN f.kind LIKE 'autotrader%' THEN 'autotrader' ELSE f.kind END"""

VIEWS |= {
    "leads_per_channel_day": f"""
        SELECT dealer_id, channel, CAST(timezone('{LOCAL_ZONE}', coalesce(enquired_at, received_at)) AS DATE) AS day, count(*) AS leads
        FROM leads GROUP BY ALL""",
    "leads_per_vehicle": f"""
        WITH vehicle_leads AS (
            SELECT dealer_id, linked_stock_id AS stock_id, count(*) AS leads, min(coalesce(enquired_at, received_at)) AS first_lead_at
            FROM leads WHERE linked_stock_id IS NOT NULL GROUP BY ALL
        ),
        seen AS (
            SELECT dealer_id, stock_id, min(valid_from) AS first_seen_at, arg_max(make, valid_from) AS make, arg_max(model, valid_from) AS model,
                   arg_max(date_in_stock, valid_from) AS date_in_stock
            FROM stock_history GROUP BY ALL
        ),
        vehicles AS (SELECT dealer_id, stock_id FROM stock_current UNION SELECT dealer_id, stock_id FROM vehicle_leads)
        SELECT v.dealer_id, v.stock_id, coalesce(c.make, s.make) AS make, coalesce(c.model, s.model) AS model,
               coalesce(l.leads, 0) AS leads, l.first_lead_at,
               date_diff('day', coalesce(CAST(timezone('{LOCAL_ZONE}', s.first_seen_at) AS DATE), CAST(coalesce(c.date_in_stock, s.date_in_stock) AS DATE)),
                         CAST(timezone('{LOCAL_ZONE}', l.first_lead_at) AS DATE)) AS days_to_first_lead
        FROM vehicles v
        LEFT JOIN stock_current c ON c.dealer_id = v.dealer_id AND c.stock_id = v.stock_id
        LEFT JOIN seen s ON s.dealer_id = v.dealer_id AND s.stock_id = v.stock_id
        LEFT JOIN vehicle_leads l ON l.dealer_id = v.dealer_id AND l.stock_id = v.stock_id""",
    "leads_on_sold": """
        SELECT dealer_id, channel, source, source_lead_id, linked_stock_id, vehicle_status, received_at
        FROM leads WHERE vehicle_status IN ('sold', 'reserved')""",
    "lead_to_sale": """
        WITH sales AS (
            SELECT dealer_id, stock_id, valid_from AS sold_at
            FROM (SELECT dealer_id, stock_id, status, valid_from, lag(status) OVER (PARTITION BY dealer_id, stock_id ORDER BY valid_from) AS previous_status FROM stock_history)
            WHERE status = 'sold' AND previous_status IS DISTINCT FROM 'sold'
        ),
        first_sale AS (
            SELECT l.dealer_id, l.source, l.source_lead_id, l.channel, l.linked_stock_id, coalesce(l.enquired_at, l.received_at) AS lead_at,
                   min(s.sold_at) AS sold_at
            FROM leads l LEFT JOIN sales s ON s.dealer_id = l.dealer_id AND s.stock_id = l.linked_stock_id AND s.sold_at >= coalesce(l.enquired_at, l.received_at)
            WHERE l.linked_stock_id IS NOT NULL
            GROUP BY l.dealer_id, l.source, l.source_lead_id, l.channel, l.linked_stock_id, lead_at
        )
        SELECT *, coalesce(sold_at <= lead_at + INTERVAL 30 DAY, false) AS sold_within_30_days FROM first_sale""",
    "returning_customers": """
        SELECT dealer_id, customer_id, is_dms_customer, leads, first_enquiry_at, last_enquiry_at
        FROM customer_clusters WHERE leads > 0 AND (is_dms_customer OR leads > 1)""",
    "enquiries_before_purchase": """
        WITH sales AS (
            SELECT dealer_id, stock_id, min(valid_from) AS sold_at FROM stock_history WHERE status = 'sold' GROUP BY ALL
        ),
        purchases AS (
            SELECT p.dealer_id, p.customer_id, p.stock_id, s.sold_at FROM customer_purchases p JOIN sales s ON s.dealer_id = p.dealer_id AND s.stock_id = p.stock_id
        )
        SELECT p.dealer_id, p.customer_id, p.stock_id, p.sold_at, count(l.lead_id) AS enquiries,
               count(l.lead_id) FILTER (WHERE l.linked_stock_id = p.stock_id) AS enquiries_on_the_car,
               string_agg(l.channel, ' > ' ORDER BY coalesce(l.enquired_at, l.received_at)) AS channel_path
        FROM purchases p LEFT JOIN leads l ON l.dealer_id = p.dealer_id AND l.customer_id = p.customer_id AND coalesce(l.enquired_at, l.received_at) <= p.sold_at
        GROUP BY ALL""",
    "channel_path_to_sale": """
        SELECT dealer_id, coalesce(channel_path, '(no enquiry)') AS channel_path, count(*) AS sales, round(avg(enquiries), 2) AS mean_enquiries
        FROM enquiries_before_purchase GROUP BY ALL""",
    "lead_channels": f"""
        WITH per_channel AS (
            SELECT dealer_id, channel, count(*) AS leads, count(*) FILTER (WHERE vehicle_status IN ('sold', 'reserved')) AS on_sold,
                   count(*) FILTER (WHERE delivery_status = 'delivered') AS delivered, count(*) FILTER (WHERE delivery_status = 'dead_letter') AS dead_letter
            FROM leads GROUP BY ALL
        ),
        issues AS (
            SELECT q.dealer_id, {LEAD_FILE_CHANNEL} AS channel, count(DISTINCT q.lead_file_id || '#' || q.record) AS quarantined, count(*) AS quarantine_issues
            FROM lead_quarantine q LEFT JOIN lead_files f ON f.dealer_id = q.dealer_id AND f.id = q.lead_file_id
            WHERE q.severity = 'error' GROUP BY ALL
        )
        SELECT coalesce(p.dealer_id, i.dealer_id) AS dealer_id, coalesce(p.channel, i.channel) AS channel, coalesce(p.leads, 0) AS leads,
               coalesce(p.on_sold, 0) AS on_sold, coalesce(p.delivered, 0) AS delivered, coalesce(p.dead_letter, 0) AS dead_letter,
               coalesce(i.quarantined, 0) AS quarantined, coalesce(i.quarantine_issues, 0) AS quarantine_issues
        FROM per_channel p FULL JOIN issues i ON i.dealer_id = p.dealer_id AND i.channel IS NOT DISTINCT FROM p.channel""",
}


def conform(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with exactly the table's columns and types (extra columns dropped, missing ones empty)."""
    schema = TABLE_SCHEMAS[table]
    out = {}
    for name, dtype in schema.dtypes.items():
        if name in frame:
            column = frame[name]
            if str(dtype).startswith("datetime64") and "UTC" in str(dtype):
                column = pd.to_datetime(column, utc=True)
            out[name] = column.astype(dtype)
        else:
            out[name] = pd.Series(pd.NA, index=frame.index).astype(dtype)
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True)


def table_file(paths: DataPaths, table: str, dealer_id: str) -> Path:
    return paths.warehouse_tables / table / f"dealer={dealer_id}.parquet"


def publish_stock(paths: DataPaths, dealer_id: str, base_file: Path, base_generation: int, changes: pd.DataFrame) -> int:
    """The dealer's current stock in the warehouse as the stock itself is kept: the base file's public columns, copied only
    when the base is newer than the copy, and the vehicles changed since; returns how many vehicles that makes."""
    target = _base_copy(paths, "stock_current", dealer_id, base_file, base_generation, stock_current_empty)
    write_parquet_atomically(conform("stock_current_changes", changes), table_file(paths, "stock_current_changes", dealer_id))
    base_ids = pq.read_table(target, columns=["stock_id"])["stock_id"]
    changed = pa.array(changes["stock_id"].astype(str).unique().tolist(), base_ids.type)  # the few are hashed, the many scanned
    in_base = pc.sum(pc.is_in(base_ids, value_set=changed)).as_py() or 0  # the base holds each stock number once
    return len(base_ids) + len(changed) - in_base


def publish_history(paths: DataPaths, dealer_id: str, base_file: Path, log: HistoryLog) -> int:
    """The dealer's history in the warehouse as it is kept: the base file, copied only when it is newer than the copy, the
    versions opened since and the base's versions closed since; returns how many versions that makes."""
    target = _base_copy(paths, "stock_history", dealer_id, base_file, log.base_generation, lambda: TABLE_SCHEMAS["stock_history"])
    write_parquet_atomically(conform("stock_history_opened", log.opened), table_file(paths, "stock_history_opened", dealer_id))
    write_parquet_atomically(conform("stock_history_closed", log.closed.assign(dealer_id=dealer_id)), table_file(paths, "stock_history_closed", dealer_id))
    return pq.read_metadata(target).num_rows + len(log.opened)


def _base_copy(paths: DataPaths, table: str, dealer_id: str, base_file: Path, base_generation: int, empty) -> Path:
    """The dealer's file of `table`: the base file conformed, rewritten only when the base's generation is not the copy's."""
    target = table_file(paths, table, dealer_id)
    copied = target.exists() and (pq.read_schema(target).metadata or {}).get(GENERATION_KEY) == str(base_generation).encode()
    if not copied:
        base = conform(table, pd.read_parquet(base_file) if base_file.exists() else empty())
        write_parquet_atomically(base, target, {GENERATION_KEY: str(base_generation).encode()})
    return target


def link_into(source: Path, target: Path) -> None:
    """`target` becomes `source`'s bytes, atomically: a hard link (no copy) where the filesystem allows, else a copy."""
    try:
        link_into_place(source, target)
    except OSError:
        replace_with(target, lambda temporary: shutil.copyfile(source, temporary))


def publish(paths: DataPaths, dealer_id: str, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Replace the dealer's file of each table; other dealers' files are never touched, so dealers publish in parallel."""
    counts = {}
    for table, frame in tables.items():
        write_parquet_atomically(conform(table, frame), table_file(paths, table, dealer_id))
        counts[table] = len(frame)
    return counts


def catalog_version() -> str:
    """A fingerprint of the tables' columns and the views' SQL: the catalog is rebuilt only when it changes."""
    import hashlib

    text = repr(sorted((t, list(map(str, e.dtypes.items()))) for t, e in TABLE_SCHEMAS.items())) + repr(sorted(VIEWS.items())) + repr(BASE_VIEWS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _version_file(paths: DataPaths) -> Path:
    return paths.warehouse_tables / "_catalog_version"


def ensure_catalog(paths: DataPaths) -> Path:
    """Rebuild the catalog unless the current one was built from the same definitions (its views read new files by glob anyway)."""
    version = _version_file(paths)
    if paths.warehouse_db.exists() and version.exists() and version.read_text() == catalog_version():
        return paths.warehouse_db
    return rebuild_catalog(paths)


def rebuild_catalog(paths: DataPaths) -> Path:
    """Build a fresh DuckDB file of views over the Parquet files and swap it in; a reader holding the old file keeps reading it."""
    paths.warehouse_tables.mkdir(parents=True, exist_ok=True)
    replace_with(paths.warehouse_db, lambda temporary: _build_catalog(paths, temporary))
    write_bytes_atomically(_version_file(paths), catalog_version().encode())
    return paths.warehouse_db


def _build_catalog(paths: DataPaths, database: Path) -> None:
    """The catalog's views, written to a new DuckDB file at `database` (its write-ahead log removed if building fails)."""
    try:
        connection = duckdb.connect(str(database))
        try:
            for table, empty in TABLE_SCHEMAS.items():
                folder = paths.warehouse_tables / table
                if not (folder / EMPTY_FILE).exists():
                    write_parquet_atomically(conform(table, empty), folder / EMPTY_FILE)
                pattern = str(folder.resolve() / "*.parquet").replace("'", "''")
                connection.execute(f"CREATE VIEW {BASE_VIEWS.get(table, table)} AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)")
            for name, sql in VIEWS.items():
                connection.execute(f"CREATE VIEW {name} AS {sql}")
            connection.execute("CHECKPOINT")
        finally:
            connection.close()
    except BaseException:
        database.with_name(database.name + ".wal").unlink(missing_ok=True)
        raise
