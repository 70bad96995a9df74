"""Erasure: after `erase`, nothing of the person is in any file or table under the data root; everyone else is untouched; a later lead from them is flagged."""

import json
import sqlite3
from datetime import datetime, timezone

import duckdb
import pandas as pd
import pytest
from sqlalchemy import insert, select

from dms_pipelines.config import operations_db_url
from dms_pipelines.operations import identity_store
from dms_pipelines.operations.db import customer_files, dms_customers, engine_for, erasures, lead_files, lead_quarantine, leads, suppressions
from dms_pipelines.pipeline import leads as stages
from dms_pipelines.pipeline.erasure import ErasureError, erase
from dms_pipelines.warehouse.identity import publish_identity
from dms_pipelines.warehouse.leads import publish_leads
from dms_pipelines.warehouse.tables import ensure_catalog

AT = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
TARGET = {"first_name": "Philippa", "last_name": "Quennell", "email": "philippa.quennell@example.com", "phone": "+447700900321"}
WORK_EMAIL = "p.quennell@work-example.co.uk"  # only the DMS record has it: found through the cluster
OTHER = {"first_name": "Bartholomew", "last_name": "Oakes", "email": "bart.oakes@example.com", "phone": "+447700900654"}
SIGNS = ["philippa.quennell@example.com", WORK_EMAIL, "+447700900321", "07700 900321", "07700900321", "Quennell"]


def lead(person: dict, lead_id: str, source: str = "website") -> dict:
    return {"source": source, "source_lead_id": lead_id, "dealer_id": "leeds", "channel": source, "enquired_at": AT.isoformat(), "postcode": "LS1 4AP", "message": "Still for sale?", **person}


def add_lead(engine, lead_id: int, body: dict, file_id: int | None = None) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(leads).values(
                id=lead_id,
                dealer_id="leeds",
                source=body["source"],
                source_lead_id=body["source_lead_id"],
                revision=1,
                content_hash=f"h{lead_id}",
                lead=json.dumps(body),
                first_received_at=AT,
                last_received_at=AT,
                delivery_status="delivered",
                delivered_revision=1,
                lead_file_id=file_id,
                updated_at=AT,
            )
        )


def register(engine, table, name: str, **values) -> int:
    with engine.begin() as connection:
        return connection.execute(insert(table).values(dealer_id="leeds", file_name=name, sha256="x", size_bytes=1, received_at=AT, status="processed", **values)).inserted_primary_key[0]


@pytest.fixture
def kept(settings, paths):
    """Leeds after a lead run and a customer export: the target (two leads, a DMS record with a second e-mail) and another person."""
    engine = engine_for(operations_db_url(settings, paths))
    landing, customers, drop = paths.lead_landing / "leeds", paths.customer_landing / "leeds", paths.resolve(settings.dealer("leeds").crm.drop.path)
    for folder in (landing, customers, drop, paths.lead_inbox / "leeds"):
        folder.mkdir(parents=True, exist_ok=True)
    (landing / "website-1.json").write_text(json.dumps({"name": "Philippa Quennell", "email": TARGET["email"], "phone": "07700 900321"}))
    (landing / "website-2.json").write_text(json.dumps({"name": "Bartholomew Oakes", "email": OTHER["email"]}))
    meta = (
        "id,created_time,full_name,email,phone_number\r\n"
        "l:1,2026-11-20T10:00:00+0000,Philippa Quennell,PHILIPPA.QUENNELL@example.com,07700900321\r\n"
        "l:2,2026-11-20T10:05:00+0000,Bartholomew Oakes,bart.oakes@example.com,07700 900654\r\n"
    )
    (landing / "inbox-meta.csv").write_text(meta, newline="")
    (paths.lead_inbox / "leeds" / "meta.csv").write_text(meta, newline="")  # the inbox's own copy
    # an ADF e-mail in quoted-printable: its soft line breaks split the address, so only the lead it gave ties it to her
    adf_mail = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n<email>philippa.quen=\nnell@example.com</email>\n"
    (landing / "inbox-adf.eml").write_text(adf_mail)
    (paths.lead_inbox / "leeds" / "adf.eml").write_text(adf_mail)
    w1, w2, m = (register(engine, lead_files, name, origin="webhook") for name in ("website-1.json", "website-2.json", "inbox-meta.csv"))
    eml = register(engine, lead_files, "inbox-adf.eml", origin="inbox", original_name="adf.eml")
    add_lead(engine, 1, lead(TARGET, "W1"), w1)
    add_lead(engine, 2, lead(TARGET, "l:1", "meta"), m)
    add_lead(engine, 3, lead(OTHER, "W2"), w2)
    add_lead(engine, 4, lead(TARGET, "ADF-1", "adf"), eml)
    export = "CustomerNo,Forename,Surname,Email,MobileTel\nC-77,Philippa,Quennell,p.quennell@work-example.co.uk,07700 900321\nC-78,Bartholomew,Oakes,bart.oakes@example.com,07700900654\n"
    (customers / "customers_full_1.csv").write_text(export)
    register(engine, customer_files, "customers_full_1.csv", export_kind="full")
    with engine.begin() as connection:
        for number, person, email in (("C-77", TARGET, WORK_EMAIL), ("C-78", OTHER, OTHER["email"])):
            record = {"dealer_id": "leeds", "customer_number": number, "first_name": person["first_name"], "last_name": person["last_name"], "email": email, "phone_mobile": person["phone"]}
            connection.execute(insert(dms_customers).values(dealer_id="leeds", customer_number=number, record=json.dumps(record), content_hash=number, first_seen_at=AT, updated_at=AT, present=1))
    rows = [("lead", "1", "P-target"), ("customer", "C-77", "P-target"), ("lead", "3", "P-other"), ("customer", "C-78", "P-other")]
    frame = pd.DataFrame(
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
        + [
            {
                "record_kind": "lead",
                "record_key": "2",
                "cluster_id": "P-new",
                "tier": "review",
                "outcome": "review",
                "match_probability": 0.8,
                "match_weight": 2.0,
                "candidate_key": "C-77",
                "candidate_cluster_id": "P-target",
                "reason": "model",
                "evidence": "[]",
            }
        ]
    )
    identity_store.save_assignments(engine, "leeds", frame, {}, None, "v1")
    identity_store.record_consents(
        engine, "leeds", [{"record_kind": "customer", "record_key": "C-77", "channel": "email", "granted": True, "source": "customers_full_1.csv", "wording": "Offers by e-mail", "stated_at": AT}]
    )
    (drop / "website-W1.xml").write_text(f"<adf><prospect><customer><contact><email>{TARGET['email']}</email></contact></customer></prospect></adf>")
    (drop / "website-W2.xml").write_text(f"<adf><prospect><customer><contact><email>{OTHER['email']}</email></contact></customer></prospect></adf>")
    publish_leads(paths, engine, "leeds")
    publish_identity(paths, engine, "leeds")
    ensure_catalog(paths)
    return settings, paths, engine


def everything_under(root) -> str:
    """Every file's bytes as text, and every row of every table of every SQLite and DuckDB file, as one haystack."""
    parts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts.append(path.read_bytes().decode("utf-8", "replace"))
        if path.suffix in (".sqlite", ".db"):
            with sqlite3.connect(path) as connection:
                for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    parts += sorted(map(repr, connection.execute(f'SELECT * FROM "{table}"').fetchall()))
    warehouse = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        for (view,) in warehouse.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall():
            parts += sorted(map(repr, warehouse.execute(f'SELECT * FROM "{view}"').fetchall()))  # a view's row order is not defined
    finally:
        warehouse.close()
    return "\n".join(parts)


def test_nothing_of_the_person_is_left_anywhere_and_everyone_else_is(kept):
    settings, paths, engine = kept
    before = everything_under(paths.root)
    assert all(sign in before for sign in ["philippa.quennell@example.com", WORK_EMAIL, "Quennell"])  # the haystack does see them
    report = erase(settings, paths, engine, email="Philippa.Quennell@EXAMPLE.com", requested_by="dpo@example.com")
    assert report.ok, (report.problems, report.residue)
    assert not (paths.lead_landing / "leeds" / "inbox-adf.eml").exists() and not (paths.lead_inbox / "leeds" / "adf.eml").exists()
    assert report.counts["leads"] == 3 and report.counts["dms_customers"] == 1 and report.counts["review_queue"] == 1
    after = everything_under(paths.root)
    assert [sign for sign in SIGNS if sign.casefold() in after.casefold()] == []
    assert all(sign in after for sign in [OTHER["email"], "Oakes", "C-78"])
    assert (paths.lead_landing / "leeds" / "website-2.json").exists() and not (paths.lead_landing / "leeds" / "website-1.json").exists()
    assert "bart.oakes@example.com" in (paths.lead_landing / "leeds" / "inbox-meta.csv").read_text()
    assert "C-78" in (paths.customer_landing / "leeds" / "customers_full_1.csv").read_text()
    with engine.connect() as connection:
        assert [row.id for row in connection.execute(select(leads))] == [3]
        assert {row.file_name for row in connection.execute(select(lead_files)) if row.erased_at is not None} == {"website-1.json", "inbox-meta.csv", "inbox-adf.eml"}
        assert [row.rewritten_at is not None for row in connection.execute(select(customer_files))] == [True]
        assert connection.execute(select(suppressions)).all() and json.loads(connection.execute(select(erasures.c.counts)).scalar())["leads"] == 3
    assert json.loads((paths.state / "erasure_log.jsonl").read_text().splitlines()[-1])["criterion"] == "email"


def test_a_later_lead_from_them_is_flagged_but_kept(kept, monkeypatch):
    settings, paths, engine = kept
    erase(settings, paths, engine, phone="07700 900321")
    payload = {"enquiry_id": "W9", "first_name": "Philippa", "last_name": "Quennell", "email": TARGET["email"], "stock_id": "L001", "submitted_at": AT.isoformat()}
    from dms_pipelines.leads.records import land_payload

    path = land_payload(paths.lead_landing / "leeds", "website", json.dumps(payload).encode())
    stages.land_leads(settings.dealer("leeds"), settings, paths, engine, None)
    reading = stages.read_leads(settings.dealer("leeds"), settings, paths, engine, None)
    assert reading.failed == [] and reading.rules.get("erased_before") == 1 and reading.quarantined == 0
    with engine.connect() as connection:
        flagged = connection.execute(select(lead_quarantine).where(lead_quarantine.c.rule == "erased_before")).all()
    assert [(row.file_name, row.severity) for row in flagged] == [(path.name, "warning")]
    assert "Quennell" not in flagged[0].message and TARGET["email"] not in flagged[0].message


def test_a_dry_run_changes_nothing_and_a_bad_criterion_is_refused(kept):
    settings, paths, engine = kept
    before = everything_under(paths.root)
    report = erase(settings, paths, engine, customer="C-77", dry_run=True)
    assert report.counts["leads_found"] == 3 and report.counts["customers_found"] == 1 and report.files_rewritten
    assert everything_under(paths.root) == before
    with pytest.raises(ErasureError, match="not a valid e-mail"):
        erase(settings, paths, engine, email="not-an-address")
    with pytest.raises(ErasureError, match="exactly one"):
        erase(settings, paths, engine)


def test_another_dealers_customer_under_the_same_number_is_not_touched(kept):
    settings, paths, engine = kept
    york = pd.DataFrame(
        [
            {
                "record_kind": "customer",
                "record_key": "C-77",
                "cluster_id": "P-york",
                "tier": "new",
                "outcome": "new",
                "match_probability": None,
                "match_weight": None,
                "candidate_key": None,
                "candidate_cluster_id": None,
                "reason": "new",
                "evidence": "{}",
            }
        ]
    )
    identity_store.save_assignments(engine, "york", york, {}, None, "v1")  # customer numbers are a rooftop's own: york's C-77 is someone else
    identity_store.record_consents(engine, "york", [{"record_kind": "customer", "record_key": "C-77", "channel": "post", "granted": True, "source": "york.csv", "wording": None, "stated_at": AT}])
    assert erase(settings, paths, engine, email=TARGET["email"]).ok
    assert identity_store.linked_records(engine, "york")["cluster_id"].tolist() == ["P-york"]
    assert identity_store.current_consent(engine, "york")["channel"].tolist() == ["post"]
