"""Lead files of every kind read into raw records; hostile or broken files refused with a LeadFileError naming the file."""

import shutil
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.leads import parsers
from dms_pipelines.leads.parsers import parse_lead_file
from dms_pipelines.leads.records import FIELD_NAMES, SOURCES, LeadFileError

DATA = Path(__file__).parent / "data"
RAW_KEYS = set(FIELD_NAMES) - {"dealer_id", "received_at"}


def parse(name: str, source: str | None = None):
    parsed = parse_lead_file(DATA / name, source)
    for record in parsed.records:
        assert set(record) <= RAW_KEYS, f"unexpected keys {set(record) - RAW_KEYS}"
        assert record["source"] in SOURCES
    return parsed


def test_meta_csv_utf8_comma_with_bom():
    parsed = parse("meta_form_utf8.csv")
    assert parsed.kind == "meta_csv"
    assert parsed.skipped == {"blank row": 1}
    first, second = parsed.records
    assert first == {
        "source": "meta",
        "channel": "meta",
        "lead_status": "new",
        "record": "row 2",
        "source_lead_id": "120211111111111",
        "enquired_at": "2024-05-01T10:22:33+0000",
        "full_name": "Ada Lovelace",
        "email": "ADA.Lovelace@Example.COM",
        "phone": "+447700900123",
        "postcode": "ls31jl",
        "vehicle_stock_id": "STK1001",
        "vehicle_ref": "STK1001",
        "part_exchange": True,
        "consent_email": True,
        "consent_sms": True,
        "consent_post": False,
        "consent_wording": "email_marketing_consent; sms_offers; post_offers",
        "consent_at": "2024-05-01T10:22:33+0000",
    }
    assert second["record"] == "row 3" and second["phone"] == "07700900456" and second["part_exchange"] is False
    assert second["consent_email"] is False and "consent_sms" not in second  # an unanswered checkbox is not asked, not a no


def test_meta_csv_utf16_tab():
    (record,) = parse("meta_form_utf16.csv").records
    assert record["source_lead_id"] == "130000000000001"
    assert (record["first_name"], record["last_name"], record["postcode"]) == ("Margaret", "Hamilton", "EH1 1YZ")
    assert record["consent_sms"] is False and "consent_email" not in record
    assert record["finance_interest"] == "yes"  # validation reads the answer


def test_meta_opt_out_column_is_inverted_and_channelless_consent_grants_nothing(tmp_path):
    path = tmp_path / "form.csv"
    path.write_text("id,created_time,email,email_opt_out,marketing_consent\nl:1,2024-05-01T10:00:00+0000,a@example.com,yes,yes\n", encoding="utf-8")
    (record,) = parse_lead_file(path).records
    assert record["consent_email"] is False
    assert not any(key in record for key in ("consent_phone", "consent_sms", "consent_post"))


def test_meta_csv_without_its_columns_is_refused(tmp_path):
    path = tmp_path / "stock.csv"
    path.write_text("stock_id,price\nA1,1000\n", encoding="utf-8")
    with pytest.raises(LeadFileError, match=r"^stock\.csv: .*not a Meta lead export"):
        parse_lead_file(path)


def test_adf_xml_with_two_prospects():
    parsed = parse("adf_two_prospects.xml")
    assert parsed.kind == "adf" and parsed.problems == []
    first, second = parsed.records
    assert first["source_lead_id"] == "AutoTrader:12345"
    assert first["channel"] == "autotrader"
    assert (first["vehicle_stock_id"], first["vehicle_vin"], first["vehicle_ref"]) == ("STK1001", "WVWZZZ1KZAW000001", "STK1001")
    assert (first["first_name"], first["last_name"], first["email"], first["phone"], first["postcode"]) == ("Grace", "Hopper", "grace@example.com", "020 7946 0018", "LS1 4AP")
    assert first["part_exchange"] is True and first["part_exchange_details"] == "2015 Ford Focus 60000"
    assert first["finance_interest"] is True
    assert first["enquired_at"] == "2024-05-01T10:22:33+01:00"
    assert not any(key.startswith("consent_") for key in first)  # ADF carries no consent: never inferred
    assert second["source_lead_id"].startswith("adf-") and len(second["source_lead_id"]) == 20
    assert second["channel"] == "website" and second["vehicle_ref"] == "2020 Ford Puma"
    assert parse("adf_two_prospects.xml").records[1]["source_lead_id"] == second["source_lead_id"]  # a repeat is the same key


def test_adf_fallback_id_changes_with_the_lead(tmp_path):
    text = (DATA / "adf_two_prospects.xml").read_text()
    path = tmp_path / "other.xml"
    path.write_text(text.replace("07700 900789", "07700 900790"))
    assert parse_lead_file(path).records[1]["source_lead_id"] != parse("adf_two_prospects.xml").records[1]["source_lead_id"]


def test_adf_as_real_senders_write_it():
    parsed = parse("adf_real_sender.xml")
    (record,) = parsed.records
    assert record["source_lead_id"] == "Carsnip:CS-99" and record["channel"] == "carsnip"
    assert record["email"] == "mary@example.net" and record["enquired_at"] == "2024-05-03 12:00:00"
    assert "vehicle_ref" not in record
    (problem,) = parsed.problems
    assert (problem.record, problem.field, problem.rule) == ("prospect 2", "prospect/customer", "no_customer_contact")
    assert problem.message.startswith("adf_real_sender.xml: prospect 2")


def test_adf_with_a_namespace(tmp_path):
    path = tmp_path / "ns.adf"
    path.write_text('<adf xmlns="urn:example"><prospect><id>7</id><customer><contact><email>n@example.com</email></contact></customer></prospect></adf>')
    (record,) = parse_lead_file(path).records
    assert record["source_lead_id"] == "7" and record["email"] == "n@example.com" and record["channel"] == "email"


def test_adf_eml_with_the_adf_as_body():
    parsed = parse("adf_body.eml")
    assert [record["source_lead_id"] for record in parsed.records] == ["AutoTrader:12345", parse("adf_two_prospects.xml").records[1]["source_lead_id"]]


def test_adf_eml_with_the_adf_attached():
    parsed = parse("adf_attachment.eml")
    assert [record["source_lead_id"] for record in parsed.records] == ["Carsnip:CS-99"]
    assert len(parsed.problems) == 1


def test_adf_eml_with_an_xml_part_and_a_latin1_body(tmp_path):
    message = EmailMessage()
    message["Subject"] = "lead"
    message.set_content(
        '<?xml version="1.0" encoding="ISO-8859-1"?><adf><prospect><id>9</id><customer><contact><name>Zoë</name><email>z@example.com</email></contact></customer></prospect></adf>\n-- \nSent by CRM',
        charset="iso-8859-1",
    )
    path = tmp_path / "latin.eml"
    path.write_bytes(bytes(message))
    (record,) = parse_lead_file(path).records
    assert record["full_name"] == "Zoë"


def test_google_lead():
    parsed = parse("google_lead.json")
    (record,) = parsed.records
    assert parsed.kind == "google"
    assert record == {
        "source": "google",
        "channel": "google",
        "lead_status": "new",
        "record": "payload",
        "source_lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "enquired_at": "2024-05-04T09:30:00+00:00",
        "full_name": "Dorothy Vaughan",
        "email": "dorothy@example.com",
        "phone": "+447700900321",
        "postcode": "SW1A 1AA",
        "vehicle_stock_id": "STK2001",
        "vehicle_ref": "STK2001",
    }
    assert "s3cr3t-google-key" not in repr(parsed)


def test_google_test_lead_is_skipped():
    parsed = parse("google_test_lead.json")
    assert (parsed.kind, parsed.records, parsed.skipped, parsed.problems) == ("google", [], {"google test lead": 1}, [])


def test_website_enquiry_from_carsnip():
    (record,) = parse("website_carsnip.json").records
    assert (record["source"], record["channel"], record["source_lead_id"]) == ("website", "carsnip", "WEB-5001")
    assert (record["vehicle_stock_id"], record["vehicle_registration"], record["vehicle_ref"]) == ("STK3001", "ab12 cde", "STK3001")
    assert (record["part_exchange"], record["finance_interest"], record["part_exchange_details"]) == (True, False, "2016 Fiat 500, 40k miles")
    assert [record[f"consent_{channel}"] for channel in ("email", "phone", "sms", "post")] == [True, False, False, False]
    assert record["consent_wording"] == "Send me offers by e-mail"


@pytest.mark.parametrize(("utm_source", "channel"), [("google", "google"), ("Instagram", "meta"), ("newsletter", "website"), (None, "website")])
def test_website_channel_from_utm_source(tmp_path, utm_source, channel):
    path = tmp_path / "w.json"
    path.write_text(f'{{"enquiry_id": "W1", "email": "a@example.com", "utm_source": {"null" if utm_source is None else chr(34) + utm_source + chr(34)}}}')
    assert parse_lead_file(path).records[0]["channel"] == channel


def test_autotrader_deal_snapshot():
    parsed = parse("autotrader_deal.json")
    (record,) = parsed.records
    assert parsed.kind == "autotrader_deal"
    assert (record["source"], record["channel"], record["source_lead_id"], record["lead_status"]) == ("autotrader", "autotrader", "deal-777", "updated")
    assert (record["vehicle_advert_id"], record["vehicle_stock_id"]) == ("202405061234567", "STK4001")
    assert record["part_exchange"] is True and record["part_exchange_details"] == "XY15ABC Vauxhall Corsa 52000"
    assert "finance_interest" not in record
    assert (record["consent_email"], record["consent_phone"], record["consent_sms"], record["consent_post"]) == ("Y", "N", "N", "Y")
    assert record["consent_at"] == "2024-05-06T09:55:00Z"


@pytest.mark.parametrize(
    ("status", "event", "expected"), [("Complete", "DEAL_UPDATED", "completed"), ("Cancelled", None, "cancelled"), ("In progress", "DEAL_CREATED", "new"), ("In progress", "DEAL_UPDATED", "updated")]
)
def test_autotrader_lead_status(tmp_path, status, event, expected):
    text = (DATA / "autotrader_deal.json").read_text().replace('"In progress"', f'"{status}"').replace('"COMPONENT_CHANGED"', "null" if event is None else f'"{event}"')
    path = tmp_path / "deal.json"
    path.write_text(text)
    assert parse_lead_file(path).records[0]["lead_status"] == expected


def test_autotrader_notification_has_no_records():
    parsed = parse("autotrader_notification.json")
    assert (parsed.kind, parsed.records, parsed.problems) == ("autotrader_notification", [], [])


def test_source_must_agree_with_the_payload(tmp_path):
    assert parse("google_lead.json", source="google").records
    with pytest.raises(LeadFileError, match=r"^google_lead\.json: landed as a website lead"):
        parse_lead_file(DATA / "google_lead.json", source="website")
    landed = tmp_path / "website-20240504T093000000000-0123456789ab.json"
    shutil.copy(DATA / "google_lead.json", landed)
    with pytest.raises(LeadFileError, match=r"^website-.*landed as a website lead but holds a google payload"):
        parse_lead_file(landed)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("xxe.xml", "declares entities"),
        ("billion_laughs.xml", "declares entities"),
        ("truncated.xml", "not well-formed XML"),
        ("binary_junk.xml", "not well-formed XML"),
        ("no_adf.eml", "no ADF"),
        ("invalid.json", "invalid JSON"),
        ("array.json", "JSON array"),
    ],
)
def test_hostile_files_are_refused_naming_the_file(name, says):
    with pytest.raises(LeadFileError) as refused:
        parse_lead_file(DATA / name)
    assert str(refused.value).startswith(f"{name}: ")
    assert says in str(refused.value)
    assert "root:" not in str(refused.value)  # nothing of /etc/passwd


def test_xxe_in_utf16_is_refused(tmp_path):
    path = tmp_path / "wide.xml"
    path.write_bytes((DATA / "xxe.xml").read_text().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16"))
    with pytest.raises(LeadFileError, match="declares entities"):
        parse_lead_file(path)


def test_an_external_doctype_is_allowed_but_never_loaded(tmp_path):
    secret = tmp_path / "adf.dtd"
    secret.write_text('<!ENTITY leak "LEAKED">')
    path = tmp_path / "lead.xml"
    path.write_text(f'<!DOCTYPE adf SYSTEM "{secret.as_uri()}"><adf><prospect><id>1</id><customer><contact><name>&leak;</name><email>a@example.com</email></contact></customer></prospect></adf>')
    (record,) = parse_lead_file(path).records
    assert record["source_lead_id"] == "1"
    assert "LEAKED" not in repr(record)


@pytest.mark.parametrize(
    ("name", "text", "says"), [("x.xml", "<lead/>", "not <adf>"), ("x.xml", "<adf/>", "no <prospect>"), ("x.json", '{"hello": 1}', "no known lead shape"), ("x.json", "\ufeff\x00", "invalid JSON")]
)
def test_readable_files_that_are_no_leads(tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LeadFileError, match=says):
        parse_lead_file(path)


def test_json_not_utf8(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes('{"enquiry_id": "é"}'.encode("latin-1"))
    with pytest.raises(LeadFileError, match=r"^latin\.json: not UTF-8"):
        parse_lead_file(path)


@pytest.mark.parametrize("name", ["lead.txt", "lead", "lead.pdf", "lead.xlsx"])
def test_unknown_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("id,created_time\n")
    with pytest.raises(LeadFileError, match=rf"^{name.replace('.', '[.]')}: not a lead file: expected \.csv"):
        parse_lead_file(path)


@pytest.mark.parametrize("suffix", [".xml", ".json", ".csv", ".eml"])
def test_a_huge_file_is_refused(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(parsers, "MAX_LEAD_FILE_BYTES", 4096)
    path = tmp_path / f"big{suffix}"
    path.write_bytes(b"<adf>" + b" " * 5000 + b"</adf>")
    with pytest.raises(LeadFileError, match=rf"^big{suffix}: larger than"):
        parse_lead_file(path)


def test_the_real_limit_refuses_a_body_just_over_it(tmp_path):
    path = tmp_path / "huge.eml"
    with path.open("wb") as handle:
        handle.write(b"Subject: x\n\n")
        handle.truncate(parsers.MAX_LEAD_FILE_BYTES + 1)
    with pytest.raises(LeadFileError, match=r"^huge\.eml: larger than"):
        parse_lead_file(path)


def test_deep_nesting_is_refused(tmp_path):
    xml, json_file = tmp_path / "deep.xml", tmp_path / "deep.json"
    xml.write_text("<adf>" + "<a>" * 100_000 + "</a>" * 100_000 + "</adf>")
    json_file.write_text("[" * 100_000 + "]" * 100_000)
    for path in (xml, json_file):
        with pytest.raises(LeadFileError, match=rf"^{path.name}: "):
            parse_lead_file(path)


SEEDS = [b"", b"<?xml version='1.0'?><adf><prospect>", b'{"lead_id": 1, "user_column_data": ', b"id,created_time\n", b"Content-Type: multipart/mixed; boundary=x\n\n--x\n", b"\xff\xfe<\x00"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".xml", ".json", ".csv", ".eml", ".adf"]), seed=st.sampled_from(SEEDS), junk=st.binary(max_size=300))
def test_random_bytes_give_only_lead_file_errors(tmp_path, suffix, seed, junk):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(seed + junk)
    try:
        parsed = parse_lead_file(path)
    except LeadFileError as error:
        assert str(error).startswith(f"random{suffix}: ")
        return
    assert all(isinstance(record, dict) for record in parsed.records)
