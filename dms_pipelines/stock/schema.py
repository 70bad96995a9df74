"""The canonical vehicle: every field's type, group and meaning, the Pandera schema built from them, and the shape of a row's issues."""

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

FUEL_TYPES = ("petrol", "diesel", "electric", "hybrid", "plugin_hybrid", "other")
TRANSMISSIONS = ("manual", "automatic")
BODY_TYPES = ("hatchback", "saloon", "estate", "suv", "coupe", "convertible", "mpv", "pickup", "van", "other")
CONDITIONS = ("new", "used", "demo")
STATUSES = ("available", "reserved", "sold", "in_transit", "in_preparation")
VAT_STATUSES = ("qualifying", "marginal")
VEHICLE_TYPES = ("car", "van")
LIST_SEPARATOR = "|"


@dataclass(frozen=True)
class CanonicalField:
    name: str
    dtype: str  # "string", "Int64", "Float64", "date", "bool"
    group: str
    description: str
    required: bool = False
    allowed: tuple[str, ...] | None = None


FIELDS: tuple[CanonicalField, ...] = (
    CanonicalField("dealer_id", "string", "identifiers", "The rooftop, as configured.", required=True),
    CanonicalField("stock_id", "string", "identifiers", "The DMS stock number, an exact string (leading zeros kept).", required=True),
    CanonicalField("vin", "string", "identifiers", "Vehicle identification number, 17 characters (personal data in the UK)."),
    CanonicalField("registration", "string", "identifiers", "Registration mark (UK, or Irish for an IE rooftop), upper case without spaces."),
    CanonicalField("vehicle_type", "string", "description", "car or van.", allowed=VEHICLE_TYPES),
    CanonicalField("make", "string", "description", "Manufacturer, e.g. Ford.", required=True),
    CanonicalField("model", "string", "description", "Model range without trim, e.g. Fiesta.", required=True),
    CanonicalField("derivative", "string", "description", "Full derivative, e.g. 1.0 EcoBoost 125 ST-Line 5dr."),
    CanonicalField("trim", "string", "description", "Trim level, e.g. ST-Line."),
    CanonicalField("body_type", "string", "description", "Body style.", allowed=BODY_TYPES),
    CanonicalField("fuel_type", "string", "description", "Fuel.", allowed=FUEL_TYPES),
    CanonicalField("transmission", "string", "description", "Gearbox.", allowed=TRANSMISSIONS),
    CanonicalField("colour", "string", "description", "Exterior colour as the dealer names it."),
    CanonicalField("doors", "Int64", "description", "Number of doors."),
    CanonicalField("seats", "Int64", "description", "Number of seats."),
    CanonicalField("engine_size_cc", "Int64", "description", "Engine capacity in cc (0 for electric)."),
    CanonicalField("co2_gkm", "Int64", "description", "CO2 emissions in g/km."),
    CanonicalField("euro_standard", "string", "description", "Emissions standard, e.g. Euro 6."),
    CanonicalField("condition", "string", "state", "new, used or demo.", required=True, allowed=CONDITIONS),
    CanonicalField("status", "string", "state", "Sales status.", required=True, allowed=STATUSES),
    CanonicalField("year", "Int64", "numbers", "Model or registration year (YYYY)."),
    CanonicalField("first_registration_date", "date", "numbers", "Date of first registration."),
    CanonicalField("mileage", "Int64", "numbers", "Odometer reading in the dealer's market.distance_unit (miles in GB, km in IE)."),
    CanonicalField("price", "Float64", "numbers", "Advertised cash price in the dealer's market.currency (GBP, EUR), VAT included.", required=True),
    CanonicalField("previous_price", "Float64", "numbers", "The price before the latest reduction, in the dealer's currency."),
    CanonicalField("vat_status", "string", "numbers", "qualifying (VAT can be reclaimed) or marginal.", allowed=VAT_STATUSES),
    CanonicalField("description", "string", "content", "Advert text, plain."),
    CanonicalField("features", "string", "content", "Equipment list, '|'-separated."),
    CanonicalField("image_urls", "string", "content", "Image URLs in display order, '|'-separated."),
    CanonicalField("date_in_stock", "date", "dates", "Date the vehicle arrived in stock."),
    CanonicalField("mot_expiry", "date", "dates", "MOT expiry date."),
    CanonicalField("private_cost_price", "Float64", "private", "What the dealer paid. Never leaves the dealership."),
    CanonicalField("private_prep_cost", "Float64", "private", "Preparation costs. Never leaves the dealership."),
    CanonicalField("private_key_code", "string", "private", "Key and alarm codes. Never leave the dealership."),
    CanonicalField("private_memo", "string", "private", "Internal memo. Never leaves the dealership."),
    CanonicalField("private_previous_keeper", "string", "private", "Previous keeper's name: personal data. Never leaves the dealership."),
)
FIELD_BY_NAME = {field.name: field for field in FIELDS}
CANONICAL_COLUMNS = [field.name for field in FIELDS]
PRIVATE_COLUMNS = [field.name for field in FIELDS if field.group == "private"]
REQUIRED_COLUMNS = [field.name for field in FIELDS if field.required]

LINEAGE_COLUMNS = ["source_file", "source_row"]
STOCK_COLUMNS = CANONICAL_COLUMNS + LINEAGE_COLUMNS
# One problem found in one row, by mapping (formats.values) or by the row rules (stock.validate): an error quarantines
# the row, a warning lets it through.
ISSUE_COLUMNS = ["source_row", "stock_id", "field", "rule", "value", "severity", "message"]


def pandas_dtype(field: CanonicalField) -> str:
    return {"string": "string", "Int64": "Int64", "Float64": "Float64", "date": "datetime64[ns]", "bool": "boolean"}[field.dtype]


def empty_stock() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=pandas_dtype(FIELD_BY_NAME[name])) for name in CANONICAL_COLUMNS})
    frame["source_file"] = pd.Series(dtype="string")
    frame["source_row"] = pd.Series(dtype="Int64")
    return frame


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "source_row" else "string") for c in ISSUE_COLUMNS})


def coerce_to_schema(frame: pd.DataFrame) -> pd.DataFrame:
    """Every canonical column present, in order, with its canonical dtype (absent columns are all-missing)."""
    out = {}
    for name in STOCK_COLUMNS:
        dtype = "string" if name == "source_file" else "Int64" if name == "source_row" else pandas_dtype(FIELD_BY_NAME[name])
        if name in frame.columns:
            out[name] = frame[name].astype(dtype)
        else:
            out[name] = pd.Series(pd.NA if dtype != "datetime64[ns]" else pd.NaT, index=frame.index, dtype=dtype)
    return pd.DataFrame(out, index=frame.index)


def _column(field: CanonicalField) -> pa.Column:
    checks = []
    if field.allowed:
        checks.append(pa.Check.isin(list(field.allowed), error=f"allowed_values:{','.join(field.allowed)}"))
    return pa.Column(pandas_dtype(field), checks=checks, nullable=not field.required, required=True, description=field.description)


CANONICAL_SCHEMA = pa.DataFrameSchema(
    {field.name: _column(field) for field in FIELDS},
    name="canonical_vehicle",
    strict=False,
    coerce=False,
)
