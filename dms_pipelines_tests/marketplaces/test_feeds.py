"""Each marketplace's feed on a fixed stock: golden files, read back with standard parsers, rules, enums, privacy, status."""

import csv
import io
import json
import os

import pytest
from lxml import etree

from dms_pipelines.marketplaces import autotrader, google, meta, website
from dms_pipelines.marketplaces.base import render_for
from dms_pipelines.marketplaces.registry import SPECS
from dms_pipelines_tests.support import GOLDEN, PRIVATE_MARKERS, file_bytes, fixed_dealer, fixed_stock

# Carsnip reads its files by column position: the order its spec lists them in (help.carsnip.com, "How to format your stock feed")
CARSNIP_VEHICLE_COLUMNS = [
    "Feed_Id",
    "Vehicle_Id",
    "Cap_Id",
    "Make",
    "Model",
    "Variant",
    "Year",
    "Price",
    "FullRegistration",
    "Mileage",
    "PictureRefs",
    "Vehicle_URL",
    "Colour",
    "FuelType",
    "BodyType",
    "Doors",
    "EngineSize",
]
CARSNIP_DEALER_COLUMNS = ["Dealer_Id", "DealerName", "Postcode", "BuildingName", "BuildingNumber", "StreetName", "Locality", "Town", "Phone", "EmailAddress", "WebsiteURL"]


def rendered(name: str):
    dealer = fixed_dealer()
    return render_for(SPECS[name], fixed_stock(), dealer, dealer.marketplaces[name])


def outputs() -> dict[str, bytes]:
    dealer = fixed_dealer()
    return {
        "google.csv": google.serialise(rendered("google").items),
        "website.json": website.serialise(rendered("website").items, dealer),
        "meta.csv": meta.serialise(rendered("meta").items, "csv"),
        "meta.xml": meta.serialise(rendered("meta").items, "xml"),
        "carsnip_dealer.csv": file_bytes("carsnip", "_dealer.csv", rendered("carsnip").items, dealer),
        "carsnip_vehicles.csv": file_bytes("carsnip", "_vehicles.csv", rendered("carsnip").items, dealer),
        "autotrader.jsonl": autotrader.serialise(rendered("autotrader").items),
    }


@pytest.mark.parametrize("name", sorted(outputs()))
def test_golden_files(name):
    produced = outputs()[name]
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_bytes(produced)
    assert produced == golden.read_bytes(), f"{name} changed; if intended, run with UPDATE_GOLDEN=1 and review the diff"


@pytest.mark.parametrize("name", sorted(outputs()))
def test_nothing_private_leaves(name):
    text = outputs()[name].decode("utf-8")
    for marker in PRIVATE_MARKERS:
        assert marker not in text


def csv_rows(data: bytes, delimiter=",") -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter))


@pytest.mark.parametrize("name", ["google.csv", "meta.csv", "carsnip_vehicles.csv", "carsnip_dealer.csv"])
def test_no_cell_starts_a_formula(name):
    for row in csv.reader(io.StringIO(outputs()[name].decode("utf-8"), newline="")):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_google_rows_meet_the_spec():
    rows = csv_rows(outputs()["google.csv"])
    assert list(rows[0]) == google.COLUMNS
    ids = [r["id"] for r in rows]
    assert "A0003" not in ids and "A0002" not in ids  # sold removed; reserved follows list_reserved: false
    for row in rows:
        for field in SPECS["google"].required:
            assert row[field], (row["id"], field)
        assert row["price"].endswith(" GBP") and row["mileage"].endswith(" miles") and row["condition"] in ("new", "used")
    assert len(set(r["vin"] for r in rows)) == len(rows)


def test_meta_enums_pending_and_description_limit():
    rows = {r["vehicle_id"]: r for r in csv_rows(outputs()["meta.csv"])}
    assert rows["A0002"]["availability"] == "PENDING" and rows["A0001"]["availability"] == "AVAILABLE"
    assert "A0003" not in rows and "A0007" not in rows  # sold removed; a 15-character VIN is held back from Meta only
    for row in rows.values():
        assert row["body_style"] in meta.BODY_STYLES.values() and row["fuel_type"] in meta.FUEL_TYPES.values()
        assert row["state_of_vehicle"] in ("NEW", "USED", "CPO") and row["mileage.unit"] == "MILES"
        assert row["price"].endswith(" GBP") and row["image[0].url"].startswith("https://")
        assert len(row["description"]) <= 5000
    long = rows["A0006"]["description"]
    assert long.endswith("…") and not long[:-1].endswith(" ") and long[:-1].split(" ")[-1] in ("Long", "words", "here")
    assert rows["A0005"]["description"] == "Great car with FSH"
    held = rendered("meta").held
    assert held["stock_id"].tolist() == ["A0007"] and "vin must be exactly 17" in held["reasons"].iloc[0]
    root = etree.fromstring(outputs()["meta.xml"], etree.XMLParser(resolve_entities=False, no_network=True))
    listings = root.findall("listing")
    assert len(listings) == len(rows)
    assert all(item.find("address/component[@name='city']").text == "Leeds" and item.find("image/url") is not None for item in listings)


def test_the_bad_vin_still_reaches_the_others():
    assert "A0007" in [r["id"] for r in csv_rows(outputs()["google.csv"])]
    assert "A0007" in [r["Vehicle_Id"] for r in csv_rows(outputs()["carsnip_vehicles.csv"])]


def test_carsnip_files_in_column_order():
    vehicles = csv_rows(outputs()["carsnip_vehicles.csv"])
    assert list(vehicles[0]) == CARSNIP_VEHICLE_COLUMNS
    assert "A0002" in [v["Vehicle_Id"] for v in vehicles] and "A0003" not in [v["Vehicle_Id"] for v in vehicles]
    assert all(v["Feed_Id"] == "CS-LEEDS" and v["Price"].isdigit() and len(v["PictureRefs"].split(",")) >= 2 for v in vehicles)
    dealer = csv_rows(outputs()["carsnip_dealer.csv"])
    assert list(dealer[0]) == CARSNIP_DEALER_COLUMNS and dealer[0]["Postcode"] == "LS3 1JL" and dealer[0]["BuildingNumber"] == "120"


def test_autotrader_payloads():
    payloads = {p["metadata"]["externalStockReference"]: p for p in map(json.loads, outputs()["autotrader.jsonl"].decode().splitlines())}
    assert payloads["A0002"]["metadata"]["lifecycleState"] == "SALE_IN_PROGRESS"
    assert payloads["A0003"]["metadata"]["lifecycleState"] == "SOLD"
    assert payloads["A0003"]["adverts"]["retailAdverts"]["autotraderAdvert"]["status"] == "NOT_PUBLISHED"
    assert payloads["A0001"]["adverts"]["retailAdverts"]["suppliedPrice"]["amountGBP"] == 12995
    assert payloads["A0001"]["vehicle"]["vehicleType"] == "Car" and payloads["A0002"]["vehicle"]["fuelType"] == "Petrol Hybrid"
    assert len(payloads["A0001"]["adverts"]["retailAdverts"]["attentionGrabber"]) <= 30
    items = {r["external_reference"]: autotrader.item_dict(r) for r in rendered("autotrader").items.to_dict(orient="records")}
    old = items["A0001"]
    cheaper = dict(old, amount_gbp=12495)
    assert autotrader.patch_payload(old, cheaper) == {"adverts": {"retailAdverts": {"suppliedPrice": {"amountGBP": 12495}}}}
    more_images = dict(old, images=old["images"] + ["https://img.example/9.jpg"])
    assert autotrader.patch_payload(old, more_images)["media"]["images"][-1] == {"href": "https://img.example/9.jpg"}
    assert len(autotrader.patch_payload(old, more_images)["media"]["images"]) == 9
    sold = dict(old, lifecycle_state="SOLD", advert_status="NOT_PUBLISHED")
    assert autotrader.patch_payload(old, sold) == {"metadata": {"lifecycleState": "SOLD"}, "adverts": {"retailAdverts": {"autotraderAdvert": {"status": "NOT_PUBLISHED"}}}}


def test_completeness_scores():
    for name in ("google", "meta", "carsnip", "website", "autotrader"):
        scores = rendered(name).completeness.set_index("stock_id")["completeness"]
        assert scores.between(0, 1).all(), name
        if "A0008" in scores and "A0001" in scores:
            assert scores["A0008"] < scores["A0001"], name  # two images instead of eight
