"""Carsnip (DMS14 style): a dealer file and a vehicle file, read by column position, full snapshot per dealer."""

from typing import Iterator

import pandas as pd

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.kernels.arrow_text import arrow_strings, byte_counts
from dms_pipelines.marketplaces.base import (
    KEY, SLICE_ROWS, MarketplaceSpec, clean_text, list_joined, list_parts, listable, map_text, to_delimited,
)
from dms_pipelines.marketplaces import read_back
from dms_pipelines.marketplaces.row_files import delimited, whole

DEALER_COLUMNS = ["Dealer_Id", "DealerName", "Postcode", "BuildingName", "BuildingNumber", "StreetName", "Locality", "Town", "Phone", "EmailAddress", "WebsiteURL"]
VEHICLE_COLUMNS = ["Feed_Id", "Vehicle_Id", "Cap_Id", "Make", "Model", "Variant", "Year", "Price", "FullRegistration", "Mileage", "PictureRefs", "Vehicle_URL", "Colour", "FuelType", "BodyType", "Doors", "EngineSize"]
FUEL = {"petrol": "Petrol", "diesel": "Diesel", "electric": "Electric", "hybrid": "Hybrid", "plugin_hybrid": "Plug-in Hybrid", "other": "Other"}
BODY = {"hatchback": "Hatchback", "saloon": "Saloon", "estate": "Estate", "suv": "SUV", "coupe": "Coupe", "convertible": "Convertible", "mpv": "MPV", "pickup": "Pickup", "van": "Van", "other": "Other"}


def feed_id(dealer: Dealer, account: DealerMarketplace) -> str:
    return account.setting("feed_id") or dealer.id


def render(stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.DataFrame:
    cars = stock.loc[listable(stock, account, pending_supported=False)].reset_index(drop=True)
    images = list_parts(cars["image_urls"])
    return pd.DataFrame(
        {
            KEY: cars["stock_id"],
            "Feed_Id": feed_id(dealer, account),
            "Vehicle_Id": cars["stock_id"],
            "Cap_Id": pd.Series(pd.NA, index=cars.index, dtype="string"),  # we hold no CAP codes; Carsnip matches on registration
            "Make": clean_text(cars["make"]), "Model": clean_text(cars["model"]), "Variant": clean_text(cars["derivative"]),
            "Year": cars["first_registration_date"].dt.year.astype("Int64").fillna(cars["year"]).astype("string"),
            "Price": cars["price"].round().astype("Int64").astype("string"),
            "FullRegistration": cars["registration"],
            "Mileage": cars["mileage"].astype("Int64").astype("string"),
            "PictureRefs": list_joined(images, ",", cars.index).replace("", pd.NA),
            "Vehicle_URL": dealer.website.rstrip("/") + "/used-cars/" + cars["stock_id"].str.lower(),
            "Colour": clean_text(cars["colour"]), "FuelType": map_text(cars["fuel_type"], FUEL),
            "BodyType": map_text(cars["body_type"], BODY), "Doors": cars["doors"].astype("Int64").astype("string"),
            "EngineSize": cars["engine_size_cc"].astype("Int64").astype("string"),
        }
    )


def _image_count(picture_refs: pd.Series) -> pd.Series:
    """Comma-separated picture references per vehicle."""
    commas = byte_counts(arrow_strings(picture_refs), ord(","))
    return pd.Series(commas, index=picture_refs.index) + picture_refs.notna().astype(int)


SPEC = MarketplaceSpec(
    read_back=lambda name, content: read_back.delimited(content, ",", ("Vehicle_Id",)) if name.endswith("_vehicles.csv") else None,  # the dealer file: compared whole
    name="carsnip",
    mode="snapshot",
    render=render,
    required=("Feed_Id", "Vehicle_Id", "Make", "Model", "Variant", "Year", "Price", "FullRegistration", "Mileage", "PictureRefs", "Vehicle_URL"),
    recommended=("Cap_Id", "Colour", "FuelType", "BodyType", "Doors", "EngineSize"),
    min_images=6,
    image_count=lambda items: _image_count(items["PictureRefs"]),
)


def dealer_row(dealer: Dealer, account: DealerMarketplace) -> dict:
    number, _, street = dealer.address.street.partition(" ")
    has_number = number[:1].isdigit()
    return {
        "Dealer_Id": feed_id(dealer, account), "DealerName": dealer.name, "Postcode": dealer.address.postcode,
        "BuildingName": "", "BuildingNumber": number if has_number else "", "StreetName": street if has_number else dealer.address.street,
        "Locality": dealer.address.region or "", "Town": dealer.address.city, "Phone": dealer.phone, "EmailAddress": "",
        "WebsiteURL": dealer.website,
    }


def serialise_dealer(dealer: Dealer, account: DealerMarketplace) -> bytes:
    return to_delimited(pd.DataFrame([dealer_row(dealer, account)]), DEALER_COLUMNS)


def serialise_vehicles(items: pd.DataFrame) -> bytes:
    return b"".join(serialise_vehicle_parts(items))


def serialise_vehicle_parts(items: pd.DataFrame, part_rows: int = SLICE_ROWS) -> Iterator[bytes]:
    """The vehicles file, ordered by Vehicle_Id, a slice of rows at a time."""
    return iter(whole(VEHICLE_FILE, items, part_rows))


VEHICLE_FILE = delimited(("Vehicle_Id",), lambda items, width: VEHICLE_COLUMNS)
