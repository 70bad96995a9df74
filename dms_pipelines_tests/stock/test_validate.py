"""Row rules: each error quarantines only its row with a reason; warnings let the row through and are recorded."""

from datetime import date

import pandas as pd
import pytest

from dms_pipelines.config import Validation
from dms_pipelines.stock.guards import delisting_guard
from dms_pipelines.stock.merge import apply_delta, apply_full
from dms_pipelines.stock.plates import age_identifier_for, plate_style
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines.stock.validate import validate_stock
from dms_pipelines_tests.support import valid_vehicle

TODAY = date(2026, 11, 21)


def run(*vehicles: dict, rules: Validation | None = None, reference: pd.DataFrame | None = None):
    frame = pd.DataFrame(list(vehicles))
    frame["source_row"] = range(1, len(frame) + 1)
    return validate_stock(coerce_to_schema(frame), "stock_full_x.csv", rules or Validation(), TODAY, price_reference=reference)


def rules_by_stock(result, severity: str) -> dict:
    chosen = result.issues[result.issues["severity"] == severity]
    return {s: sorted(g["rule"]) for s, g in chosen.groupby("stock_id")}


def test_clean_rows_pass_and_terms_are_normalised():
    result = run(valid_vehicle("S001"), valid_vehicle("S002"))
    assert result.quarantined_rows == 0 and result.issues.empty
    assert result.accepted.loc[0, "description"] == "Clean car, Full service history"
    assert result.accepted.loc[0, "features"] == "Air conditioning|Satellite navigation"


@pytest.mark.parametrize(
    "changes, rule",
    [
        ({"price": None}, "required"),
        ({"make": None}, "required"),
        ({"price": 99999.0}, "placeholder_price"),
        ({"price": 0.0}, "price_not_positive"),
        ({"price": 99999999.0}, "price_too_high"),
        ({"price": 2000000.01}, "price_too_high"),
        ({"mileage": 1000001}, "mileage_too_high"),
        ({"registration": "ABC12345"}, "plate_format"),
        ({"registration": "AB72CDE"}, "plate_age"),
        ({"year": 1850}, "year_range"),
        ({"year": 2031}, "year_range"),
        ({"vin": "WF0XXXGCDXKA1234O"}, "vin_format"),
        ({"mileage": -5}, "mileage_negative"),
        ({"status": "on_order"}, "allowed_values"),
        ({"first_registration_date": pd.Timestamp("2027-06-01")}, "date_range"),
    ],
)
def test_each_error_quarantines_only_its_row(changes, rule):
    result = run(valid_vehicle("S001"), valid_vehicle("S002", **changes))
    assert result.accepted["stock_id"].tolist() == ["S001"]
    assert rule in rules_by_stock(result, "error")["S002"]
    message = result.issues.loc[result.issues["rule"] == rule, "message"].iloc[0]
    assert message.startswith("stock_full_x.csv: row 2: ")


def test_price_and_mileage_upper_bounds_are_configurable():
    at_the_limit = run(valid_vehicle("S001", price=2_000_000.0, mileage=1_000_000))
    assert at_the_limit.quarantined_rows == 0
    message = run(valid_vehicle("S001", price=99_999_999.0)).issues.set_index("rule").loc["price_too_high", "message"]
    assert "price above 2,000,000" in message
    unbounded = run(valid_vehicle("S001", price=99_999_999.0, mileage=5_000_000), rules=Validation(max_price=None, max_mileage=0))
    assert unbounded.quarantined_rows == 0
    assert run(valid_vehicle("S001", price=60_000.0), rules=Validation(max_price=50_000)).quarantined_rows == 1


def test_duplicate_stock_numbers_and_vins_quarantine_every_copy():
    result = run(
        valid_vehicle("S001"), valid_vehicle("S001", vin="WF0XXXGCDXKA00777"), valid_vehicle("S003", vin="WF0XXXGCDXKA00009"), valid_vehicle("S004", vin="WF0XXXGCDXKA00009"), valid_vehicle("S005")
    )
    assert result.accepted["stock_id"].tolist() == ["S005"]
    errors = rules_by_stock(result, "error")
    assert errors["S001"] == ["duplicate_stock_id", "duplicate_stock_id"]
    assert errors["S003"] == ["duplicate_vin"] and errors["S004"] == ["duplicate_vin"]


def test_warnings_let_the_row_through():
    odd = valid_vehicle(
        "S002",
        registration="AB51CDE",
        mileage=900_000,
        image_urls="https://i.example/1.jpg|not a url",
        description="Ring Dave on 07700 900123 or dave@example.com",
    )
    result = run(valid_vehicle("S001"), odd)
    assert result.accepted["stock_id"].tolist() == ["S001", "S002"]
    assert rules_by_stock(result, "warning")["S002"] == ["image_url", "mileage_implausible", "personal_data", "plate_age_mismatch", "too_few_images"]
    assert "07700" not in result.accepted.loc[1, "description"] and "[removed]" in result.accepted.loc[1, "description"]


def test_price_far_below_the_group_median_is_a_warning():
    peers = coerce_to_schema(pd.DataFrame([valid_vehicle(f"P{n:03d}", price=13000.0 + n * 100) for n in range(6)]))
    result = run(valid_vehicle("S001", price=1299.0), reference=peers)
    assert rules_by_stock(result, "warning") == {"S001": ["price_outlier"]}
    assert len(result.accepted) == 1


def test_plate_styles_and_age_identifiers():
    plates = pd.Series(["AB71CDE", "A123BCD", "ABC123D", "ABC123", "Q123ABC", "ABCD1234", "XX"], dtype="string")
    assert plate_style(plates).tolist() == ["current", "prefix", "suffix", "dateless", "q", pd.NA, pd.NA]
    dates = pd.Series(pd.to_datetime(["2021-10-05", "2022-03-02", "2022-02-10", "2024-08-31"]))
    assert age_identifier_for(dates).tolist() == ["71", "22", "71", "24"]


def test_full_export_replaces_and_keeps_last_good_version_of_a_quarantined_vehicle():
    previous = coerce_to_schema(pd.DataFrame([valid_vehicle("S001"), valid_vehicle("S002"), valid_vehicle("S003")]))
    accepted = coerce_to_schema(pd.DataFrame([valid_vehicle("S001", price=11995.0), valid_vehicle("S004")]))
    outcome = apply_full(previous, accepted, quarantined_ids={"S002"})
    assert outcome.stock["stock_id"].tolist() == ["S001", "S002", "S004"]
    assert (outcome.added, outcome.updated, outcome.removed, outcome.kept_last_good) == (1, 1, 1, 1)
    delta = apply_delta(outcome.stock, coerce_to_schema(pd.DataFrame([valid_vehicle("S002", status="sold"), valid_vehicle("S005")])))
    assert delta.stock.set_index("stock_id")["status"].to_dict() == {"S001": "available", "S002": "sold", "S004": "available", "S005": "available"}


def test_delisting_guard():
    assert delisting_guard(100, None, 0.7) is None
    assert delisting_guard(70, 100, 0.7) is None
    assert "fewer than 70% of the last accepted full export (100)" in delisting_guard(69, 100, 0.7)
    assert "no vehicles" in delisting_guard(0, 100, 0.7)


def test_field_reference_in_docs_matches_the_schema():
    from dms_pipelines.paths import PROJECT_ROOT
    from dms_pipelines.stock.schema_docs import canonical_vehicle_markdown

    committed = (PROJECT_ROOT / "docs" / "canonical-vehicle.md").read_text(encoding="utf-8")
    assert committed == canonical_vehicle_markdown(), "run `dms-pipelines schema-docs` and commit docs/canonical-vehicle.md"
