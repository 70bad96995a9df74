"""Generate a dealer group's DMS exports (full and hourly deltas) in three vendor layouts, with planted dirty rows."""

import csv
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from dms_pipelines.devtools.sample.catalogue import (
    COLOURS,
    FEATURE_SHORTHAND,
    FEATURES,
    INITIALS,
    LOCATIONS,
    MODELS,
    SELLING_POINTS,
    SURNAMES,
    TITLES,
)
from dms_pipelines.devtools.sample.plates import plates_for
from dms_pipelines.kernels.csv_bytes import delimited_text

LAYOUTS = ("navigator_csv", "star5_xml", "pipe_cp1252_csv")
EXTRA_DEALER_IDS = ("harrogate", "bradford", "wakefield", "hull", "doncaster", "huddersfield", "halifax")
TOWNS = {"leeds": "Leeds", "york": "York", "sheffield": "Sheffield"}
VIN_ALPHABET = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"))
DEFECT_KINDS = ("missing_price", "placeholder_price", "bad_plate", "duplicate_stock_id", "impossible_year")
DEFECT_RULES = {
    "missing_price": ("price", "required"),
    "placeholder_price": ("price", "placeholder_price"),
    "bad_plate": ("registration", "plate_format"),
    "duplicate_stock_id": ("stock_id", "duplicate_stock_id"),
    "impossible_year": ("year", "year_range"),
    "unquoted_comma": ("", "field_count"),
}
UNQUOTED_MARK = "\x00UNQUOTED\x00"
STATUS_CODES = {
    "navigator_csv": {"available": "In Stock", "reserved": "Reserved", "sold": "Sold", "in_transit": "In Transit", "in_preparation": "In Preparation"},
    "star5_xml": {"available": "AV", "reserved": "RS", "sold": "SD", "in_transit": "IT", "in_preparation": "IP"},
    "pipe_cp1252_csv": {"available": "AV", "reserved": "RS", "sold": "SD", "in_transit": "TR", "in_preparation": "PR"},
}


@dataclass(frozen=True)
class SampleDealer:
    dealer_id: str
    name: str
    layout: str


@dataclass
class GenerationReport:
    files: list[Path] = field(default_factory=list)
    vehicles: dict[str, int] = field(default_factory=dict)
    planted: int = 0
    fleets: dict[str, pd.DataFrame] = field(default_factory=dict)  # per dealer, the vehicles as the last file leaves them (defects aside)


def default_dealers(count: int) -> list[SampleDealer]:
    """The demo's three rooftops first (one per layout), then more rooftops cycling the layouts."""
    names = ["leeds", "york", "sheffield", *EXTRA_DEALER_IDS]
    dealers = []
    for index in range(count):
        dealer_id = names[index] if index < len(names) else f"dealer-{index + 1}"
        town = TOWNS.get(dealer_id, dealer_id.replace("-", " ").title())
        dealers.append(SampleDealer(dealer_id, f"Aire Valley Motors {town}", LAYOUTS[index % len(LAYOUTS)]))
    return dealers


def _pick(rng: np.random.Generator, options, n: int, p=None) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=n, p=p)]


IMAGE_BASE = "https://images.airevalley.example"  # the DMS's own image host; the demo points it at its local image server


def sample_vehicles(n: int, prefix: str, first_number: int, rng: np.random.Generator, as_of: datetime, dealer_id: str, region: str, image_base: str = IMAGE_BASE) -> pd.DataFrame:
    """n believable vehicles as canonical-style columns (plus private fields), vectorised."""
    if n == 0:
        return pd.DataFrame()
    model_index = rng.integers(0, len(MODELS), n)
    models = [MODELS[i] for i in model_index]
    attribute = lambda name: np.array([getattr(m, name) for m in models])  # noqa: E731
    choice = rng.integers(0, 1 << 30, n)
    derivative = np.array([m.derivatives[c % len(m.derivatives)] for m, c in zip(models, choice)], dtype=object)
    trim = np.array([m.trims[c % len(m.trims)] for m, c in zip(models, choice // 7)], dtype=object)
    condition = _pick(rng, ["new", "demo", "used"], n, p=[0.08, 0.04, 0.88])
    age_days = np.where(condition == "new", rng.integers(0, 60, n), np.where(condition == "demo", rng.integers(60, 300, n), rng.integers(200, 12 * 365, n)))
    today = pd.Timestamp(as_of.date())
    reg_date = pd.Series(today - pd.to_timedelta(age_days, unit="D"))
    age_years = age_days / 365.25
    mileage = np.where(condition == "new", rng.integers(5, 50, n), np.where(condition == "demo", rng.integers(500, 5000, n), (age_years * rng.uniform(6000, 12000, n)).astype(int)))
    new_price = attribute("new_price")
    value = new_price * 0.86**age_years * np.clip(1 - mileage / 250_000, 0.35, 1.0) * rng.uniform(0.92, 1.08, n)
    price = np.maximum(995, np.round(value / 250) * 250 - 5).astype(int)
    previous = np.where(rng.random(n) < 0.1, price + _pick(rng, [250, 500, 1000], n).astype(int), 0)
    vat = np.where((condition != "used") | ((age_years < 3) & (rng.random(n) < 0.3)), "qualifying", "marginal")
    status = _pick(rng, ["available", "reserved", "in_transit", "in_preparation", "sold"], n, p=[0.85, 0.05, 0.03, 0.05, 0.02])
    in_stock = pd.Series(today - pd.to_timedelta(rng.integers(0, 120, n), unit="D"))
    mot = pd.Series(today + pd.to_timedelta(rng.integers(20, 365, n), unit="D")).where(age_years >= 3)
    colour = _pick(rng, COLOURS, n)
    stock_id = pd.Series([f"{prefix}{number:05d}" if prefix else f"{number:06d}" for number in range(first_number, first_number + n)], dtype="string")
    vin_tail = np.ascontiguousarray(VIN_ALPHABET[rng.integers(0, len(VIN_ALPHABET), (n, 14))]).view("<U14").ravel()
    vin = np.char.add(attribute("vin_prefix").astype("<U3"), vin_tail)
    engine = attribute("engine_cc")
    fuel = attribute("fuel")
    feature_scores = rng.random((n, len(FEATURES)))
    feature_count = rng.integers(5, 16, n)
    order = np.argsort(feature_scores, axis=1)
    features = ["|".join(FEATURES[j] for j in row[:k]) for row, k in zip(order, feature_count)]
    image_count = np.where(rng.random(n) < 0.05, rng.integers(2, 6, n), rng.integers(6, 21, n))
    templates = {k: "|".join(f"\x01{i:02d}.jpg" for i in range(1, k + 1)) for k in range(1, 21)}
    bases = (f"{image_base}/{dealer_id}/" + stock_id + "/").tolist()
    images = [templates[k].replace("\x01", base) for k, base in zip(image_count, bases)]
    selling = _pick(rng, SELLING_POINTS, n)
    selling2 = _pick(rng, SELLING_POINTS, n)
    makes = attribute("make")
    model_names = attribute("model")
    description = [f"{mk} {md} {dv} in {c}. {s1}, {s2}." for mk, md, dv, c, s1, s2 in zip(makes, model_names, derivative, colour, selling, selling2)]
    with_phone = rng.random(n) < 0.01
    description = [d + " Call Dave on 07700 900" + f"{i % 1000:03d}" if p else d for i, (d, p) in enumerate(zip(description, with_phone))]
    surname = _pick(rng, SURNAMES, n)
    initial = _pick(rng, list(INITIALS), n)
    title = _pick(rng, TITLES, n)
    keeper = [f"{t} {i}. {s}" for t, i, s in zip(title, initial, surname)]
    notes = _pick(rng, ["needs tyres", "2 keys", "1 key only", "small scuff n/s/r", "service due", "valet booked"], n)
    memo = [f"PX from {k}, {note}" for k, note in zip(keeper, notes)]
    return pd.DataFrame(
        {
            "stock_id": stock_id,
            "registration": plates_for(reg_date, rng, region).where(condition != "new", plates_for(reg_date, rng, region)),
            "vin": vin,
            "make": makes,
            "model": model_names,
            "derivative": derivative,
            "trim": trim,
            "body_type": attribute("body"),
            "fuel_type": fuel,
            "transmission": attribute("transmission"),
            "doors": attribute("doors"),
            "seats": attribute("seats"),
            "engine_size_cc": engine,
            "co2_gkm": attribute("co2"),
            "euro_standard": np.where(fuel == "electric", "", "Euro 6"),
            "colour": colour,
            "mileage": mileage,
            "first_registration_date": reg_date,
            "year": reg_date.dt.year,
            "vehicle_type": np.where(attribute("body") == "van", "van", "car"),
            "condition": condition,
            "price": price.astype(float),
            "previous_price": np.where(previous > 0, previous, np.nan),
            "vat_status": vat,
            "status": status,
            "date_in_stock": in_stock,
            "mot_expiry": mot,
            "description": description,
            "features": features,
            "image_urls": images,
            "private_cost_price": np.round(price * rng.uniform(0.72, 0.9, n) / 10) * 10,
            "private_prep_cost": np.round(rng.uniform(150, 900, n)),
            "private_key_code": [f"K{k:04d}" for k in rng.integers(0, 10_000, n)],
            "private_memo": memo,
            "private_previous_keeper": keeper,
            "location": _pick(rng, LOCATIONS, n),
        }
    )


def _plant_defects(fleet: pd.DataFrame, layout: str, rng: np.random.Generator, defect_rate: float) -> tuple[pd.DataFrame, list[dict]]:
    """Dirty a few percent of rows the way real exports are dirty; returns the rows and what was planted where."""
    n = len(fleet)
    if defect_rate <= 0:
        return fleet, []
    kinds = list(DEFECT_KINDS) + (["unquoted_comma"] if layout == "navigator_csv" else [])
    per_kind = max(1, int(round(n * defect_rate / len(kinds)))) if n >= 30 else (1 if n >= 2 * len(kinds) + 2 else 0)
    if per_kind == 0:
        return fleet, []
    fleet = fleet.copy()
    fleet["raw_price"] = pd.Series([None] * n, dtype=object)
    positions = iter(rng.permutation(n).tolist())
    planted = []
    for kind in kinds:
        for _ in range(per_kind):
            row = next(positions)
            if kind == "missing_price":
                fleet.loc[row, "price"] = np.nan
            elif kind == "placeholder_price":
                fleet.loc[row, "price"] = float(rng.choice([1, 99999, 123456]))
            elif kind == "bad_plate":
                fleet.loc[row, "registration"] = str(rng.choice(["ABC12345", "XX", "L1 VERYLONG"]))
            elif kind == "impossible_year":
                fleet.loc[row, "year"] = int(rng.choice([1850, 2031]))
            elif kind == "unquoted_comma":
                fleet.loc[row, "raw_price"] = UNQUOTED_MARK
            elif kind == "duplicate_stock_id":
                other = next(positions)
                fleet.loc[other, "stock_id"] = fleet.loc[row, "stock_id"]
                planted.append({"stock_id": fleet.loc[row, "stock_id"], "defect": kind})
            planted.append({"stock_id": fleet.loc[row, "stock_id"], "defect": kind})
    return fleet, planted


def _text(values, na: str = "") -> pd.Series:
    return pd.Series(values).astype("string").fillna(na)


def _integer_text(values) -> pd.Series:
    return pd.Series(values).astype("Float64").round().astype("Int64").astype("string").fillna("")


def _date_text(values: pd.Series, fmt: str) -> pd.Series:
    return pd.Series(values).dt.strftime(fmt).astype("string").fillna("")


def _navigator_columns(v: pd.DataFrame) -> dict[str, pd.Series]:
    codes = STATUS_CODES["navigator_csv"]
    features = _text(v["features"]).str.split("|").map(lambda items: ";".join(FEATURE_SHORTHAND.get(i, i) for i in items))
    web_price = _integer_text(v["price"])
    if "raw_price" in v:
        web_price = web_price.mask(v["raw_price"].notna().to_numpy(), UNQUOTED_MARK)
    n = len(v)
    return {
        "Stock": _text(v["stock_id"]),
        "Reg": _text(v["registration"]),
        "ChassisNo": _text(v["vin"]),
        "Make": _text(v["make"]),
        "Model": _text(v["model"]),
        "Derivative": _text(v["derivative"]),
        "Trim": _text(v["trim"]),
        "BodyType": _text(
            v["body_type"].map(
                {"hatchback": "Hatchback", "saloon": "Saloon", "estate": "Estate", "suv": "SUV", "coupe": "Coupe", "convertible": "Convertible", "mpv": "MPV", "pickup": "Pick-up", "van": "Panel Van"}
            )
        ),
        "FuelType": _text(v["fuel_type"].map({"petrol": "Petrol", "diesel": "Diesel", "electric": "Electric", "hybrid": "Hybrid", "plugin_hybrid": "Plug-in Hybrid"})),
        "Transmission": _text(v["transmission"].map({"manual": "Manual", "automatic": "Automatic"})),
        "Doors": _integer_text(v["doors"]),
        "Seats": _integer_text(v["seats"]),
        "EngineSize": _integer_text(v["engine_size_cc"]),
        "CO2": _integer_text(v["co2_gkm"]),
        "Colour": _text(v["colour"]),
        "Mileage": _integer_text(v["mileage"]),
        "RegDate": _date_text(v["first_registration_date"], "%d/%m/%y"),
        "Year": _integer_text(v["year"]),
        "Type": _text(v["vehicle_type"].map({"car": "Car", "van": "Commercial"})),
        "NewUsed": _text(v["condition"].map({"new": "New", "used": "Used", "demo": "Demo"})),
        "Retail": _integer_text(v["price"] + 500),
        "WebPrice": web_price,
        "PreviousPrice": _integer_text(v["previous_price"]),
        "GuideRetailprice": _integer_text(v["price"] * 1.04),
        "VATStatus": _text(v["vat_status"].map({"marginal": "Marginal", "qualifying": "Qualifying"})),
        "OrderStatus": _text(v["status"].map(codes)),
        "AvailableForSale": _text(np.where(v["status"] == "available", "Y", "N")),
        "AdvertiseOnWeb": pd.Series(["Y"] * n, dtype="string"),
        "DateInStock": _date_text(v["date_in_stock"], "%d/%m/%Y"),
        "MOTExpiry": _date_text(v["mot_expiry"], "%d/%m/%Y"),
        "AdvertisingText": _text(v["description"]),
        "Features": _text(features),
        "Images": _text(v["image_urls"]).str.replace("|", ";", regex=False),
        "EngineNo": _text("E" + v["vin"].str[-8:]),
        "KeyTagNo": _text(v["private_key_code"].str[1:]),
        "KeyCode": _text(v["private_key_code"]),
        "AlarmCode": _text(v["private_key_code"].str[::-1]),
        "EstimatedPrepCosts": _integer_text(v["private_prep_cost"]),
        "CostPrice": _integer_text(v["private_cost_price"]),
        "InternalMemo": _text(v["private_memo"]),
        "PreviousKeeper": _text(v["private_previous_keeper"]),
        "Location": _text(v["location"]),
        "NoOfPreviousOwners": _integer_text((v["first_registration_date"].dt.year % 3)),
        "UserDefinedData": pd.Series([""] * n, dtype="string"),
    }


def _pipe_columns(v: pd.DataFrame) -> dict[str, pd.Series]:
    codes = STATUS_CODES["pipe_cp1252_csv"]

    def pounds(values) -> pd.Series:
        numbers = pd.Series(values).astype("Float64").round().astype("Int64")
        return pd.Series(["" if pd.isna(x) else f"£{int(x):,}" for x in numbers], dtype="string")

    return {
        "STOCK_NO": _text(v["stock_id"]),
        "VRM": _text(v["registration"]),
        "VIN": _text(v["vin"]),
        "MANUFACTURER": _text(v["make"]),
        "RANGE": _text(v["model"]),
        "VARIANT": _text(v["derivative"]),
        "TRIM_LEVEL": _text(v["trim"]),
        "BODY": _text(
            v["body_type"].map(
                {"hatchback": "Hatchback", "saloon": "Saloon", "estate": "Estate", "suv": "SUV", "coupe": "Coupe", "convertible": "Convertible", "mpv": "MPV", "pickup": "Pickup", "van": "Panel Van"}
            )
        ),
        "FUEL": _text(v["fuel_type"].map({"petrol": "P", "diesel": "D", "electric": "E", "hybrid": "H", "plugin_hybrid": "PH"})),
        "GEARBOX": _text(v["transmission"].map({"manual": "M", "automatic": "A"})),
        "DOORS": _integer_text(v["doors"]),
        "SEATS": _integer_text(v["seats"]),
        "CC": _integer_text(v["engine_size_cc"]),
        "CO2": _integer_text(v["co2_gkm"]),
        "EURO": _text(v["euro_standard"]),
        "COLOUR": _text(v["colour"]),
        "MILEAGE": _integer_text(v["mileage"]),
        "REG_DATE": _date_text(v["first_registration_date"], "%d/%m/%y"),
        "MODEL_YEAR": _integer_text(v["year"]),
        "PRICE": pounds(v["price"]),
        "WAS_PRICE": pounds(v["previous_price"]),
        "VAT": _text(v["vat_status"].map({"marginal": "M", "qualifying": "Q"})),
        "CONDITION": _text(v["condition"].map({"new": "N", "used": "U", "demo": "D"})),
        "STATUS": _text(v["status"].map(codes)),
        "DATE_IN": _date_text(v["date_in_stock"], "%d/%m/%y"),
        "MOT_DUE": _date_text(v["mot_expiry"], "%d/%m/%y"),
        "DESCRIPTION": _text(v["description"]).str.replace(". ", " – ", n=1, regex=False),
        "EQUIPMENT": _text(v["features"]).str.replace("|", ",", regex=False),
        "PHOTOS": _text(v["image_urls"]).str.replace("|", ",", regex=False),
        "COST": pounds(v["private_cost_price"]),
        "KEY_SAFE": _text(v["private_key_code"].str[1:]),
        "NOTES": _text(v["private_memo"]),
        "PREV_KEEPER": _text(v["private_previous_keeper"]),
    }


def _delimited(columns: dict[str, pd.Series], delimiter: str) -> str:
    return delimited_text(columns, delimiter)


STAR_NS = "http://www.starstandard.org/STAR/5"


def _xml_escape(values) -> list[str]:
    return pd.Series(values).astype("string").fillna("").str.replace("&", "&amp;", regex=False).str.replace("<", "&lt;", regex=False).str.replace(">", "&gt;", regex=False).tolist()


def _star5_document(v: pd.DataFrame) -> str:
    codes = STATUS_CODES["star5_xml"]
    text = {
        name: _xml_escape(v[name])
        for name in ("stock_id", "make", "model", "derivative", "trim", "description", "colour", "registration", "vin", "private_memo", "private_previous_keeper", "private_key_code")
    }
    status = v["status"].map(codes).tolist()
    in_stock = _date_text(v["date_in_stock"], "%Y-%m-%d").tolist()
    reg = _date_text(v["first_registration_date"], "%Y-%m-%d").tolist()
    mot = _date_text(v["mot_expiry"], "%Y-%m-%d").tolist()
    year = _integer_text(v["year"]).tolist()
    condition = v["condition"].map({"new": "N", "used": "U", "demo": "D"}).tolist()
    body = (
        v["body_type"]
        .map({"hatchback": "Hatchback", "saloon": "Saloon", "estate": "Estate", "suv": "SUV", "coupe": "Coupe", "convertible": "Convertible", "mpv": "MPV", "pickup": "Pickup", "van": "Panel Van"})
        .tolist()
    )
    gearbox = v["transmission"].map({"manual": "M", "automatic": "A"}).tolist()
    fuel = v["fuel_type"].map({"petrol": "P", "diesel": "D", "electric": "E", "hybrid": "H", "plugin_hybrid": "X"}).tolist()
    numbers = {name: _integer_text(v[name]).tolist() for name in ("engine_size_cc", "doors", "seats", "co2_gkm", "mileage", "price", "previous_price", "private_cost_price")}
    vat = v["vat_status"].map({"marginal": "M", "qualifying": "Q"}).tolist()
    features = ["".join(f"<FeatureGroup><FeatureDescription>{f}</FeatureDescription></FeatureGroup>" for f in items.split("|") if f) for items in _xml_escape(v["features"])]
    images = ["<ImageAttachment><URI>" + items.replace("|", "</URI></ImageAttachment><ImageAttachment><URI>") + "</URI></ImageAttachment>" if items else "" for items in _xml_escape(v["image_urls"])]
    records = []
    for i in range(len(v)):
        previous = f"<Price><PriceCode>Previous</PriceCode><ChargeAmount>{numbers['previous_price'][i]}</ChargeAmount></Price>" if numbers["previous_price"][i] else ""
        mot_element = f"<MOTExpiryDate>{mot[i]}</MOTExpiryDate>" if mot[i] else ""
        records.append(
            f"<VehicleInventoryVehicleLineItem><StockNumberID>{text['stock_id'][i]}</StockNumberID>"
            f"<InventoryStatusCode>{status[i]}</InventoryStatusCode><InventoryDate>{in_stock[i]}</InventoryDate>"
            f"<Vehicle><MakeString>{text['make'][i]}</MakeString><ModelDescription>{text['model'][i]}</ModelDescription>"
            f"<ModelYear>{year[i]}</ModelYear><VehicleID>{text['vin'][i]}</VehicleID><Condition>{condition[i]}</Condition>"
            f"<VehicleDescription>{text['derivative'][i]}</VehicleDescription><TrimCode>{text['trim'][i]}</TrimCode>"
            f"<BodyStyle>{body[i]}</BodyStyle><VehicleNote>{text['description'][i]}</VehicleNote>"
            f"<ColorGroup><ColorItemCode>Exterior</ColorItemCode><ColorName>{text['colour'][i]}</ColorName></ColorGroup>"
            f"<TransmissionGroup><TransmissionTypeName>{gearbox[i]}</TransmissionTypeName></TransmissionGroup>"
            f"<Engine><GeneralEngineDescription>{numbers['engine_size_cc'][i]}</GeneralEngineDescription><FuelTypeCode>{fuel[i]}</FuelTypeCode></Engine>"
            f"<DoorsQuantityNumeric>{numbers['doors'][i]}</DoorsQuantityNumeric><SeatingCapacityNumeric>{numbers['seats'][i]}</SeatingCapacityNumeric>"
            f"<CO2EmissionsMeasure>{numbers['co2_gkm'][i]}</CO2EmissionsMeasure><LicenseNumberString>{text['registration'][i]}</LicenseNumberString>"
            f"<FirstRegistrationDate>{reg[i]}</FirstRegistrationDate><DeliveryDistanceMeasure>{numbers['mileage'][i]}</DeliveryDistanceMeasure>{mot_element}"
            f"<Pricing><Price><PriceCode>List</PriceCode><ChargeAmount>{numbers['price'][i]}</ChargeAmount></Price>{previous}"
            f"<Price><PriceCode>Cost</PriceCode><ChargeAmount>{numbers['private_cost_price'][i]}</ChargeAmount></Price></Pricing>"
            f"<VATStatusCode>{vat[i]}</VATStatusCode>{features[i]}{images[i]}</Vehicle>"
            f"<InternalNote>{text['private_memo'][i]}</InternalNote><PreviousKeeperName>{text['private_previous_keeper'][i]}</PreviousKeeperName>"
            f"<KeyNumberID>{text['private_key_code'][i]}</KeyNumberID></VehicleInventoryVehicleLineItem>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ShowVehicleInventory xmlns="{STAR_NS}" releaseID="5.4.4"><ApplicationArea><Sender><CreatorNameCode>DMS</CreatorNameCode></Sender></ApplicationArea>\n'
        "<DataArea><VehicleInventory>\n" + "".join(records) + "</VehicleInventory></DataArea></ShowVehicleInventory>\n"
    )


def render_export(v: pd.DataFrame, layout: str) -> bytes:
    """The bytes of one export of `v` in `layout`, exactly as that DMS writes it."""
    if layout == "navigator_csv":
        text = _delimited(_navigator_columns(v), ",").replace(UNQUOTED_MARK, "9,995")
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if layout == "pipe_cp1252_csv":
        return _delimited(_pipe_columns(v), "|").encode("cp1252", errors="replace")
    if layout == "star5_xml":
        return _star5_document(v).encode("utf-8")
    raise ValueError(f"unknown layout {layout!r}; known: {LAYOUTS}")


def export_name(layout: str, kind: str, at: datetime) -> str:
    if layout == "navigator_csv":
        return f"stock_{kind}_{at:%Y%m%d_%H%M}.csv"
    if layout == "star5_xml":
        return f"inventory_{kind}_{at:%Y%m%d%H%M}.xml"
    return f"export_{kind}_{at:%Y%m%d_%H%M}.txt"


def _write_atomically(path: Path, content: bytes, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_bytes(content)
    os.utime(temporary, (mtime, mtime))
    os.replace(temporary, path)


def arrivals_per_hour(fleet_size: int) -> int:
    return max(1, fleet_size // 200)


def _delta(
    fleet: pd.DataFrame, rng: np.random.Generator, prefix: str, next_number: int, as_of: datetime, dealer_id: str, region: str, image_base: str = IMAGE_BASE
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One hour of changes: price drops, reservations, sales and new arrivals; returns (changed rows, the fleet after)."""
    n = len(fleet)
    available = np.flatnonzero((fleet["status"] == "available").to_numpy())
    count = lambda share: max(1, int(n * share)) if len(available) > 4 else 0  # noqa: E731
    chosen = rng.permutation(available)
    drops, sales, reservations = np.split(chosen[: count(0.02) + count(0.005) * 2], [count(0.02), count(0.02) + count(0.005)])
    fleet = fleet.copy()
    fleet.loc[fleet.index[drops], "previous_price"] = fleet.loc[fleet.index[drops], "price"]
    fleet.loc[fleet.index[drops], "price"] = fleet.loc[fleet.index[drops], "price"] - rng.choice([250, 500, 750], len(drops))
    fleet.loc[fleet.index[sales], "status"] = "sold"
    fleet.loc[fleet.index[reservations], "status"] = "reserved"
    arrivals = sample_vehicles(arrivals_per_hour(n), prefix, next_number, rng, as_of, dealer_id, region, image_base).assign(status="available")
    changed = pd.concat([fleet.iloc[np.concatenate([drops, sales, reservations])], arrivals], ignore_index=True)
    return changed, pd.concat([fleet, arrivals], ignore_index=True)


def generate_group(
    out_dir: Path,
    dealers: list[SampleDealer],
    vehicles: int,
    seed: int,
    deltas: int = 0,
    defect_rate: float = 0.03,
    as_of: datetime = datetime(2026, 11, 21, 2, 0),
    image_base: str = IMAGE_BASE,
) -> GenerationReport:
    """Write every dealer's full export (and `deltas` hourly deltas) under out_dir/<dealer>/, plus planted_defects.csv;
    the report keeps each dealer's fleet as the last file leaves it (`fleets`). Image URLs are under `image_base`."""
    out_dir = Path(out_dir)
    report = GenerationReport()
    shares = np.full(len(dealers), vehicles // max(1, len(dealers)))
    shares[: vehicles - shares.sum()] += 1
    planted_rows = []
    for index, (dealer, n) in enumerate(zip(dealers, shares)):
        rng = np.random.default_rng([seed, index])
        prefix = "" if dealer.layout == "pipe_cp1252_csv" else dealer.dealer_id[:3].upper()  # that DMS numbers stock 000001
        region = "YABCDEFGHJKLMNPRSTUVWX"[index % 22]
        fleet = sample_vehicles(int(n), prefix, 1, rng, as_of, dealer.dealer_id, region, image_base)
        dirty, planted = _plant_defects(fleet, dealer.layout, rng, defect_rate)
        name = export_name(dealer.layout, "full", as_of)
        path = out_dir / dealer.dealer_id / name
        _write_atomically(path, render_export(dirty, dealer.layout), as_of.timestamp())
        report.files.append(path)
        report.vehicles[dealer.dealer_id] = int(n)
        for item in planted:
            field_name, rule = DEFECT_RULES[item["defect"]]
            planted_rows.append({"dealer_id": dealer.dealer_id, "file": name, "stock_id": item["stock_id"], "defect": item["defect"], "field": field_name, "rule": rule})
        clean = fleet  # deltas change the clean fleet: a planted defect lives in the full export only
        next_number = int(n) + 1
        for hour in range(1, deltas + 1):
            at = as_of + timedelta(hours=hour)
            arriving = arrivals_per_hour(len(clean))
            changed, clean = _delta(clean, rng, prefix, next_number, at, dealer.dealer_id, region, image_base)
            next_number += arriving
            delta_path = out_dir / dealer.dealer_id / export_name(dealer.layout, "delta", at)
            _write_atomically(delta_path, render_export(changed, dealer.layout), at.timestamp())
            report.files.append(delta_path)
        report.fleets[dealer.dealer_id] = clean
    manifest = out_dir / "planted_defects.csv"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with manifest.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["dealer_id", "file", "stock_id", "defect", "field", "rule"])
        writer.writeheader()
        writer.writerows(planted_rows)
    report.planted = len(planted_rows)
    return report
