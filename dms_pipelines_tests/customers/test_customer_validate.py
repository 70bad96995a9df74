"""customers.validate: the row rules (quarantine, warnings, duplicates), normalisation, and no personal value in any message."""

import string

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.customers.schema import CUSTOMER_COLUMNS, ISSUE_COLUMNS, coerce_read
from dms_pipelines.customers.validate import owned_vehicles, validate_customers

FILE = "customers_full_20240501.csv"


def read_rows(*rows: dict) -> pd.DataFrame:
    """Rows as the engine reads them (text), numbered from 1."""
    frame = pd.DataFrame([{"dealer_id": "leeds", "source_file": FILE, "source_row": number, **row} for number, row in enumerate(rows, start=1)])
    return coerce_read(frame.astype({name: "string" for name in frame.columns if name != "source_row"}))


def flags(row: pd.Series, *names: str) -> list:
    return [None if pd.isna(row[name]) else bool(row[name]) for name in names]


def good(number: str, **changes) -> dict:
    return {"customer_number": number, "first_name": "Jane", "last_name": "Whitaker", "email": "Jane@Example.COM", "phone_mobile": "07700 900123", "postcode": "ls3 1jl"} | changes


def test_a_good_row_is_normalised():
    accepted, issues = validate_customers(
        read_rows(good("000101", owned_vehicles="ab71 cde|WF0XXXGCDXKA00002|AB71CDE", consent_email="Y", consent_post="no", updated_at="30/04/2024 10:00")), None, FILE
    )
    assert list(accepted.columns) == CUSTOMER_COLUMNS and list(issues.columns) == ISSUE_COLUMNS and issues.empty
    row = accepted.iloc[0]
    assert (row["customer_number"], row["email"], row["phone_mobile"], row["postcode"]) == ("000101", "Jane@example.com", "+447700900123", "LS3 1JL")
    assert row["owned_vehicles"] == "AB71CDE|WF0XXXGCDXKA00002"
    assert flags(row, "consent_email", "consent_post", "consent_sms") == [True, False, None]
    assert row["updated_at"] == pd.Timestamp("2024-04-30 09:00", tz="UTC")  # UK summer time, stored in UTC


def test_a_missing_customer_number_is_quarantined():
    accepted, issues = validate_customers(read_rows(good(""), good("2")), None, FILE)
    assert list(accepted["customer_number"]) == ["2"]
    assert issues[["source_row", "field", "rule", "severity"]].values.tolist() == [[1, "customer_number", "missing", "error"]]
    assert issues["message"].iloc[0].startswith(f"{FILE}: row 1: customer_number:")


def test_an_invalid_email_phone_or_postcode_is_dropped_with_a_warning_and_the_customer_goes_on():
    accepted, issues = validate_customers(read_rows(good("1", email="not-an-email", phone_home="12345", postcode="NOT A POSTCODE")), None, FILE)
    assert len(accepted) == 1 and accepted[["email", "phone_home", "postcode"]].isna().all(axis=None)
    assert set(zip(issues["field"], issues["rule"], issues["severity"])) == {
        ("email", "invalid_email", "warning"),
        ("phone_home", "invalid_phone", "warning"),
        ("postcode", "invalid_postcode", "warning"),
    }


def test_a_customer_with_no_name_and_no_contact_is_quarantined_but_a_company_alone_is_kept():
    accepted, issues = validate_customers(read_rows({"customer_number": "1", "email": "broken"}, {"customer_number": "2", "company_name": "Aire Valley Fleet Ltd"}), None, FILE)
    assert list(accepted["customer_number"]) == ["2"]
    assert ("name_or_contact", "no_name_or_contact", "error") in set(zip(issues["field"], issues["rule"], issues["severity"]))


def test_the_later_row_of_a_duplicated_customer_number_wins():
    accepted, issues = validate_customers(read_rows(good("7", last_name="Old"), good("8"), good("7", last_name="New")), None, FILE)
    assert accepted.set_index("customer_number")["last_name"].to_dict() == {"8": "Whitaker", "7": "New"}
    assert issues[["source_row", "rule", "severity"]].values.tolist() == [[1, "duplicate_customer_number", "warning"]]
    assert "(row 3)" in issues["message"].iloc[0]


def test_an_unknown_consent_answer_is_never_read_as_a_yes():
    accepted, issues = validate_customers(read_rows(good("1", consent_email="maybe", consent_sms="checked", consent_phone="")), None, FILE)
    assert flags(accepted.iloc[0], "consent_email", "consent_sms", "consent_phone") == [None, True, None]
    assert issues[["field", "rule"]].values.tolist() == [["consent_email", "not_a_boolean"]]


def test_issues_found_while_reading_carry_over_with_file_and_row():
    read_issues = pd.DataFrame(
        [{"source_row": 2, "customer_number": "2", "field": "customer_number", "rule": "no_match", "value": None, "severity": "error", "message": "customer_number: the value does not match"}]
    )
    accepted, issues = validate_customers(read_rows(good("1"), good("2")), read_issues, FILE)
    assert list(accepted["customer_number"]) == ["1"]
    assert issues["message"].tolist() == [f"{FILE}: row 2: customer_number: the value does not match"]


def test_owned_vehicles_are_upper_case_without_spaces_or_repeats():
    assert owned_vehicles(" ab71 cde , yk19-xyz;AB71CDE ") == "AB71CDE|YK19XYZ"
    assert owned_vehicles(" | ") is None


PERSONAL = st.text(alphabet=string.ascii_letters + string.digits + "@.-_ '", min_size=4, max_size=30).filter(lambda text: text.strip() and len(text.strip()) >= 4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(email=PERSONAL, phone=PERSONAL, postcode=PERSONAL, name=PERSONAL)
def test_no_message_holds_a_personal_value(email, phone, postcode, name):
    rows = read_rows(good("1", email=email, phone_mobile=phone, postcode=postcode, first_name=name, consent_email=name, updated_at=name), {"customer_number": "2", "email": email})
    _, issues = validate_customers(rows, None, FILE)
    for value in {email.strip(), phone.strip(), postcode.strip(), name.strip()}:
        assert (
            not any(value in message.removeprefix(f"{FILE}: ") for message in issues["message"])
            or value in "customer_number email phone_mobile postcode first_name consent_email updated_at name_or_contact row"
        )


ROW = st.fixed_dictionaries(
    {"good": st.booleans(), "flaw": st.sampled_from(["no_number", "anonymous", "bad_email", "bad_postcode", "bad_time"])},
)


@settings(max_examples=80, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=25))
def test_a_bad_row_never_takes_good_rows_down(plan):
    rows, expected = [], []
    for index, item in enumerate(plan):
        number = f"C{index:03d}"
        if item["good"]:
            rows.append(good(number))
            expected.append(number)
        elif item["flaw"] == "no_number":
            rows.append(good(""))
        elif item["flaw"] == "anonymous":
            rows.append({"customer_number": number, "email": "x"})
        else:
            rows.append(good(number, **{"bad_email": {"email": "@@"}, "bad_postcode": {"postcode": "ZZZ"}, "bad_time": {"updated_at": "soon"}}[item["flaw"]]))
            expected.append(number)  # a warning only: the customer goes on
    accepted, issues = validate_customers(read_rows(*rows), None, FILE)
    assert list(accepted["customer_number"]) == expected
    quarantined = set(issues.loc[issues["severity"] == "error", "source_row"])
    assert quarantined == {index + 1 for index, item in enumerate(plan) if not item["good"] and item["flaw"] in ("no_number", "anonymous")}
