"""Normalise and check the customer rows read from one DMS customer export: accepted rows in the canonical shape, and every issue by file, row and field (never the value)."""

import re

import numpy as np
import pandas as pd
import pandera.errors

from dms_pipelines.customers.normalise import DEFAULT_COUNTRY, clean_text, normalise_email, normalise_name, normalise_phone, normalise_postcode, normalise_registration, parse_flag, parse_timestamp
from dms_pipelines.customers.schema import (
    CONSENT_COLUMNS,
    CUSTOMER_COLUMNS,
    CUSTOMER_SCHEMA,
    ISSUE_COLUMNS,
    LIST_SEPARATOR,
    NAME_COLUMNS,
    PHONE_COLUMNS,
    TIME_COLUMNS,
    coerce_read,
    coerce_to_schema,
    empty_issues,
)

TEXT_COLUMNS = ["address_line1", "address_line2", "town", "county"]
VEHICLE_SEPARATORS = re.compile(r"[|,;/]")
EIRCODE = re.compile(r"^(?P<routing>[AC-FHKNPRTV-Y][0-9]{2}|D6W)(?P<unique>[0-9AC-FHKNPRTV-Y]{4})$")
# What a rule says, in the issue message: the field and the rule only, never the value.
RULE_TEXT = {
    "missing": "missing; every customer needs its DMS customer number (the row is quarantined)",
    "invalid_email": "not a valid e-mail address; the value is dropped, the customer goes on",
    "invalid_phone": "not a valid telephone number for the dealer's country; the value is dropped, the customer goes on",
    "invalid_postcode": "not a valid postcode; the value is dropped, the customer goes on",
    "not_a_boolean": "not a yes/no answer; the consent is left empty (not asked), never inferred",
    "not_a_time": "not a readable date and time; the value is dropped",
    "no_name_or_contact": "no name (first, last or company) and no contact (e-mail, phone or postal address): nothing to identify the customer by",
    "duplicate_customer_number": "the customer number appears again later in the file; the later row wins and this one is not stored",
}


def validate_customers(rows: pd.DataFrame, read_issues: pd.DataFrame | None, file_name: str, country: str = DEFAULT_COUNTRY) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accepted customers (CUSTOMER_COLUMNS, canonical dtypes) and the issues (ISSUE_COLUMNS) of one file's read rows.

    Rules: a missing customer number, or no name and no contact at all, quarantines the row (error); an invalid e-mail,
    phone, postcode, consent answer or time is a warning and the value is dropped; a customer number seen twice in the
    file: the later row wins, the earlier one gets a warning and is not stored. Issues the engine found while reading
    (read_issues) are carried over: errors quarantine their row, warnings only report.
    """
    frame = coerce_read(rows).reset_index(drop=True)
    source_rows = frame["source_row"].astype("Int64")
    issues: list[dict] = []
    bad = np.zeros(len(frame), dtype=bool)
    number = _applied(frame["customer_number"], clean_text)
    out: dict[str, pd.Series] = {"dealer_id": frame["dealer_id"], "customer_number": number}

    def report(mask: np.ndarray, field: str, rule: str, severity: str, text: str | None = None) -> None:
        for position in np.flatnonzero(mask):
            row = source_rows.iloc[position]
            issues.append(
                {
                    "source_row": row,
                    "customer_number": number.iloc[position],
                    "field": field,
                    "rule": rule,
                    "severity": severity,
                    "message": f"{file_name}: row {_row(row)}: {field}: {text or RULE_TEXT[rule]}",
                }
            )

    if read_issues is not None and len(read_issues):
        position_of = {int(row): position for position, row in enumerate(source_rows) if row is not pd.NA}
        for issue in read_issues.itertuples(index=False):
            row = None if pd.isna(issue.source_row) else int(issue.source_row)
            position = position_of.get(row)
            field = issue.field if isinstance(issue.field, str) else "(row)"
            message = str(issue.message)
            if not message.startswith(f"{file_name}:"):
                message = f"{file_name}: row {_row(row)}: {message}"
            key = getattr(issue, "customer_number", None)
            issues.append({"source_row": row, "customer_number": None if pd.isna(key) else key, "field": field, "rule": issue.rule, "severity": issue.severity, "message": message})
            if issue.severity == "error" and position is not None:
                bad[position] = True

    missing = number.isna().to_numpy()
    report(missing, "customer_number", "missing", "error")
    bad |= missing

    for name in ["title", *NAME_COLUMNS]:
        out[name] = _applied(frame[name], normalise_name)
    out["email"], invalid = _checked(frame["email"], normalise_email)
    report(invalid, "email", "invalid_email", "warning")
    for name in PHONE_COLUMNS:
        out[name], invalid = _checked(frame[name], lambda value: normalise_phone(value, country))
        report(invalid, name, "invalid_phone", "warning")
    for name in TEXT_COLUMNS:
        out[name] = _applied(frame[name], clean_text)
    out["postcode"], invalid = _checked(frame["postcode"], _postcode_for(country))
    report(invalid, "postcode", "invalid_postcode", "warning")
    out["owned_vehicles"] = _applied(frame["owned_vehicles"], owned_vehicles)
    for name in CONSENT_COLUMNS:
        out[name], invalid = _flags(frame[name])
        report(invalid, name, "not_a_boolean", "warning")
    out["consent_wording"] = _applied(frame["consent_wording"], lambda value: clean_text(value, keep_line_breaks=True))
    for name in TIME_COLUMNS:
        out[name], invalid = _times(frame[name], country)
        report(invalid, name, "not_a_time", "warning")
    out["source_file"] = frame["source_file"]
    out["source_row"] = source_rows
    result = coerce_to_schema(pd.DataFrame(out, index=frame.index))

    named = result[NAME_COLUMNS].notna().any(axis=1).to_numpy()
    reachable = result[["email", *PHONE_COLUMNS, "address_line1", "postcode"]].notna().any(axis=1).to_numpy()
    anonymous = ~bad & ~named & ~reachable
    report(anonymous, "name_or_contact", "no_name_or_contact", "error")
    bad |= anonymous

    bad |= _schema_failures(result, bad, report)

    usable = pd.Series(~bad, index=result.index)
    later = result["customer_number"].where(usable).duplicated(keep="last").to_numpy() & usable.to_numpy()
    if later.any():
        last_row = result.loc[usable].groupby("customer_number", sort=False)["source_row"].last()
        for position in np.flatnonzero(later):
            winner = last_row[result["customer_number"].iloc[position]]
            report(_only(len(result), position), "customer_number", "duplicate_customer_number", "warning", f"{RULE_TEXT['duplicate_customer_number']} (row {_row(winner)})")
    accepted = result.loc[~bad & ~later].reset_index(drop=True)
    found = pd.DataFrame(issues, columns=ISSUE_COLUMNS) if issues else empty_issues()
    found = found.astype({"source_row": "Int64", "customer_number": "string", "field": "string", "rule": "string", "severity": "string", "message": "string"})
    return accepted[CUSTOMER_COLUMNS], found.sort_values("source_row", kind="stable", na_position="first").reset_index(drop=True)


def owned_vehicles(value) -> str | None:
    """VINs or registrations, each upper case letters and digits only, in their order without repeats, '|'-joined."""
    text = clean_text(value)
    if text is None:
        return None
    items = [normalise_registration(item) for item in VEHICLE_SEPARATORS.split(text)]
    kept = list(dict.fromkeys(item for item in items if item))
    return LIST_SEPARATOR.join(kept) or None


def normalise_eircode(value) -> str | None:
    """An Irish Eircode as "D02 X285"; None when empty or not one."""
    text = clean_text(value)
    if text is None:
        return None
    found = EIRCODE.match(re.sub(r"\s+", "", text.upper()))
    return f"{found.group('routing')} {found.group('unique')}" if found else None


def _postcode_for(country: str):
    return normalise_eircode if (country or DEFAULT_COUNTRY).upper() == "IE" else normalise_postcode


def _row(row) -> str:
    return "?" if row is None or row is pd.NA else str(int(row))


def _only(length: int, position: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    mask[position] = True
    return mask


def _objects(values: pd.Series) -> list:
    return [None if value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value) else value for value in values.astype(object)]


def _applied(values: pd.Series, function) -> pd.Series:
    """`function` of every value (once per distinct value: exports repeat towns, titles, consent wordings), None for missing."""
    objects = _objects(values)
    cache = {value: function(value) for value in dict.fromkeys(objects) if value is not None}
    return pd.Series([cache[value] if value is not None else None for value in objects], index=values.index, dtype=object)


def _checked(values: pd.Series, function) -> tuple[pd.Series, np.ndarray]:
    """The normalised values and where a value was given (not blank) but `function` refused it."""
    given = pd.Series([clean_text(value) is not None if value is not None else False for value in _objects(values)], index=values.index).to_numpy()
    result = _applied(values, function)
    return result, given & result.isna().to_numpy()


def _flags(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if isinstance(values.dtype, pd.BooleanDtype):
        return values, np.zeros(len(values), dtype=bool)

    def flag(value):
        try:
            return parse_flag(value)
        except ValueError:
            return "invalid"

    result = _applied(values, flag)
    invalid = (result == "invalid").to_numpy()
    return result.mask(result == "invalid", None), invalid


def _times(values: pd.Series, country: str) -> tuple[pd.Series, np.ndarray]:
    def moment(value):
        try:
            return parse_timestamp(value, country)
        except (ValueError, TypeError, OverflowError):
            return "invalid"

    result = _applied(values, moment)
    invalid = pd.Series([value == "invalid" if isinstance(value, str) else False for value in result], index=values.index).to_numpy()
    cleaned = result.mask(invalid, None)
    return pd.Series(pd.to_datetime(cleaned.tolist(), utc=True) if len(cleaned) else [], index=values.index, dtype="datetime64[ns, UTC]"), invalid


def _schema_failures(result: pd.DataFrame, bad: np.ndarray, report) -> np.ndarray:
    """Rows the canonical Pandera schema refuses (the rules above should leave none): quarantined, by field and check."""
    failed = np.zeros(len(result), dtype=bool)
    candidates = result.loc[~bad]
    if candidates.empty:
        return failed
    try:
        CUSTOMER_SCHEMA.validate(candidates, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        for case in cases.itertuples(index=False):
            if case.index is None or pd.isna(case.index):
                continue
            position = result.index.get_loc(case.index)
            if failed[position]:
                continue
            failed[position] = True
            report(_only(len(result), position), str(case.column), f"schema:{case.check}", "error", f"fails the canonical customer check {case.check} (the row is quarantined)")
    return failed
