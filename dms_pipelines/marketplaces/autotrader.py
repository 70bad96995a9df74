"""Auto Trader Connect-style stock API: one item per vehicle with lifecycle states, create and patch payloads as documented."""

import json

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from dms_pipelines.config import Dealer, DealerMarketplace
from dms_pipelines.kernels.arrow_text import arrow_strings
from dms_pipelines.marketplaces.base import KEY, ApiFace, MarketplaceSpec, clean_text, list_lengths, list_parts, list_series, map_text, text_series

LIFECYCLE = {"available": "FORECOURT", "reserved": "SALE_IN_PROGRESS", "in_transit": "DUE_IN", "in_preparation": "DUE_IN", "sold": "SOLD"}
PUBLISHED_STATES = ("FORECOURT", "SALE_IN_PROGRESS")
LIVE_STATES = ("FORECOURT", "SALE_IN_PROGRESS", "DUE_IN")  # a listing in these states offers the car
GONE_STATES = ("DELETED", "WASTEBIN")  # a listing in these states is no longer there
FUEL = {"petrol": "Petrol", "diesel": "Diesel", "electric": "Electric", "hybrid": "Petrol Hybrid", "plugin_hybrid": "Petrol Plug-in Hybrid", "other": "Other"}
BODY = {
    "hatchback": "Hatchback",
    "saloon": "Saloon",
    "estate": "Estate",
    "suv": "SUV",
    "coupe": "Coupe",
    "convertible": "Convertible",
    "mpv": "MPV",
    "pickup": "Pickup",
    "van": "Panel Van",
    "other": "Other",
}
TRANSMISSION = {"manual": "Manual", "automatic": "Automatic"}
VEHICLE_TYPE = {"car": "Car", "van": "Van"}
ATTENTION_GRABBER_LIMIT = 30


def render(stock: pd.DataFrame, dealer: Dealer, account: DealerMarketplace) -> pd.DataFrame:
    """Every vehicle Auto Trader should know about, sold ones included (they must be marked SOLD, not vanish)."""
    cars = stock[list(COLUMNS)].loc[stock["status"].isin(list(LIFECYCLE))].reset_index(drop=True)
    lifecycle = map_text(cars["status"], LIFECYCLE)
    published = lifecycle.isin(PUBLISHED_STATES).to_numpy(dtype=bool, na_value=False)
    return pd.DataFrame(
        {
            KEY: cars["stock_id"],
            "external_reference": cars["stock_id"],
            "lifecycle_state": lifecycle,
            "advert_status": pd.Series(np.where(published, "PUBLISHED", "NOT_PUBLISHED"), index=cars.index, dtype="string"),
            "vehicle_type": map_text(cars["vehicle_type"].fillna("car"), VEHICLE_TYPE),
            "registration": cars["registration"],
            "make": clean_text(cars["make"]),
            "model": clean_text(cars["model"]),
            "derivative": clean_text(cars["derivative"]),
            "fuel_type": map_text(cars["fuel_type"], FUEL),
            "body_type": map_text(cars["body_type"], BODY),
            "transmission_type": map_text(cars["transmission"], TRANSMISSION),
            "odometer_reading_miles": cars["mileage"].astype("Int64"),
            "first_registration_date": cars["first_registration_date"].dt.strftime("%Y-%m-%d").astype("string"),
            "amount_gbp": whole_pounds(cars["price"]),
            "attention_grabber": clean_text(first_sentence(cars["description"]), ATTENTION_GRABBER_LIMIT),
            "description": clean_text(cars["description"]),
            "images": list_series(list_parts(cars["image_urls"]), cars.index),  # Arrow lists: each value reads as a list
            "features": list_series(list_parts(cars["features"]), cars.index),
        }
    )


COLUMNS = (
    "stock_id",
    "status",
    "vehicle_type",
    "registration",
    "make",
    "model",
    "derivative",
    "fuel_type",
    "body_type",
    "transmission",
    "mileage",
    "first_registration_date",
    "price",
    "description",
    "image_urls",
    "features",
)


def whole_pounds(price: pd.Series) -> pd.Series:
    """`int(price + 0.5)` per price (rounds half up, truncates toward zero below -0.5), missing stays missing."""
    shifted = (price + 0.5).to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(shifted)
    if not (np.abs(shifted[~missing]) < 2.0**63).all():  # infinite or beyond int64: the per-value path raises as it always did
        return (price + 0.5).apply(lambda p: int(p) if pd.notna(p) else pd.NA).astype("Int64")
    return pd.Series(pd.arrays.IntegerArray(np.trunc(np.where(missing, 0.0, shifted)).astype(np.int64), missing), index=price.index)


def first_sentence(description: pd.Series) -> pd.Series:
    """The text before the first '.' ('' for a missing description)."""
    parts = pc.split_pattern(arrow_strings(description.fillna("")), ".", max_splits=1)
    return text_series(pc.list_element(parts, 0), description.index)


def _rules(items: pd.DataFrame) -> pd.Series:
    reasons = pd.Series("", index=items.index, dtype="string")
    unpriced = (items["lifecycle_state"] != "SOLD") & ~(items["amount_gbp"] > 0).fillna(False).astype(bool)
    return reasons.mask(unpriced.fillna(False).astype(bool), "amountGBP must be a positive whole number of pounds")


def _plain(value):
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def item_dict(row: dict) -> dict:
    """One rendered row as plain Python values (the unit the ledger hashes and the payloads are built from)."""
    return {key: (list(value) if isinstance(value, list) else _plain(value)) for key, value in row.items() if key != KEY}


def create_payload(item: dict) -> dict:
    """The documented create shape: vehicle, adverts.retailAdverts, metadata, media, features."""
    vehicle = {
        "vehicleType": item["vehicle_type"],
        "registration": item["registration"],
        "make": item["make"],
        "model": item["model"],
        "derivative": item["derivative"],
        "fuelType": item["fuel_type"],
        "bodyType": item["body_type"],
        "transmissionType": item["transmission_type"],
        "odometerReadingMiles": item["odometer_reading_miles"],
        "firstRegistrationDate": item["first_registration_date"],
    }
    return {
        "vehicle": {k: v for k, v in vehicle.items() if v is not None},
        "adverts": {
            "retailAdverts": {
                "suppliedPrice": {"amountGBP": item["amount_gbp"]},
                "attentionGrabber": item["attention_grabber"] or "",
                "description": item["description"] or "",
                "autotraderAdvert": {"status": item["advert_status"]},
            }
        },
        "metadata": {"lifecycleState": item["lifecycle_state"], "externalStockReference": item["external_reference"]},
        "media": {"images": [{"href": url} for url in item["images"]]},
        "features": [{"name": name} for name in item["features"]],
    }


def _changed(old, new) -> dict:
    """The parts of `new` that differ from `old`; lists are sent whole whenever they differ."""
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    diff = {}
    for key, value in new.items():
        if key not in old:
            diff[key] = value
        elif isinstance(value, dict):
            nested = _changed(old[key], value)
            if nested != {}:
                diff[key] = nested
        elif value != old[key]:
            diff[key] = value
    return diff


def patch_payload(old_item: dict | None, new_item: dict) -> dict:
    """Only what changed; a sale marks the stock SOLD and unpublishes the advert in the same call."""
    new = create_payload(new_item)
    if old_item is None:
        patch = {k: v for k, v in new.items()}
    else:
        patch = _changed(create_payload(old_item), new)
    if new_item["lifecycle_state"] == "SOLD":
        patch.setdefault("metadata", {})["lifecycleState"] = "SOLD"
        patch.setdefault("adverts", {}).setdefault("retailAdverts", {}).setdefault("autotraderAdvert", {})["status"] = "NOT_PUBLISHED"
    return patch


def delete_payload() -> dict:
    return {"metadata": {"lifecycleState": "DELETED"}, "adverts": {"retailAdverts": {"autotraderAdvert": {"status": "NOT_PUBLISHED"}}}}


def serialise(items: pd.DataFrame) -> bytes:
    """The create payloads as JSON lines, ordered by stock number (for inspection and golden files)."""
    rows = [item_dict(r) for r in items.sort_values("external_reference", kind="stable").to_dict(orient="records")]
    return "".join(json.dumps(create_payload(r), sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


SPEC = MarketplaceSpec(
    name="autotrader",
    mode="api",
    render=render,
    required=("external_reference", "lifecycle_state", "vehicle_type", "registration", "make", "model"),
    recommended=("derivative", "fuel_type", "body_type", "transmission_type", "odometer_reading_miles", "first_registration_date", "description", "images", "features"),
    enums={"lifecycle_state": tuple(LIFECYCLE.values()), "vehicle_type": ("Car", "Van"), "advert_status": ("PUBLISHED", "NOT_PUBLISHED")},
    extra_rules=_rules,
    min_images=6,
    image_count=lambda items: list_lengths(items["images"]),
    offered=lambda items: items["advert_status"] == "PUBLISHED",
    api=ApiFace(
        reference="external_reference",
        state="lifecycle_state",
        sold_state="SOLD",
        gone_states=GONE_STATES,
        live_states=LIVE_STATES,
        account_id=lambda dealer, account: account.setting("advertiser_id") or dealer.id,
        item=item_dict,
        create_payload=create_payload,
        patch_payload=patch_payload,
        delete_payload=delete_payload,
        listed_reference=lambda entry: str((entry.get("metadata") or {}).get("externalStockReference")),
        listed_state=lambda entry: (entry.get("metadata") or {}).get("lifecycleState"),
        listed_id=lambda entry: (entry.get("metadata") or {}).get("stockId"),
        listed_published=lambda entry: (((entry.get("adverts") or {}).get("retailAdverts") or {}).get("autotraderAdvert") or {}).get("status") == "PUBLISHED",
        base_url_env="DMS_AUTOTRADER_BASE_URL",
    ),
    account_settings=("advertiser_id",),
    currencies=("GBP",),  # suppliedPrice.amountGBP
    distance_units=("miles",),  # vehicle.odometerReadingMiles
    preview_columns=("external_reference", "lifecycle_state", "make", "model", "amount_gbp"),
    description="The dealer's stock on the Auto Trader-style API: only changed vehicles sent; the nightly run reconciles first.",
)
