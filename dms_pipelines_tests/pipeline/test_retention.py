"""Retention: each kind of personal data goes once its configured period has passed, and nothing younger goes with it."""

import os
from datetime import datetime, timedelta, timezone

import pandas as pd
from sqlalchemy import insert, select

from dms_pipelines.config import operations_db_url
from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import customer_files, engine_for, lead_files, leads
from dms_pipelines.pipeline.retention import apply_retention

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def add_lead(engine, lead_id: int, days_old: int, dealer_id: str = "leeds") -> None:
    at = NOW - timedelta(days=days_old)
    with engine.begin() as connection:
        connection.execute(
            insert(leads).values(
                id=lead_id,
                dealer_id=dealer_id,
                source="website",
                source_lead_id=f"W{lead_id}",
                revision=1,
                content_hash="h",
                lead="{}",
                first_received_at=at,
                last_received_at=at,
                delivery_status="delivered",
                updated_at=at,
            )
        )


def assign(engine, rows):
    frame = pd.DataFrame(
        [
            {
                "record_kind": k,
                "record_key": key,
                "cluster_id": c,
                "tier": "model",
                "outcome": "joined",
                "match_probability": 1.0,
                "match_weight": 1.0,
                "candidate_key": None,
                "candidate_cluster_id": None,
                "reason": "r",
                "evidence": "[]",
            }
            for k, key, c in rows
        ]
    )
    identity_store.save_assignments(engine, "leeds", frame, {}, None, None)


def test_old_leads_and_silent_prospects_go_customers_recent_leads_stay(settings, paths):
    engine = engine_for(operations_db_url(settings, paths))
    add_lead(engine, 1, 1200)  # past leads_days (1095): goes, whoever it is
    add_lead(engine, 2, 800)  # a DMS customer's lead within 1095 days: stays
    add_lead(engine, 3, 800)  # a prospect's, newest enquiry past prospects_days (730): goes
    add_lead(engine, 4, 800)  # a prospect who enquired again recently: both stay
    add_lead(engine, 5, 10)
    add_lead(engine, 6, 1200, dealer_id="york")  # another dealer's: not this run's
    assign(engine, [("customer", "C1", "P-cust"), ("lead", "2", "P-cust"), ("lead", "3", "P-gone"), ("lead", "4", "P-back"), ("lead", "5", "P-back"), ("lead", "1", "P-old")])
    report = apply_retention(settings, paths, engine, "leeds", now=NOW)
    with engine.connect() as connection:
        assert sorted(connection.execute(select(leads.c.id)).scalars()) == [2, 4, 5, 6]
    assert report.removed["leads"] == 2
    assert set(identity_store.linked_records(engine, "leeds")["record_key"]) == {"C1", "2", "4", "5"}


def test_old_raw_files_go_but_the_newest_full_customer_export_stays(settings, paths):
    engine = engine_for(operations_db_url(settings, paths))
    (paths.lead_landing / "leeds").mkdir(parents=True)
    (paths.customer_landing / "leeds").mkdir(parents=True)
    for name, days in (("old.json", 1200), ("new.json", 5)):
        (paths.lead_landing / "leeds" / name).write_text("{}")
        with engine.begin() as connection:
            connection.execute(insert(lead_files).values(dealer_id="leeds", file_name=name, origin="webhook", sha256="x", size_bytes=2, received_at=NOW - timedelta(days=days), status="processed"))
    for name, days, kind in (("full_1.csv", 400, "full"), ("full_2.csv", 200, "full"), ("delta_3.csv", 150, "delta"), ("delta_4.csv", 3, "delta")):
        (paths.customer_landing / "leeds" / name).write_text("x")
        with engine.begin() as connection:
            connection.execute(insert(customer_files).values(dealer_id="leeds", file_name=name, sha256="x", size_bytes=1, export_kind=kind, received_at=NOW - timedelta(days=days), status="processed"))
    drop = paths.resolve(settings.dealer("leeds").crm.drop.path)
    drop.mkdir(parents=True, exist_ok=True)
    for name, days in (("old.xml", 40), ("new.xml", 1)):
        (drop / name).write_text("<adf/>")
        stamp = (NOW - timedelta(days=days)).timestamp()
        os.utime(drop / name, (stamp, stamp))
    apply_retention(settings, paths, engine, "leeds", now=NOW)
    assert sorted(p.name for p in (paths.lead_landing / "leeds").iterdir()) == ["new.json"]
    assert sorted(p.name for p in (paths.customer_landing / "leeds").iterdir()) == ["delta_4.csv", "full_2.csv"]
    assert sorted(p.name for p in drop.iterdir()) == ["new.xml"]
    with engine.connect() as connection:
        assert {r.file_name: r.erased_at is not None for r in connection.execute(select(lead_files))} == {"old.json": True, "new.json": False}
        assert {r.file_name for r in connection.execute(select(customer_files)) if r.removed_at is not None} == {"full_1.csv", "delta_3.csv"}


def test_no_period_keeps_everything(settings, paths):
    engine = engine_for(operations_db_url(settings, paths))
    add_lead(engine, 1, 5000)
    kept = settings.model_copy(update={"retention": settings.retention.model_copy(update={"leads_days": None, "prospects_days": None})})
    assert apply_retention(kept, paths, engine, "leeds", now=NOW).removed == {}
    with engine.connect() as connection:
        assert list(connection.execute(select(leads.c.id)).scalars()) == [1]
