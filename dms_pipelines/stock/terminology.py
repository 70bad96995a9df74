"""The group's standard wording: DMS shorthand in adverts and features, expanded in one place."""

import re

import numpy as np
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


def _word_pattern(terms: dict[str, str]) -> str:
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return rf"(?i)(?:^|[^A-Za-z0-9])(?:{alternatives})(?:[^A-Za-z0-9]|$)"


DESCRIPTION_TERMS = {k: v for k, v in STANDARD_TERMS.items() if k not in FEATURE_ONLY}
_DESCRIPTION_FIND = _word_pattern(DESCRIPTION_TERMS)
_DESCRIPTION_REPLACE = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(re.escape(t) for t in sorted(DESCRIPTION_TERMS, key=len, reverse=True)) + r")(?![A-Za-z0-9])", re.IGNORECASE)
_BY_UPPER = {k.upper(): v for k, v in STANDARD_TERMS.items()}


def normalise_description(text: pd.Series) -> pd.Series:
    """Whole-word shorthand expanded in advert text; only rows that contain a term leave Arrow's vectorised search,
    and each distinct text among them is expanded once."""
    hits = text.str.contains(_DESCRIPTION_FIND, regex=True).fillna(False).astype(bool)
    if not hits.any():
        return text
    found = text[hits]
    codes, distinct = pd.factorize(found)
    replaced = np.array([_DESCRIPTION_REPLACE.sub(lambda m: DESCRIPTION_TERMS[m.group(1).upper()], v) for v in distinct], dtype=object)
    expanded = pd.Series(replaced[codes], index=found.index, dtype="string")
    return text.mask(hits, expanded)


def normalise_features(features: pd.Series) -> pd.Series:
    """Each '|'-separated feature that is a known shorthand (as a whole item) replaced by the standard wording."""
    lookup = _BY_UPPER
    if not (isinstance(features.dtype, pd.StringDtype) and features.dtype.storage == "pyarrow"):
        values = ["|".join(lookup.get(item.strip().upper(), item) for item in cell.split("|")) if isinstance(cell, str) else None for cell in features.to_numpy(dtype=object, na_value=None)]
        return pd.Series(values, index=features.index, dtype="string")
    # Split in Arrow, then look each distinct item up once: a few dozen Python calls instead of one per item.
    cells = pa.array(features.array)
    lists = pc.split_pattern(cells.combine_chunks() if isinstance(cells, pa.ChunkedArray) else cells, "|")
    items = pc.dictionary_encode(lists.flatten())
    distinct = items.dictionary.to_pylist()
    standard = [lookup.get(item.strip().upper(), item) for item in distinct]
    if standard == distinct:
        return pd.Series(features.array, index=features.index, dtype="string")
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    renamed = type(lists).from_arrays(offsets, pa.array(standard, type=items.dictionary.type).take(items.indices), mask=lists.is_null())
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pc.binary_join(renamed, pa.scalar("|", items.dictionary.type))])), index=features.index)
