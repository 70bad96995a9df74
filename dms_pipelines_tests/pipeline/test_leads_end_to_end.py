"""Leads end to end through the real Definitions: receiver, inbox, the deal simulator, the lead job, the CRM drop, the ledger."""

import json
import os
from pathlib import Path

import dagster as dg
import pytest
from lxml import etree
from sqlalchemy import select

from dms_pipelines.config import load_settings, operations_db_url
from dms_pipelines.devtools.sample.leads import generate_leads
from dms_pipelines.leads.adf import validate_adf
from dms_pipelines.leads.receiver import WEBSITE_KEY_HEADER, ReceiverServer
from dms_pipelines.operations.db import engine_for, incidents, lead_deliveries, lead_files, lead_quarantine, lead_versions, leads
from dms_pipelines.orchestration.build import build_definitions
from dms_pipelines.orchestration.lead_assets import LEAD_JOB
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline import leads as stages
from dms_pipelines.stock.store import write_stock
from dms_pipelines_tests.support import stock_of, valid_vehicle

SECRETS = {"DMS_AUTOTRADER_WEBHOOK_SECRET": "at-secret-for-tests", "DMS_GOOGLE_LEAD_KEY": "google-key-for-tests", "DMS_WEBSITE_LEAD_KEY": "website-key-for-tests"}


@pytest.fixture
def lead_env(data_root: Path, monkeypatch, stock_api):
    """The demo configuration on a temporary data root, secrets in the environment, a little stock for leeds and york:
    L001 available, L002 sold (a Ford Fiesta: the alternatives are the other Fiestas), Y001 an available Fiesta at york."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    paths = DataPaths(data_root)
    settings = load_settings(data_root / "config" / "dms_pipelines.yaml")
    write_stock(
        paths.state,
        "leeds",
        stock_of(
            [
                valid_vehicle("L001", registration="AB71CDE", price=12995.0),
                valid_vehicle("L002", registration="CD21EFG", status="sold", price=11995.0, vin="WF0XXXGCDXKA00002"),
                valid_vehicle("L003", make="BMW", model="3 Series", registration="EF70GHI", price=24995.0, vin="WBA00000000000003"),
            ]
        ),
    )
    write_stock(paths.state, "york", stock_of([valid_vehicle("Y001", dealer_id="york", registration="GH19JKL", price=11500.0, vin="WF0XXXGCDXKA00011")]))
    return settings, paths, engine_for(operations_db_url(settings, paths))


def run_lead_job(settings, paths, dealer_id: str = "leeds"):
    job = build_definitions(settings, paths).resolve_job_def(LEAD_JOB)
    return job.execute_in_process(instance=dg.DagsterInstance.get(), partition_key=dealer_id, raise_on_error=False)


def checks_of(result) -> dict[str, bool]:
    return {e.event_specific_data.check_name: e.event_specific_data.passed for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def rows(engine, table) -> list:
    with engine.connect() as connection:
        return connection.execute(select(table)).all()


def post_json(url: str, payload: dict, headers: dict | None = None) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def website_lead(enquiry_id: str, stock_id: str, email: str = "amelia.smith@example.com") -> dict:
    return {
        "enquiry_id": enquiry_id,
        "submitted_at": "2026-12-02T09:00:00+00:00",
        "stock_id": stock_id,
        "first_name": "Amelia",
        "last_name": "Smith",
        "email": email,
        "phone": "07700 900123",
        "postcode": "ls3 1jl",
        "message": "Is it still available?",
        "finance": True,
        "consent": {"email": True, "phone": False, "sms": False, "post": False, "wording": "Offers by email", "at": "2026-12-02T09:00:00+00:00"},
        "utm_source": "carsnip",
    }


def adf_files(paths: DataPaths, dealer_id: str = "leeds") -> list[Path]:
    return sorted((paths.root / "crm_drop" / dealer_id).glob("*.xml"))


def test_every_channel_reaches_the_crm_drop_as_valid_adf_once(lead_env, stock_api):
    settings, paths, engine = lead_env
    with ReceiverServer(settings, paths, environ=SECRETS) as receiver:
        assert post_json(f"{receiver.url}/webhooks/website/leeds", website_lead("W-1", "L001"), {WEBSITE_KEY_HEADER: SECRETS["DMS_WEBSITE_LEAD_KEY"]}) == 200
        google = {
            "lead_id": "G-1",
            "google_key": SECRETS["DMS_GOOGLE_LEAD_KEY"],
            "is_test": False,
            "user_column_data": [{"column_id": "FULL_NAME", "string_value": "Oliver Jones"}, {"column_id": "PHONE_NUMBER", "string_value": "020 7946 0018"}],
        }
        assert post_json(f"{receiver.url}/webhooks/google/leeds", google) == 200
        deal_id = stock_api.add_deal(
            "10001",
            {"consumer": {"firstName": "Isla", "lastName": "Brown", "email": "isla.brown@example.com", "phone": "07700900456"}, "stock": {"externalStockReference": "L002"}},
            {"partExchange": {"vehicle": {"registration": "AB12CDE", "make": "Vauxhall", "model": "Corsa", "mileage": 48000}}},
        )
        body = stock_api.notification(deal_id, "DEAL_CREATED")
        assert stock_api.notify(receiver.url, SECRETS["DMS_AUTOTRADER_WEBHOOK_SECRET"], deal_id, "DEAL_CREATED", body=body) in (200, 202)
        assert stock_api.notify(receiver.url, SECRETS["DMS_AUTOTRADER_WEBHOOK_SECRET"], deal_id, "DEAL_CREATED", body=body) in (200, 202)  # replayed
        assert stock_api.notify(receiver.url, "forged", deal_id, "DEAL_CREATED") == 403
    sample = generate_leads(stages.read_stock(paths.state, "leeds"), "leeds", paths.lead_inbox / "leeds")

    result = run_lead_job(settings, paths)

    assert result.success
    assert checks_of(result) == {"customer_files_read": True, "lead_files_read": True, "every_lead_delivered_or_quarantined": True, "no_personal_data_outside_crm": True}
    stored = {(row.source, row.source_lead_id): row for row in rows(engine, leads)}
    assert ("website", "W-1") in stored and ("google", "G-1") in stored and ("autotrader", deal_id) in stored
    assert stored[("autotrader", deal_id)].repeats == 1  # the replayed notification is the same lead
    assert all(row.delivery_status == "delivered" for row in stored.values())
    files = adf_files(paths)
    assert len(files) == len(stored)  # one ADF per lead, none twice
    assert all(validate_adf(path.read_bytes()) == [] for path in files)
    deal = stored[("autotrader", deal_id)]
    assert (deal.linked_stock_id, deal.linked_by, deal.vehicle_status) == ("L002", "stock_id", "sold")
    offered = {(item["dealer_id"], item["stock_id"]) for item in json.loads(deal.alternatives)}
    assert offered == {("leeds", "L001"), ("york", "Y001")}  # the available Fiestas of the group, not the BMW
    document = etree.fromstring(next(p for p in files if deal_id in p.name).read_bytes())
    assert [v.findtext("stock") for v in document.iter("vehicle")][0] == "L002"
    assert "SOLD" in (document.find("prospect/vehicle").findtext("comments") or "")
    assert len(document.findall("prospect/vehicle")) == 3
    website = stored[("website", "W-1")]
    assert website.linked_stock_id == "L001" and json.loads(website.lead)["channel"] == "carsnip"
    assert json.loads(website.lead)["phone"] == "+447700900123" and json.loads(website.lead)["postcode"] == "LS3 1JL"
    # the inbox: the Meta export's repeated row and the ADF e-mail sent twice are one lead each; the row without a contact is quarantined
    meta = [row for row in rows(engine, lead_files) if row.original_name and row.original_name.startswith("meta_leads")]
    assert meta[0].status == "processed" and meta[0].quarantined == 1
    issues = {(row.rule, row.severity) for row in rows(engine, lead_quarantine) if row.lead_file_id == meta[0].id}
    assert ("duplicate_lead_id", "warning") in issues and ("no_contact", "error") in issues
    assert len([key for key in stored if key[0] == "adf"]) == 1
    assert sample.repeats == 2
    acknowledged = rows(engine, lead_deliveries)
    assert {row.outcome for row in acknowledged} == {"ok"} and len(acknowledged) == len(stored)
    assert all(row.acknowledged for row in acknowledged)

    again = run_lead_job(settings, paths)  # nothing new: nothing delivered again
    assert again.success and adf_files(paths) == files and len(rows(engine, lead_deliveries)) == len(acknowledged)


def test_a_changed_deal_is_a_new_revision_delivered_again_with_its_history(lead_env, stock_api):
    settings, paths, engine = lead_env
    deal_id = stock_api.add_deal("10001", {"consumer": {"firstName": "Jack", "lastName": "Wright", "phone": "07700900789"}, "stock": {"externalStockReference": "L001"}})
    with ReceiverServer(settings, paths, environ=SECRETS) as receiver:
        stock_api.notify(receiver.url, SECRETS["DMS_AUTOTRADER_WEBHOOK_SECRET"], deal_id, "DEAL_CREATED")
        assert run_lead_job(settings, paths).success
        stock_api.update_deal(deal_id, advertiserDealStatus="Cancelled")
        stock_api.notify(receiver.url, SECRETS["DMS_AUTOTRADER_WEBHOOK_SECRET"], deal_id, "DEAL_CANCELLED")
        assert run_lead_job(settings, paths).success
    (lead,) = rows(engine, leads)
    assert lead.revision == 2 and json.loads(lead.lead)["lead_status"] == "cancelled"
    assert [row.revision for row in rows(engine, lead_versions)] == [1, 2]
    files = adf_files(paths)
    assert len(files) == 2
    assert etree.fromstring(files[-1].read_bytes()).find("prospect").get("status") == "resend"


def test_hostile_lead_files_fail_alone_with_a_clear_error_and_alert_once(lead_env):
    settings, paths, engine = lead_env
    inbox = paths.lead_inbox / "leeds"
    inbox.mkdir(parents=True)
    (inbox / "xxe.xml").write_bytes(b'<?xml version="1.0"?><!DOCTYPE adf [<!ENTITY x SYSTEM "file:///etc/passwd">]><adf><prospect>&x;</prospect></adf>')
    (inbox / "junk.eml").write_bytes(os.urandom(2048))
    (inbox / "notes.txt").write_text("not a lead")
    (inbox / "huge.json").write_bytes(b'{"enquiry_id": "' + b"x" * (25 * 1024 * 1024) + b'"}')
    generate_leads(stages.read_stock(paths.state, "leeds"), "leeds", inbox)

    result = run_lead_job(settings, paths)

    assert result.success  # the run finished; what went wrong is a failing check and problems
    assert checks_of(result)["lead_files_read"] is False
    failed = {row.original_name: row.error for row in rows(engine, lead_files) if row.status == "failed"}
    assert set(failed) == {"xxe.xml", "junk.eml", "notes.txt", "huge.json"}
    assert all(error and name.split(".")[0] in error for name, error in failed.items() if name != "huge.json")
    assert "/etc/passwd" not in " ".join(failed.values()) or "root:" not in " ".join(failed.values())
    assert any(row.delivery_status == "delivered" for row in rows(engine, leads))  # the good files' leads went on
    problems = stages.lead_store.lead_problems(engine, "leeds")
    assert sorted(p.kind for p in problems) == ["lead_file_failed"] * 4
    opened = [row for row in rows(engine, incidents) if row.kind == "lead_file_failed"]
    assert len(opened) == 4
    assert run_lead_job(settings, paths).success
    assert len([row for row in rows(engine, incidents) if row.kind == "lead_file_failed"]) == 4  # still open, not alerted again
    stages.lead_store.acknowledge_failed_files(engine, "leeds", by="test")
    run_lead_job(settings, paths)
    assert all(row.resolved_at is not None for row in rows(engine, incidents) if row.kind == "lead_file_failed")


def test_a_dealer_without_a_crm_keeps_its_leads_and_says_so(lead_env):
    settings, paths, engine = lead_env
    generate_leads(stages.read_stock(paths.state, "york"), "york", paths.lead_inbox / "york")
    settings = settings.model_copy(update={"dealers": [d.model_copy(update={"crm": None}) if d.id == "york" else d for d in settings.dealers]})
    run = stages.sync_leads("york", settings, paths, engine, run_id="test")
    assert run.reading.new > 0 and run.delivery.delivered == 0 and run.delivery.no_crm == run.reading.new
    assert [p.kind for p in run.problems] == ["lead_no_crm"]
    assert {row.delivery_status for row in rows(engine, leads)} == {"no_crm"}


def test_the_sensor_starts_a_lead_run_when_a_payload_lands_and_the_report_shows_the_channel(lead_env, capsys):
    settings, paths, engine = lead_env
    defs = build_definitions(settings, paths, paths.root / "config" / "dms_pipelines.yaml")
    sensor = defs.get_sensor_def("new_leads")
    with dg.instance_for_test() as instance:
        idle = sensor(dg.build_sensor_context(instance=instance, resources={"pipeline": defs.resources["pipeline"]}))
        assert isinstance(idle, dg.SkipReason)
        with ReceiverServer(settings, paths, environ=SECRETS) as receiver:
            post_json(f"{receiver.url}/webhooks/website/york", website_lead("W-9", "Y001"), {WEBSITE_KEY_HEADER: SECRETS["DMS_WEBSITE_LEAD_KEY"]})
        requests = sensor(dg.build_sensor_context(instance=instance, resources={"pipeline": defs.resources["pipeline"]}))
    assert [(r.partition_key, r.tags["dms_pipelines/trigger"]) for r in requests] == [("york", "lead_sensor")]
    assert run_lead_job(settings, paths, "york").success
    from dms_pipelines.cli import main

    assert main(["report", "--format", "json"]) == 0
    channels = json.loads(capsys.readouterr().out)["lead_channels"]
    assert [(row["dealer_id"], row["channel"], row["leads"], row["delivered"]) for row in channels] == [("york", "carsnip", 1, 1)]


def test_a_crm_that_defers_then_accepts_gets_every_lead_once_and_one_that_refuses_dead_letters(lead_env):
    from sqlalchemy import update

    from dms_pipelines.config import Crm, CrmEmail
    from dms_pipelines_tests.leads.smtp_server import ACCEPT, DEFER, REFUSE_RECIPIENTS, SmtpServer

    settings, paths, engine = lead_env
    generate_leads(stages.read_stock(paths.state, "leeds"), "leeds", paths.lead_inbox / "leeds")
    with SmtpServer(mode=DEFER) as smtp:
        crm = Crm(email=CrmEmail(smtp_host=smtp.host, smtp_port=smtp.port, email_from="leads@dms.example", email_to=["crm@dealer.example"]), max_attempts=3)
        settings = settings.model_copy(update={"dealers": [d.model_copy(update={"crm": crm}) if d.id == "leeds" else d for d in settings.dealers]})
        deferred = stages.sync_leads("leeds", settings, paths, engine, run_id="deferred")
        assert deferred.delivery.delivered == 0 and deferred.delivery.retrying == deferred.reading.new  # one tried, the others wait
        assert [p.kind for p in deferred.problems] == ["lead_retrying"]
        smtp.set_mode(ACCEPT)
        with engine.begin() as connection:  # the backoff has passed
            connection.execute(update(leads).values(next_attempt_at=None))
        healed = stages.sync_leads("leeds", settings, paths, engine, run_id="healed")
        assert healed.delivery.delivered == deferred.reading.new and healed.problems == []
        ids = [message.message()["Message-ID"] for message in smtp.received]
        assert len(ids) == len(set(ids)) == deferred.reading.new  # every lead once, none twice
        bodies = [message.message().get_content() for message in smtp.received]
        assert all(validate_adf(body.encode()) == [] for body in bodies)
        smtp.set_mode(REFUSE_RECIPIENTS)
        website = paths.lead_landing / "leeds"
        (website / "website-20261202T100000000000-aaaaaaaaaaaa.json").write_text(json.dumps(website_lead("W-77", "L001")))
        refused = stages.sync_leads("leeds", settings, paths, engine, run_id="refused")
        assert refused.delivery.dead_lettered == 1 and [p.kind for p in refused.problems] == ["lead_dead_letter"]
        smtp.set_mode(ACCEPT)
        assert stages.replay_dead_letters(engine, "leeds") == 1
        replayed = stages.sync_leads("leeds", settings, paths, engine, run_id="replayed")
        assert replayed.delivery.delivered == 1 and replayed.problems == []


def test_an_unreachable_lead_inbox_is_an_incident_until_it_is_read_again(lead_env, tmp_path):
    import socket

    from dms_pipelines.config import DealerLeads, SftpSource

    settings, paths, engine = lead_env
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    (tmp_path / "known_hosts").write_text("")
    down = SftpSource(kind="sftp", host="127.0.0.1", port=closed_port, username="dms", known_hosts=str(tmp_path / "known_hosts"), password_env="NO_SUCH_VARIABLE_FOR_TESTS", connect_timeout=2)
    broken = settings.model_copy(update={"dealers": [d.model_copy(update={"leads": DealerLeads(source=down)}) if d.id == "leeds" else d for d in settings.dealers]})
    first = stages.sync_leads("leeds", broken, paths, engine, run_id="down-1")
    second = stages.sync_leads("leeds", broken, paths, engine, run_id="down-2")
    assert [p.kind for p in first.problems] == [p.kind for p in second.problems] == ["lead_inbox_unreachable"]
    opened = [row for row in rows(engine, incidents) if row.kind == "lead_inbox_unreachable"]
    assert len(opened) == 1 and opened[0].resolved_at is None  # alerted once, not per run
    healed = stages.sync_leads("leeds", settings, paths, engine, run_id="up")
    assert healed.problems == []
    assert all(row.resolved_at is not None for row in rows(engine, incidents) if row.kind == "lead_inbox_unreachable")


def test_a_lead_run_with_no_lead_on_a_sold_car_never_reads_the_other_dealers_stock(lead_env, monkeypatch):
    """The group's stock serves only the alternatives offered on a sold or reserved car; reading it for every dealer's
    lead run made a group's night grow with the square of its dealers."""
    import dms_pipelines.pipeline.leads as lead_stages

    settings, paths, engine = lead_env
    (paths.lead_landing / "leeds").mkdir(parents=True, exist_ok=True)
    from dms_pipelines.leads.records import land_payload

    land_payload(paths.lead_landing / "leeds", "website", json.dumps(website_lead("W-1", "L001")).encode())
    read = []
    real = lead_stages.read_stock
    monkeypatch.setattr(lead_stages, "read_stock", lambda state, dealer_id: read.append(dealer_id) or real(state, dealer_id))
    run = stages.sync_leads("leeds", settings, paths, engine, "run-1")
    assert run.delivery.delivered == 1
    assert set(read) == {"leeds"}  # york's stock was read too before
    read.clear()
    land_payload(paths.lead_landing / "leeds", "website", json.dumps(website_lead("W-2", "L002")).encode())  # L002 is sold
    run = stages.sync_leads("leeds", settings, paths, engine, "run-2")
    assert "york" in read  # now the alternatives need the group: Y001 is a Fiesta like L002
    document = etree.fromstring(adf_files(paths)[-1].read_bytes())
    assert "Y001" in etree.tostring(document).decode()
