"""Customer mapping profiles: `record: customer`, the two built-in layouts (fixtures and a render/read round trip), field-name checks, and a new layout onboarded by YAML alone."""

import string
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.customers.schema import CUSTOMER_COLUMNS, coerce_to_schema
from dms_pipelines.customers.validate import validate_customers
from dms_pipelines.devtools.sample.customer_files import customer_export_name, render_customer_export
from dms_pipelines.formats.profile import ProfileError, find_profile, load_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.paths import BUILTIN_PROFILES

DATA = Path(__file__).resolve().parents[1] / "customers" / "data"
NAVIGATOR = "navigator_customers_full_20240501.csv"
STAR = "star5_customers_full_20240501.xml"


def read(profile, path: Path, file_name: str | None = None):
    result = read_export(path, profile, "leeds", file_name=file_name)
    return result, *validate_customers(result.rows, result.issues, result.file_name)


def builtin(name: str):
    return find_profile(name, [BUILTIN_PROFILES])


def test_every_builtin_profile_says_what_it_reads():
    kinds = {path.stem: load_profile(path).record for path in BUILTIN_PROFILES.glob("*.yaml")}
    assert kinds["navigator_customers_csv"] == kinds["star5_customers_xml"] == "customer"
    assert {name for name, kind in kinds.items() if kind == "vehicle"} >= {"navigator_csv", "star5_xml", "pipe_cp1252_csv"}  # no record key: vehicle


def test_the_navigator_fixture_is_read_with_quarantine_reasons_naming_file_row_and_field():
    _, accepted, issues = read(builtin("navigator_customers_csv"), DATA / NAVIGATOR)
    assert list(accepted["customer_number"]) == ["000102", "000105", "000106", "000101"]
    errors = issues[issues["severity"] == "error"]
    assert errors[["source_row", "field", "rule"]].values.tolist() == [[3, "customer_number", "missing"], [4, "name_or_contact", "no_name_or_contact"]]
    assert all(message.startswith(f"{NAVIGATOR}: row {row}: {field}: ") for message, row, field in zip(issues["message"], issues["source_row"], issues["field"]))
    jane = accepted.set_index("customer_number").loc["000101"]
    assert (jane["last_name"], jane["postcode"], jane["owned_vehicles"], jane["source_row"]) == ("Whitaker-Smith", "LS3 1JL", "AB71CDE", 7)  # the later row wins


def test_the_star5_fixture_is_read_with_quarantine_reasons_naming_file_row_and_field():
    _, accepted, issues = read(builtin("star5_customers_xml"), DATA / STAR)
    owen = accepted.set_index("customer_number").loc["C-9001"]
    assert (owen["phone_mobile"], owen["owned_vehicles"], bool(owen["consent_email"]), bool(owen["consent_sms"]), pd.isna(owen["consent_post"])) == (
        "+447700900555",
        "YK19XYZ|WBA00000000000003",
        True,
        False,
        True,
    )
    assert owen["consent_updated_at"] == pd.Timestamp("2024-02-01 12:00", tz="UTC")
    assert list(accepted["customer_number"]) == ["C-9001", "C-9003"]
    assert set(zip(issues["source_row"], issues["field"], issues["rule"], issues["severity"])) == {
        (2, "customer_number", "missing", "error"),
        (3, "consent_post", "unknown_value", "warning"),
        (3, "email", "invalid_email", "warning"),
        (4, "name_or_contact", "no_name_or_contact", "error"),
    }
    assert all(message.startswith(f"{STAR}: row ") for message in issues["message"])
    assert not any("lena@@example" in message or "Perhaps" in message for message in issues["message"])  # never the value


ODD_LAYOUT = """
name: odd_vendor_kunden
format: csv
record: customer
encoding: cp1252
csv: {delimiter: ";"}
files:
  full: ["*kunden_*.txt"]
fields:
  customer_number: {column: Kundennr}
  first_name: {column: Name, extract: '^(\\S+)\\s'}
  last_name: {column: Name, extract: '\\s(\\S+)$'}
  email: {column: E-Mail}
  phone_mobile: {column: Handy}
  postcode: {column: PLZ}
  consent_email: {column: Werbung E-Mail, type: boolean, map: {ja: "true", nein: "false"}}
  updated_at: {column: Geändert, type: date, formats: ["%d.%m.%Y %H:%M"]}
"""


def test_a_layout_the_project_has_not_seen_is_onboarded_by_a_profile_alone(tmp_path):
    profile_path = tmp_path / "odd_vendor_kunden.yaml"
    profile_path.write_text(ODD_LAYOUT, encoding="utf-8")
    profile = find_profile("odd_vendor_kunden", [tmp_path, BUILTIN_PROFILES])
    assert profile.export_kind("odd_vendor_kunden_20240408.txt") == "full"
    result, accepted, issues = read(profile, DATA / "odd_vendor_kunden_20240408.txt")
    assert result.encoding == "cp1252"
    assert accepted[["customer_number", "first_name", "last_name", "postcode"]].values.tolist() == [
        ["K-1", "José", "Müller", "LS6 2AB"],
        ["K-2", "Zoë", "Brontë", "BD1 1AA"],
        ["K-4", "Ann", "Née", "HX1 1AA"],
    ]
    assert accepted["updated_at"].tolist() == [pd.Timestamp("2024-04-05 13:30", tz="UTC"), pd.Timestamp("2024-04-06 07:00", tz="UTC"), pd.Timestamp("2024-04-07 08:00", tz="UTC")]  # UK summer time
    assert [None if pd.isna(value) else bool(value) for value in accepted["consent_email"]] == [True, False, None]
    assert issues[["source_row", "field", "rule", "severity"]].values.tolist() == [[3, "name_or_contact", "no_name_or_contact", "error"], [4, "consent_email", "unknown_value", "warning"]]


ATTRIBUTE_LAYOUT = """
name: attribute_people
format: xml
record: customer
xml: {record: p:Person, namespaces: {p: "urn:example:people"}}
files: {full: ["people_*.xml"]}
fields:
  customer_number: {xpath: "@no"}
  first_name: {xpath: "@given"}
  last_name: {xpath: "@family"}
  email: {xpath: "p:Contact[@kind='mail']/@value"}
  phone_mobile: {xpath: "p:Contact[@kind='mobile']/@value"}
  consent_sms: {xpath: "p:Contact[@kind='mobile']/@marketing", type: boolean}
  owned_vehicles: {xpath: "p:Car/@reg", type: list}
"""


def test_an_xml_layout_with_attributes_is_onboarded_by_a_profile_alone(tmp_path):
    (tmp_path / "attribute_people.yaml").write_text(ATTRIBUTE_LAYOUT, encoding="utf-8")
    export = tmp_path / "people_1.xml"
    export.write_text(
        '<?xml version="1.0"?><x:People xmlns:x="urn:example:people">'
        '<x:Person no="P1" given="Ada" family="Lovelace"><x:Contact kind="mail" value="ada@example.com"/><x:Contact kind="mobile" value="07700 900001" marketing="false"/>'
        '<x:Car reg="ab12 cde"/><x:Car reg="CD34EFG"/></x:Person>'
        '<x:Person given="Anon"/></x:People>',
        encoding="utf-8",
    )
    _, accepted, issues = read(find_profile("attribute_people", [tmp_path]), export)
    assert accepted[["customer_number", "email", "phone_mobile", "owned_vehicles"]].values.tolist() == [["P1", "ada@example.com", "+447700900001", "AB12CDE|CD34EFG"]]
    assert bool(accepted["consent_sms"].iloc[0]) is False
    assert issues[["source_row", "field", "rule"]].values.tolist() == [[2, "customer_number", "missing"]]


def test_an_unknown_customer_field_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(ODD_LAYOUT.replace("first_name:", "forename:").replace("  postcode:", "  post_code:"), encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert "fields.forename: not a canonical customer field (did you mean first_name?); the fields are listed in docs/canonical-customer.md" in message
    assert "fields.post_code: not a canonical customer field (did you mean postcode?)" in message


def test_a_vehicle_field_in_a_customer_profile_is_refused_and_a_customer_field_in_a_vehicle_one(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(ODD_LAYOUT.replace("  postcode:", "  stock_id:"), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"fields.stock_id: not a canonical customer field"):
        load_profile(path)
    path.write_text(ODD_LAYOUT.replace("record: customer\n", ""), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"fields.customer_number: not a canonical field.*docs/canonical-vehicle.md"):
        load_profile(path)


def test_an_unknown_record_kind_is_named(tmp_path):
    path = tmp_path / "kind.yaml"
    path.write_text(ODD_LAYOUT.replace("record: customer", "record: customers"), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"record: 'customers' is not one of vehicle, customer, images \(did you mean customer\?\)"):
        load_profile(path)


def test_export_names_match_the_layouts_patterns():
    at = datetime(2024, 5, 1, 6, 30, tzinfo=timezone.utc)
    for layout in ("navigator_customers_csv", "star5_customers_xml"):
        for kind in ("full", "delta"):
            assert builtin(layout).export_kind(customer_export_name(layout, kind, at)) == kind


# The round trip: canonical customers rendered in a layout and read back through its profile are the same customers.

WORD = st.text(alphabet=string.ascii_letters + "éüøñ'-", min_size=1, max_size=12)
NAME = st.lists(WORD, min_size=1, max_size=3).map(" ".join)
FREE_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " ,.;:\"'&()£é", min_size=1, max_size=60).map(lambda text: " ".join(text.split())).filter(bool)
EMAIL = st.builds(
    lambda user, domain: f"{user}@{domain}.example.com",
    st.text(alphabet=string.ascii_lowercase + string.digits + "._", min_size=1, max_size=10).filter(lambda u: not u.startswith(".") and not u.endswith(".") and ".." not in u),
    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8),
)
PHONE = st.integers(0, 999).map(lambda n: f"+447700900{n:03d}")
POSTCODE = st.sampled_from(["LS3 1JL", "SW1A 1AA", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT", "EC1A 1BB", "BFPO 123"])
VEHICLES = st.lists(st.sampled_from(["AB71CDE", "YK19XYZ", "WF0XXXGCDXKA00002", "WBA00000000000003", "CD34EFG"]), max_size=3, unique=True).map(lambda items: "|".join(items) or None)
MOMENT = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31)).map(lambda moment: pd.Timestamp(moment.replace(microsecond=0), tz="UTC"))
FLAG = st.sampled_from([True, False, None])


def optional(strategy):
    return st.one_of(st.none(), strategy)


CUSTOMER = st.fixed_dictionaries(
    {
        "title": optional(st.sampled_from(["Mr", "Mrs", "Ms", "Dr"])),
        "first_name": NAME,
        "last_name": optional(NAME),
        "company_name": optional(FREE_TEXT),
        "email": optional(EMAIL),
        "phone_mobile": optional(PHONE),
        "phone_home": optional(PHONE),
        "phone_work": optional(PHONE),
        "address_line1": optional(FREE_TEXT),
        "address_line2": optional(FREE_TEXT),
        "town": optional(NAME),
        "county": optional(NAME),
        "postcode": optional(POSTCODE),
        "owned_vehicles": VEHICLES,
        "consent_email": FLAG,
        "consent_phone": FLAG,
        "consent_sms": FLAG,
        "consent_post": FLAG,
        "consent_wording": optional(FREE_TEXT),
        "consent_updated_at": optional(MOMENT),
        "updated_at": optional(MOMENT),
    }
)


@pytest.mark.parametrize("layout", ["navigator_customers_csv", "star5_customers_xml"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(customers=st.lists(CUSTOMER, min_size=1, max_size=8))
def test_a_rendered_export_reads_back_to_the_same_canonical_customers(tmp_path, layout, customers):
    name = customer_export_name(layout, "full", datetime(2024, 5, 1, tzinfo=timezone.utc))
    frame = coerce_to_schema(
        pd.DataFrame([{"dealer_id": "leeds", "customer_number": f"{index:06d}", **customer, "source_file": name, "source_row": index + 1} for index, customer in enumerate(customers)])
    )
    path = tmp_path / name
    path.write_bytes(render_customer_export(frame, layout))
    _, accepted, issues = read(builtin(layout), path)
    assert issues.empty, issues["message"].tolist()
    pd.testing.assert_frame_equal(accepted[CUSTOMER_COLUMNS], frame.reset_index(drop=True))
