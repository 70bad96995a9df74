"""An attribute-per-field XML layout with two namespaces, read by a profile that uses transforms, a skip rule and ignored names."""

import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from dms_pipelines.config import Validation
from dms_pipelines.formats.profile import load_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.stock.schema import PRIVATE_COLUMNS
from dms_pipelines.stock.validate import validate_stock

DATA = Path(__file__).parent / "data"
EXPORT = DATA / "foreign_attr_inventory.xml"
PROFILE = load_profile(DATA / "foreign_attr_xml.yaml")
COMPANY = ["HX1005", "HX1012", "HX1019", "HX1028"]


@pytest.fixture(scope="module")
def result():
    return read_export(EXPORT, PROFILE, "leeds")


def attributes() -> list[dict[str, str]]:
    """Every vehicle's attributes, read with a plain regular expression: the expectations do not come from the engine."""
    return [dict(re.findall(r'(\w+)="([^"]*)"', match)) for match in re.findall(r"<inv:Vehicle ([^>]*)>", EXPORT.read_text(encoding="utf-8"))]


def test_every_retail_vehicle_is_a_row_and_company_cars_are_skipped(result):
    vehicles = attributes()
    retail = [v["StockNo"] for v in vehicles if v["Usage"] == "Retail"]
    assert len(vehicles) == 30 and [v["StockNo"] for v in vehicles if v["Usage"] == "Company"] == COMPANY
    assert result.rows["stock_id"].tolist() == retail
    assert result.skipped == {"company vehicle, not for sale": 4}
    assert (result.records_total, result.records_in_file) == (26, 30)
    # a skipped record keeps its number: the rows keep the numbers of their records in the file
    assert result.rows["source_row"].tolist() == [n for n, v in enumerate(vehicles, start=1) if v["Usage"] == "Retail"]


def test_the_profile_itself_raises_no_issue_and_reports_no_drift(result):
    assert result.issues.empty, result.issues.to_dict(orient="records")
    assert result.warnings == [] and result.unread_sources == []
    assert result.unmapped.keys() <= {"make", "model"}  # kept as read on purpose (unmapped: keep); no code is unknown


def test_canonical_values_of_one_hybrid(result):
    civic = result.rows.set_index("stock_id").loc["HX1002"]
    assert (civic["make"], civic["model"], civic["derivative"], civic["trim"]) == ("Honda", "Civic", "2.0 eHEV Sport 5dr", "Sport")
    assert (civic["fuel_type"], civic["engine_size_cc"], civic["transmission"], civic["body_type"]) == ("hybrid", 2000, "automatic", "hatchback")
    assert civic["mileage"] == 11433  # 18,400 km
    assert civic["colour"] == "Platinum White Pearl"  # Colour is empty: the manufacturer's paint name is next
    assert (civic["registration"], civic["year"], civic["price"], civic["vat_status"]) == ("YA22FTX", 2022, 24950, "marginal")
    assert pd.isna(civic["first_registration_date"]) and civic["date_in_stock"] == pd.Timestamp("2026-10-11")
    assert civic["features"] == "Honda SENSING|Apple CarPlay, Android Auto|Heated front seats"
    assert civic["image_urls"] == "https://img.example-dms.test/hx1002/1.jpg|https://img.example-dms.test/hx1002/2.jpg"
    assert civic["description"].startswith("Honda Civic 2.0 eHEV Sport 5dr") and civic["vehicle_type"] == "car"


def test_every_row_follows_its_attributes(result):
    by_stock = {v["StockNo"]: v for v in attributes()}
    fuels = {"HEV": "hybrid", "PHEV": "plugin_hybrid", "P": "petrol", "D": "diesel", "BEV": "electric"}
    for row in result.rows.to_dict(orient="records"):
        source = by_stock[row["stock_id"]]
        assert row["fuel_type"] == fuels[source["EngineCode"]]
        assert row["engine_size_cc"] == round(float(source["Engine"].removesuffix("L")) * 1000)
        assert abs(row["mileage"] - int(source["Odometer"]) / 1.609344) <= 0.5
        assert row["make"] == {"HONDA": "Honda", "TOYOTA": "Toyota", "BMW": "BMW", "MERCEDES-BENZ": "Mercedes-Benz"}[source["Make"]]
        assert row["colour"] == (source["Colour"].title() or source["ManufacturerColour"])
        assert row["private_cost_price"] == float(source["CostPrice"])  # read, and private
        assert pd.isna(row["price"]) == (source["Currency"] != "GBP")


def test_models_keep_the_capitals_title_case_would_lose(result):
    models = dict(zip(result.rows["stock_id"], result.rows["model"]))
    read = {v["Model"]: models[v["StockNo"]] for v in attributes() if v["StockNo"] in models}
    assert {name: read[name] for name in ("HR-V", "CR-V", "ZR-V", "C-HR", "E:NY1", "E")} == {"HR-V": "HR-V", "CR-V": "CR-V", "ZR-V": "ZR-V", "C-HR": "C-HR", "E:NY1": "e:Ny1", "E": "e"}
    assert (read["CIVIC"], read["3 SERIES"], read["A-CLASS"]) == ("Civic", "3 Series", "A-Class")  # not in the map: kept, title-cased


def test_cost_fields_are_private_fields(result):
    assert {"private_cost_price", "private_prep_cost"} <= set(PRIVATE_COLUMNS)
    assert result.rows["private_cost_price"].notna().all()


def test_a_price_in_another_currency_is_quarantined_by_the_row_rules(result):
    [euro] = [v["StockNo"] for v in attributes() if v["Currency"] != "GBP"]
    checked = validate_stock(result.rows, EXPORT.name, Validation(min_images=0), date(2026, 11, 21))
    assert set(result.rows["stock_id"]) - set(checked.accepted["stock_id"]) == {euro}
    errors = checked.issues[(checked.issues["severity"] == "error") & (checked.issues["stock_id"] == euro)]
    assert "price" in set(errors["field"])
