"""The canonical customer: the agreed columns, their types and flags, the Pandera schema and the documented field table."""

from pathlib import Path

import pandas as pd
import pandera.errors
import pytest

from dms_pipelines.customers.schema import CUSTOMER_COLUMNS, CUSTOMER_SCHEMA, FIELDS, PERSONAL_COLUMNS, REQUIRED_COLUMNS, coerce_to_schema, empty_customers

AGREED = (
    "dealer_id customer_number title first_name last_name company_name email phone_mobile phone_home phone_work address_line1 address_line2 town county postcode "
    "owned_vehicles consent_email consent_phone consent_sms consent_post consent_wording consent_updated_at updated_at source_file source_row"
).split()
DOCS = Path(__file__).resolve().parents[2] / "docs" / "canonical-customer.md"


def customer(**changes) -> dict:
    return {"dealer_id": "leeds", "customer_number": "000101", "first_name": "Jane", "email": "jane@example.com", "phone_mobile": "+447700900123", "postcode": "LS3 1JL", "source_row": 1} | changes


def test_the_columns_are_the_agreed_ones_in_order():
    assert CUSTOMER_COLUMNS == AGREED
    assert REQUIRED_COLUMNS == ["dealer_id", "customer_number"]


def test_contacts_names_and_addresses_are_personal_and_consents_are_not():
    assert {"first_name", "last_name", "email", "phone_mobile", "postcode", "address_line1", "owned_vehicles"} <= set(PERSONAL_COLUMNS)
    assert not {"dealer_id", "customer_number", "consent_email", "updated_at"} & set(PERSONAL_COLUMNS)


def test_coerced_frames_have_the_canonical_dtypes_and_utc_times():
    frame = coerce_to_schema(pd.DataFrame([customer(updated_at="2024-04-30T10:00:00+01:00", consent_sms=True)]))
    assert list(frame.columns) == CUSTOMER_COLUMNS
    assert str(frame["updated_at"].dtype) == "datetime64[ns, UTC]" and frame["updated_at"].iloc[0] == pd.Timestamp("2024-04-30 09:00", tz="UTC")
    assert str(frame["consent_sms"].dtype) == "boolean" and frame["consent_email"].isna().all()
    assert list(empty_customers().dtypes.astype(str)) == list(frame.dtypes.astype(str))


def test_the_schema_accepts_a_canonical_customer():
    CUSTOMER_SCHEMA.validate(coerce_to_schema(pd.DataFrame([customer(), customer(customer_number="2", owned_vehicles="AB71CDE|WF0XXXGCDXKA00002", postcode="BFPO 123")])))


@pytest.mark.parametrize(
    "changes, check",
    [
        ({"phone_mobile": "07700 900123"}, "e164"),
        ({"postcode": "ls3 1jl"}, "uk_postcode"),
        ({"owned_vehicles": "AB71 CDE"}, "vehicle_list"),
        ({"email": "no-at-sign"}, "email_shape"),
        ({"customer_number": None}, "not_nullable"),
    ],
)
def test_the_schema_refuses_a_value_outside_the_canonical_shape(changes, check):
    with pytest.raises(pandera.errors.SchemaErrors) as caught:
        CUSTOMER_SCHEMA.validate(coerce_to_schema(pd.DataFrame([customer(**changes)])), lazy=True)
    assert check in " ".join(caught.value.failure_cases["check"].astype(str))


def test_every_field_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    assert [field.name for field in FIELDS if f"| `{field.name}` |" not in text] == []
