"""ADF writing: every lead renders to a document valid against the public ADF 1.0 DTD; validation is strict and never expands entities."""

import math
import re
from datetime import timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from dms_pipelines.config import Address, Market
from dms_pipelines.leads.adf import MAX_EARLIER_ENQUIRIES, CustomerMatch, EarlierEnquiry, adf_dtd, adf_file_name, clean_text, render_adf, validate_adf
from dms_pipelines.leads.records import FIELD_NAMES, FIELDS
from dms_pipelines_tests.support import SECRET_FILE_MARKER, fixed_dealer

DEALER = fixed_dealer()
STOCK = dict(
    stock_id="S1001",
    vin="WF0XXXGCDXKA12345",
    registration="AB71CDE",
    make="Ford",
    model="Fiesta",
    derivative="1.0 EcoBoost Titanium 5dr",
    trim="Titanium",
    year=2021,
    mileage=20000,
    price=12995.0,
    condition="used",
    status="available",
    body_type="Hatchback",
    fuel_type="Petrol",
    transmission="Manual",
    colour="Blue",
    doors=5,
)


def full_lead(**changes) -> dict:
    lead = {name: None for name in FIELD_NAMES}
    lead.update(
        source="autotrader",
        source_lead_id="DEAL-42",
        dealer_id="leeds",
        received_at=pd.Timestamp("2026-11-02T10:00:05Z"),
        enquired_at=pd.Timestamp("2026-11-02T09:58:00Z"),
        channel="autotrader",
        lead_status="new",
        vehicle_ref="S1001",
        vehicle_stock_id="S1001",
        first_name="Zoë",
        last_name="O'Brien",
        email="zoe@example.com",
        phone="+447700900123",
        postcode="LS1 1AA",
        message="Is it still available?",
        part_exchange=True,
        part_exchange_details="2015 Ford Focus, 80k miles",
        finance_interest=True,
        consent_email=True,
        consent_phone=False,
        consent_wording="Send me offers by e-mail",
        consent_at=pd.Timestamp("2026-11-02T09:58:00Z"),
        record="0",
    )
    lead.update(changes)
    return lead


def parse(document: bytes) -> etree._Element:
    return etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))


def customer_comments(root: etree._Element) -> str:
    return root.findtext("prospect/customer/comments")


def test_a_full_lead_validates_and_carries_every_part():
    document = render_adf(full_lead(), DEALER, STOCK, "available", [], "Auto Trader")
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<?adf version="1.0"?>\n<adf>')
    assert validate_adf(document) == []
    prospect = parse(document).find("prospect")
    assert prospect.get("status") == "new"
    lead_id = prospect.find("id")
    assert (lead_id.text, lead_id.get("source"), lead_id.get("sequence")) == ("DEAL-42", "autotrader", "1")
    assert prospect.findtext("requestdate") == "2026-11-02T09:58:00+00:00"  # enquired_at, not received_at
    (vehicle,) = prospect.findall("vehicle")
    assert (vehicle.get("interest"), vehicle.get("status")) == ("buy", "used")
    assert [vehicle.findtext(tag) for tag in ("year", "make", "model", "vin", "stock")] == ["2021", "Ford", "Fiesta", "WF0XXXGCDXKA12345", "S1001"]
    assert vehicle.find("price").attrib == {"type": "asking", "currency": "GBP"} and vehicle.findtext("price") == "12995"
    contact = prospect.find("customer/contact")
    assert [(n.get("part"), n.text) for n in contact.findall("name")] == [("first", "Zoë"), ("last", "O'Brien")]
    assert contact.findtext("email") == "zoe@example.com" and contact.find("phone").get("type") == "voice" and contact.findtext("phone") == "+447700900123"
    assert contact.findtext("address/postalcode") == "LS1 1AA"
    comments = customer_comments(parse(document))
    assert "Message: Is it still available?" in comments
    assert "Part exchange: yes (2015 Ford Focus, 80k miles)" in comments and "Finance: interested" in comments
    assert 'Marketing consent: email yes, phone no, sms not asked, post not asked ("Send me offers by e-mail" at 2026-11-02T09:58:00+00:00)' in comments
    vendor = prospect.find("vendor")
    assert vendor.findtext("vendorname") == DEALER.name and vendor.findtext("contact/name") == DEALER.name
    assert vendor.findtext("contact/phone") == "+441134960120" and vendor.findtext("contact/address/postalcode") == "LS3 1JL"
    assert prospect.findtext("provider/name") == "Auto Trader" and prospect.findtext("provider/service") == "dms-pipelines"


def test_the_packaged_dtd_is_the_public_one():
    assert {element.name for element in adf_dtd().elements()} >= {"adf", "prospect", "requestdate", "vehicle", "customer", "vendor", "provider", "contact", "colorcombination"}
    prospect = next(element for element in adf_dtd().elements() if element.name == "prospect")
    assert [attribute.values() for attribute in prospect.attributes()] == [["new", "resend"]]


def test_the_requestdate_falls_back_to_when_the_lead_arrived():
    document = render_adf(full_lead(enquired_at=pd.NaT), DEALER, STOCK, "available", [], "Auto Trader")
    assert parse(document).findtext("prospect/requestdate") == "2026-11-02T10:00:05+00:00"


@pytest.mark.parametrize("status", ["sold", "reserved"])
@pytest.mark.parametrize("offered", [0, 1, 3])
def test_a_sold_or_reserved_car_says_so_and_lists_the_alternatives(status, offered):
    alternatives = [dict(STOCK, stock_id=f"ALT{i}", model=f"Model {i}", status="available") for i in range(5)][:offered]
    document = render_adf(full_lead(), DEALER, dict(STOCK, status=status), status, alternatives, "Auto Trader")
    assert validate_adf(document) == []
    asked, *others = parse(document).findall("prospect/vehicle")
    assert asked.findtext("stock") == "S1001"
    assert asked.findtext("comments").startswith(f"{status.upper()}: this vehicle is")
    assert ("similar available vehicles are listed below" in asked.findtext("comments")) == bool(offered)
    assert [vehicle.findtext("stock") for vehicle in others] == [f"ALT{i}" for i in range(offered)]
    assert all(vehicle.findtext("comments").startswith("Alternative offered: similar available vehicle") and vehicle.get("interest") == "buy" for vehicle in others)


def test_alternatives_are_offered_only_for_a_car_that_is_gone_and_at_most_three():
    alternatives = [dict(STOCK, stock_id=f"ALT{i}") for i in range(5)]
    assert len(parse(render_adf(full_lead(), DEALER, STOCK, "available", alternatives, "x")).findall("prospect/vehicle")) == 1
    assert len(parse(render_adf(full_lead(), DEALER, STOCK, "sold", alternatives, "x")).findall("prospect/vehicle")) == 4


def test_an_unlinked_lead_keeps_what_the_sender_said_about_the_car():
    lead = full_lead(vehicle_stock_id=None, vehicle_ref="Ford Fiesta advert", vehicle_vin="WF0XXXGCDXKA99999", vehicle_registration="YC19ABC", vehicle_advert_id="ADV9")
    document = render_adf(lead, DEALER, None, "unlinked", [dict(STOCK)], "Meta")
    assert validate_adf(document) == []
    (vehicle,) = parse(document).findall("prospect/vehicle")
    assert [vehicle.findtext(tag) for tag in ("year", "make", "model")] == ["", "", ""]  # present (the DTD needs them), empty
    assert vehicle.findtext("vin") == "WF0XXXGCDXKA99999"
    assert "YC19ABC" in vehicle.findtext("comments") and "ADV9" in vehicle.findtext("comments")


def test_another_stock_status_is_written_as_available():
    document = render_adf(full_lead(), DEALER, dict(STOCK, status="in_preparation"), "in_preparation", [dict(STOCK)], "x")
    (vehicle,) = parse(document).findall("prospect/vehicle")
    assert vehicle.findtext("comments") == "Registration AB71CDE; Fuel Petrol; Colour Blue"


@pytest.mark.parametrize("condition, status", [("new", "new"), ("used", "used"), ("demo", "used")])
def test_vehicle_status_follows_the_condition(condition, status):
    assert parse(render_adf(full_lead(), DEALER, dict(STOCK, condition=condition), "available", [], "x")).find("prospect/vehicle").get("status") == status


def test_odometer_units_and_currency_follow_the_dealers_market():
    gb = parse(render_adf(full_lead(), DEALER, STOCK, "available", [], "x")).find("prospect/vehicle")
    assert gb.find("odometer").get("units") == "mi" and gb.find("price").get("currency") == "GBP"
    irish = DEALER.model_copy(update={"market": Market(country="IE"), "address": Address(street="1 Main St", city="Dublin", postcode="D01 F5P2", country="IE")})
    document = render_adf(full_lead(), irish, dict(STOCK, mileage=32000), "available", [], "x")
    assert validate_adf(document) == []
    ie = parse(document).find("prospect/vehicle")
    assert (ie.find("odometer").get("units"), ie.findtext("odometer")) == ("km", "32000") and ie.find("price").get("currency") == "EUR"


@pytest.mark.parametrize("status, expected", [("updated", "changed"), ("cancelled", "was cancelled"), ("completed", "was completed")])
def test_a_deal_update_is_a_resend_that_says_what_happened(status, expected):
    root = parse(render_adf(full_lead(lead_status=status), DEALER, STOCK, "available", [], "x"))
    assert root.find("prospect").get("status") == "resend"
    assert customer_comments(root).splitlines()[0].startswith("Deal update:") and expected in customer_comments(root).splitlines()[0]


def test_a_lead_with_a_phone_only_and_a_full_name_validates():
    lead = full_lead(first_name=None, last_name=float("nan"), full_name="Sam Smith", email=pd.NA)
    document = render_adf(lead, DEALER, STOCK, "available", [], "x")
    assert validate_adf(document) == []
    contact = parse(document).find("prospect/customer/contact")
    assert [(n.get("part"), n.text) for n in contact.findall("name")] == [("full", "Sam Smith")]
    assert contact.find("email") is None and contact.findtext("phone") == "+447700900123"


def test_an_empty_lead_still_validates():
    document = render_adf({name: None for name in FIELD_NAMES}, DEALER, None, "unlinked", [], "")
    assert validate_adf(document) == []
    assert "Marketing consent: email not asked, phone not asked, sms not asked, post not asked" in customer_comments(parse(document))


# ----------------------------------------------------------------------------------------------------------- property

HOSTILE_TEXT = st.text(max_size=40) | st.sampled_from(["<", "&", "]]>", "\x00\x1b\x7f", "😀", "&amp;", "<!--", "-->", "\ud800", "\r\n", "\ufffe"])
MISSING = st.sampled_from([None, float("nan"), pd.NA, pd.NaT])


def field_value(lead_field):
    if lead_field.dtype == "bool":
        return st.booleans() | MISSING
    if lead_field.dtype == "datetime":
        return st.datetimes(timezones=st.none() | st.just(timezone.utc)) | MISSING | HOSTILE_TEXT
    return HOSTILE_TEXT | MISSING


LEADS = st.fixed_dictionaries({lead_field.name: field_value(lead_field) for lead_field in FIELDS})
VEHICLES = st.fixed_dictionaries({key: HOSTILE_TEXT | MISSING | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True) for key in STOCK})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lead=LEADS,
    vehicle=st.none() | VEHICLES,
    link_status=st.sampled_from(["available", "reserved", "sold", "unlinked", "in_preparation"]),
    alternatives=st.lists(VEHICLES, max_size=3),
    provider=HOSTILE_TEXT,
)
def test_any_lead_renders_to_a_valid_document_that_reads_back(lead, vehicle, link_status, alternatives, provider):
    document = render_adf(lead, DEALER, vehicle, link_status, alternatives, provider)
    assert validate_adf(document) == []
    contact = parse(document).find("prospect/customer/contact")
    names = {n.get("part"): n.text for n in contact.findall("name")}
    first, last = clean_text(lead["first_name"]), clean_text(lead["last_name"])
    if first or last:
        assert names == {part: value for part, value in (("first", first), ("last", last)) if value}
    else:
        assert names == {"full": clean_text(lead["full_name"])}
    emails = [e.text for e in contact.findall("email")]
    assert emails == ([clean_text(lead["email"])] if clean_text(lead["email"]) else [] if clean_text(lead["phone"]) else [None])
    assert [p.text for p in contact.findall("phone")] == ([clean_text(lead["phone"])] if clean_text(lead["phone"]) else [])


def test_clean_text_removes_what_xml_forbids_and_keeps_the_rest():
    assert clean_text("a\x00b\x1bc\ud800d\ufffee\tf😀 <&]]>") == "abcde\tf😀 <&]]>"
    assert clean_text("  \x00 ") is None and clean_text(math.nan) is None and clean_text(pd.NA) is None


# --------------------------------------------------------------------------------------------------------- validation


def without(document: bytes, tag: str) -> bytes:
    root = parse(document)
    element = root.find(f"prospect/{tag}")
    element.getparent().remove(element)
    return etree.tostring(root)


@pytest.mark.parametrize("tag", ["vendor", "requestdate", "customer"])
def test_validation_catches_a_missing_required_element(tag):
    problems = validate_adf(without(render_adf(full_lead(), DEALER, STOCK, "available", [], "x"), tag))
    assert problems and all(re.match(r"line \d+: ", problem) for problem in problems)
    assert any("prospect" in problem for problem in problems)


def test_validation_catches_a_wrong_attribute_value_and_a_wrong_root():
    document = render_adf(full_lead(), DEALER, STOCK, "available", [], "x").replace(b'status="new"', b'status="pending"')
    assert any("pending" in problem for problem in validate_adf(document))
    assert validate_adf(b"<lead/>") and validate_adf(b"not xml") and validate_adf(b"")


def test_an_external_entity_is_never_expanded():
    document = b"""<?xml version="1.0"?>
<!DOCTYPE adf [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<adf><prospect><requestdate>&secret;</requestdate></prospect></adf>"""
    problems = validate_adf(document)
    assert problems
    assert not any(SECRET_FILE_MARKER in problem for problem in problems)
    assert any("entity" in problem for problem in problems)


def test_a_billion_laughs_document_is_refused_without_expanding():
    laughs = b'<!DOCTYPE adf [<!ENTITY a "hahahahaha">' + b"".join(b'<!ENTITY %s "%s">' % (b"a" + b"b" * i, (b"&a" + b"b" * (i - 1) + b";") * 10) for i in range(1, 9)) + b"]>"
    problems = validate_adf(b'<?xml version="1.0"?>' + laughs + b"<adf>&abbbbbbbb;</adf>")
    assert problems and sum(len(problem) for problem in problems) < 10_000


# ---------------------------------------------------------------------------------------------------------- file names


def test_file_names_are_safe_stable_and_unique():
    lead = full_lead(source_lead_id="../../etc/passwd\n")
    name = adf_file_name(lead, 2)
    assert re.fullmatch(r"leeds-autotrader-[A-Za-z0-9_-]+-[0-9a-f]{10}-r2\.xml", name) and "/" not in name and not name.startswith(".")
    assert adf_file_name(dict(lead), 2) == name
    assert adf_file_name(lead, 3) != name
    assert adf_file_name(full_lead(source_lead_id="a/b"), 0) != adf_file_name(full_lead(source_lead_id="a_b"), 0)
    assert adf_file_name(full_lead(source="meta"), 0) != adf_file_name(full_lead(), 0)
    assert len(adf_file_name(full_lead(source_lead_id="x" * 500), 0)) < 160
    with pytest.raises(ValueError):
        adf_file_name(lead, -1)


def test_a_returning_customer_carries_the_dms_customer_number_earlier_enquiries_and_owned_vehicles():
    earlier = (
        EarlierEnquiry(pd.Timestamp("2026-10-01T09:00:00Z"), "website", "Ford Focus (S0900)"),
        EarlierEnquiry(pd.Timestamp("2026-10-20T09:00:00Z"), "autotrader", "Kia Ceed (S0950)"),
    )
    match = CustomerMatch("P-0123456789ab", customer_number="C-00042", customer_source="Aire Valley Motors DMS", returning=True, earlier_enquiries=earlier, owned_vehicles=("AB12CDE",))
    document = render_adf(full_lead(), DEALER, STOCK, "available", [], "Auto Trader", match)
    assert validate_adf(document) == []
    ids = [(i.get("sequence"), i.get("source"), i.text) for i in parse(document).findall("prospect/customer/id")]
    assert ids == [("1", "Aire Valley Motors DMS", "C-00042"), ("2", "dms-pipelines", "P-0123456789ab")]
    comments = customer_comments(parse(document))
    assert comments.startswith("RETURNING CUSTOMER: DMS customer C-00042.")
    assert "Vehicles owned: AB12CDE" in comments
    assert comments.index("2026-10-20 via autotrader Kia Ceed (S0950)") < comments.index("2026-10-01 via website Ford Focus (S0900)")  # newest first


def test_a_match_under_review_is_not_stated_as_the_customer():
    match = CustomerMatch("P-00000000000a", customer_number="C-1", returning=False, under_review=True)
    root = parse(render_adf(full_lead(), DEALER, STOCK, "available", [], "x", match))
    assert [(i.get("source"), i.text) for i in root.findall("prospect/customer/id")] == [("dms-pipelines", "P-00000000000a")]
    assert "RETURNING" not in customer_comments(root)
    assert "waiting for review" in customer_comments(root)


def test_a_new_prospect_has_only_its_cluster_id_and_no_returning_mark():
    root = parse(render_adf(full_lead(), DEALER, STOCK, "available", [], "x", CustomerMatch("P-00000000000b")))
    assert [i.text for i in root.findall("prospect/customer/id")] == ["P-00000000000b"]
    assert "RETURNING" not in customer_comments(root) and "Earlier enquiries" not in customer_comments(root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lead=LEADS,
    number=st.none() | HOSTILE_TEXT,
    enquiries=st.lists(st.builds(EarlierEnquiry, MISSING | st.datetimes(timezones=st.just(timezone.utc)), st.none() | HOSTILE_TEXT, st.none() | HOSTILE_TEXT), max_size=14),
    owned=st.lists(HOSTILE_TEXT, max_size=3),
    returning=st.booleans(),
)
def test_any_customer_match_renders_valid_and_caps_the_enquiries(lead, number, enquiries, owned, returning):
    match = CustomerMatch(
        "P-1", customer_number=number if isinstance(number, str) else None, returning=returning, earlier_enquiries=tuple(enquiries), owned_vehicles=tuple(o for o in owned if isinstance(o, str))
    )
    document = render_adf(lead, DEALER, STOCK, "available", [], "x", match)
    assert validate_adf(document) == []
    listed = [line for line in (customer_comments(parse(document)) or "").split("\n") if line.startswith("- ") and not line.startswith("- and ")]
    assert len(listed) <= MAX_EARLIER_ENQUIRIES
