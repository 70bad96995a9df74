"""Lead validation: normalised values, quarantine with reasons, warnings that keep the lead, no personal data in any issue."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.leads.records import FIELD_NAMES, FIELDS, PERSONAL_FIELDS
from dms_pipelines.leads.validate import LEAD_SCHEMA, LeadIssue, validate_leads

RECEIVED = datetime(2024, 5, 8, 12, 0, tzinfo=timezone.utc)
EXPECTED_DTYPES = {"string": pd.StringDtype(), "bool": pd.BooleanDtype(), "datetime": pd.DatetimeTZDtype("ns", "UTC")}


def lead(**changes) -> dict:
    record = {
        "source": "website",
        "source_lead_id": "WEB-1",
        "enquired_at": "2024-05-05T14:00:00+01:00",
        "channel": "carsnip",
        "lead_status": "new",
        "vehicle_ref": " STK3001 ",
        "vehicle_stock_id": "STK3001",
        "vehicle_registration": "ab12 cde",
        "first_name": "  Hedy\x00 ",
        "last_name": "Lamarr",
        "email": "Hedy@EXAMPLE.com",
        "phone": "07700 900654",
        "postcode": "ls31jl",
        "message": "Line one\r\nLine two\x07",
        "part_exchange": "yes",
        "finance_interest": False,
        "consent_email": "Y",
        "consent_phone": "N",
        "consent_wording": "Offers by e-mail",
        "consent_at": "2024-05-05T14:00:00+01:00",
        "record": "payload",
    }
    record.update(changes)
    return {key: value for key, value in record.items() if value is not None}


def validate(*records, country="GB"):
    return validate_leads(list(records), "lead.json", "leeds", RECEIVED, country)


def rules(result, severity=None):
    return sorted(issue.rule for issue in result.issues if severity is None or issue.severity == severity)


def test_a_good_lead_passes_normalised():
    result = validate(lead())
    assert result.quarantined == [] and result.issues == []
    (row,) = result.leads.to_dict("records")
    assert row["email"] == "Hedy@example.com"
    assert row["phone"] == "+447700900654"
    assert row["postcode"] == "LS3 1JL"
    assert row["first_name"] == "Hedy" and row["last_name"] == "Lamarr"
    assert row["message"] == "Line one\nLine two"
    assert row["vehicle_ref"] == "STK3001" and row["vehicle_registration"] == "AB12CDE"
    assert row["enquired_at"] == pd.Timestamp("2024-05-05T13:00:00Z")
    assert row["consent_at"] == pd.Timestamp("2024-05-05T13:00:00Z")
    assert (row["part_exchange"], row["finance_interest"], row["consent_email"], row["consent_phone"]) == (True, False, True, False)
    assert pd.isna(row["consent_sms"]) and pd.isna(row["consent_post"])  # not asked stays empty
    assert result.leads["consent_sms"].isna().all() and result.leads["consent_email"].dtype == "boolean"
    assert (row["dealer_id"], row["received_at"], row["record"]) == ("leeds", pd.Timestamp(RECEIVED), "payload")


def test_columns_and_dtypes_are_the_contract():
    for result in (validate(lead()), validate(), validate(lead(email=None, phone=None))):
        assert tuple(result.leads.columns) == FIELD_NAMES
        assert {name: result.leads[name].dtype for name in FIELD_NAMES} == {field.name: EXPECTED_DTYPES[field.dtype] for field in FIELDS}
        LEAD_SCHEMA.validate(result.leads)


def test_no_contact_is_quarantined():
    result = validate(lead(email=None, phone=None), lead(source_lead_id="WEB-2", email="nope", phone="123"))
    assert result.leads.empty
    assert [record["source_lead_id"] for record in result.quarantined] == ["WEB-1", "WEB-2"]
    assert [[issue.rule for issue in record["issues"]] for record in result.quarantined] == [["no_contact"], ["no_contact"]]
    assert result.quarantined[1]["email"] == "nope"  # the record as given


@pytest.mark.parametrize(
    ("changes", "rule", "field", "kept"),
    [
        ({"email": "not-an-email"}, "email_invalid", "email", {"email": None, "phone": "+447700900654"}),
        ({"phone": "12345"}, "phone_invalid", "phone", {"phone": None, "email": "Hedy@example.com"}),
        ({"postcode": "QQ1 1QQ"}, "postcode_invalid", "postcode", {"postcode": None}),
        ({"enquired_at": "yesterday"}, "enquired_at_unreadable", "enquired_at", {"enquired_at": pd.Timestamp(RECEIVED)}),
        ({"enquired_at": None}, "enquired_at_missing", "enquired_at", {"enquired_at": pd.Timestamp(RECEIVED)}),
        ({"enquired_at": (RECEIVED + timedelta(days=2)).isoformat()}, "enquired_at_future", "enquired_at", {"enquired_at": pd.Timestamp(RECEIVED)}),
        ({"enquired_at": "1066-10-14T09:00:00Z"}, "enquired_at_implausible", "enquired_at", {"enquired_at": pd.Timestamp(RECEIVED)}),
        ({"message": "x" * 6000}, "message_truncated", "message", {"message": "x" * 5000}),
        ({"consent_email": "maybe"}, "flag_unknown", "consent_email", {"consent_email": pd.NA}),
        ({"part_exchange": "perhaps"}, "flag_unknown", "part_exchange", {"part_exchange": pd.NA}),
        ({"consent_at": "soon"}, "consent_at_unreadable", "consent_at", {"consent_at": pd.NaT}),
    ],
)
def test_warnings_keep_the_lead(changes, rule, field, kept):
    result = validate(lead(**changes))
    assert result.quarantined == []
    (issue,) = result.issues
    assert (issue.rule, issue.field, issue.severity, issue.record, issue.file) == (rule, field, "warning", "payload", "lead.json")
    assert issue.message.startswith(f"lead.json: payload: {field}: ")
    (row,) = result.leads.to_dict("records")
    for name, value in kept.items():
        assert pd.isna(row[name]) if value is None or value is pd.NA or value is pd.NaT else row[name] == value


def test_an_enquiry_within_a_day_of_arrival_is_kept():
    result = validate(lead(enquired_at=(RECEIVED + timedelta(hours=23)).isoformat()))
    assert result.issues == [] and result.leads["enquired_at"].iloc[0] == pd.Timestamp(RECEIVED + timedelta(hours=23))


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"source": "fax"}, "source", "allowed_values"),
        ({"channel": "pigeon"}, "channel", "allowed_values"),
        ({"lead_status": "lost"}, "lead_status", "allowed_values"),
        ({"source_lead_id": " \x00 "}, "source_lead_id", "required"),
        ({"source_lead_id": "x" * 201}, "source_lead_id", "too_long"),
        ({"source": None}, "source", "required"),
    ],
)
def test_identity_errors_are_quarantined(changes, field, rule):
    result = validate(lead(**changes), lead(source_lead_id="WEB-OK"))
    assert list(result.leads["source_lead_id"]) == ["WEB-OK"]
    (record,) = result.quarantined
    assert [(issue.field, issue.rule, issue.severity) for issue in record["issues"]] == [(field, rule, "error")]


def test_lead_status_defaults_to_new_and_is_case_folded():
    result = validate(lead(lead_status=None), lead(source_lead_id="WEB-2", lead_status="Completed"))
    assert list(result.leads["lead_status"]) == ["new", "completed"]


def test_a_failing_schema_check_becomes_an_issue(monkeypatch):
    import dms_pipelines.leads.validate as validate_module

    stricter = validate_module.LEAD_SCHEMA.update_column("vehicle_stock_id", checks=[validate_module.pa.Check.str_startswith("DMS", error="stock_prefix")])
    monkeypatch.setattr(validate_module, "LEAD_SCHEMA", stricter)
    result = validate(lead(), lead(source_lead_id="WEB-2", vehicle_stock_id="DMS-1"))
    assert list(result.leads["source_lead_id"]) == ["WEB-2"]
    (record,) = result.quarantined
    (issue,) = record["issues"]
    assert (issue.field, issue.rule, issue.severity, issue.record) == ("vehicle_stock_id", "stock_prefix", "error", "payload")
    assert issue.message == "lead.json: payload: vehicle_stock_id: fails stock_prefix"


def test_the_last_of_a_repeated_lead_id_wins():
    result = validate(lead(record="row 2", first_name="Old"), lead(record="row 3", source_lead_id="WEB-9"), lead(record="row 4", first_name="New"))
    assert list(result.leads["source_lead_id"]) == ["WEB-9", "WEB-1"]
    assert list(result.leads["first_name"]) == ["Hedy", "New"]
    (issue,) = result.issues
    assert (issue.record, issue.rule, issue.severity) == ("row 2", "duplicate_lead_id", "warning") and "row 4" in issue.message


def test_the_same_id_from_two_sources_is_two_leads():
    assert len(validate(lead(), lead(source="adf", channel="email")).leads) == 2


def test_not_a_dict_is_quarantined():
    result = validate("junk", lead())
    assert len(result.leads) == 1 and result.quarantined[0]["issues"][0].rule == "not_a_record"


def test_another_countrys_postcode_is_kept_and_its_phones_read_there():
    (row,) = validate(lead(postcode=" d02  x285 ", phone="087 123 4567", email=None), country="IE").leads.to_dict("records")
    assert (row["postcode"], row["phone"]) == ("D02 X285", "+353871234567")


PERSONAL_VALUES = {
    "first_name": "Zebedee",
    "last_name": "Quuxington",
    "full_name": "Zebedee Quuxington",
    "email": "zebedee.quux@distinctive-example.org",
    "phone": "07700 900 417",
    "postcode": "ZE2 9QX",
    "message": "Distinctive message text Xyzzy",
    "part_exchange_details": "Plugh Motors 1999",
}


def test_no_personal_value_in_any_issue():
    broken = [
        lead(**PERSONAL_VALUES),
        lead(**{**PERSONAL_VALUES, "email": "zebedee.quux@", "phone": "0770", "source_lead_id": "P2"}),
        lead(**{**PERSONAL_VALUES, "email": "zebedee.quux@", "source_lead_id": "P3", "postcode": "ZZZ Xyzzy"}),
        lead(**{**PERSONAL_VALUES, "phone": "0770 Quuxington", "source_lead_id": "P4", "consent_email": "Zebedee", "message": "Xyzzy" * 2000}),
        lead(**{**PERSONAL_VALUES, "source": "Quuxington", "channel": "Zebedee", "lead_status": "Xyzzy", "source_lead_id": "P5"}),
    ]
    result = validate(*broken)
    assert len(result.issues) >= 8
    shown = repr(result.issues) + "".join(issue.message for issue in result.issues)
    shown += "".join(repr(issue) for record in result.quarantined for issue in record["issues"])
    for piece in ["Zebedee", "Quuxington", "zebedee.quux", "900 417", "7700900417", "ZE2", "Xyzzy", "Plugh", "0770"]:
        assert piece not in shown, piece
    assert set(PERSONAL_FIELDS) <= set(PERSONAL_VALUES)


text_or_none = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["a@example.com", "bad@", "07700 900123", "123", "LS3 1JL", "yes", "maybe", "2024-05-01T10:00:00Z", "soon"]))
raw_records = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "source": st.sampled_from(["meta", "adf", "website", "fax", ""]),
                "source_lead_id": st.sampled_from(["A", "B", "C", "", "x" * 201]),
                "channel": st.sampled_from(["meta", "email", "carsnip", "pigeon"]),
                "lead_status": st.sampled_from(["new", "updated", "Completed", "lost"]),
                "email": text_or_none,
                "phone": text_or_none,
                "postcode": text_or_none,
                "first_name": text_or_none,
                "message": text_or_none,
                "enquired_at": st.one_of(text_or_none, st.datetimes(timezones=st.just(timezone.utc)), st.integers(-(10**12), 10**14)),
                "consent_at": text_or_none,
                "consent_sms": st.one_of(text_or_none, st.booleans()),
                "part_exchange": st.one_of(text_or_none, st.booleans(), st.integers(-2, 2)),
            },
        ),
        st.integers(),
    ),
    max_size=8,
)


@settings(max_examples=120, deadline=None)
@given(raw_records)
def test_every_record_is_accounted_for(records):
    result = validate_leads(records, "f.csv", "leeds", RECEIVED)
    duplicates = [issue for issue in result.issues if issue.rule == "duplicate_lead_id"]
    assert len(result.leads) + len(result.quarantined) + len(duplicates) == len(records)
    assert tuple(result.leads.columns) == FIELD_NAMES
    LEAD_SCHEMA.validate(result.leads)
    assert not result.leads.duplicated(["source", "source_lead_id"]).any()
    assert (result.leads["email"].notna() | result.leads["phone"].notna()).all()
    assert all(isinstance(issue, LeadIssue) and issue.message.startswith("f.csv: ") for issue in result.issues)
    assert all(any(issue.severity == "error" for issue in record["issues"]) for record in result.quarantined)
