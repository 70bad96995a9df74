"""The group's standard wording: DMS shorthand in adverts and features, expanded in one place."""

import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Shorthand as dealers type it -> the wording every marketplace shows.
STANDARD_TERMS: dict[str, str] = {
    "FSH": "Full service history",
    "FDSH": "Full dealer service history",
    "FMDSH": "Full main dealer service history",
    "PSH": "Part service history",
    "SH": "Service history",
    "1 OWNER": "One owner",
    "1 PREV OWNER": "One previous owner",
    "A/C": "Air conditioning",
    "AIRCON": "Air conditioning",
    "CLIMATE": "Climate control",
    "SAT NAV": "Satellite navigation",
    "SATNAV": "Satellite navigation",
    "PDC": "Parking sensors",
    "ULEZ": "ULEZ compliant",
    "HPI CLEAR": "HPI clear",
    "BT": "Bluetooth",
    "ALLOYS": "Alloy wheels",
    "CC": "Cruise control",
}

# Short codes that are also ordinary words in other contexts are only expanded in feature lists.
FEATURE_ONLY = {"CC", "BT", "SH", "CLIMATE", "ALLOYS"}


def _expand(values: pd.Series, terms: dict[str, str]) -> pd.Series:
    """Whole-word, case-insensitive replacement, longest terms first, on Arrow's vectorised RE2 (no per-value Python)."""
    array = pa.array(values.astype(object).where(values.notna(), None).tolist(), type=pa.string())
    for short in sorted(terms, key=len, reverse=True):
        pattern = r"(?i)(^|[^A-Za-z0-9])" + re.escape(short) + r"([^A-Za-z0-9]|$)"
        replacement = r"\1" + terms[short].replace("\\", "\\\\") + r"\2"
        for _ in range(2):  # a second pass catches a term right after another copy of itself ("PDC|PDC")
            array = pc.replace_substring_regex(array, pattern=pattern, replacement=replacement)
    return pd.Series(array.to_pylist(), index=values.index, dtype="string")


def normalise_description(text: pd.Series) -> pd.Series:
    return _expand(text, {k: v for k, v in STANDARD_TERMS.items() if k not in FEATURE_ONLY})


def normalise_features(features: pd.Series) -> pd.Series:
    """Each '|'-separated feature expanded when it is a known shorthand."""
    return _expand(features, STANDARD_TERMS)
