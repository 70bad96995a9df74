"""A mapping profile's transforms on Arrow columns: first non-empty source, extract, case, unmapped values, unit conversion, and the record filter."""

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

KM_PER_MILE = 1.609344
CONVERSIONS: dict[str, Callable[[pd.Series], pd.Series]] = {
    "litres_to_cc": lambda numbers: numbers * 1000,
    "km_to_miles": lambda numbers: numbers / KM_PER_MILE,
    "miles_to_km": lambda numbers: numbers * KM_PER_MILE,
}
CASES = {"upper": pc.utf8_upper, "lower": pc.utf8_lower, "title": pc.utf8_title}
MAX_UNMAPPED_VALUES = 1000  # per field, the most frequent: enough for a dry run, bounded for a column of free text


def non_blank(text: pa.ChunkedArray) -> np.ndarray:
    """Whether each value holds something other than whitespace (null is blank)."""
    return pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(text), ""), False).to_numpy(zero_copy_only=False)


def first_non_empty(columns: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    """Per row, the first of `columns` whose value is not blank; the first column's value when all are."""
    result = columns[-1]
    for column in reversed(columns[:-1]):
        result = pc.if_else(pa.array(non_blank(column) | ~non_blank(result)), column, result)
    return result if isinstance(result, pa.ChunkedArray) else pa.chunked_array([result])


def over_unique(text: pa.ChunkedArray, function: Callable[[str], object], result_type: pa.DataType) -> pa.ChunkedArray:
    """`function` of each value, called once per distinct value (an export's codes and units repeat); null stays null."""
    encoded = text.combine_chunks().dictionary_encode() if len(text) else pa.array([], text.type).dictionary_encode()
    results = pa.array([function(value) for value in encoded.dictionary.to_pylist()], type=result_type)
    return pa.chunked_array([results.take(encoded.indices)], type=result_type)


def extract_first(text: pa.ChunkedArray, blank: np.ndarray, pattern: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    """The first capturing group (or the whole match) of the first match of `pattern` in each value, trimmed, and the
    non-blank values with no match (null in the result)."""
    compiled = re.compile(pattern)

    def first(value: str) -> str | None:
        found = compiled.search(value)
        if found is None:
            return None
        part = found.group(1) if compiled.groups else found.group(0)
        return part or ""  # an optional group that took no part: a match, with nothing in it

    extracted = over_unique(text, first, text.type)
    no_match = ~blank & pc.is_null(extracted).to_numpy(zero_copy_only=False)
    return pc.utf8_trim_whitespace(extracted), no_match


def apply_case(text: pa.ChunkedArray, case: str) -> pa.ChunkedArray:
    return CASES[case](text)


def value_counts(text: pa.ChunkedArray, rows: np.ndarray) -> dict[str, int]:
    """How often each value occurs at `rows`, most frequent first (at most MAX_UNMAPPED_VALUES of them)."""
    counted = pc.value_counts(pc.filter(text, pa.array(rows)))
    pairs = sorted(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()), key=lambda pair: (-pair[1], pair[0]))
    return dict(pairs[:MAX_UNMAPPED_VALUES])


def convert_units(numbers: pd.Series, conversion: str, whole: bool) -> pd.Series:
    """`numbers` (float64, NaN for missing) converted; `whole` rounds half away from zero to whole numbers."""
    converted = CONVERSIONS[conversion](numbers)
    if whole:
        converted = np.sign(converted) * np.floor(np.abs(converted) + 0.5)
    return converted


def rule_matches(text: pa.ChunkedArray, values: list[str] | None, pattern: str | None, empty: bool | None) -> np.ndarray:
    """Which records one skip rule's test holds for: `values` (case-insensitive, trimmed), a `pattern` found in the
    trimmed value, or the value being empty (`empty: true`) or not."""
    trimmed = pc.utf8_trim_whitespace(pc.fill_null(text, ""))
    if values is not None:
        wanted = pa.array(sorted({value.strip().lower() for value in values}), type=text.type)
        return pc.fill_null(pc.is_in(pc.utf8_lower(trimmed), value_set=wanted), False).to_numpy(zero_copy_only=False)
    if pattern is not None:
        compiled = re.compile(pattern)
        found = over_unique(trimmed, lambda value: compiled.search(value) is not None, pa.bool_())
        return pc.fill_null(found, False).to_numpy(zero_copy_only=False)
    blank = pc.equal(trimmed, "").to_numpy(zero_copy_only=False)
    return blank if empty else ~blank


def skipped_records(columns: list[pa.ChunkedArray], rules: list) -> tuple[np.ndarray, dict[str, int]]:
    """Which records to keep, and how many each reason skipped; a record matching several rules counts for the first."""
    skip = np.zeros(len(columns[0]) if columns else 0, dtype=bool)
    counts: dict[str, int] = {}
    for column, rule in zip(columns, rules):
        hit = rule_matches(column, rule.in_, rule.matches, rule.empty) & ~skip
        if hit.any():
            counts[rule.reason] = counts.get(rule.reason, 0) + int(hit.sum())
            skip |= hit
    return ~skip, counts
