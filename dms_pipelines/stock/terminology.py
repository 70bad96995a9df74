"""The group's standard wording: DMS shorthand in adverts and features, expanded in one place."""

import re

import pandas as pd

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

_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(" + "|".join(re.escape(k) for k in sorted(STANDARD_TERMS, key=len, reverse=True)) + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# Short codes that are also ordinary words in other contexts are only expanded in feature lists.
_FEATURE_ONLY = {"CC", "BT", "SH", "CLIMATE", "ALLOYS"}


def _expand(match: re.Match, features: bool) -> str:
    key = match.group(1).upper()
    if key in _FEATURE_ONLY and not features:
        return match.group(1)
    return STANDARD_TERMS[key]


def normalise_description(text: pd.Series) -> pd.Series:
    return text.str.replace(_PATTERN, lambda m: _expand(m, False), regex=True)


def normalise_features(features: pd.Series) -> pd.Series:
    """Each '|'-separated feature expanded when it is a known shorthand."""
    return features.str.replace(_PATTERN, lambda m: _expand(m, True), regex=True)
