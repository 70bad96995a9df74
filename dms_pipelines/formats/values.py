"""Vectorised conversion of raw export strings into canonical values, recording every value that fails."""

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dms_pipelines.formats.profile import FieldMapping, MappingProfile
from dms_pipelines.stock.schema import FIELD_BY_NAME, LIST_SEPARATOR, coerce_to_schema

ISSUE_COLUMNS = ["source_row", "stock_id", "field", "rule", "value", "severity", "message"]
TRUE_WORDS = {"1", "y", "yes", "true", "t"}
FALSE_WORDS = {"0", "n", "no", "false", "f"}
# Plain pattern strings without \s keep pandas on its vectorised Arrow (RE2) path instead of Python's re per value.
SPACE = "[ \t\r\n\u00a0]"
MONEY_NOISE = r"[£, \t\u00a0]|GBP|gbp"


class MappingError(Exception):
    """An export cannot be read at all (wrong columns, undecodable, malformed); names the file and the problem."""


@dataclass
class ParseResult:
    """Canonical rows from one export, the problems found in individual values, and file-level facts."""

    file_name: str
    rows: pd.DataFrame
    issues: pd.DataFrame
    records_total: int
    encoding: str
    warnings: list[str] = field(default_factory=list)


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "source_row" else "string") for c in ISSUE_COLUMNS})


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.str.strip() == "")


def _convert(values: pd.Series, mapping: FieldMapping, canonical: str) -> tuple[pd.Series, pd.Series, str]:
    """The converted series, a mask of values that failed, and the rule name for failures."""
    text = values.astype("string").str.strip()
    blank = _blank(text)
    if mapping.default is not None:
        text = text.mask(blank, mapping.default)
        blank = _blank(text)
    if mapping.map is not None:
        lookup = {key.strip().lower(): value for key, value in mapping.map.items()}
        mapped = text.str.lower().map(lookup).astype("string")
        failed = ~blank & mapped.isna()
        return mapped, failed, "unknown_value"
    kind = mapping.type
    if kind in ("integer", "decimal", "money"):
        cleaned = text.str.replace(MONEY_NOISE, "", regex=True) if kind == "money" else text.str.replace(",", "", regex=False)
        numbers = pd.to_numeric(cleaned.astype(object).where(~blank, None), errors="coerce")
        if kind == "integer":
            non_integral = numbers.notna() & (numbers != np.floor(numbers.fillna(0)))
            numbers = numbers.mask(non_integral)
        failed = ~blank & pd.Series(numbers, index=text.index).isna()
        dtype = "Int64" if FIELD_BY_NAME[canonical].dtype == "Int64" else "Float64"
        return pd.Series(numbers, index=text.index).astype(dtype), failed, "not_a_number"
    if kind == "date":
        result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        for fmt in mapping.formats or ["%Y-%m-%d"]:
            todo = result.isna() & ~blank
            if not todo.any():
                break
            parsed = pd.to_datetime(text[todo].astype(object), format=fmt, errors="coerce")
            result.loc[todo] = parsed.astype("datetime64[ns]")
        return result, ~blank & result.isna(), "not_a_date"
    if kind == "boolean":
        lowered = text.str.lower()
        result = pd.Series(pd.NA, index=text.index, dtype="boolean")
        result[lowered.isin(TRUE_WORDS).fillna(False)] = True
        result[lowered.isin(FALSE_WORDS).fillna(False)] = False
        return result, ~blank & result.isna(), "not_a_boolean"
    if kind == "list":
        separator = re.escape(mapping.separator or ",")
        joined = text.str.replace(rf"{SPACE}*(?:{separator}{SPACE}*)+", LIST_SEPARATOR, regex=True).str.strip(LIST_SEPARATOR + " ")
        return joined.mask(blank | (joined == "")), pd.Series(False, index=text.index), "list"
    if kind == "registration":
        return text.str.upper().str.replace(f"{SPACE}+", "", regex=True).mask(blank), pd.Series(False, index=text.index), "registration"
    return text.mask(blank), pd.Series(False, index=text.index), "string"


def map_to_canonical(
    raw: pd.DataFrame, source_rows: pd.Series, profile: MappingProfile, dealer_id: str, file_name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical rows and value-level issues from raw strings keyed by canonical field name."""
    columns: dict[str, pd.Series] = {}
    problems = []
    stock_ids = raw["stock_id"].astype("string").str.strip() if "stock_id" in raw else pd.Series(pd.NA, index=raw.index, dtype="string")
    for canonical, mapping in profile.fields.items():
        if canonical not in raw:
            continue
        converted, failed, rule = _convert(raw[canonical], mapping, canonical)
        columns[canonical] = converted
        if failed.any():
            field_spec = FIELD_BY_NAME[canonical]
            severity = "error" if field_spec.required or rule != "unknown_value" else "warning"
            bad = raw.loc[failed, canonical].astype("string")
            problems.append(
                pd.DataFrame(
                    {
                        "source_row": source_rows[failed].astype("Int64"),
                        "stock_id": stock_ids[failed],
                        "field": canonical,
                        "rule": rule,
                        "value": bad.str.slice(0, 200),
                        "severity": severity,
                        "message": [f"{canonical}: cannot read {v!r} as {mapping.type if rule != 'unknown_value' else 'a known value'}" for v in bad.str.slice(0, 60)],
                    }
                )
            )
    for canonical, value in profile.constants.items():
        columns[canonical] = pd.Series(value, index=raw.index, dtype="string")
    frame = pd.DataFrame(columns, index=raw.index)
    frame["dealer_id"] = dealer_id
    frame["source_file"] = file_name
    frame["source_row"] = source_rows.astype("Int64").values
    issues = pd.concat(problems, ignore_index=True) if problems else empty_issues()
    return coerce_to_schema(frame).reset_index(drop=True), issues.astype({"source_row": "Int64"})
