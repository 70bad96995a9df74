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

# Short codes that are also ordinary words in other contexts are only expanded in feature lists.
FEATURE_ONLY = {"CC", "BT", "SH", "CLIMATE", "ALLOYS"}


def _word_pattern(terms: dict[str, str]) -> str:
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return rf"(?i)(?:^|[^A-Za-z0-9])(?:{alternatives})(?:[^A-Za-z0-9]|$)"


DESCRIPTION_TERMS = {k: v for k, v in STANDARD_TERMS.items() if k not in FEATURE_ONLY}
_DESCRIPTION_FIND = _word_pattern(DESCRIPTION_TERMS)
_DESCRIPTION_REPLACE = re.compile(
    r"(?<![A-Za-z0-9])(" + "|".join(re.escape(t) for t in sorted(DESCRIPTION_TERMS, key=len, reverse=True)) + r")(?![A-Za-z0-9])", re.IGNORECASE
)
_BY_UPPER = {k.upper(): v for k, v in STANDARD_TERMS.items()}


def normalise_description(text: pd.Series) -> pd.Series:
    """Whole-word shorthand expanded in advert text; only rows that contain a term leave Arrow's vectorised search."""
    hits = text.str.contains(_DESCRIPTION_FIND, regex=True).fillna(False).astype(bool)
    if not hits.any():
        return text
    expanded = text[hits].map(lambda v: _DESCRIPTION_REPLACE.sub(lambda m: DESCRIPTION_TERMS[m.group(1).upper()], v)).astype("string")
    return text.mask(hits, expanded)


def normalise_features(features: pd.Series) -> pd.Series:
    """Each '|'-separated feature that is a known shorthand (as a whole item) replaced by the standard wording."""
    lookup = _BY_UPPER
    values = [
        "|".join(lookup.get(item.strip().upper(), item) for item in cell.split("|")) if isinstance(cell, str) else None
        for cell in features.to_numpy(dtype=object, na_value=None)
    ]
    return pd.Series(values, index=features.index, dtype="string")
