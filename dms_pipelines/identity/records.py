"""The identity record frame (one row per DMS customer or lead, with its values as compared) and its builders from canonical customer rows and lead dicts."""

import re

import pandas as pd

from dms_pipelines.customers.normalise import normalise_name

RECORD_KINDS = ("customer", "lead")
RECORD_COLUMNS = ["record_kind", "record_key", "dealer_id", "first_name", "last_name", "email", "phones", "postcode", "town"]
CUSTOMER_PHONE_COLUMNS = ("phone_mobile", "phone_home", "phone_work")
NOT_NAME_CHARACTER = re.compile(r"[^a-z' -]")


def matching_name(value) -> str | None:
    """A name as compared: lower case, letters, apostrophes, hyphens and single spaces only; None when nothing is left."""
    name = normalise_name(value)
    if name is None:
        return None
    return " ".join(NOT_NAME_CHARACTER.sub("", name.lower()).split()) or None


def matching_email(value) -> str | None:
    """A canonical (already normalised) e-mail address as compared: lower case throughout (mailboxes are case-blind in practice)."""
    text = value.strip().lower() if isinstance(value, str) else None
    return text or None


def matching_phones(values) -> list[str]:
    """The distinct canonical (E.164) numbers among `values`, sorted."""
    return sorted({value.strip() for value in values if isinstance(value, str) and value.strip()})


def matching_postcode(value) -> str | None:
    text = " ".join(value.upper().split()) if isinstance(value, str) else None
    return text or None


def matching_town(value) -> str | None:
    name = normalise_name(value)
    return name.upper() if name else None


def split_full_name(full_name) -> tuple[str | None, str | None]:
    """A name given whole, split at its last space: ("Mary Ann", "Smith"); one word is a first name."""
    name = normalise_name(full_name)
    if not name:
        return None, None
    first, _, last = name.rpartition(" ")
    return (first, last) if first else (last, None)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA or value is pd.NaT


def _value(row, name):
    value = row.get(name)
    return None if _blank(value) else value


def empty_records() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype="object") for column in RECORD_COLUMNS})


def records_from_customers(customers: pd.DataFrame) -> pd.DataFrame:
    """Identity records of canonical DMS customer rows (values already normalised by the customer reader; record_key: the
    customer number; phones: mobile, home and work)."""
    if customers.empty:
        return empty_records()
    used = ["customer_number", "dealer_id", "first_name", "last_name", "email", *CUSTOMER_PHONE_COLUMNS, "postcode", "town"]
    rows = customers[[column for column in used if column in customers.columns]].to_dict("records")  # only these: a row dict per customer is costly
    frame = pd.DataFrame(
        {
            "record_kind": "customer",
            "record_key": [str(row["customer_number"]) for row in rows],
            "dealer_id": [str(row["dealer_id"]) for row in rows],
            "first_name": [matching_name(_value(row, "first_name")) for row in rows],
            "last_name": [matching_name(_value(row, "last_name")) for row in rows],
            "email": [matching_email(_value(row, "email")) for row in rows],
            "phones": [matching_phones([_value(row, column) for column in CUSTOMER_PHONE_COLUMNS]) for row in rows],
            "postcode": [matching_postcode(_value(row, "postcode")) for row in rows],
            "town": [matching_town(_value(row, "town")) for row in rows],
        }
    )
    return frame[RECORD_COLUMNS]


def record_from_lead(lead: dict, record_key: str) -> dict:
    """The identity record of one canonical lead; `record_key` is the lead's database id. A lead without first and last name
    has its full name split."""
    first, last = _value(lead, "first_name"), _value(lead, "last_name")
    if first is None and last is None:
        first, last = split_full_name(_value(lead, "full_name"))
    return {
        "record_kind": "lead",
        "record_key": str(record_key),
        "dealer_id": str(lead["dealer_id"]),
        "first_name": matching_name(first),
        "last_name": matching_name(last),
        "email": matching_email(_value(lead, "email")),
        "phones": matching_phones([_value(lead, "phone")]),
        "postcode": matching_postcode(_value(lead, "postcode")),
        "town": matching_town(_value(lead, "town")),
    }


def records_from_leads(leads: list[dict], record_keys: list[str]) -> pd.DataFrame:
    """Identity records of canonical lead dicts, each with its record key (the lead's database id) at the same position."""
    if len(leads) != len(record_keys):
        raise ValueError("one record key per lead")
    if not leads:
        return empty_records()
    return pd.DataFrame([record_from_lead(lead, key) for lead, key in zip(leads, record_keys)], columns=RECORD_COLUMNS)
