"""The canonical imaging-feed record (one row per image): every field's type and meaning, the Pandera schema built from them, and the shapes of read rows and their issues."""

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

IDENTIFIER_COLUMNS = ["stock_id", "vin", "registration"]  # a row names its vehicle by at least one of them, matched in this order
URL_PATTERN = r"^https?://[^\s|]+$"  # absolute http(s), no whitespace, no '|' (the canonical list separator; a URL holding one is percent-encoded)


@dataclass(frozen=True)
class ImageField:
    name: str
    dtype: str  # "string", "Int64", "datetime" (UTC)
    group: str
    description: str
    required: bool = False
    allowed: tuple[str, ...] | None = None  # (no image field has a closed list; the engine reads the attribute)


FIELDS: tuple[ImageField, ...] = (
    ImageField("dealer_id", "string", "identifiers", "The rooftop, as configured.", required=True),
    ImageField("stock_id", "string", "identifiers", "The DMS stock number as the imaging service holds it (keyed in by the photographer), an exact string."),
    ImageField("vin", "string", "identifiers", "Vehicle identification number as the imaging service holds it; upper case (personal data in the UK)."),
    ImageField("registration", "string", "identifiers", "Registration mark as the imaging service holds it, upper case without spaces (read with type: registration)."),
    ImageField("image_url", "string", "image", "The image's absolute http(s) URL, as the marketplaces will fetch it.", required=True),
    ImageField("position", "Int64", "image", "Order within the vehicle's set, from 1 (the first is the main image); absent: the file's order."),
    ImageField("captured_at", "datetime", "image", "When the photograph was taken or uploaded (UTC)."),
    ImageField("tag", "string", "image", "What the image shows as the service labels it (Exterior front, Interior, Boot, ...); becomes Meta's image tag."),
)
FIELD_BY_NAME = {field.name: field for field in FIELDS}
CANONICAL_COLUMNS = [field.name for field in FIELDS]
REQUIRED_COLUMNS = [field.name for field in FIELDS if field.required]
LINEAGE_COLUMNS = ["source_file", "source_row"]
IMAGE_COLUMNS = CANONICAL_COLUMNS + LINEAGE_COLUMNS
# One problem found in one row of an imaging feed, by mapping (formats.values) or by the row rules (images.sources): an
# error quarantines the row, a warning drops the value and lets the row through.
ISSUE_COLUMNS = ["source_row", "stock_id", "field", "rule", "value", "severity", "message"]


def pandas_dtype(field: ImageField) -> str:
    return {"string": "string", "Int64": "Int64", "datetime": "datetime64[ns, UTC]"}[field.dtype]


def _column_dtype(name: str) -> str:
    if name in FIELD_BY_NAME:
        return pandas_dtype(FIELD_BY_NAME[name])
    return "Int64" if name == "source_row" else "string"


def _as_utc(values: pd.Series) -> pd.Series:
    """Times as UTC: a naive time (what a date format reads) is taken to be UTC already."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, errors="coerce", utc=True)
    elif getattr(values.dtype, "tz", None) is None:
        values = values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def empty_images() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=_column_dtype(name)) for name in IMAGE_COLUMNS})


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "source_row" else "string") for c in ISSUE_COLUMNS})


def coerce_to_schema(frame: pd.DataFrame) -> pd.DataFrame:
    """Every image column present, in order, with its canonical dtype (absent columns are all-missing; times are UTC)."""
    out = {}
    for name in IMAGE_COLUMNS:
        dtype = _column_dtype(name)
        if name not in frame.columns:
            out[name] = pd.Series(pd.NaT if dtype.startswith("datetime") else pd.NA, index=frame.index, dtype=dtype)
        elif dtype.startswith("datetime"):
            out[name] = _as_utc(frame[name])
        else:
            out[name] = frame[name].astype(dtype)
    return pd.DataFrame(out, index=frame.index)


def _column(field: ImageField) -> pa.Column:
    checks = []
    if field.required:
        checks.append(pa.Check.str_length(min_value=1, error="not_empty"))
    if field.name == "image_url":
        checks.append(pa.Check.str_matches(URL_PATTERN, error="http_url"))
    elif field.name == "position":
        checks.append(pa.Check.ge(1, error="from_one"))
    return pa.Column(pandas_dtype(field), checks=checks, nullable=not field.required, required=True, description=field.description)


IMAGE_SCHEMA = pa.DataFrameSchema(
    {field.name: _column(field) for field in FIELDS} | {"source_file": pa.Column("string", nullable=True), "source_row": pa.Column("Int64", nullable=True)},
    checks=[pa.Check(lambda frame: frame[IDENTIFIER_COLUMNS].notna().any(axis=1), error="names_a_vehicle")],
    name="canonical_image",
    strict=False,
    coerce=False,
)
