"""Row rules per dealer market: plates by country, which vehicles need a registration, mileage plausibility by age and unit."""

import re
from datetime import date

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.config import Market, Validation
from dms_pipelines.stock.plates import COUNTIES_BEFORE_2014, COUNTIES_SINCE_2014, PLATE_STYLES, irish_plates, plate_style
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines.stock.validate import age_in_years, validate_stock
from dms_pipelines_tests.support import valid_vehicle

TODAY = date(2026, 11, 21)
IRELAND = Market(country="IE")
IRISH_PLATES = ["191D12345", "12KY1234", "07D123456", "251-D-1", "241-T-77", "132-TN-9", "05-WD-12", "99-LK-300", "87-C-1"]


def run(*vehicles: dict, market: Market | None = None, rules: Validation | None = None):
    frame = pd.DataFrame(list(vehicles))
    frame["source_row"] = range(1, len(frame) + 1)
    return validate_stock(coerce_to_schema(frame), "stock_full_x.csv", rules or Validation(), TODAY, market=market)


def rules_of(result, severity: str | None = None) -> dict[str, list[str]]:
    issues = result.issues if severity is None else result.issues[result.issues["severity"] == severity]
    return {stock: sorted(group["rule"]) for stock, group in issues.groupby("stock_id")}


def irish_vehicle(stock_id: str, plate: str, **changes) -> dict:
    """A used car of an Irish rooftop: its plate's year and half match its first registration, its odometer in km."""
    plates = irish_plates(pd.Series([plate], dtype="string"))
    year, half = int(plates["year"].iloc[0]), plates["half"].iloc[0]
    first = pd.Timestamp(year, 8 if half is not pd.NA and half == 2 else 2, 10)
    values = dict(registration=plate, year=year, first_registration_date=first, mileage=min(20_000 * (TODAY.year - year + 1), 500_000))
    return valid_vehicle(stock_id, **(values | changes))


# --- mileage plausibility ------------------------------------------------------------------------------------------------


def test_model_years_alone_give_no_false_mileage_warnings():
    """The export that raised 48 false mileage_implausible warnings: model years, no first registration, ordinary mileages."""
    vehicles = [valid_vehicle(f"S{n:03d}", first_registration_date=None, registration=None, condition="new" if n % 5 == 0 else "used", year=2014 + n % 10) for n in range(48)]
    vehicles = [dict(v, mileage=12_000 * (TODAY.year - v["year"]) + 5_000, registration="AB71CDE" if v["condition"] == "used" else None) for v in vehicles]
    result = run(*vehicles)
    assert "mileage_implausible" not in set(result.issues["rule"])
    assert len(result.accepted) == 48


def test_model_year_still_catches_an_implausible_mileage():
    result = run(valid_vehicle("S001", first_registration_date=None, year=2024, mileage=130_000))  # 2 years old: at most 120,000
    assert rules_of(result, "warning") == {"S001": ["mileage_implausible"]}
    assert "more than 40,000 miles a year" in result.issues["message"].iloc[0]


def test_age_comes_from_the_first_registration_before_the_model_year():
    today = pd.Timestamp(TODAY)
    first = pd.Series(pd.to_datetime(["2025-11-21", None, None, "2030-01-01"]))
    year = pd.Series([2010, 2020, None, 2026], dtype="Int64")
    ages = age_in_years(first, year, today).round(2).tolist()
    assert ages == [1.0, 6.0, 0.0, 0.0]  # first registration wins; model year; neither: 0; never below 0


def test_kilometre_odometers_get_the_kilometre_allowance():
    car = valid_vehicle("S001", registration="AB76CDE", first_registration_date=pd.Timestamp(TODAY), year=2026, mileage=60_000)  # 60,000 km: 37,282 miles
    assert rules_of(run(car), "warning") == {"S001": ["mileage_implausible"]}  # read as miles: more than 40,000 a year
    in_km = run(car, market=Market(distance_unit="km"))
    assert in_km.issues.empty
    over = run(dict(car, mileage=64_375), market=Market(distance_unit="km"))
    assert over.issues.set_index("rule").loc["mileage_implausible", "message"].endswith("more than 64,374 km a year")
    assert Market(country="IE").mileage_per_year == 64_374 and Market().mileage_per_year == 40_000


def test_the_mileage_bound_is_in_the_dealers_unit():
    result = run(irish_vehicle("S001", "191D5", mileage=1_200_000), market=IRELAND, rules=Validation(max_mileage=1_100_000))
    assert rules_of(result, "error") == {"S001": ["mileage_too_high"]}
    assert result.issues.set_index("rule").loc["mileage_too_high", "message"].endswith("mileage above 1,100,000 km")
    assert run(valid_vehicle("S001", mileage=1_000_001)).issues["message"].iloc[0].endswith("mileage above 1,000,000")  # GB: as it was


# --- plates --------------------------------------------------------------------------------------------------------------


def test_an_irish_dealer_with_irish_plates_gets_no_plate_errors():
    result = run(*(irish_vehicle(f"S{n:03d}", plate) for n, plate in enumerate(IRISH_PLATES)), market=IRELAND)
    assert result.issues.empty, result.issues[["stock_id", "rule", "value"]].to_string()
    assert len(result.accepted) == len(IRISH_PLATES)


def test_a_uk_dealer_still_quarantines_a_plate_that_is_not_uk():
    result = run(valid_vehicle("S001"), valid_vehicle("S002", registration="191D12345"))
    assert result.accepted["stock_id"].tolist() == ["S001"]
    issue = result.issues.set_index("rule").loc["plate_format"]
    assert issue["message"].endswith("not a UK registration (current, prefix, suffix, dateless or Q style)")


def test_an_irish_dealer_quarantines_a_uk_plate_unless_it_takes_both():
    uk_plate = valid_vehicle("S001", mileage=20_000)
    only_irish = run(uk_plate, market=IRELAND)
    assert only_irish.quarantined_rows == 1 and "not an Irish registration" in only_irish.issues["message"].iloc[0]
    both = run(uk_plate, irish_vehicle("S002", "191D12345"), market=Market(country="IE", plates=["IE", "GB"]))
    assert both.quarantined_rows == 0 and both.issues.empty


@pytest.mark.parametrize(
    "plate",
    [
        "13D1",  # 2013 onwards: three digits
        "86D1",  # before 1987
        "131T1",  # T only from 2014 (Tipperary was TN and TS)
        "141TN1",  # TN only before 2014
        "151WD1",  # WD only before 2014
        "193D1",  # the half is 1 or 2
        "191XX1",  # no such county
        "191D1234567",  # at most six digits
        "D12345",
    ],
)
def test_not_irish_plates(plate):
    result = run(valid_vehicle("S001", registration=plate, mileage=20_000), market=IRELAND)
    assert rules_of(result, "error") == {"S001": ["plate_format"]}


def test_an_irish_plate_year_against_today_the_first_registration_and_the_model_year():
    vehicles = [
        irish_vehicle("S001", "271D5", first_registration_date=None),  # 2027: after today
        irish_vehicle("S002", "221D5", first_registration_date=pd.Timestamp("2019-03-01")),  # newer than the first registration
        irish_vehicle("S003", "191D5", first_registration_date=pd.Timestamp("2019-09-01")),  # July-December is half 2
        irish_vehicle("S004", "181D5", first_registration_date=None, year=2022),  # far from the model year
        irish_vehicle("S005", "191D5", first_registration_date=None, year=2020),  # a year apart: fine
    ]
    result = run(*vehicles, market=IRELAND)
    assert rules_of(result) == {"S001": ["plate_age"], "S002": ["plate_age"], "S003": ["plate_age_mismatch"], "S004": ["plate_age_mismatch"]}
    assert result.accepted["stock_id"].tolist() == ["S003", "S004", "S005"]


def test_uk_age_identifier_rules_run_for_uk_plates_only():
    both = Market(country="IE", plates=["IE", "GB"])
    result = run(valid_vehicle("S001", registration="AB72CDE", mileage=20_000), irish_vehicle("S002", "221D5"), market=both)
    assert rules_of(result) == {"S001": ["plate_age"]}


# hypothesis: every real Irish plate, written with or without its hyphens, is read with its year
YEARS = st.integers(1987, 2026)


@st.composite
def irish_plate(draw) -> tuple[str, int, int | None]:
    year = draw(YEARS)
    half = draw(st.sampled_from([1, 2])) if year >= 2013 else None
    counties = COUNTIES_BEFORE_2014 if year < 2014 else COUNTIES_SINCE_2014
    county = draw(st.sampled_from(counties))
    number = str(draw(st.integers(1, 999_999)))
    year_part = f"{year % 100:02d}{half}" if half else f"{year % 100:02d}"
    separator = draw(st.sampled_from(["", "-"]))
    return f"{year_part}{separator}{county}{separator}{number}", year, half


@settings(max_examples=300, deadline=None)
@given(st.lists(irish_plate(), min_size=1, max_size=20))
def test_every_irish_plate_is_read_with_its_year_and_half(plates):
    registration = pd.Series([plate for plate, _, _ in plates], dtype="string")
    read = irish_plates(registration)
    assert read["valid"].all()
    assert read["year"].tolist() == [year for _, year, _ in plates]
    assert [None if pd.isna(h) else int(h) for h in read["half"]] == [half for _, _, half in plates]
    assert plate_style(registration, ("IE",)).eq("irish").all()
    assert plate_style(registration).isna().all()  # none of them is a UK plate


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ABCDEGHKLMNOPQRSTWXYZ0123456789-", min_size=1, max_size=10), min_size=1, max_size=30))
def test_the_uk_market_reads_plates_as_it_always_did(texts):
    """By default (and for a GB market) a plate is refused exactly when it is none of the five UK styles, with the same message."""
    frame = pd.DataFrame([valid_vehicle(f"S{n:03d}", registration=text) for n, text in enumerate(texts)])
    frame["source_row"] = range(1, len(frame) + 1)
    rows = coerce_to_schema(frame)
    not_uk = {f"S{n:03d}" for n, text in enumerate(texts) if not any(re.fullmatch(pattern, text) for pattern in PLATE_STYLES.values())}
    for market in (None, Market(country="GB", currency="GBP", distance_unit="miles", plates=["GB"])):
        issues = validate_stock(rows, "x.csv", Validation(), TODAY, market=market).issues
        refused = issues[issues["rule"] == "plate_format"]
        assert set(refused["stock_id"]) == not_uk
        assert all(message.endswith("registration: not a UK registration (current, prefix, suffix, dateless or Q style)") for message in refused["message"])


# --- registrations -------------------------------------------------------------------------------------------------------


def test_which_vehicles_need_a_registration_is_the_dealers_choice():
    unregistered = [valid_vehicle("S001", registration=None, condition="new"), valid_vehicle("S002", registration=None, condition="used")]
    assert rules_of(run(*unregistered), "error") == {"S002": ["required"]}  # the default: used and demo cars
    assert run(*unregistered, market=Market(registration_required=[])).quarantined_rows == 0
    every = run(*unregistered, market=Market(registration_required=["new", "used", "demo"]))
    assert rules_of(every, "error") == {"S001": ["required"], "S002": ["required"]}
    assert every.issues["message"].iloc[0].endswith("a new or used or demo vehicle needs its registration")
    assert run(*unregistered).issues["message"].iloc[0].endswith("a used or demo vehicle needs its registration")


def test_irish_phone_numbers_are_removed_from_irish_adverts():
    advert = valid_vehicle("S001", registration="191D12345", year=2019, first_registration_date=pd.Timestamp("2019-02-01"), mileage=50_000, description="Call +353 87 123 4567 today")
    assert "+353" not in run(advert, market=IRELAND).accepted.loc[0, "description"]
    assert run(advert, market=IRELAND).issues["rule"].tolist() == ["personal_data"]
