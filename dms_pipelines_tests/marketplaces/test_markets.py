"""Feeds per dealer market: currency, odometer unit, vehicle URLs and address country; GBP- and miles-only marketplaces refuse others."""

import copy
import csv
import io
import json

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from dms_pipelines.config import Address, Market, VehicleUrls, parse_settings
from dms_pipelines.marketplaces import google, meta, website
from dms_pipelines.marketplaces.base import render_for, vehicle_urls
from dms_pipelines.marketplaces.feed_profile import FOLDER, FeedProfileError, load_feed_profile
from dms_pipelines.marketplaces.registry import SPECS, published_specs
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines_tests.support import GOLDEN, feed_vehicle, file_bytes, fixed_dealer, fixed_stock, problems_of

NEW_CARS = "{website}/new-cars/{make}/{model}/{stock_id_lower}"


def irish_dealer():
    """The fixed dealer moved to Dublin: an Irish market (EUR, km) and its own page for new cars."""
    return fixed_dealer().model_copy(
        update={
            "id": "dublin",
            "address": Address(street="12 Naas Road", city="Dublin", region="Co. Dublin", postcode="D12 X285", country="IE"),
            "market": Market(country="IE"),
            "urls": VehicleUrls(new=NEW_CARS),
        }
    )


def irish_stock() -> pd.DataFrame:
    return coerce_to_schema(
        pd.DataFrame(
            [
                feed_vehicle("D0001", registration="191D12345", mileage=38_000, price=15999.0),
                feed_vehicle("D0002", condition="new", registration=None, mileage=None, make="Land Rover", model="Range Rover Évoque", price=52_950.5),
                feed_vehicle("D0003", condition="demo", registration="251D7", mileage=4_000),
            ]
        )
    )


def csv_rows(data: bytes) -> dict[str, dict]:
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    return {row.get("id") or row.get("vehicle_id"): row for row in rows}


def rendered(name: str, dealer, stock):
    return render_for(SPECS[name], stock, dealer, dealer.marketplaces[name])


def test_an_irish_dealers_google_rows_carry_euros_kilometres_and_the_new_car_page():
    dealer = irish_dealer()
    rows = csv_rows(google.serialise(rendered("google", dealer, irish_stock()).items))
    assert rows["D0001"]["price"] == "15999.00 EUR" and rows["D0001"]["mileage"] == "38000 km"
    assert rows["D0002"]["price"] == "52950.50 EUR" and rows["D0002"]["mileage"] == "0 km"  # a new car without a reading
    assert rows["D0002"]["link"] == "https://www.airevalleymotors.example/leeds/new-cars/land-rover/range-rover-evoque/d0002"
    assert rows["D0003"]["link"] == "https://www.airevalleymotors.example/leeds/used-cars/d0003"  # demo cars: the used page
    assert rows["D0001"]["dealership_address"] == "12 Naas Road, Dublin, Co. Dublin, D12 X285, Ireland"


def test_an_irish_dealers_meta_rows_carry_euros_kilometres_and_the_new_car_page():
    dealer = irish_dealer()
    stock = irish_stock()
    stock.loc[stock["stock_id"] == "D0002", "mileage"] = 5  # Meta needs a reading, new cars too
    result = rendered("meta", dealer, stock)
    assert result.held.empty
    rows = csv_rows(meta.serialise(result.items, "csv"))
    assert {row["price"] for row in rows.values()} == {"15999 EUR", "52950 EUR", "12995 EUR"}
    assert {row["mileage.unit"] for row in rows.values()} == {"KM"} and rows["D0001"]["mileage.value"] == "38000"
    assert rows["D0002"]["url"].endswith("/new-cars/land-rover/range-rover-evoque/d0002") and rows["D0001"]["url"].endswith("/used-cars/d0001")
    assert {row["address.country"] for row in rows.values()} == {"IE"}
    root = etree.fromstring(meta.serialise(result.items, "xml"), etree.XMLParser(resolve_entities=False, no_network=True))
    assert {unit.text for unit in root.iter("unit")} == {"KM"}


def test_meta_holds_back_an_unpriced_car_in_any_currency():
    dealer = irish_dealer()
    result = rendered("meta", dealer, coerce_to_schema(pd.DataFrame([feed_vehicle("D0001", registration="191D1", price=0.0)])))
    assert result.held["reasons"].tolist() == ["price must be above 0"]


def test_an_irish_dealers_website_names_its_currency_and_unit():
    dealer = irish_dealer()
    document = json.loads(website.serialise(rendered("website", dealer, irish_stock()).items, dealer))
    vehicles = {vehicle["stock_id"]: vehicle for vehicle in document["vehicles"]}
    used = vehicles["D0001"]
    assert used["price_eur"] == 15999.0 and used["mileage_km"] == 38000
    assert not {"price_gbp", "previous_price_gbp", "price_reduced_gbp", "mileage"} & set(used)
    assert {"previous_price_eur", "price_reduced_eur"} <= set(used)
    assert vehicles["D0002"]["url"].endswith("/new-cars/land-rover/range-rover-evoque/d0002")
    assert document["dealer"]["address"]["country"] == "IE"
    gb = json.loads((GOLDEN / "website.json").read_bytes())["vehicles"][0]
    assert "price_gbp" in gb and "mileage" in gb and "price_eur" not in gb  # a UK dealer's document as it always was


def test_the_uk_goldens_do_not_change_when_the_uk_market_and_urls_are_spelt_out():
    dealer = fixed_dealer().model_copy(update={"market": Market(country="GB", currency="GBP", distance_unit="miles", plates=["GB"]), "urls": VehicleUrls(used="{website}/used-cars/{stock_id_lower}")})
    stock = fixed_stock()
    built = {
        "google.csv": google.serialise(rendered("google", dealer, stock).items),
        "website.json": website.serialise(rendered("website", dealer, stock).items, dealer),
        "meta.csv": meta.serialise(rendered("meta", dealer, stock).items, "csv"),
        "meta.xml": meta.serialise(rendered("meta", dealer, stock).items, "xml"),
        "carsnip_vehicles.csv": file_bytes("carsnip", "_vehicles.csv", rendered("carsnip", dealer, stock).items, dealer),
        "carsnip_dealer.csv": file_bytes("carsnip", "_dealer.csv", rendered("carsnip", dealer, stock).items, dealer),
    }
    for name, content in built.items():
        assert content == (GOLDEN / name).read_bytes(), name


def test_carsnip_links_to_the_dealers_pages():
    dealer = fixed_dealer().model_copy(update={"urls": VehicleUrls(used="{website}/stock/{stock_id}", new=NEW_CARS)})
    stock = coerce_to_schema(pd.DataFrame([feed_vehicle("A0001"), feed_vehicle("A0002", condition="new")]))
    rows = list(csv.DictReader(io.StringIO(file_bytes("carsnip", "_vehicles.csv", rendered("carsnip", dealer, stock).items, dealer).decode("utf-8"))))
    assert [row["Vehicle_URL"] for row in rows] == [
        "https://www.airevalleymotors.example/leeds/stock/A0001",
        "https://www.airevalleymotors.example/leeds/new-cars/ford/fiesta/a0002",
    ]


# hypothesis: the vectorised URLs are the dealer's own, vehicle by vehicle
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["new", "used", "demo"]), st.text(alphabet="ABCdef0123-_", min_size=1, max_size=8), TEXT, TEXT), min_size=1, max_size=25),
    st.sampled_from(["{website}/used-cars/{stock_id_lower}", "{website}/{make}/{model}/{stock_id}", "https://cars.example/{dealer_id}/{stock_id}"]),
    st.sampled_from([None, NEW_CARS, "{website}/new/{stock_id}-{model}"]),
)
def test_vehicle_urls_are_each_vehicles_own(cars, used, new):
    dealer = fixed_dealer().model_copy(update={"urls": VehicleUrls(used=used, new=new)})
    frame = pd.DataFrame(cars, columns=["condition", "stock_id", "make", "model"]).astype("string")
    urls = vehicle_urls(dealer, frame)
    assert urls.tolist() == [dealer.vehicle_url(condition, stock_id, make, model) for condition, stock_id, make, model in cars]
    assert all(" " not in url for url in urls)


# --- marketplaces that take only GBP and miles --------------------------------------------------------------------------


def test_a_euro_dealer_on_a_marketplace_that_takes_pounds_only_is_refused(raw):
    raw["dealers"][0]["market"] = {"country": "IE"}  # leeds has Auto Trader and Carsnip accounts
    message = problems_of(raw)
    assert "dealers[0].marketplaces.autotrader: autotrader takes prices in GBP only, and dealer leeds sells in EUR (market.currency)" in message
    assert "dealers[0].marketplaces.carsnip: carsnip takes prices in GBP only, and dealer leeds sells in EUR (market.currency)" in message
    assert "dealers[0].marketplaces.autotrader: autotrader takes mileage in miles only, and dealer leeds's odometers are in km" in message
    assert "marketplaces.google" not in message and "marketplaces.meta" not in message and "marketplaces.website" not in message


def test_a_euro_dealer_on_marketplaces_that_take_any_currency_is_accepted(raw):
    raw["dealers"][1]["market"] = {"country": "IE"}  # york: Google, website and Meta
    assert [spec.name for spec in published_specs(parse_settings(raw, "test.yaml"))] == [name for name in SPECS if name in raw["marketplaces"]]
    raw["dealers"][2]["market"] = {"distance_unit": "km"}  # sheffield, in pounds but kilometres, has Auto Trader and Carsnip
    message = problems_of(raw)
    assert "dealers[2].marketplaces.carsnip: carsnip takes mileage in miles only" in message and "takes prices" not in message


def test_what_each_marketplace_takes_is_declared():
    assert (SPECS["autotrader"].currencies, SPECS["autotrader"].distance_units) == (("GBP",), ("miles",))
    assert (SPECS["carsnip"].currencies, SPECS["carsnip"].distance_units) == (("GBP",), ("miles",))
    assert all(SPECS[name].currencies is None and SPECS[name].distance_units is None for name in ("google", "meta", "website"))


# --- feed profiles: currencies, units, the vehicle URL and the market as dealer attributes --------------------------------


def profile_with(tmp_path, **changes):
    raw = yaml.safe_load((FOLDER / "carsnip.yaml").read_text(encoding="utf-8"))
    raw = copy.deepcopy(raw) | {"name": "carsnip_ie"} | changes
    path = tmp_path / "carsnip_ie.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_a_feed_profile_declares_its_currencies_and_units(tmp_path):
    spec = load_feed_profile(profile_with(tmp_path, currencies=["EUR", "GBP"], distance_units=["km"]))
    assert (spec.currencies, spec.distance_units) == (("EUR", "GBP"), ("km",))
    raw = yaml.safe_load((FOLDER / "carsnip.yaml").read_text(encoding="utf-8"))
    del raw["currencies"], raw["distance_units"]
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(raw | {"name": "plain"}), encoding="utf-8")
    assert (load_feed_profile(path).currencies, load_feed_profile(path).distance_units) == (("GBP",), ("miles",))  # unsaid: a UK feed


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"currencies": ["GPB"]}, "currencies: unknown 'GPB' (did you mean GBP?); known: GBP, EUR"),
        ({"currencies": []}, "currencies: lists none"),
        ({"distance_units": ["kms"]}, "distance_units: unknown 'kms' (did you mean km?); known: miles, km"),
        ({"currency": ["GBP"]}, "currency: unknown key (did you mean currencies?)"),
    ],
)
def test_a_feed_profiles_currency_mistakes_are_named(tmp_path, changes, expected):
    with pytest.raises(FeedProfileError) as caught:
        load_feed_profile(profile_with(tmp_path, **changes))
    assert expected in str(caught.value)


def test_the_vehicle_url_is_for_vehicle_files_only(tmp_path):
    raw = yaml.safe_load((FOLDER / "carsnip.yaml").read_text(encoding="utf-8"))
    raw["dealer_file"]["columns"][-1] = {"column": "WebsiteURL", "template": "{vehicle_url}"}
    path = profile_with(tmp_path, dealer_file=raw["dealer_file"])
    with pytest.raises(FeedProfileError, match=r"dealer_file.columns\[10\] \(WebsiteURL\).template: \{vehicle_url\}: a dealer file has no vehicles"):
        load_feed_profile(path)


def test_a_feed_profile_can_write_the_dealers_currency_and_unit(tmp_path):
    raw = yaml.safe_load((FOLDER / "carsnip.yaml").read_text(encoding="utf-8"))
    columns = raw["columns"] + [{"column": "Currency", "dealer": "market.currency"}, {"column": "Odometer", "template": "{mileage} {market.distance_unit}"}]
    spec = load_feed_profile(profile_with(tmp_path, columns=columns, currencies=["EUR"], distance_units=["km"]))
    dealer = irish_dealer()
    items = render_for(spec, irish_stock(), dealer, dealer.marketplaces["carsnip"]).items
    assert set(items["Currency"]) == {"EUR"} and items.set_index("Vehicle_Id").loc["D0001", "Odometer"] == "38000 km"
