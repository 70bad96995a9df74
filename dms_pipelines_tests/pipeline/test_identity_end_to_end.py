"""Identity through a dealer's lead run: a DMS customer export and leads become customers; the CRM gets the customer number; the review queue is decided from the CLI and the decision holds."""

import json
from datetime import datetime, timezone

import pandas as pd
import pytest
import yaml
from lxml import etree
from sqlalchemy import select

from dms_pipelines.cli import main
from dms_pipelines.config import load_settings, operations_db_url
from dms_pipelines.customers.schema import CUSTOMER_COLUMNS
from dms_pipelines.devtools.sample.customer_files import customer_export_name, render_customer_export
from dms_pipelines.leads.records import land_payload
from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import consents, customer_quarantine, engine_for, leads
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline.identity import identify
from dms_pipelines.pipeline.leads import sync_leads
from dms_pipelines.stock.store import write_stock
from dms_pipelines_tests.support import stock_of, valid_vehicle

AT = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)


def customer(number: str, first: str, last: str, email: str | None, mobile: str | None, postcode: str, owned: str | None = None, consent_email=None) -> dict:
    row = dict.fromkeys(CUSTOMER_COLUMNS)
    row.update(dealer_id="leeds", customer_number=number, first_name=first, last_name=last, email=email, phone_mobile=mobile, postcode=postcode, town="Leeds", owned_vehicles=owned)
    row.update(consent_email=consent_email, consent_wording="Offers by e-mail" if consent_email is not None else None, consent_updated_at=AT if consent_email is not None else None, updated_at=AT)
    return row


def website(enquiry_id: str, first: str, last: str, email: str, phone: str | None, postcode: str, day: int, consent: bool | None = None) -> bytes:
    payload = {
        "enquiry_id": enquiry_id,
        "submitted_at": f"2026-11-{day:02d}T10:00:00+00:00",
        "stock_id": "L001",
        "first_name": first,
        "last_name": last,
        "email": email,
        "phone": phone,
        "postcode": postcode,
    }
    if consent is not None:
        payload["consent"] = {"email": consent, "wording": "Send me offers", "at": f"2026-11-{day:02d}T10:00:00+00:00"}
    return json.dumps(payload).encode()


@pytest.fixture
def dealer_with_customers(data_root):
    path = data_root / "config" / "dms_pipelines.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["dealers"][0]["customers"] = {"profile": "navigator_customers_csv"}
    raw["identity"] = {"lower_threshold": 0.001, "upper_threshold": 0.9999999}  # wide: a name and postcode alone go to review
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings, paths = load_settings(path), DataPaths(data_root)
    write_stock(paths.state, "leeds", stock_of([valid_vehicle("L001", registration="AB71CDE"), valid_vehicle("L002", registration="CD21EFG", status="sold")]))
    inbox = paths.customer_inbox / "leeds"
    inbox.mkdir(parents=True)
    frame = pd.DataFrame(
        [
            customer("C-1", "Annabel", "Threlkeld", "annabel.threlkeld@example.com", "07700 900111", "LS1 4AP", owned="CD21EFG", consent_email=True),
            customer("C-2", "Benedict", "Ormerod", "ben.ormerod@example.com", "07700 900222", "LS6 2QT"),
            customer("C-3", "Cordelia", "Ashdown", None, None, "LS8 1AA"),
        ]
    )
    data = render_customer_export(frame, "navigator_customers_csv")
    (inbox / customer_export_name("navigator_customers_csv", "full", AT)).write_bytes(data)
    folder = paths.lead_landing / "leeds"
    folder.mkdir(parents=True)
    land_payload(folder, "website", website("W1", "Annabel", "Threlkeld", "annabel.threlkeld@example.com", None, "LS1 4AP", 18, consent=False))  # e-mail exact
    land_payload(folder, "website", website("W2", "Zebedee", "Quarrington", "zeb.q@example.com", "07700 900999", "LS2 7EE", 10))  # a new prospect
    land_payload(folder, "website", website("W3", "Zebedee", "Quarrington", "zeb.q@example.com", None, "LS2 7EE", 19))  # ... enquiring again
    land_payload(folder, "website", website("W4", "Benedict", "Ormerod", "b.ormerod@another.example", None, "LS6 2QT", 19))  # a new e-mail: review
    return settings, paths, engine_for(operations_db_url(settings, paths))


def adf_of(paths, settings, enquiry_id: str) -> etree._Element:
    drop = paths.resolve(settings.dealer("leeds").crm.drop.path)
    [path] = [p for p in drop.glob("*.xml") if f"-{enquiry_id}-" in p.name]
    return etree.fromstring(path.read_bytes(), etree.XMLParser(resolve_entities=False, no_network=True))


def cluster_of(engine, enquiry_id: str) -> tuple[str, str]:
    with engine.connect() as connection:
        lead_id = connection.execute(select(leads.c.id).where(leads.c.source_lead_id == enquiry_id)).scalar()
    linked = identity_store.linked_records(engine, "leeds").set_index(["record_kind", "record_key"])
    row = linked.loc[("lead", str(lead_id))]
    return row["cluster_id"], row["tier"]


def test_customers_and_leads_become_one_customer_each_and_the_crm_is_told(dealer_with_customers, capsys):
    settings, paths, engine = dealer_with_customers
    run = sync_leads("leeds", settings, paths, engine, "run-1")
    assert run.customers.reading.accepted == 3 and run.customers.reading.failed == []
    assert run.identity.customers_linked == 3 and run.identity.leads_linked == 4
    clusters = identity_store.linked_records(engine, "leeds").set_index(["record_kind", "record_key"])["cluster_id"]
    assert cluster_of(engine, "W1") == (clusters[("customer", "C-1")], "email")
    assert cluster_of(engine, "W2")[0] == cluster_of(engine, "W3")[0] != clusters[("customer", "C-2")]
    annabel = adf_of(paths, settings, "W1")
    assert [(i.get("source"), i.text) for i in annabel.findall("prospect/customer/id")][0] == ("Aire Valley Motors Leeds DMS", "C-1")
    comments = annabel.findtext("prospect/customer/comments")
    assert "RETURNING CUSTOMER: DMS customer C-1." in comments and "Vehicles owned: CD21EFG" in comments
    assert "Earlier enquiries (1):" in adf_of(paths, settings, "W3").findtext("prospect/customer/comments")
    assert "RETURNING" not in adf_of(paths, settings, "W2").findtext("prospect/customer/comments")
    # consent: the DMS said yes (20 Nov, 09:00), the lead said no later (18 Nov is earlier: the DMS wins)
    now = identity_store.current_consent(engine, "leeds").set_index(["cluster_id", "channel"])
    assert now.loc[(clusters[("customer", "C-1")], "email"), "granted"] == 1
    with engine.connect() as connection:
        assert {row.granted for row in connection.execute(select(consents).where(consents.c.record_kind == "lead"))} == {0}

    # the new e-mail with the same name and postcode waits for review; the CRM is not told it is Benedict
    [entry] = identity_store.reviews(engine, "leeds")
    assert entry.candidate_cluster_id == clusters[("customer", "C-2")] and entry.evidence
    assert "waiting for review" in adf_of(paths, settings, "W4").findtext("prospect/customer/comments")
    assert main(["review", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"#{entry.id} leeds" in listed and "b***@another.example" in listed and "b.ormerod@another.example" not in listed
    assert main(["review", "accept", str(entry.id), "--by", "ops", "--note", "same man, new job"]) == 0
    assert main(["review", "accept", str(entry.id)]) == 2  # decided once
    identify(settings.dealer("leeds"), settings, paths, engine, "run-2")
    assert cluster_of(engine, "W4") == (clusters[("customer", "C-2")], "accepted")
    again = identify(settings.dealer("leeds"), settings, paths, engine, "run-3")
    assert again.leads_linked == 0 and again.customers_linked == 0  # nothing changed: nothing scored, the same customers
    assert identity_store.linked_records(engine, "leeds").set_index(["record_kind", "record_key"])["cluster_id"][("lead", cluster_key(engine, "W4"))] == clusters[("customer", "C-2")]
    assert again.labels == {"accepted": 1, "rejected": 0, "model_agrees": 0}


def cluster_key(engine, enquiry_id: str) -> str:
    with engine.connect() as connection:
        return str(connection.execute(select(leads.c.id).where(leads.c.source_lead_id == enquiry_id)).scalar())


def test_a_customer_export_that_cannot_be_read_is_a_problem_and_bad_rows_are_quarantined_alone(dealer_with_customers):
    settings, paths, engine = dealer_with_customers
    inbox = paths.customer_inbox / "leeds"
    (inbox / "customers_delta_20261121T090000.csv").write_text("Nothing,Like,The,Layout\n1,2,3,4\n")
    rows = pd.DataFrame([customer(None, "No", "Number", "x@example.com", None, "LS1 1AA"), customer("C-9", "Ida", "Pennycook", "ida@example.com", None, "LS9 9ZZ")])
    (inbox / "customers_delta_20261121T100000.csv").write_bytes(render_customer_export(rows, "navigator_customers_csv"))
    run = sync_leads("leeds", settings, paths, engine, "run-1")
    kinds = {problem.kind for problem in run.problems}
    assert "lead_customer_file_failed" in kinds
    assert len(run.customers.reading.failed) == 1 and "customers_delta_20261121T090000.csv" in run.customers.reading.failed[0]
    with engine.connect() as connection:
        rules = {(row.source_row, row.field, row.rule) for row in connection.execute(select(customer_quarantine)) if row.severity == "error"}
    assert any(field == "customer_number" for _, field, _ in rules)
    assert ("customer", "C-9") in set(zip(*identity_store.linked_records(engine, "leeds")[["record_kind", "record_key"]].T.values))


def test_a_dealer_with_no_customers_and_no_leads_yet_is_identified_without_error(settings, paths):
    engine = engine_for(operations_db_url(settings, paths))
    run = identify(settings.dealer("york"), settings, paths, engine, None)  # crashed with KeyError: 'record_kind' before
    assert (run.customers_linked, run.leads_linked, run.open_reviews) == (0, 0, 0)


def test_a_customer_whose_consent_alone_changed_has_the_new_statement_kept_without_being_matched_again(dealer_with_customers):
    settings, paths, engine = dealer_with_customers
    sync_leads("leeds", settings, paths, engine, "run-1")
    cluster = identity_store.linked_records(engine, "leeds").set_index(["record_kind", "record_key"])["cluster_id"][("customer", "C-1")]
    later = AT.replace(day=25)
    row = customer("C-1", "Annabel", "Threlkeld", "annabel.threlkeld@example.com", "07700 900111", "LS1 4AP", owned="CD21EFG", consent_email=False)
    row.update(consent_updated_at=later, updated_at=later)
    (paths.customer_inbox / "leeds" / customer_export_name("navigator_customers_csv", "delta", later)).write_bytes(render_customer_export(pd.DataFrame([row]), "navigator_customers_csv"))
    run = sync_leads("leeds", settings, paths, engine, "run-2")
    assert run.customers.reading.accepted == 1
    assert run.identity.customers_linked == 0  # matched on the same values as before: not scored again
    now = identity_store.current_consent(engine, "leeds").set_index(["cluster_id", "channel"])
    assert now.loc[(cluster, "email"), "granted"] == 0  # the DMS's newer refusal (was kept only when a matched field changed)
    assert identity_store.linked_records(engine, "leeds").set_index(["record_kind", "record_key"])["cluster_id"][("customer", "C-1")] == cluster


def test_a_deleted_lead_is_no_longer_matched_against(dealer_with_customers):
    from dms_pipelines.operations.lead_store import delete_leads

    settings, paths, engine = dealer_with_customers
    sync_leads("leeds", settings, paths, engine, "run-1")
    zebedee = cluster_of(engine, "W2")[0]
    with engine.begin() as connection:
        delete_leads(connection, [int(cluster_key(engine, "W2")), int(cluster_key(engine, "W3"))])
    land_payload(paths.lead_landing / "leeds", "website", website("W5", "Zebedee", "Quarrington", "zeb.q@example.com", "07700 900999", "LS2 7EE", 21))
    sync_leads("leeds", settings, paths, engine, "run-2")
    assert cluster_of(engine, "W5")[1] == "new"  # the e-mail exact match was with the deleted leads
    assert cluster_of(engine, "W5")[0] != zebedee
