"""The lead tables in the warehouse: masked contact columns only, no personal value in any file, and the lead views and report."""

import json
import re
from datetime import date, datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest
from sqlalchemy import insert

from dms_pipelines.leads import privacy
from dms_pipelines.leads.records import FIELD_NAMES, PERSONAL_FIELDS
from dms_pipelines.operations.db import engine_for, lead_deliveries, lead_files, lead_quarantine, leads
from dms_pipelines.paths import PROJECT_ROOT, DataPaths
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, coerce_to_schema
from dms_pipelines.warehouse.leads import LEAD_FIELDS_SHOWN, mask_email, mask_phone, postcode_district, publish_leads
from dms_pipelines.warehouse.report import lead_channels, render_json, render_lead_channels
from dms_pipelines.warehouse.tables import TABLE_SCHEMAS, publish, rebuild_catalog

UTC = timezone.utc
LEAD_AT = datetime(2024, 5, 1, 8, 15, tzinfo=UTC)
PERSONAL = {
    "first_name": "Zephyrine",
    "last_name": "Quillfeather",
    "full_name": "Zephyrine Quillfeather",
    "email": "zephyrine.quillfeather@example.com",
    "phone": "+441134960123",
    "postcode": "LS3 9ZQ",
    "message": "Is the panoramic roof on the Octavia still there? Ring after six please",
    "part_exchange_details": "2015 Vauxhall Zafira Tourer, 88k miles, in cobalt",
}
SEARCHED = [*PERSONAL.values(), "Zephyrine", "Quillfeather", "zephyrine.quillfeather", "1134960123", "4960123", "9ZQ", "panoramic roof", "Vauxhall Zafira"]


def canonical_lead(**values) -> str:
    lead = dict.fromkeys(FIELD_NAMES) | {"dealer_id": "leeds", "lead_status": "new", "record": "row 1"} | values
    return json.dumps(lead)


def lead_row(lead_id: int, source: str, channel: str, enquired_at: datetime | None, stock_id: str | None, vehicle_status: str, delivery_status: str, **personal) -> dict:
    lead = canonical_lead(
        source=source,
        source_lead_id=f"{source}-{lead_id}",
        channel=channel,
        enquired_at=enquired_at.isoformat() if enquired_at else None,
        received_at=(LEAD_AT + timedelta(minutes=lead_id)).isoformat(),
        vehicle_ref=stock_id,
        vehicle_stock_id=stock_id,
        part_exchange=bool(personal.get("part_exchange_details")),
        finance_interest=True,
        consent_email=True,
        consent_phone=False,
        **personal,
    )
    return {
        "id": lead_id,
        "dealer_id": "leeds",
        "source": source,
        "source_lead_id": f"{source}-{lead_id}",
        "revision": 1,
        "content_hash": f"{lead_id:064d}",
        "lead": lead,
        "first_received_at": LEAD_AT + timedelta(minutes=lead_id),
        "last_received_at": LEAD_AT + timedelta(hours=lead_id),
        "repeats": 0,
        "lead_file_id": 1,
        "linked_stock_id": stock_id,
        "linked_by": "stock_id" if stock_id else None,
        "vehicle_status": vehicle_status,
        "delivery_status": delivery_status,
        "delivered_revision": 1 if delivery_status == "delivered" else 0,
        "updated_at": LEAD_AT,
    }


def history_version(stock_id: str, status: str, valid_from: datetime, valid_to: datetime | None) -> dict:
    return {"dealer_id": "leeds", "stock_id": stock_id, "make": "Skoda", "model": "Octavia", "price": 14995.0, "status": status, "valid_from": valid_from, "valid_to": valid_to}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("leads")
    paths = DataPaths(tmp_path / "data")
    engine = engine_for(f"sqlite:///{tmp_path}/ops.sqlite")
    with engine.begin() as connection:
        connection.execute(
            insert(leads),
            [
                lead_row(1, "meta", "meta", LEAD_AT, "LEE001", "available", "delivered", **PERSONAL),  # sold 10 days later
                lead_row(2, "autotrader", "autotrader", LEAD_AT + timedelta(hours=12), "LEE002", "sold", "delivered", email="b.smith@example.org"),  # already sold
                lead_row(3, "website", "carsnip", LEAD_AT + timedelta(days=1), "LEE003", "reserved", "dead_letter", phone="+447700900456"),  # sold 40 days later
                lead_row(4, "website", "website", None, None, "unlinked", "pending"),  # no enquiry time: its day is when it arrived
                lead_row(5, "meta", "meta", LEAD_AT + timedelta(days=1), None, "unlinked", "retry", postcode="EC1A 1BB"),
            ],
        )
        connection.execute(
            insert(lead_files),
            [
                {"id": 1, "dealer_id": "leeds", "file_name": "meta-1.csv", "origin": "inbox", "sha256": "a" * 64, "size_bytes": 900, "kind": "meta_csv", "received_at": LEAD_AT, "status": "processed"},
                {
                    "id": 2,
                    "dealer_id": "leeds",
                    "file_name": "website-2.json",
                    "origin": "webhook",
                    "sha256": "b" * 64,
                    "size_bytes": 300,
                    "kind": "website",
                    "received_at": LEAD_AT,
                    "status": "processed",
                },
                {"id": 3, "dealer_id": "york", "file_name": "adf-3.xml", "origin": "inbox", "sha256": "c" * 64, "size_bytes": 300, "kind": "adf", "received_at": LEAD_AT, "status": "failed"},
            ],
        )
        issue = {"dealer_id": "leeds", "file_name": "meta-1.csv", "lead_file_id": 1, "created_at": LEAD_AT}
        connection.execute(
            insert(lead_quarantine),
            [
                issue | {"record": "row 3", "field": "email", "rule": "email_invalid", "severity": "error", "message": "meta-1.csv row 3: email is not an e-mail address"},
                issue | {"record": "row 3", "field": "phone", "rule": "phone_invalid", "severity": "error", "message": "meta-1.csv row 3: phone is not a phone number"},
                issue | {"record": "row 4", "field": "postcode", "rule": "postcode_invalid", "severity": "warning", "message": "not a UK postcode; dropped"},
                issue
                | {"lead_file_id": 2, "file_name": "website-2.json", "record": "payload", "field": "channel", "rule": "required", "severity": "error", "message": "channel is required and empty"},
            ],
        )
        delivery = {"dealer_id": "leeds", "revision": 1, "destination": "drop", "reference": None, "acknowledged": None, "transient": None, "error": None, "vehicle_status": None}
        delivery |= {"started_at": LEAD_AT, "finished_at": LEAD_AT + timedelta(seconds=2)}
        connection.execute(
            insert(lead_deliveries),
            [
                delivery
                | {"lead_id": 1, "source": "meta", "source_lead_id": "meta-1", "reference": "lead-meta-1.xml", "acknowledged": "renamed into place", "outcome": "ok", "vehicle_status": "available"},
                delivery
                | {"lead_id": 3, "source": "website", "source_lead_id": "website-3", "destination": "email", "outcome": "dead_letter", "transient": 0, "error": "CRM email: 550 mailbox unavailable"},
            ],
        )
    stock = coerce_to_schema(pd.DataFrame({"dealer_id": "leeds", "stock_id": ["LEE009"], "make": "Kia", "model": "Ceed", "price": 9995.0, "status": "available"}))
    publish(paths, "leeds", {"stock_current": stock.drop(columns=list(PRIVATE_COLUMNS))})
    history = [
        history_version("LEE001", "available", datetime(2024, 4, 20, 9, tzinfo=UTC), LEAD_AT + timedelta(days=10)),
        history_version("LEE001", "sold", LEAD_AT + timedelta(days=10), None),
        history_version("LEE002", "sold", datetime(2024, 4, 25, tzinfo=UTC), None),
        history_version("LEE003", "reserved", datetime(2024, 4, 28, tzinfo=UTC), LEAD_AT + timedelta(days=41)),
        history_version("LEE003", "sold", LEAD_AT + timedelta(days=41), None),
    ]
    publish(paths, "leeds", {"stock_history": pd.DataFrame(history)})
    counts = publish_leads(paths, engine, "leeds")
    publish_leads(paths, engine, "york")
    rebuild_catalog(paths)
    return paths, engine, counts


def query(paths: DataPaths, sql: str) -> list[dict]:
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        cursor = db.execute(sql)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def test_masking_keeps_only_what_identifies_no_one():
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email(None) is None and mask_email("not-an-address") == "***"
    assert mask_phone("+441134960123") == "+44*******123"
    assert mask_phone("+353871234567") == "+353******567"
    assert mask_phone("01134960123") == "********123"
    assert mask_phone(None) is None
    assert [postcode_district(p) for p in ("LS3 9ZQ", "EC1A 1BB", "M11AE", "D02 X285", "BFPO 123", "nowhere", None)] == ["LS3", "EC1A", "M1", "D02", None, None, None]
    assert not set(LEAD_FIELDS_SHOWN) & set(PERSONAL_FIELDS)


def test_publish_counts_rows_per_table(warehouse):
    _, _, counts = warehouse
    assert counts == {"leads": 5, "lead_deliveries": 2, "lead_quarantine": 4, "lead_files": 2}


def test_leads_table_has_masked_columns_only(warehouse):
    paths, _, _ = warehouse
    assert not set(TABLE_SCHEMAS["leads"].columns) & set(PERSONAL_FIELDS)
    rows = {row["source_lead_id"]: row for row in query(paths, "SELECT * FROM leads")}
    first = rows["meta-1"]
    assert (first["email_masked"], first["phone_masked"], first["postcode_district"], first["has_message"]) == ("z***@example.com", "+44*******123", "LS3", True)
    assert (first["channel"], first["linked_stock_id"], first["delivery_status"], first["part_exchange"], first["consent_email"], first["consent_phone"], first["consent_sms"]) == (
        "meta",
        "LEE001",
        "delivered",
        True,
        True,
        False,
        None,
    )
    assert first["enquired_at"] == LEAD_AT and first["received_at"] == LEAD_AT + timedelta(minutes=1)
    assert rows["website-4"]["email_masked"] is None and rows["website-4"]["has_message"] is False
    assert rows["meta-5"]["postcode_district"] == "EC1A"


def test_no_personal_value_in_any_warehouse_file(warehouse):
    paths, engine, _ = warehouse
    files = sorted(paths.warehouse_tables.rglob("*.parquet"))
    assert any(f.parent.name == "leads" for f in files)
    for path in [*files, paths.warehouse_db]:
        content = path.read_bytes().lower()
        for value in SEARCHED:
            assert value.lower().encode() not in content, f"{path.name} holds {value!r}"
    with duckdb.connect() as db:
        for path in files:
            for row in db.execute(f"SELECT * FROM read_parquet('{path}')").fetchall():
                text = " ".join(str(cell) for cell in row).lower()
                assert not [value for value in SEARCHED if value.lower() in text], path
    assert privacy.leaks([paths.warehouse_tables], {PERSONAL["email"], "b.smith@example.org"}, {PERSONAL["phone"], "+447700900456"}, []) == []


def test_leads_per_channel_day(warehouse):
    paths, _, _ = warehouse
    rows = query(paths, "SELECT channel, day, leads FROM leads_per_channel_day WHERE dealer_id = 'leeds' ORDER BY channel, day")
    assert [(r["channel"], r["day"], r["leads"]) for r in rows] == [
        ("autotrader", date(2024, 5, 1), 1),
        ("carsnip", date(2024, 5, 2), 1),
        ("meta", date(2024, 5, 1), 1),
        ("meta", date(2024, 5, 2), 1),
        ("website", date(2024, 5, 1), 1),
    ]


def test_lead_to_sale_within_30_days(warehouse):
    paths, _, _ = warehouse
    rows = {r["source_lead_id"]: r for r in query(paths, "SELECT * FROM lead_to_sale")}
    assert set(rows) == {"meta-1", "autotrader-2", "website-3"}
    assert rows["meta-1"]["sold_within_30_days"] is True and rows["meta-1"]["sold_at"] == LEAD_AT + timedelta(days=10)
    assert rows["website-3"]["sold_within_30_days"] is False and rows["website-3"]["sold_at"] == LEAD_AT + timedelta(days=41)
    assert rows["autotrader-2"]["sold_within_30_days"] is False and rows["autotrader-2"]["sold_at"] is None  # sold before the lead came


def test_leads_per_vehicle_and_on_sold(warehouse):
    paths, _, _ = warehouse
    vehicles = {r["stock_id"]: r for r in query(paths, "SELECT * FROM leads_per_vehicle")}
    assert (vehicles["LEE001"]["make"], vehicles["LEE001"]["leads"], vehicles["LEE001"]["days_to_first_lead"]) == ("Skoda", 1, 11)
    assert (vehicles["LEE009"]["make"], vehicles["LEE009"]["leads"], vehicles["LEE009"]["first_lead_at"]) == ("Kia", 0, None)
    on_sold = query(paths, "SELECT source_lead_id, linked_stock_id, vehicle_status FROM leads_on_sold ORDER BY source_lead_id")
    assert [tuple(r.values()) for r in on_sold] == [("autotrader-2", "LEE002", "sold"), ("website-3", "LEE003", "reserved")]


def test_report_lead_channels(warehouse):
    paths, _, _ = warehouse
    rows = lead_channels(paths.warehouse_db)
    table = {(r["dealer_id"], r["channel"]): r for r in rows}
    assert table[("leeds", "meta")] == {"dealer_id": "leeds", "channel": "meta", "leads": 2, "on_sold": 0, "delivered": 1, "dead_letter": 0, "quarantined": 1, "quarantine_issues": 2}
    assert (table[("leeds", "carsnip")]["on_sold"], table[("leeds", "carsnip")]["dead_letter"]) == (1, 1)
    assert (table[("leeds", "website")]["leads"], table[("leeds", "website")]["quarantine_issues"]) == (1, 1)
    assert set(table) == {("leeds", "autotrader"), ("leeds", "carsnip"), ("leeds", "meta"), ("leeds", "website")}
    rendered = render_lead_channels(rows)
    assert rendered.splitlines()[0].split()[:3] == ["dealer", "channel", "leads"] and "carsnip" in rendered
    assert render_lead_channels([]) == "no leads recorded yet"
    assert json.loads(render_json([], None, rows))["lead_channels"][0]["dealer_id"] == "leeds"
    assert json.loads(render_json([]))["lead_channels"] == []


def test_republishing_replaces_the_dealers_rows(warehouse):
    paths, engine, _ = warehouse
    assert publish_leads(paths, engine, "leeds")["leads"] == 5
    assert query(paths, "SELECT count(*) AS n FROM leads WHERE dealer_id = 'leeds'") == [{"n": 5}]
    assert query(paths, "SELECT dealer_id, count(*) AS n FROM lead_files GROUP BY ALL ORDER BY ALL") == [{"dealer_id": "leeds", "n": 2}, {"dealer_id": "york", "n": 1}]


def test_the_documented_lead_queries_run_on_leads(warehouse):
    paths, _, _ = warehouse
    section = (PROJECT_ROOT / "docs" / "warehouse.md").read_text(encoding="utf-8").split("\n## Leads\n", 1)[1]
    queries = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    assert len(queries) >= 5
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        results = [db.execute(sql).fetchall() for sql in queries]
    assert results[1] and results[2] and len(results[4]) == 3 and results[5]  # the 30-day ones are empty for leads of 2024
