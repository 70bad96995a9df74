"""Google Vehicle Listings: one CSV (or TSV) snapshot of every dealer's whole inventory, `id` always sent."""

from dataclasses import replace
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.kernels.arrow_text import arrow_strings, nonempty_fields
from dms_pipelines.marketplaces import read_back
from dms_pipelines.marketplaces.base import (
    KEY,
    SLICE_ROWS,
    AccountFeed,
    FeedFile,
    MarketplaceSpec,
    clean_text,
    list_item,
    list_joined,
    list_parts,
    listable,
    map_text,
    priced,
    vehicle_urls,
)
from dms_pipelines.marketplaces.layout import RowFile, delimited
from dms_pipelines.marketplaces.row_files import whole

COLUMNS = [
    "id",
    "store_code",
    "vin",
    "dealership_name",
    "dealership_address",
    "price",
    "condition",
    "make",
    "model",
    "trim",
    "year",
    "mileage",
    "image_link",
    "additional_image_link",
    "link",
    "date_in_stock",
    "exterior_color",
    "vehicle_option",
    "vehicle_fulfillment",
]
MAX_ADDITIONAL_IMAGES = 10
MAX_OPTIONS = 200


def render(stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.DataFrame:
    """Rows of the feed, allowlisted: a canonical field not mapped here cannot reach Google."""
    cars = stock.loc[listable(stock, account, pending_supported=False)].reset_index(drop=True)
    images = list_parts(cars["image_urls"])
    condition = map_text(cars["condition"], {"new": "new", "used": "used", "demo": "used"})
    unit = " " + dealer.market.distance_unit  # Google's units: miles or km
    mileage = cars["mileage"].astype("Int64").astype("string") + unit
    return pd.DataFrame(
        {
            KEY: cars["stock_id"],
            "id": cars["stock_id"],
            "store_code": account.setting("store_code"),
            "vin": cars["vin"],
            "dealership_name": dealer.name,
            "dealership_address": dealer.address.one_line(),
            "price": priced(cars["price"], "{:.2f}", dealer),
            "condition": condition,
            "make": clean_text(cars["make"], 100),
            "model": clean_text(cars["model"], 100),
            "trim": clean_text(cars["trim"], 100),
            "year": cars["year"].astype("Int64").astype("string"),
            "mileage": mileage.mask(condition == "new", mileage.fillna("0" + unit)),
            "image_link": list_item(images, 0, cars.index),
            "additional_image_link": list_joined(images, ",", cars.index, 1, 1 + MAX_ADDITIONAL_IMAGES),
            "link": vehicle_urls(dealer, cars),
            "date_in_stock": cars["date_in_stock"].dt.strftime("%Y-%m-%d").astype("string"),
            "exterior_color": clean_text(cars["colour"], 100),
            "vehicle_option": vehicle_options(cars["features"]),
            "vehicle_fulfillment": "IN_STORE",
        }
    )


def vehicle_options(features: pd.Series) -> pd.Series:
    """Up to MAX_OPTIONS features, commas turned to spaces, each cut to 256 characters, joined with ', '."""
    options = pc.list_slice(list_parts(features), 0, MAX_OPTIONS)
    offsets = options.offsets
    names = pc.utf8_slice_codeunits(pc.replace_substring(options.flatten(), ",", " "), 0, 256)
    return list_joined(pa.LargeListArray.from_arrays(pc.subtract(offsets, offsets[0]), names), ", ", features.index)


def _image_count(items: pd.DataFrame) -> pd.Series:
    """Image link plus the non-empty comma-separated additional links."""
    additional = nonempty_fields(arrow_strings(items["additional_image_link"]), ord(","))
    return items["image_link"].notna().astype(int) + additional


def _rules(items: pd.DataFrame) -> pd.Series:
    used_without_mileage = (items["condition"] == "used") & items["mileage"].isna()
    reasons = pd.Series("", index=items.index, dtype="object")
    reasons[used_without_mileage.fillna(False)] = "mileage missing for a used car"
    return reasons


SPEC = MarketplaceSpec(
    read_back=lambda name, content: read_back.delimited(content, "\t" if name.endswith(".tsv") else ",", ("store_code", "id")),
    name="google",
    mode="snapshot",
    render=render,
    required=("id", "store_code", "vin", "dealership_name", "dealership_address", "price", "condition", "make", "model", "year"),
    recommended=("trim", "mileage", "image_link", "additional_image_link", "link", "date_in_stock", "exterior_color", "vehicle_option"),
    enums={"condition": ("new", "used"), "vehicle_fulfillment": ("IN_STORE",)},
    max_lengths={"id": 100},
    extra_rules=_rules,
    min_images=6,
    image_count=_image_count,
    files=lambda dealer, account, file_format: [FeedFile(f"rows.{file_format}", rows=row_file(file_format, header=False))],
    account_file=AccountFeed(
        name=lambda file_format: f"vehicle_listings.{file_format}",
        header=lambda file_format: header(file_format),
        columns=tuple(COLUMNS),
        delimiter=lambda file_format: _delimiter(file_format),
        part_key=lambda dealer, account: f"{account.setting('store_code') or dealer.id}|",
    ),
    formats=("csv", "tsv"),
    account_settings=("store_code",),
    preview_columns=("id", "make", "model", "price", "mileage", "condition"),
    description="Google Vehicle Listings: one file for the whole account, every dealer's rows, `id` and `store_code` per vehicle.",
)


def serialise(items: pd.DataFrame, file_format: str = "csv") -> bytes:
    """The account-wide file; rows sorted by store code and id so unchanged stock gives identical bytes."""
    return b"".join(serialise_parts(items, file_format))


def serialise_parts(items: pd.DataFrame, file_format: str = "csv", part_rows: int = SLICE_ROWS) -> Iterator[bytes]:
    """`serialise` a slice of rows at a time (a large file is never whole in memory)."""
    return iter(whole(row_file(file_format), items, part_rows))


def row_file(file_format: str = "csv", header: bool = True) -> RowFile:
    """The file as a row file; without its header, one dealer's rows of it (the account file is the header and those rows)."""
    layout = delimited(("store_code", "id"), lambda items, width: COLUMNS, _delimiter(file_format))
    return layout if header else replace(layout, head=lambda rows, names: b"")


def header(file_format: str = "csv") -> bytes:
    return (_delimiter(file_format).join(COLUMNS) + "\r\n").encode("utf-8")


def _delimiter(file_format: str) -> str:
    return "\t" if file_format == "tsv" else ","
