"""DMS customer exports end to end on a temporary data root and a real SQLite operational db: landing, reading in order, storing, absence, quarantine, linking marks."""

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from dms_pipelines.config import DealerCustomers
from dms_pipelines.customers.schema import CUSTOMER_COLUMNS, coerce_to_schema
from dms_pipelines.devtools.sample.customer_files import customer_export_name, render_customer_export
from dms_pipelines.formats.profile import ProfileError
from dms_pipelines.operations import customer_store
from dms_pipelines.operations.db import dms_customers, engine_for
from dms_pipelines.pipeline.customers import land_customer_exports, read_customer_exports

DATA = Path(__file__).resolve().parent / "data"
LAYOUT = "navigator_customers_csv"


@pytest.fixture
def env(settings, paths, tmp_path):
    dealer = settings.dealer("leeds").model_copy(update={"customers": DealerCustomers(profile=LAYOUT)})
    engine = engine_for(f"sqlite:///{tmp_path / 'operations.sqlite'}")
    inbox = paths.customer_inbox / dealer.id
    inbox.mkdir(parents=True)
    return dealer, settings, paths, engine, inbox


def people(*numbers: str, **changes) -> pd.DataFrame:
    rows = [
        {"dealer_id": "leeds", "customer_number": number, "first_name": "Jane", "last_name": f"Surname{number}", "email": f"c{number}@example.com", "postcode": "LS3 1JL", "consent_email": True}
        for number in numbers
    ]
    return coerce_to_schema(pd.DataFrame([row | changes.get(row["customer_number"], {}) for row in rows]))


def drop(inbox: Path, frame: pd.DataFrame, kind: str, at: datetime, mtime: float) -> str:
    name = customer_export_name(LAYOUT, kind, at)
    path = inbox / name
    path.write_bytes(render_customer_export(frame, LAYOUT))
    os.utime(path, (mtime, mtime))
    return name


def stored(engine, dealer_id: str = "leeds") -> dict:
    with engine.connect() as connection:
        return {row.customer_number: row for row in connection.execute(select(dms_customers).where(dms_customers.c.dealer_id == dealer_id))}


def sync(env):
    dealer, settings, paths, engine, _ = env
    landing = land_customer_exports(dealer, settings, paths, engine, "run-1")
    return landing, read_customer_exports(dealer, settings, paths, engine, "run-1")


def test_a_full_then_a_delta_then_a_full_store_upsert_and_mark_absent(env):
    dealer, settings, paths, engine, inbox = env
    full = drop(inbox, people("1", "2", "3"), "full", datetime(2024, 5, 1, tzinfo=timezone.utc), 1_000)
    landing, reading = sync(env)
    assert landing.landed and landing.landed[0].endswith(full) and reading.accepted == 3 and reading.new == 3
    first = stored(engine)
    assert set(first) == {"1", "2", "3"} and all(row.present == 1 for row in first.values())
    record = json.loads(first["2"].record)
    assert list(record) == CUSTOMER_COLUMNS and record["email"] == "c2@example.com" and record["consent_email"] is True and record["source_file"] == full

    drop(inbox, people("2", "4", **{"2": {"email": "new2@example.com"}}), "delta", datetime(2024, 5, 2, tzinfo=timezone.utc), 2_000)
    _, reading = sync(env)
    second = stored(engine)
    assert (reading.new, reading.changed, reading.absent) == (1, 1, 0)
    assert second["2"].content_hash != first["2"].content_hash and json.loads(second["2"].record)["email"] == "new2@example.com"
    assert second["1"].content_hash == first["1"].content_hash and all(row.present == 1 for row in second.values())  # a delta marks nobody absent

    drop(inbox, people("1", "2", "4", **{"2": {"email": "new2@example.com"}}), "full", datetime(2024, 5, 3, tzinfo=timezone.utc), 3_000)
    _, reading = sync(env)
    third = stored(engine)
    assert {number: row.present for number, row in third.items()} == {"1": 1, "2": 1, "3": 0, "4": 1}  # absent, never deleted
    assert third["2"].content_hash == second["2"].content_hash and reading.changed == 0  # lineage is not content
    files = customer_store.file_rows(engine, "leeds")
    assert [(row.export_kind, row.status, row.accepted) for row in files] == [("full", "processed", 3), ("delta", "processed", 2), ("full", "processed", 3)]


def test_a_full_and_a_delta_dropped_together_apply_full_first(env):
    dealer, settings, paths, engine, inbox = env
    drop(inbox, people("1", **{"1": {"last_name": "FromDelta"}}), "delta", datetime(2024, 5, 2, tzinfo=timezone.utc), 5_000)
    drop(inbox, people("1", "2"), "full", datetime(2024, 5, 1, tzinfo=timezone.utc), 5_000)
    sync(env)
    assert json.loads(stored(engine)["1"].record)["last_name"] == "FromDelta"


def test_files_matching_no_pattern_are_not_taken_and_redeliveries_are_duplicates(env):
    dealer, settings, paths, engine, inbox = env
    (inbox / "stock_full_20240501.csv").write_text("Stock\n1\n")
    name = drop(inbox, people("1"), "full", datetime(2024, 5, 1, tzinfo=timezone.utc), 1_000)
    landing, _ = sync(env)
    assert landing.ignored == ["stock_full_20240501.csv"] and len(landing.landed) == 1
    shutil.copy(inbox / name, inbox / name.replace("full", "full_copy"))
    landing, reading = sync(env)
    assert landing.duplicates == [name.replace("full", "full_copy")] and landing.landed == [] and reading.files == 0
    assert not any("stock_full" in path.name for path in (paths.customer_landing / "leeds").iterdir())


def test_an_unreadable_file_fails_alone_and_bad_rows_never_take_good_rows_down(env):
    dealer, settings, paths, engine, inbox = env
    broken = inbox / "customers_full_20240501_000000.csv"
    broken.write_text("Nothing,Useful\n1,2\n")
    os.utime(broken, (1_000, 1_000))
    shutil.copy(DATA / "navigator_customers_full_20240501.csv", inbox / "customers_delta_20240502_000000.csv")
    os.utime(inbox / "customers_delta_20240502_000000.csv", (2_000, 2_000))
    _, reading = sync(env)
    assert len(reading.failed) == 1 and reading.failed[0].startswith("customers_full_20240501_000000.csv: row 1 (header): required columns missing")
    assert reading.accepted == 4 and reading.quarantined == 2
    assert set(stored(engine)) == {"000101", "000102", "000105", "000106"}
    files = {row.original_name: row for row in customer_store.file_rows(engine, "leeds")}
    assert files["customers_full_20240501_000000.csv"].status == "failed" and "required columns missing" in files["customers_full_20240501_000000.csv"].error
    assert (files["customers_delta_20240502_000000.csv"].status, files["customers_delta_20240502_000000.csv"].quarantined) == ("processed", 2)
    quarantine = customer_store.quarantine_rows(engine, "leeds")
    assert {(row.file_name, row.source_row, row.field, row.severity) for row in quarantine if row.severity == "error"} == {
        ("customers_delta_20240502_000000.csv", 3, "customer_number", "error"),
        ("customers_delta_20240502_000000.csv", 4, "name_or_contact", "error"),
    }
    assert not any("not-an-email" in row.message or "Whitaker" in row.message for row in quarantine)


def test_a_vehicle_profile_for_customers_is_refused_clearly(env):
    dealer, settings, paths, engine, _ = env
    with pytest.raises(ProfileError, match=r"mapping profile 'navigator_csv' reads vehicle records.*needs a profile with record: customer"):
        read_customer_exports(dealer.model_copy(update={"customers": DealerCustomers(profile="navigator_csv")}), settings, paths, engine, "run-1")


def test_customers_of_and_mark_linked(env):
    dealer, settings, paths, engine, inbox = env
    drop(inbox, people("1", "2", **{"1": {"updated_at": pd.Timestamp("2024-04-30 09:00", tz="UTC")}}), "full", datetime(2024, 5, 1, tzinfo=timezone.utc), 1_000)
    sync(env)
    frame = customer_store.customers_of(engine, "leeds")
    assert list(frame.columns) == CUSTOMER_COLUMNS + customer_store.STORED_COLUMNS
    assert frame["updated_at"].iloc[0] == pd.Timestamp("2024-04-30 09:00", tz="UTC") and frame["consent_email"].tolist() == [True, True]
    assert len(customer_store.customers_of(engine, "leeds", changed_only=True)) == 2
    assert customer_store.mark_linked(engine, "leeds", dict(zip(frame["customer_number"], frame["content_hash"]))) == 2
    assert customer_store.customers_of(engine, "leeds", changed_only=True).empty
    drop(inbox, people("2", **{"2": {"email": "changed@example.com"}}), "delta", datetime(2024, 5, 2, tzinfo=timezone.utc), 2_000)
    sync(env)
    assert customer_store.customers_of(engine, "leeds", changed_only=True)["customer_number"].tolist() == ["2"]


def test_two_hundred_thousand_customers_store_in_seconds(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'operations.sqlite'}")
    count = 200_000
    frame = coerce_to_schema(
        pd.DataFrame(
            {
                "dealer_id": "leeds",
                "customer_number": [f"{n:07d}" for n in range(count)],
                "first_name": "Jane",
                "email": [f"c{n}@example.com" for n in range(count)],
                "source_file": "f.csv",
                "source_row": range(1, count + 1),
            }
        )
    )
    started = time.perf_counter()
    with engine.begin() as connection:
        first = customer_store.store_customers(connection, "leeds", frame, 1, full=True)
    with engine.begin() as connection:
        again = customer_store.store_customers(connection, "leeds", frame.iloc[: count // 2], 2, full=True)
    elapsed = time.perf_counter() - started
    assert first["new"] == count and again == {"new": 0, "changed": 0, "unchanged": count // 2, "absent": count // 2}
    assert elapsed < 30, f"{elapsed:.1f}s"
