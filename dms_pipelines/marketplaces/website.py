"""The dealer website feed: JSON with full public detail (all images, features, history, finance-ready prices)."""

import json

import pandas as pd

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.marketplaces.base import KEY, MarketplaceSpec, clean_text, listable, split_list

PUBLIC_FIELDS = [
    "registration", "make", "model", "derivative", "trim", "body_type", "fuel_type", "transmission", "colour", "doors",
    "seats", "engine_size_cc", "co2_gkm", "euro_standard", "condition", "year", "mileage", "vehicle_type",
]


def render(stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.DataFrame:
    cars = stock.loc[listable(stock, account, pending_supported=True)].reset_index(drop=True)
    frame = pd.DataFrame({KEY: cars["stock_id"], "stock_id": cars["stock_id"], "status": cars["status"]})
    for name in PUBLIC_FIELDS:
        frame[name] = cars[name]
    frame["first_registration_date"] = cars["first_registration_date"].dt.strftime("%Y-%m-%d").astype("string")
    frame["date_in_stock"] = cars["date_in_stock"].dt.strftime("%Y-%m-%d").astype("string")
    frame["mot_expiry"] = cars["mot_expiry"].dt.strftime("%Y-%m-%d").astype("string")
    frame["price_gbp"] = cars["price"]
    frame["previous_price_gbp"] = cars["previous_price"]
    frame["price_reduced_gbp"] = (cars["previous_price"] - cars["price"]).where(cars["previous_price"] > cars["price"])
    frame["vat_status"] = cars["vat_status"]
    frame["description"] = clean_text(cars["description"])
    frame["features"] = split_list(cars["features"])
    frame["images"] = split_list(cars["image_urls"])
    frame["url"] = dealer.website.rstrip("/") + "/used-cars/" + cars["stock_id"].str.lower()
    return frame


SPEC = MarketplaceSpec(
    name="website",
    mode="snapshot",
    render=render,
    required=("stock_id", "make", "model", "price_gbp", "status"),
    recommended=("registration", "derivative", "mileage", "year", "description", "features", "images", "colour", "fuel_type", "transmission"),
    min_images=6,
    image_count=lambda items: items["images"].map(len),
)


def serialise(items: pd.DataFrame, dealer: Dealer) -> bytes:
    """One JSON document per dealer; no timestamps inside, so unchanged stock gives identical bytes."""
    ordered = items.drop(columns=[KEY]).sort_values("stock_id", kind="stable")
    columns = {name: _python_values(ordered[name]) for name in ordered.columns}
    names = list(columns)
    vehicles = [dict(zip(names, row)) for row in zip(*columns.values())]
    document = {
        "dealer": {"id": dealer.id, "name": dealer.name, "address": dealer.address.model_dump(), "phone": dealer.phone, "website": dealer.website},
        "vehicle_count": len(vehicles),
        "vehicles": vehicles,
    }
    # No indent: the C encoder is many times faster, and the feed is read by programs.
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _python_values(column: pd.Series) -> list:
    """Plain Python values (None for missing) so the C JSON encoder takes them."""
    if column.dtype == object:
        return [None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v for v in column.tolist()]
    if str(column.dtype) in ("Int64", "Float64", "boolean"):
        return column.to_numpy(dtype=object, na_value=None).tolist()
    return column.astype("string").to_numpy(dtype=object, na_value=None).tolist()
