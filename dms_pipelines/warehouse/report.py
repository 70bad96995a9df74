"""KPIs per dealer and marketplace from the warehouse (success rate, latency, completeness, call efficiency, open quarantine), drift, and leads per channel."""

import json
from pathlib import Path

import duckdb

from dms_pipelines.operations.drift_state import KINDS, describe_drift

KPI_SQL = """
WITH d AS (
    SELECT dealer_id, marketplace, outcome, calls, item_key,
           date_diff('millisecond', coalesce(change_seen_at, started_at), finished_at) / 1000.0 AS latency_seconds
    FROM deliveries WHERE outcome <> 'skipped'
),
delivery_kpis AS (
    SELECT dealer_id, marketplace, count(*) AS deliveries,
           count(*) FILTER (WHERE outcome = 'ok') / count(*) AS success_rate,
           quantile_cont(latency_seconds, 0.5) AS latency_p50_seconds,
           quantile_cont(latency_seconds, 0.95) AS latency_p95_seconds,
           sum(calls) AS calls, count(DISTINCT item_key) AS changed_items,
           sum(calls) / nullif(count(DISTINCT item_key), 0) AS calls_per_changed_vehicle
    FROM d GROUP BY ALL
),
listing_kpis AS (
    SELECT dealer_id, marketplace, count(*) FILTER (WHERE listed) AS listed, count(*) FILTER (WHERE NOT in_feed AND drift IS NULL) AS held_back,
           avg(completeness) FILTER (WHERE in_feed) AS mean_completeness
    FROM marketplace_listings GROUP BY ALL
),
quarantine_kpis AS (
    SELECT dealer_id, count(DISTINCT coalesce(stock_id, source_file || '#' || source_row)) AS quarantined_vehicles, count(*) AS quarantine_issues
    FROM quarantine WHERE status = 'open' AND severity = 'error' GROUP BY ALL
)
SELECT coalesce(l.dealer_id, k.dealer_id) AS dealer_id, coalesce(l.marketplace, k.marketplace) AS marketplace,
       l.listed, l.held_back, round(l.mean_completeness, 4) AS mean_completeness,
       k.deliveries, round(k.success_rate, 4) AS success_rate, round(k.latency_p50_seconds, 3) AS latency_p50_seconds,
       round(k.latency_p95_seconds, 3) AS latency_p95_seconds, k.calls, round(k.calls_per_changed_vehicle, 3) AS calls_per_changed_vehicle,
       coalesce(q.quarantined_vehicles, 0) AS quarantined_vehicles, coalesce(q.quarantine_issues, 0) AS quarantine_issues
FROM listing_kpis l
FULL JOIN delivery_kpis k ON k.dealer_id = l.dealer_id AND k.marketplace = l.marketplace
LEFT JOIN quarantine_kpis q ON q.dealer_id = coalesce(l.dealer_id, k.dealer_id)
ORDER BY dealer_id, marketplace
"""


DRIFT_SQL = """
SELECT dealer_id, marketplace, checked_at, vehicles_checked, missing, extra, stale, sold_live, error, stock_ids
FROM marketplace_drift_current ORDER BY (missing + extra + stale + sold_live > 0 OR error IS NOT NULL) DESC, dealer_id, marketplace
"""


def _query(warehouse_db: Path, sql: str) -> list[dict]:
    if not warehouse_db.exists():
        raise FileNotFoundError(f"{warehouse_db}: no warehouse yet; run `make demo` or `dms-pipelines run` first")
    with duckdb.connect(str(warehouse_db), read_only=True) as connection:
        cursor = connection.execute(sql)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def kpis(warehouse_db: Path) -> list[dict]:
    return _query(warehouse_db, KPI_SQL)


def drift(warehouse_db: Path) -> list[dict]:
    """Per dealer and marketplace, the last drift check: what the marketplace shows that the DMS does not say, by kind."""
    rows = _query(warehouse_db, DRIFT_SQL)
    for row in rows:
        row["stock_ids"] = json.loads(row["stock_ids"] or "{}")
    return rows


def render_drift(rows: list[dict]) -> str:
    """One line per dealer and marketplace: in sync, or the counts with the first stock ids of each kind."""
    lines = []
    for row in rows:
        told = describe_drift({kind: row[kind] for kind in KINDS}, row["stock_ids"], row["error"])
        state = f"DRIFT: {told}" if told else f"in sync ({row['vehicles_checked']} vehicles checked)"
        lines.append(f"{row['dealer_id']:<12} {row['marketplace']:<11} {state}")
    return "\n".join(lines) if lines else "no drift check recorded yet"


LEAD_CHANNELS_SQL = "SELECT * FROM lead_channels ORDER BY dealer_id, channel"


def lead_channels(warehouse_db: Path) -> list[dict]:
    """Per dealer and lead channel: leads, those on a sold or reserved car, delivered to the CRM, dead-lettered, and the
    quarantined records and issues (by the lead file's kind)."""
    return _query(warehouse_db, LEAD_CHANNELS_SQL)


def render_lead_channels(rows: list[dict]) -> str:
    columns = [
        ("dealer_id", "dealer"),
        ("channel", "channel"),
        ("leads", "leads"),
        ("on_sold", "on sold"),
        ("delivered", "delivered"),
        ("dead_letter", "dead letter"),
        ("quarantined", "quarantined"),
        ("quarantine_issues", "q. issues"),
    ]
    return _render(rows, columns) if rows else "no leads recorded yet"


IMAGE_COMPLETENESS_SQL = "SELECT * FROM image_completeness ORDER BY dealer_id, marketplace"


def image_completeness(warehouse_db: Path) -> list[dict]:
    """Per dealer and marketplace whose images are judged: vehicles, those held back for their images, the mean number of
    good images a listing shows, and the images left out."""
    return _query(warehouse_db, IMAGE_COMPLETENESS_SQL)


def render_image_completeness(rows: list[dict]) -> str:
    columns = [
        ("dealer_id", "dealer"),
        ("marketplace", "marketplace"),
        ("vehicles", "vehicles"),
        ("held_for_images", "held"),
        ("mean_good_images", "good/vehicle"),
        ("images_left_out", "left out"),
    ]
    return _render(rows, columns) if rows else "no dealer's images are judged (no images: section in the configuration)"


def render_table(rows: list[dict]) -> str:
    columns = [
        ("dealer_id", "dealer"),
        ("marketplace", "marketplace"),
        ("listed", "listed"),
        ("held_back", "held"),
        ("mean_completeness", "complete"),
        ("success_rate", "success"),
        ("latency_p50_seconds", "p50 s"),
        ("latency_p95_seconds", "p95 s"),
        ("calls_per_changed_vehicle", "calls/chg"),
        ("quarantined_vehicles", "quarantined"),
        ("quarantine_issues", "q. issues"),
    ]
    return _render(rows, columns)


def _render(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """The rows as aligned text columns (key, title), a header first; "-" for an empty value."""

    def cell(value):
        if value is None:
            return "-"
        return f"{value:g}" if isinstance(value, float) else str(value)

    table = [[title for _, title in columns]] + [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join("  ".join(value.ljust(widths[i]) for i, value in enumerate(r)) for r in table)


def render_json(rows: list[dict], drift_rows: list[dict] | None = None, lead_channel_rows: list[dict] | None = None, image_rows: list[dict] | None = None) -> str:
    return json.dumps({"kpis": rows, "drift": drift_rows or [], "lead_channels": lead_channel_rows or [], "images": image_rows or []}, indent=2, default=str)
