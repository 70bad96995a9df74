"""Check and normalise raw lead records into the typed canonical lead frame; records that cannot be used are quarantined with reasons."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pandas as pd
import pandera.pandas as pa

from dms_pipelines.customers import normalise
from dms_pipelines.leads.records import CHANNELS, FIELD_NAMES, FIELDS, SOURCES

LEAD_STATUSES = ("new", "updated", "cancelled", "completed")
MAX_MESSAGE_CHARS = 5000
MAX_LEAD_ID_CHARS = 200
MAX_RECORD_LABEL_CHARS = 40
FUTURE_ALLOWANCE = timedelta(days=1)
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=timezone.utc)
PANDAS_DTYPES = {"string": pd.StringDtype(), "bool": pd.BooleanDtype(), "datetime": pd.DatetimeTZDtype("ns", "UTC")}
DTYPE_BY_FIELD = {lead_field.name: lead_field.dtype for lead_field in FIELDS}
REQUIRED = ("source", "source_lead_id", "dealer_id", "received_at", "enquired_at", "channel", "lead_status")
NAME_FIELDS = ("first_name", "last_name", "full_name")
FLAG_FIELDS = tuple(name for name, dtype in DTYPE_BY_FIELD.items() if dtype == "bool")
PLAIN_TEXT_FIELDS = ("source", "source_lead_id", "channel", "lead_status", "vehicle_ref", "vehicle_advert_id", "vehicle_stock_id", "part_exchange_details", "consent_wording")


@dataclass(frozen=True)
class LeadIssue:
    """One problem with one lead: an error quarantines it, a warning keeps it. The message never holds a personal value."""

    file: str
    record: str
    field: str
    rule: str
    message: str
    severity: str


@dataclass
class LeadValidation:
    leads: pd.DataFrame
    quarantined: list[dict] = field(default_factory=list)
    issues: list[LeadIssue] = field(default_factory=list)


def empty_leads() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=PANDAS_DTYPES[DTYPE_BY_FIELD[name]]) for name in FIELD_NAMES})


def _column(name: str) -> pa.Column:
    checks = []
    if name == "source":
        checks.append(pa.Check.isin(list(SOURCES), error="allowed_values"))
    elif name == "channel":
        checks.append(pa.Check.isin(list(CHANNELS), error="allowed_values"))
    elif name == "lead_status":
        checks.append(pa.Check.isin(list(LEAD_STATUSES), error="allowed_values"))
    elif name == "source_lead_id":
        checks.append(pa.Check.str_length(1, MAX_LEAD_ID_CHARS, error="length"))
    elif name == "message":
        checks.append(pa.Check.str_length(0, MAX_MESSAGE_CHARS, error="length"))
    return pa.Column(PANDAS_DTYPES[DTYPE_BY_FIELD[name]], checks=checks, nullable=name not in REQUIRED, required=True)


LEAD_SCHEMA = pa.DataFrameSchema(
    {name: _column(name) for name in FIELD_NAMES},
    checks=[pa.Check(lambda frame: frame["email"].notna() | frame["phone"].notna(), error="no_contact")],
    name="canonical_lead",
    strict=True,
    ordered=True,
    coerce=False,
)
SCHEMA_MESSAGES = {
    "not_nullable": "is required and empty",
    "allowed_values": "is not an allowed value",
    "length": "is empty or too long",
    "no_contact": "neither a valid e-mail nor a valid phone",
}
ALLOWED = {"source": SOURCES, "channel": CHANNELS, "lead_status": LEAD_STATUSES}


class _Record:
    """One record's cleaned values and the issues found in it."""

    def __init__(self, file_name: str, label: str):
        self.file_name = file_name
        self.label = label
        self.values: dict = {}
        self.issues: list[LeadIssue] = []

    def add(self, field_name: str, rule: str, severity: str, message: str) -> None:
        self.issues.append(LeadIssue(self.file_name, self.label, field_name, rule, f"{self.file_name}: {self.label}: {field_name}: {message}", severity))

    @property
    def rejected(self) -> bool:
        return any(issue.severity == "error" for issue in self.issues)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _label(raw, index: int) -> str:
    given = raw.get("record") if isinstance(raw, dict) else None
    label = normalise.clean_text(given) if isinstance(given, str) else None
    return (label or f"record {index + 1}")[:MAX_RECORD_LABEL_CHARS]


def _as_text(value):
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _clean(raw: dict, record: _Record, dealer_id: str, received_at: datetime, country: str) -> None:
    values = record.values
    values["dealer_id"] = dealer_id
    values["received_at"] = received_at
    values["record"] = record.label
    for name in PLAIN_TEXT_FIELDS:
        values[name] = normalise.clean_text(_as_text(raw.get(name)))
    values["lead_status"] = values["lead_status"] or "new"
    for name in ("source", "channel", "lead_status"):
        values[name] = values[name].lower() if values[name] else None
        if values[name] is not None and values[name] not in ALLOWED[name]:
            record.add(name, "allowed_values", "error", f"is not one of {', '.join(ALLOWED[name])}")
    if values["source_lead_id"] is None:
        record.add("source_lead_id", "required", "error", "is required and empty")
    elif len(values["source_lead_id"]) > MAX_LEAD_ID_CHARS:
        record.add("source_lead_id", "too_long", "error", f"longer than {MAX_LEAD_ID_CHARS} characters")
    if values["source"] is None:
        record.add("source", "required", "error", "is required and empty")
    if values["channel"] is None:
        record.add("channel", "required", "error", "is required and empty")
    values["vehicle_vin"] = normalise.normalise_registration(_as_text(raw.get("vehicle_vin")))
    values["vehicle_registration"] = normalise.normalise_registration(_as_text(raw.get("vehicle_registration")))
    for name in NAME_FIELDS:
        values[name] = normalise.normalise_name(_as_text(raw.get(name)))
    _clean_message(raw, record)
    _clean_contact(raw, record, country)
    _clean_postcode(raw, record, country)
    _clean_times(raw, record, received_at, country)
    for name in FLAG_FIELDS:
        try:
            values[name] = normalise.parse_flag(raw.get(name))
        except ValueError:
            values[name] = None
            what = "consent" if name.startswith("consent_") else "answer"
            record.add(name, "flag_unknown", "warning", f"{what} is not a yes/no value; left empty (never read as a yes)")


def _clean_message(raw: dict, record: _Record) -> None:
    message = normalise.clean_text(_as_text(raw.get("message")), keep_line_breaks=True)
    if message is not None and len(message) > MAX_MESSAGE_CHARS:
        record.add("message", "message_truncated", "warning", f"longer than {MAX_MESSAGE_CHARS} characters; truncated")
        message = message[:MAX_MESSAGE_CHARS]
    record.values["message"] = message


def _clean_contact(raw: dict, record: _Record, country: str) -> None:
    given_email = normalise.clean_text(_as_text(raw.get("email")))
    given_phone = normalise.clean_text(_as_text(raw.get("phone")))
    email = normalise.normalise_email(given_email)
    phone = normalise.normalise_phone(given_phone, country)
    record.values["email"], record.values["phone"] = email, phone
    if email is None and phone is None:
        said = {
            (False, False): "neither an e-mail nor a phone given",
            (True, False): "the e-mail is not a valid address and no phone given",
            (False, True): "the phone is not a valid number and no e-mail given",
            (True, True): "neither the e-mail nor the phone is valid",
        }[(given_email is not None, given_phone is not None)]
        record.add("email" if given_email is not None or given_phone is None else "phone", "no_contact", "error", f"no usable contact: {said}")
        return
    if given_email is not None and email is None:
        record.add("email", "email_invalid", "warning", "not a valid e-mail address; dropped (the phone is kept)")
    if given_phone is not None and phone is None:
        record.add("phone", "phone_invalid", "warning", f"not a valid phone number for {normalise.phone_region(country)}; dropped (the e-mail is kept)")


def _clean_postcode(raw: dict, record: _Record, country: str) -> None:
    given = normalise.clean_text(_as_text(raw.get("postcode")))
    if given is None:
        record.values["postcode"] = None
    elif normalise.phone_region(country) != "GB":
        record.values["postcode"] = normalise.normalise_name(given.upper())  # another country's code (an Eircode): kept as given, tidied
    else:
        record.values["postcode"] = normalise.normalise_postcode(given)
        if record.values["postcode"] is None:
            record.add("postcode", "postcode_invalid", "warning", "not a UK postcode; dropped")


def _clean_times(raw: dict, record: _Record, received_at: datetime, country: str) -> None:
    latest = received_at + FUTURE_ALLOWANCE
    try:
        enquired = normalise.parse_timestamp(raw.get("enquired_at"), country)
    except ValueError:
        record.add("enquired_at", "enquired_at_unreadable", "warning", "not a readable time; the received time is used")
        enquired = received_at
    if enquired is None:
        record.add("enquired_at", "enquired_at_missing", "warning", "not given; the received time is used")
        enquired = received_at
    elif enquired > latest:
        record.add("enquired_at", "enquired_at_future", "warning", "more than a day after the lead was received; the received time is used")
        enquired = received_at
    elif enquired < EARLIEST_PLAUSIBLE:
        record.add("enquired_at", "enquired_at_implausible", "warning", f"before {EARLIEST_PLAUSIBLE:%Y}; the received time is used")
        enquired = received_at
    record.values["enquired_at"] = enquired
    try:
        consent_at = normalise.parse_timestamp(raw.get("consent_at"), country)
    except ValueError:
        record.add("consent_at", "consent_at_unreadable", "warning", "not a readable time; left empty")
        consent_at = None
    if consent_at is not None and not (EARLIEST_PLAUSIBLE <= consent_at <= latest):
        record.add("consent_at", "consent_at_implausible", "warning", "in the future or before 2000; left empty")
        consent_at = None
    record.values["consent_at"] = consent_at


def _frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return empty_leads()
    columns = {}
    for name in FIELD_NAMES:
        values = [row.get(name) for row in rows]
        dtype = PANDAS_DTYPES[DTYPE_BY_FIELD[name]]
        if DTYPE_BY_FIELD[name] == "datetime":
            columns[name] = pd.Series(pd.to_datetime(pd.Series(values, dtype=object), utc=True), dtype=dtype)
        else:
            columns[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(columns)


def _schema_failures(frame: pd.DataFrame) -> dict[int, list[tuple[str, str]]]:
    """The rows the Pandera schema refuses, by position, with (field, rule) for each failure."""
    try:
        LEAD_SCHEMA.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        failures: dict[int, list[tuple[str, str]]] = {}
        for case in errors.failure_cases.to_dict("records"):
            column = case.get("column")
            field_name = column if isinstance(column, str) and column in FIELD_NAMES else "contact" if case.get("check") == "no_contact" else "schema"
            rule = str(case.get("check"))
            index = case.get("index")
            rows = range(len(frame)) if index is None or pd.isna(index) else [int(index)]
            for row in rows:
                failures.setdefault(row, []).append((field_name, rule))
        return failures
    return {}


def validate_leads(records: list[dict], file_name: str, dealer_id: str, received_at: datetime, country: str = "GB") -> LeadValidation:
    """Normalise every record of one lead file (for a dealer in `country`) and check it: the good leads as a typed frame of
    FIELD_NAMES, the bad records as given with their issues, and every issue. Within the file, a repeated lead id keeps its
    last record (the latest state); the earlier ones are dropped with a warning."""
    received = _utc(received_at)
    quarantined: list[dict] = []
    issues: list[LeadIssue] = []
    kept: list[_Record] = []
    raws: list = []
    for index, raw in enumerate(records):
        record = _Record(file_name, _label(raw, index))
        if not isinstance(raw, dict):
            record.add("record", "not_a_record", "error", "is not a lead record")
        else:
            _clean(raw, record, dealer_id, received, country)
        issues.extend(record.issues)
        if record.rejected:
            quarantined.append(_quarantined(raw, record))
        else:
            kept.append(record)
            raws.append(raw)

    frame = _frame([record.values for record in kept])
    failures = _schema_failures(frame)
    survivors: list[int] = []
    for position, record in enumerate(kept):
        if position in failures:
            for field_name, rule in failures[position]:
                record.add(field_name, rule, "error", SCHEMA_MESSAGES.get(rule, f"fails {rule}"))
                issues.append(record.issues[-1])
            quarantined.append(_quarantined(raws[position], record))
        else:
            survivors.append(position)

    last_of_key = {(kept[position].values["source"], kept[position].values["source_lead_id"]): position for position in survivors}
    winners = []
    for position in survivors:
        record = kept[position]
        later = last_of_key[(record.values["source"], record.values["source_lead_id"])]
        if later != position:
            record.add("source_lead_id", "duplicate_lead_id", "warning", f"the same lead id comes again later in the file ({kept[later].label}); this earlier record is dropped")
            issues.append(record.issues[-1])
        else:
            winners.append(position)
    leads = frame.iloc[winners].reset_index(drop=True) if failures or len(winners) < len(frame) else frame
    return LeadValidation(leads=leads, quarantined=quarantined, issues=issues)


def _quarantined(raw, record: _Record) -> dict:
    given = dict(raw) if isinstance(raw, dict) else {"record": record.label, "value": raw}
    given["issues"] = list(record.issues)
    return given
