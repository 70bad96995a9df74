"""Meta automotive catalog: a flattened CSV/TSV (or XML) feed per dealer with Meta's enumerations; reserved shows as PENDING."""

from typing import Iterator

import numpy as np
import pandas as pd
from lxml import etree

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.marketplaces import read_back
from dms_pipelines.marketplaces.base import (
    KEY,
    SLICE_ROWS,
    FeedFile,
    MarketplaceSpec,
    clean_text,
    list_item,
    list_parts,
    listable,
    map_text,
    priced,
    vehicle_urls,
)
from dms_pipelines.marketplaces.layout import RowFile, delimited
from dms_pipelines.marketplaces.row_files import whole

MAX_IMAGES = 20
DESCRIPTION_LIMIT = 5000
BODY_STYLES = {
    "hatchback": "HATCHBACK",
    "saloon": "SEDAN",
    "estate": "WAGON",
    "suv": "SUV",
    "coupe": "COUPE",
    "convertible": "CONVERTIBLE",
    "mpv": "MINIVAN",
    "pickup": "TRUCK",
    "van": "VAN",
    "other": "OTHER",
}
FUEL_TYPES = {"petrol": "PETROL", "diesel": "DIESEL", "electric": "ELECTRIC", "hybrid": "HYBRID", "plugin_hybrid": "PLUGIN_HYBRID", "other": "OTHER"}
TRANSMISSIONS = {"manual": "MANUAL", "automatic": "AUTOMATIC"}
STATE_OF_VEHICLE = {"new": "NEW", "used": "USED", "demo": "USED"}
AVAILABILITY = {"available": "AVAILABLE", "reserved": "PENDING"}
MILEAGE_UNITS = {"miles": "MILES", "km": "KM"}  # a dealer's market.distance_unit as Meta's feeds write it
ADDRESS_FIELDS = ["address.addr1", "address.city", "address.region", "address.postal_code", "address.country"]
BASE_COLUMNS = [
    "vehicle_id",
    "title",
    "description",
    "url",
    "make",
    "model",
    "year",
    "body_style",
    "exterior_color",
    "state_of_vehicle",
    "fuel_type",
    "transmission",
    "mileage.value",
    "mileage.unit",
    "price",
    "availability",
    "vin",
    "trim",
    "date_first_on_lot",
    "dealer_id",
    "dealer_name",
    "dealer_phone",
    *ADDRESS_FIELDS,
]


def render(stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.DataFrame:
    """One row per available or reserved vehicle, allowlisted fields only, flattened as Meta's feed spec allows."""
    cars = stock.loc[listable(stock, account, pending_supported=True)].reset_index(drop=True)
    images = list_parts(cars["image_urls"])
    title = (cars["year"].astype("Int64").astype("string") + " " + cars["make"] + " " + cars["model"] + " " + cars["derivative"].fillna("")).str.strip()
    frame = pd.DataFrame(
        {
            KEY: cars["stock_id"],
            "vehicle_id": cars["stock_id"],
            "title": clean_text(title, 150),
            "description": clean_text(cars["description"].fillna(title), DESCRIPTION_LIMIT),
            "url": vehicle_urls(dealer, cars),
            "make": clean_text(cars["make"]),
            "model": clean_text(cars["model"]),
            "year": cars["year"].astype("Int64").astype("string"),
            "body_style": map_text(cars["body_type"], BODY_STYLES),
            "exterior_color": clean_text(cars["colour"]),
            "state_of_vehicle": map_text(cars["condition"], STATE_OF_VEHICLE),
            "fuel_type": map_text(cars["fuel_type"], FUEL_TYPES),
            "transmission": map_text(cars["transmission"], TRANSMISSIONS),
            "mileage.value": cars["mileage"].astype("Int64").astype("string"),
            "mileage.unit": MILEAGE_UNITS[dealer.market.distance_unit],
            "price": priced(cars["price"], "{:.0f}", dealer),
            "availability": map_text(cars["status"], AVAILABILITY),
            "vin": cars["vin"],
            "trim": clean_text(cars["trim"]),
            "date_first_on_lot": cars["date_in_stock"].dt.strftime("%Y-%m-%d").astype("string"),
            "dealer_id": account.setting("catalog_id") or dealer.id,
            "dealer_name": dealer.name,
            "dealer_phone": dealer.phone,
            "address.addr1": dealer.address.street,
            "address.city": dealer.address.city,
            "address.region": dealer.address.region or "",
            "address.postal_code": dealer.address.postcode,
            "address.country": dealer.address.country,
        }
    )
    for n in range(MAX_IMAGES):
        frame[f"image[{n}].url"] = list_item(images, n, cars.index)
    return frame


def _rules(items: pd.DataFrame) -> pd.Series:
    reasons = pd.Series("", index=items.index, dtype="string")
    bad_vin = items["vin"].isna() | (items["vin"].str.len() != 17)
    reasons = reasons.mask(bad_vin.fillna(True).astype(bool), "vin must be exactly 17 characters")
    price = pd.to_numeric(items["price"].str.replace(" [A-Z]{3}$", "", regex=True), errors="coerce")  # amount and ISO code
    not_positive = ~(price > 0).fillna(False).astype(bool)
    reasons = reasons.mask(not_positive, (reasons + "; price must be above 0").str.lstrip("; "))
    return reasons


SPEC = MarketplaceSpec(
    read_back=lambda name, content: (
        read_back.xml_listings(content, "listing", "vehicle_id") if name.endswith(".xml") else read_back.delimited(content, "\t" if name.endswith(".tsv") else ",", ("vehicle_id",))
    ),
    name="meta",
    mode="snapshot",
    render=render,
    required=(
        "vehicle_id",
        "title",
        "description",
        "url",
        "make",
        "model",
        "year",
        "body_style",
        "exterior_color",
        "image[0].url",
        "mileage.value",
        "mileage.unit",
        "price",
        "address.addr1",
        "address.city",
        "address.postal_code",
        "address.country",
    ),
    recommended=("trim", "fuel_type", "transmission", "state_of_vehicle", "date_first_on_lot", "vin"),
    enums={
        "body_style": tuple(BODY_STYLES.values()),
        "fuel_type": tuple(FUEL_TYPES.values()),
        "transmission": tuple(TRANSMISSIONS.values()),
        "state_of_vehicle": ("NEW", "USED", "CPO"),
        "availability": ("AVAILABLE", "NOT_AVAILABLE", "PENDING", "UNKNOWN"),
        "mileage.unit": ("MILES", "KM"),
    },
    max_lengths={"vehicle_id": 100, "description": DESCRIPTION_LIMIT},
    extra_rules=_rules,
    min_images=6,
    image_count=lambda items: items[[c for c in items.columns if c.startswith("image[")]].notna().sum(axis=1),
    files=lambda dealer, account, file_format: [
        FeedFile(f"{dealer.id}.{file_format}", rows=row_file(file_format))
        if row_file(file_format) is not None
        else FeedFile(f"{dealer.id}.{file_format}", build=lambda items, dealer, account: serialise_parts(items, file_format))
    ],
    formats=("csv", "tsv", "xml"),
    account_settings=("catalog_id",),
    description="Meta automotive inventory feed per dealer (CSV, TSV or XML), flattened image and address columns.",
)


def serialise(items: pd.DataFrame, file_format: str = "csv") -> bytes:
    """CSV or TSV with flattened columns, or XML as a <listings> document; rows ordered by vehicle_id."""
    return b"".join(serialise_parts(items, file_format))


def serialise_parts(items: pd.DataFrame, file_format: str = "csv", part_rows: int = SLICE_ROWS) -> Iterator[bytes]:
    """`serialise` a slice of rows at a time for CSV and TSV; XML is built whole."""
    if file_format in ("csv", "tsv"):
        return iter(whole(row_file(file_format), items, part_rows))
    return iter([_xml(items.sort_values("vehicle_id", kind="stable"))])


def row_file(file_format: str = "csv") -> RowFile | None:
    """The CSV or TSV file as a row file (its image columns as many as the fullest row fills); None for XML, always built whole."""
    if file_format not in ("csv", "tsv"):
        return None
    return delimited(
        ("vehicle_id",),
        lambda items, width: BASE_COLUMNS + [f"image[{n}].url" for n in range(width)],
        "\t" if file_format == "tsv" else ",",
        width=images_filled,
        min_width=1,
    )


def images_filled(items: pd.DataFrame) -> np.ndarray:
    """Per row, one past its last filled image column (0 with none): the image columns the file needs for that row."""
    filled = np.zeros(len(items), dtype=np.int64)
    for n in range(MAX_IMAGES):
        name = f"image[{n}].url"
        if name in items:
            filled[items[name].notna().to_numpy()] = n + 1
    return filled


def _xml(ordered: pd.DataFrame) -> bytes:
    root = etree.Element("listings")
    etree.SubElement(root, "title").text = "vehicle catalog"
    for row in ordered.to_dict(orient="records"):
        listing = etree.SubElement(root, "listing")
        for name in BASE_COLUMNS:
            value = row.get(name)
            if value is None or value is pd.NA or name.startswith(("address.", "mileage.")):
                continue
            etree.SubElement(listing, name).text = str(value)
        address = etree.SubElement(listing, "address", format="simple")
        for name in ADDRESS_FIELDS:
            etree.SubElement(address, "component", name=name.split(".", 1)[1]).text = str(row.get(name) or "")
        mileage = etree.SubElement(listing, "mileage")
        etree.SubElement(mileage, "value").text = str(row.get("mileage.value") or "")
        etree.SubElement(mileage, "unit").text = str(row.get("mileage.unit") or "MILES")
        for n in range(MAX_IMAGES):
            url = row.get(f"image[{n}].url")
            if url is not None and url is not pd.NA:
                etree.SubElement(etree.SubElement(listing, "image"), "url").text = str(url)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
