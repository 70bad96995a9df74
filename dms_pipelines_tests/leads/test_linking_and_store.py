"""Linking a lead to its car and to alternatives, the lead store's idempotency, and the leak scan, on real SQLite files."""

import json
from datetime import datetime, timezone

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dms_pipelines.leads.linking import Alternatives, StockIndex
from dms_pipelines.leads.privacy import leaks
from dms_pipelines.operations import lead_store
from dms_pipelines.operations.db import engine_for, lead_versions, leads
from dms_pipelines_tests.support import stock_of, valid_vehicle

RECEIVED = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)


def group() -> pd.DataFrame:
    return stock_of(
        [
            valid_vehicle("A001", registration="AB71CDE", price=10000.0, body_type="hatchback"),
            valid_vehicle("A002", status="sold", registration="CD21EFG", price=11000.0, vin="WF0XXXGCDXKA00002", body_type="hatchback"),
            valid_vehicle("A003", price=11500.0, registration="EF21GHI", vin="WF0XXXGCDXKA00003", body_type="hatchback"),
            valid_vehicle("A004", make="Vauxhall", model="Corsa", price=10900.0, registration="GH21JKL", vin="W0L00000000000004", body_type="hatchback"),
            valid_vehicle("A005", make="BMW", model="X5", price=10950.0, registration="JK21LMN", vin="WBA00000000000005", body_type="suv"),
            valid_vehicle("A006", status="reserved", price=11001.0, registration="LM21NOP", vin="WF0XXXGCDXKA00006", body_type="hatchback"),
        ]
    )


def test_a_lead_is_tied_by_the_most_specific_reference_it_carries():
    index = StockIndex(group(), advert_ids={"AT-99": "A003"})
    assert index.link({"vehicle_advert_id": "AT-99", "vehicle_stock_id": "A001"}).stock_id == "A003"
    assert index.link({"vehicle_stock_id": " a001 "}).linked_by == "stock_id"
    assert index.link({"vehicle_vin": "wf0xxxgcdxka00002"}).vehicle_status == "sold"
    assert index.link({"vehicle_registration": "cd21 efg"}).stock_id == "A002"
    assert index.link({"vehicle_ref": "EF21 GHI"}).stock_id == "A003"  # the free text tried as each kind
    unlinked = index.link({"vehicle_ref": "the blue one"})
    assert (unlinked.stock_id, unlinked.linked_by, unlinked.vehicle_status) == (None, None, "unlinked")


def test_alternatives_are_available_same_model_first_then_same_body_nearest_in_price():
    stock = group()
    sold = stock[stock["stock_id"] == "A002"].iloc[0].to_dict()
    offered = [car["stock_id"] for car in Alternatives(stock).like(sold, 3)]
    assert offered == ["A003", "A001", "A004"]  # Fiestas by price distance (500, 1000), then a hatchback; never sold/reserved/itself or the SUV
    assert Alternatives(stock).like(sold, 0) == []


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["L1", "L2", "L3"]), st.sampled_from(["hello", "changed", "again"])), min_size=1, max_size=12))
def test_the_store_keeps_one_lead_per_source_id_and_one_revision_per_change(tmp_path_factory, arrivals):
    engine = engine_for(f"sqlite:///{tmp_path_factory.mktemp('store')}/ops.sqlite")
    expected: dict[str, list[str]] = {}
    for number, (lead_id, message) in enumerate(arrivals):
        lead = {"dealer_id": "leeds", "source": "website", "source_lead_id": lead_id, "message": message, "received_at": RECEIVED, "record": f"row {number}"}
        with engine.begin() as connection:
            outcome = lead_store.store_leads(connection, "leeds", [lead], file_id=number, received_at=RECEIVED, delivery_status="pending")
        history = expected.setdefault(lead_id, [])
        want = "new" if not history else "repeated" if history[-1] == message else "updated"
        assert outcome[want] == 1
        if want != "repeated":
            history.append(message)
    with engine.connect() as connection:
        stored = {row.source_lead_id: row for row in connection.execute(select(leads))}
        versions = connection.execute(select(lead_versions.c.source_lead_id, lead_versions.c.revision)).all()
    assert set(stored) == set(expected)
    for lead_id, history in expected.items():
        assert stored[lead_id].revision == len(history)
        assert json.loads(stored[lead_id].lead)["message"] == history[-1]
        assert sorted(r for i, r in versions if i == lead_id) == list(range(1, len(history) + 1))


def test_the_leak_scan_finds_contact_details_outside_the_crm_folders_only(tmp_path):
    feeds, crm = tmp_path / "outbox", tmp_path / "crm"
    feeds.mkdir()
    crm.mkdir()
    (feeds / "google.csv").write_text("id,title\n1,Ford Fiesta\n")
    (crm / "lead.xml").write_text("<email>amelia@example.com</email><phone>+447700900123</phone>")
    assert leaks([feeds, crm], {"amelia@example.com"}, {"+447700900123"}, excluded=[crm]) == []
    (feeds / "meta.csv").write_text("id,description\n1,call 07700 900123 or AMELIA@example.com\n")
    found = leaks([feeds, crm], {"amelia@example.com"}, {"+447700900123"}, excluded=[crm])
    assert found == [f"{feeds / 'meta.csv'}: holds an e-mail address and a phone number of a lead"]
    assert "amelia" not in found[0] and "900123" not in found[0]
