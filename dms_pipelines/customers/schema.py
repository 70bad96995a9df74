"""The canonical DMS customer: every field's type, group and meaning, the Pandera schema built from them, and the shapes of read rows and their issues."""

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

LIST_SEPARATOR = "|"
CONSENT_CHANNELS = ("email", "phone", "sms", "post")


@dataclass(frozen=True)
class CustomerField:
    name: str
    dtype: str  # "string", "bool" (nullable: True given, False declined, empty not asked), "datetime" (UTC)
    group: str
    description: str
    required: bool = False
    personal: bool = False  # personal data: never in a message, a log line or the warehouse unmasked
    allowed: tuple[str, ...] | None = None  # (no customer field has a closed list yet; the engine reads the attribute)


FIELDS: tuple[CustomerField, ...] = (
    CustomerField("dealer_id", "string", "identifiers", "The rooftop, as configured.", required=True),
    CustomerField("customer_number", "string", "identifiers", "The DMS customer number, an exact string (leading zeros kept).", required=True),
    CustomerField("title", "string", "name", "Title as given (Mr, Mrs, Dr, ...).", personal=True),
    CustomerField("first_name", "string", "name", "Given name, whitespace collapsed.", personal=True),
    CustomerField("last_name", "string", "name", "Family name, whitespace collapsed.", personal=True),
    CustomerField("company_name", "string", "name", "The company, for a business customer.", personal=True),
    CustomerField("email", "string", "contact", "E-mail address as email-validator normalises it (domain lower case); invalid ones are dropped with a warning.", personal=True),
    CustomerField("phone_mobile", "string", "contact", "Mobile number in E.164 (+447700900123); read in the dealer's country when it has no country code.", personal=True),
    CustomerField("phone_home", "string", "contact", "Home number in E.164.", personal=True),
    CustomerField("phone_work", "string", "contact", "Work number in E.164.", personal=True),
    CustomerField("address_line1", "string", "address", "First address line.", personal=True),
    CustomerField("address_line2", "string", "address", "Second address line.", personal=True),
    CustomerField("town", "string", "address", "Post town.", personal=True),
    CustomerField("county", "string", "address", "County.", personal=True),
    CustomerField("postcode", "string", "address", "UK postcode, upper case with one space (SW1A 1AA); invalid ones are dropped with a warning.", personal=True),
    CustomerField("owned_vehicles", "string", "vehicles", "Vehicles the customer owns: VINs or registrations, upper case without spaces, '|'-separated.", personal=True),
    CustomerField("consent_email", "bool", "consent", "Marketing by e-mail: True given, False declined, empty not asked (never inferred)."),
    CustomerField("consent_phone", "bool", "consent", "Marketing by telephone: True given, False declined, empty not asked."),
    CustomerField("consent_sms", "bool", "consent", "Marketing by SMS: True given, False declined, empty not asked."),
    CustomerField("consent_post", "bool", "consent", "Marketing by post: True given, False declined, empty not asked."),
    CustomerField("consent_wording", "string", "consent", "The consent statement the customer was shown, as the DMS holds it."),
    CustomerField("consent_updated_at", "datetime", "consent", "When the consents were last given or changed (UTC)."),
    CustomerField("updated_at", "datetime", "dates", "When the DMS last changed the record (UTC)."),
)
FIELD_BY_NAME = {field.name: field for field in FIELDS}
CANONICAL_COLUMNS = [field.name for field in FIELDS]
PERSONAL_COLUMNS = [field.name for field in FIELDS if field.personal]
REQUIRED_COLUMNS = [field.name for field in FIELDS if field.required]
NAME_COLUMNS = ["first_name", "last_name", "company_name"]
PHONE_COLUMNS = ["phone_mobile", "phone_home", "phone_work"]
CONSENT_COLUMNS = [f"consent_{channel}" for channel in CONSENT_CHANNELS]
TIME_COLUMNS = [field.name for field in FIELDS if field.dtype == "datetime"]
LINEAGE_COLUMNS = ["source_file", "source_row"]
CUSTOMER_COLUMNS = CANONICAL_COLUMNS + LINEAGE_COLUMNS
# One problem found in one customer row, by mapping (formats.values) or by the row rules (customers.validate): an error
# quarantines the row, a warning drops the value and lets the row through. `value` stays empty: never a personal value.
READ_ISSUE_COLUMNS = ["source_row", "customer_number", "field", "rule", "value", "severity", "message"]
ISSUE_COLUMNS = ["source_row", "customer_number", "field", "rule", "severity", "message"]

PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
POSTCODE_PATTERN = r"^(?:[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}|BFPO [0-9]{1,4})$"
OWNED_VEHICLES_PATTERN = r"^[A-Z0-9]+(?:\|[A-Z0-9]+)*$"


def pandas_dtype(field: CustomerField) -> str:
    return {"string": "string", "bool": "boolean", "datetime": "datetime64[ns, UTC]"}[field.dtype]


def _lineage_dtype(name: str) -> str:
    return "Int64" if name == "source_row" else "string"


def empty_customers() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=pandas_dtype(FIELD_BY_NAME[name]) if name in FIELD_BY_NAME else _lineage_dtype(name)) for name in CUSTOMER_COLUMNS})


def empty_read_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "source_row" else "string") for c in READ_ISSUE_COLUMNS})


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "source_row" else "string") for c in ISSUE_COLUMNS})


def coerce_read(frame: pd.DataFrame) -> pd.DataFrame:
    """Every customer column present, in order, as the engine read it: a column the profile does not read is all-missing
    (text for text and times, boolean for consents); a read column keeps its type (customers.validate parses the rest)."""
    out = {}
    for name in CUSTOMER_COLUMNS:
        if name in frame.columns:
            out[name] = frame[name].astype("Int64") if name == "source_row" else frame[name]
        else:
            dtype = "boolean" if name in FIELD_BY_NAME and FIELD_BY_NAME[name].dtype == "bool" else _lineage_dtype(name)
            out[name] = pd.Series(pd.NA, index=frame.index, dtype=dtype)
    return pd.DataFrame(out, index=frame.index)


def coerce_to_schema(frame: pd.DataFrame) -> pd.DataFrame:
    """Every customer column present, in order, with its canonical dtype (absent columns are all-missing; times are UTC)."""
    out = {}
    for name in CUSTOMER_COLUMNS:
        dtype = pandas_dtype(FIELD_BY_NAME[name]) if name in FIELD_BY_NAME else _lineage_dtype(name)
        if name not in frame.columns:
            out[name] = pd.Series(pd.NaT if dtype.startswith("datetime") else pd.NA, index=frame.index, dtype=dtype)
        elif dtype.startswith("datetime"):
            out[name] = pd.to_datetime(frame[name], utc=True).astype(dtype)
        else:
            out[name] = frame[name].astype(dtype)
    return pd.DataFrame(out, index=frame.index)


def _column(field: CustomerField) -> pa.Column:
    checks = []
    if field.required:
        checks.append(pa.Check.str_length(min_value=1, error="not_empty"))
    if field.name == "email":
        checks.append(pa.Check.str_contains("^[^@\\s]+@[^@\\s]+$", error="email_shape"))
    elif field.name in PHONE_COLUMNS:
        checks.append(pa.Check.str_matches(PHONE_PATTERN, error="e164"))
    elif field.name == "postcode":
        checks.append(pa.Check.str_matches(POSTCODE_PATTERN, error="uk_postcode"))
    elif field.name == "owned_vehicles":
        checks.append(pa.Check.str_matches(OWNED_VEHICLES_PATTERN, error="vehicle_list"))
    return pa.Column(pandas_dtype(field), checks=checks, nullable=not field.required, required=True, description=field.description)


CUSTOMER_SCHEMA = pa.DataFrameSchema(
    {field.name: _column(field) for field in FIELDS} | {"source_file": pa.Column("string", nullable=True), "source_row": pa.Column("Int64", nullable=True)},
    name="canonical_customer",
    strict=False,
    coerce=False,
)
