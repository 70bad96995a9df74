"""The dealer website feed: JSON with full public detail (all images, features, history, finance-ready prices)."""

import json

import pandas as pd

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.marketplaces.base import KEY, MarketplaceSpec, clean_text, listable, split_list

PUBLIC_FIELDS = [
    "registration", "make", "model", "derivative", "trim", "body_type", "fuel_type", "transmission", "colour", "doors",
    "seats", "engine_size_cc", "co2_gkm", "euro_standard", "condition", "year", "mileage", "vehicle_type",
]


def _plain(value):
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


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
    vehicles = []
    for record in items.drop(columns=[KEY]).sort_values("stock_id").to_dict(orient="records"):
        vehicles.append({key: (value if isinstance(value, list) else _plain(value)) for key, value in record.items()})
    document = {
        "dealer": {
            "id": dealer.id,
            "name": dealer.name,
            "address": dealer.address.model_dump(),
            "phone": dealer.phone,
            "website": dealer.website,
        },
        "vehicle_count": len(vehicles),
        "vehicles": vehicles,
    }
    return (json.dumps(document, ensure_ascii=False, indent=1, sort_keys=False) + "\n").encode("utf-8")
