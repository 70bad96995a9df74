"""The dealer website feed: JSON with full public detail (all images, features, history, finance-ready prices)."""

import json
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.kernels.arrow_text import arrow_strings, holds_any_byte, one_array
from dms_pipelines.kernels.parallel import SLICE_ROWS
from dms_pipelines.marketplaces import read_back
from dms_pipelines.marketplaces.base import KEY, FeedFile, MarketplaceSpec, clean_text, list_lengths, list_parts, list_series, listable, number_texts, vehicle_urls
from dms_pipelines.marketplaces.layout import RowFile
from dms_pipelines.marketplaces.row_files import whole

ESCAPED = r'[\x00-\x1f"\\]'  # what JSON escapes (ensure_ascii=False): control characters, quote, backslash
PUBLIC_FIELDS = [
    "registration",
    "make",
    "model",
    "derivative",
    "trim",
    "body_type",
    "fuel_type",
    "transmission",
    "colour",
    "doors",
    "seats",
    "engine_size_cc",
    "co2_gkm",
    "euro_standard",
    "condition",
    "year",
    "mileage",
    "vehicle_type",
]


def render(stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.DataFrame:
    cars = stock.loc[listable(stock, account, pending_supported=True)].reset_index(drop=True)
    frame = pd.DataFrame({KEY: cars["stock_id"], "stock_id": cars["stock_id"], "status": cars["status"]})
    for name in PUBLIC_FIELDS:
        frame[name] = cars[name]
    frame["first_registration_date"] = cars["first_registration_date"].dt.strftime("%Y-%m-%d").astype("string")
    frame["date_in_stock"] = cars["date_in_stock"].dt.strftime("%Y-%m-%d").astype("string")
    frame["mot_expiry"] = cars["mot_expiry"].dt.strftime("%Y-%m-%d").astype("string")
    frame["price"] = cars["price"]  # each named with the dealer's currency in the document: price_gbp, price_eur (output_names)
    frame["previous_price"] = cars["previous_price"]
    frame["price_reduced"] = (cars["previous_price"] - cars["price"]).where(cars["previous_price"] > cars["price"])
    frame["vat_status"] = cars["vat_status"]
    frame["description"] = clean_text(cars["description"])
    frame["features"] = list_series(list_parts(cars["features"]), cars.index)  # Arrow lists: each value still reads as a list
    frame["images"] = list_series(list_parts(cars["image_urls"]), cars.index)
    frame["url"] = vehicle_urls(dealer, cars)
    return frame


def output_names(dealer: Dealer) -> dict[str, str]:
    """The document's names of the rendered columns that carry a unit: the prices with the dealer's currency (price_gbp,
    price_eur), the odometer as mileage in miles and mileage_km in kilometres."""
    currency = dealer.market.currency.lower()
    names = {name: f"{name}_{currency}" for name in ("price", "previous_price", "price_reduced")}
    return names | ({"mileage": f"mileage_{dealer.market.distance_unit}"} if dealer.market.distance_unit != "miles" else {})


SPEC = MarketplaceSpec(
    read_back=lambda name, content: read_back.json_vehicles(content, "stock_id"),
    name="website",
    mode="snapshot",
    render=render,
    required=("stock_id", "make", "model", "price", "status"),
    recommended=("registration", "derivative", "mileage", "year", "description", "features", "images", "colour", "fuel_type", "transmission"),
    min_images=6,
    image_count=lambda items: list_lengths(items["images"]),
    files=lambda dealer, account, file_format: [FeedFile(f"{dealer.id}.json", rows=row_file(dealer))],
    formats=("json",),
    description="The dealer website's stock feed: one JSON document per dealer.",
)


def serialise(items: pd.DataFrame, dealer: Dealer) -> bytes:
    """One JSON document per dealer; no timestamps inside, so unchanged stock gives identical bytes."""
    return b"".join(serialise_parts(items, dealer))


def serialise_parts(items: pd.DataFrame, dealer: Dealer, part_rows: int = SLICE_ROWS) -> Iterator[pa.Buffer | bytes]:
    """`serialise` in pieces: the vehicles, ordered by stock_id, are built and yielded a slice at a time."""
    return iter(whole(row_file(dealer), items, part_rows))


def row_file(dealer: Dealer) -> RowFile:
    """The dealer's JSON document as a row file: its vehicles, written column-wise as JSON text, spliced into "vehicles":[]."""
    names = output_names(dealer)
    return RowFile(
        sort_keys=("stock_id",),
        columns=lambda items, width: [name for name in items.columns if name != KEY],
        texts=lambda columns: vehicle_texts({names.get(name, name): values for name, values in columns.items()}),
        head=lambda rows, names: _document(dealer, rows)[: -len("]}")].encode("utf-8"),
        separator=b",",
        end=b"",
        tail=b"]}\n",
    )


def _document(dealer: Dealer, vehicles: int) -> str:
    """The document without its vehicles (no indent: the feed is read by programs)."""
    return _dumps(
        {
            "dealer": {"id": dealer.id, "name": dealer.name, "address": dealer.address.model_dump(), "phone": dealer.phone, "website": dealer.website},
            "vehicle_count": vehicles,
            "vehicles": [],
        }
    )


def vehicle_texts(columns: dict[str, pd.Series]) -> pa.Array:
    """Each vehicle as its JSON object text, the fields in the order of `columns`."""
    pieces: list = []
    for position, (name, values) in enumerate(columns.items()):
        pieces += [_large(("{" if position == 0 else ",") + _dumps(name) + ":"), _json_values(values)]
    return pc.binary_join_element_wise(*pieces, _large("}"), _large(""))


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _json_values(column: pd.Series) -> pa.Array:
    """Each value of the column as the JSON text `json.dumps` would write for it."""
    if isinstance(column.dtype, pd.ArrowDtype) and pa.types.is_large_list(column.dtype.pyarrow_dtype):
        return _json_lists(one_array(pa.array(column.array)))
    if str(column.dtype) == "Int64":
        return pc.fill_null(one_array(pa.array(column.array)).cast(pa.large_string()), _large("null"))
    if str(column.dtype) == "Float64":  # Python's own float text, produced once per distinct value
        return pc.fill_null(number_texts(column, _dumps), _large("null"))
    if column.dtype == object or str(column.dtype) == "boolean":
        return pa.array([_dumps(value) for value in _python_values(column)], pa.large_string())
    return _json_strings(arrow_strings(column))


def _json_lists(lists: pa.LargeListArray) -> pa.Array:
    """Lists of strings as JSON arrays; a list with a string that needs escaping goes through json."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0)
    text = pc.binary_join_element_wise(_large('["'), pc.binary_join(lists, _large('","')), _large('"]'), _large(""))
    empty = pc.equal(lengths, 0)
    if pc.any(empty).as_py():
        text = pc.if_else(empty, _large("[]"), text)
    if _needs_escaping(lists.flatten()):
        rows = pc.list_parent_indices(lists).filter(pc.fill_null(pc.match_substring_regex(lists.flatten(), ESCAPED), False))
        escape = np.zeros(len(lists), dtype=bool)
        escape[rows.to_numpy()] = True
        text = pc.replace_with_mask(text, pa.array(escape), pa.array([_dumps(value) for value in lists.filter(pa.array(escape)).to_pylist()], pa.large_string()))
    return pc.if_else(lists.is_null(), _large("null"), text) if lists.null_count else text


def _json_strings(text: pa.Array) -> pa.Array:
    """Strings as JSON string literals ('null' for missing); values with a quote, backslash or control character go through json."""
    text = text.cast(pa.large_string())
    quoted = pc.binary_join_element_wise(_large('"'), text, _large('"'), _large(""))
    if not _needs_escaping(text):
        return pc.fill_null(quoted, _large("null"))
    escape = pc.fill_null(pc.match_substring_regex(text, ESCAPED), False)
    if pc.any(escape).as_py():
        escaped = pa.array([_dumps(value) for value in text.filter(escape).to_pylist()], pa.large_string())
        quoted = pc.replace_with_mask(quoted, escape, escaped)
    return pc.fill_null(quoted, _large("null"))


def _needs_escaping(text: pa.Array) -> bool:
    return holds_any_byte(text, b'"\\', below=0x20)


def _python_values(column: pd.Series) -> list:
    """Plain Python values (None for missing) so the JSON encoder takes them."""
    if column.dtype == object:
        return [None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v for v in column.tolist()]
    return column.to_numpy(dtype=object, na_value=None).tolist()
