"""The identity tables in the warehouse: contacts masked, customers tied to their leads, and the returning-customer and path-to-sale views answer from them."""

import json
from datetime import datetime, timezone

import duckdb
import pandas as pd
from sqlalchemy import insert

from dms_pipelines.config import operations_db_url
from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import dms_customers, engine_for, leads
from dms_pipelines.stock.store import write_stock
from dms_pipelines.warehouse.identity import publish_identity
from dms_pipelines.warehouse.leads import publish_leads
from dms_pipelines.warehouse.tables import TABLE_SCHEMAS, conform, ensure_catalog, table_file
from dms_pipelines_tests.support import stock_of, valid_vehicle


def at(day: int) -> datetime:
    return datetime(2026, 11, day, 12, tzinfo=timezone.utc)


def add_lead(engine, lead_id: int, channel: str, day: int, stock_id: str | None = None) -> None:
    body = {"source": "website", "source_lead_id": f"W{lead_id}", "channel": channel, "enquired_at": at(day).isoformat(), "email": f"buyer{lead_id}@example.com", "first_name": "Ann"}
    with engine.begin() as connection:
        connection.execute(
            insert(leads).values(
                id=lead_id,
                dealer_id="leeds",
                source="website",
                source_lead_id=f"W{lead_id}",
                revision=1,
                content_hash="h",
                lead=json.dumps(body),
                first_received_at=at(day),
                last_received_at=at(day),
                linked_stock_id=stock_id,
                delivery_status="delivered",
                updated_at=at(day),
            )
        )


def test_a_customer_who_enquired_twice_then_bought_shows_their_path_and_no_contact_in_full(settings, paths):
    engine = engine_for(operations_db_url(settings, paths))
    write_stock(paths.state, "leeds", stock_of([valid_vehicle("L001", registration="AB71CDE", status="sold"), valid_vehicle("L002", registration="CD21EFG")]))
    record = {
        "customer_number": "C-1",
        "first_name": "Ann",
        "last_name": "Hathaway-Smythe",
        "email": "ann.hs@example.com",
        "phone_mobile": "+447700900111",
        "postcode": "LS1 4AP",
        "owned_vehicles": "AB71CDE|ZZ99ZZZ",
    }
    with engine.begin() as connection:
        connection.execute(insert(dms_customers).values(dealer_id="leeds", customer_number="C-1", record=json.dumps(record), content_hash="c", first_seen_at=at(1), updated_at=at(1), present=1))
    add_lead(engine, 1, "autotrader", 2, "L001")
    add_lead(engine, 2, "website", 5, "L001")
    add_lead(engine, 3, "meta", 28)  # after the purchase: not on its path
    add_lead(engine, 4, "google", 3)  # a prospect with one enquiry: not returning
    rows = [("customer", "C-1", "P-ann"), ("lead", "1", "P-ann"), ("lead", "2", "P-ann"), ("lead", "3", "P-ann"), ("lead", "4", "P-pro")]
    identity_store.save_assignments(
        engine,
        "leeds",
        pd.DataFrame(
            [
                {
                    "record_kind": k,
                    "record_key": key,
                    "cluster_id": c,
                    "tier": "email",
                    "outcome": "joined",
                    "match_probability": 1.0,
                    "match_weight": 9.0,
                    "candidate_key": None,
                    "candidate_cluster_id": None,
                    "reason": "email exact",
                    "evidence": "[]",
                }
                for k, key, c in rows
            ]
        ),
        {},
        None,
        "v1",
    )
    identity_store.record_consents(
        engine,
        "leeds",
        [
            {"record_kind": "customer", "record_key": "C-1", "channel": "email", "granted": True, "source": "customers_full.csv", "wording": "Offers by e-mail", "stated_at": at(1)},
            {"record_kind": "lead", "record_key": "2", "channel": "email", "granted": False, "source": "website-2.json", "wording": "No offers", "stated_at": at(5)},
        ],
    )
    history = pd.DataFrame(
        [
            {"dealer_id": "leeds", "stock_id": "L001", "status": "available", "valid_from": at(1), "valid_to": at(10), "price": 9995.0},
            {"dealer_id": "leeds", "stock_id": "L001", "status": "sold", "valid_from": at(10), "valid_to": None, "price": 9995.0},
        ]
    )
    write_parquet_atomically(conform("stock_history", history), table_file(paths, "stock_history", "leeds"))
    publish_leads(paths, engine, "leeds")
    counts = publish_identity(paths, engine, "leeds")
    assert counts["customers"] == 1 and counts["customer_purchases"] == 1 and counts["customer_clusters"] == 2
    ensure_catalog(paths)
    warehouse = duckdb.connect(str(paths.warehouse_db), read_only=True)
    try:
        assert warehouse.execute("SELECT customer_id, is_dms_customer, leads FROM returning_customers").fetchall() == [("P-ann", True, 3)]
        assert warehouse.execute("SELECT stock_id, enquiries, enquiries_on_the_car, channel_path FROM enquiries_before_purchase").fetchall() == [("L001", 2, 2, "autotrader > website")]
        assert warehouse.execute("SELECT channel_path, sales FROM channel_path_to_sale").fetchall() == [("autotrader > website", 1)]
        assert warehouse.execute("SELECT channel, granted, source_kind FROM consent WHERE customer_id = 'P-ann'").fetchall() == [("email", False, "lead")]  # the newest statement wins
        assert warehouse.execute("SELECT email_masked, phone_masked, postcode_district, owned_vehicles FROM customers").fetchall() == [("a***@example.com", "+44*******111", "LS1", 2)]
        shown = repr(warehouse.execute("SELECT * FROM customers").fetchall()) + repr(warehouse.execute("SELECT * FROM customer_clusters").fetchall())
    finally:
        warehouse.close()
    assert "Hathaway" not in shown and "ann.hs@" not in shown and "AB71CDE" not in shown
    assert set(TABLE_SCHEMAS["customers"].columns).isdisjoint({"email", "phone_mobile", "first_name", "last_name", "address_line1"})
