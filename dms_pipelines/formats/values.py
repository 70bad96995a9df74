"""Vectorised conversion of raw export strings into canonical values, recording every value that fails."""

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.formats.profile import FieldMapping, MappingProfile
from dms_pipelines.formats.transforms import apply_case, convert_units, extract_first, value_counts
from dms_pipelines.kernels.arrow_text import string_buffers
from dms_pipelines.kernels.parallel import ordered_map, threads_for
from dms_pipelines.stock.schema import FIELD_BY_NAME, LIST_SEPARATOR

TRUE_WORDS = {"1", "y", "yes", "true", "t"}
FALSE_WORDS = {"0", "n", "no", "false", "f"}
# Patterns for Arrow's RE2 engine, written with literal characters (no \s, no \u escapes) so that they match exactly
# what Python's re would: ASCII classes and plain alternatives only.
SPACE_CHARACTERS = " \t\r\n\u00a0"
SPACE = f"[{SPACE_CHARACTERS}]"
SPACE_FIRST_BYTES = [char.encode()[0] for char in SPACE_CHARACTERS]
SPACE_LAST_BYTES = [char.encode()[-1] for char in SPACE_CHARACTERS]
# Bytes that, next to a list separator, send the row to the regular expression: a whitespace character's first (after
# the separator) or last (before it) byte, or another separator (already swapped to LIST_SEPARATOR's byte).
_SPACE_LAST_OR_LIST = np.zeros(256, dtype=bool)
_SPACE_LAST_OR_LIST[SPACE_LAST_BYTES + [ord(LIST_SEPARATOR)]] = True
_SPACE_FIRST_OR_LIST = np.zeros(256, dtype=bool)
_SPACE_FIRST_OR_LIST[SPACE_FIRST_BYTES + [ord(LIST_SEPARATOR)]] = True
# Bytes that never begin or end whitespace (printable ASCII): a string with them at both ends needs no trimming.
PRINTABLE_ASCII = np.zeros(256, dtype=bool)
PRINTABLE_ASCII[0x21:0x7F] = True
NOT_LIST_EDGE = PRINTABLE_ASCII.copy()
NOT_LIST_EDGE[[ord(char) for char in LIST_SEPARATOR + " "]] = False
MONEY_NOISE = "[£, \t\u00a0]|GBP|gbp"
# Numbers that pandas' parser and Arrow's cast both read to the same float64 whatever else is in the column: at most
# 15 digits (exact as a double, one correctly rounded division at most) and no integer "-0" (pandas reads it as the
# integer 0 in a column of integers, Arrow as -0.0). A column holding anything else is read by pandas as before.
PLAIN_NUMBER = r"^(?:-?[0-9]+\.[0-9]+|[0-9]+|-[0-9]*[1-9][0-9]*)$"
PLAIN_MAX_BYTES = 16
# Date formats read in Arrow when every directive is a fixed-width number; other values and formats go to pandas.
DATE_DIRECTIVES = {"d": 2, "m": 2, "y": 2, "Y": 4}
# datetime64[ns] covers 1677-09-21 to 2262-04-11; years outside the inner whole years are left to pandas.
FAST_YEARS = (1678, 2261)


class MappingError(Exception):
    """An export cannot be read at all (wrong columns, undecodable, malformed); names the file and the problem."""


@dataclass
class ParseResult:
    """Canonical rows from one export, the problems found in individual values, and file-level facts."""

    file_name: str
    rows: pd.DataFrame
    issues: pd.DataFrame
    records_total: int  # the records that became rows (or were refused whole, like a row with the wrong field count); skipped ones aside
    encoding: str
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason of a profile's skip rule -> records it skipped
    unread_sources: list[str] = field(default_factory=list)  # CSV columns, XML attributes (@Name) and elements the profile neither reads nor ignores
    unmapped: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> value its map does not cover -> records (errors, kept and defaulted alike)

    @property
    def records_in_file(self) -> int:
        return self.records_total + sum(self.skipped.values())


def _strings(values: pa.ChunkedArray | pa.Array) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])))


def null_where(values: pa.ChunkedArray, hidden: np.ndarray) -> pa.ChunkedArray:
    """`values` with nulls where `hidden` is true: a new validity bitmap over the same offsets and data (no copy of the text)."""
    if not hidden.any():
        return values
    chunks, start = [], 0
    for chunk in values.chunks:
        valid = ~hidden[start : start + len(chunk)]
        if chunk.null_count:
            valid &= chunk.is_valid().to_numpy(zero_copy_only=False)
        start += len(chunk)
        bitmap = _validity_bitmap(valid, chunk.offset)
        chunks.append(pa.Array.from_buffers(chunk.type, len(chunk), [bitmap, *chunk.buffers()[1:]], int((~valid).sum()), chunk.offset))
    return pa.chunked_array(chunks, type=values.type)


def _validity_bitmap(valid: np.ndarray, offset: int = 0) -> pa.Buffer:
    """Arrow's validity bitmap for `valid`, after `offset` unread bits (an array is read from its own offset)."""
    return pa.array(np.concatenate([np.zeros(offset, dtype=bool), valid])).buffers()[1]


def _blank(text: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True).to_numpy()


MAX_EXACT_INTEGER = 2**53  # beyond this a float no longer holds every integer exactly


def _numbers(text: pa.ChunkedArray, blank: np.ndarray, kind: str) -> pd.Series:
    """What pd.to_numeric(errors="coerce") gives for the cleaned non-blank values (blank ones are None)."""
    cleaned = pc.replace_substring_regex(text, MONEY_NOISE, "") if kind == "money" else pc.replace_substring(text, ",", "")
    present = ~blank
    plain = pc.and_(pc.match_substring_regex(cleaned, PLAIN_NUMBER), pc.less_equal(pc.binary_length(cleaned), PLAIN_MAX_BYTES))
    plain = pc.fill_null(plain, False).to_numpy()
    if (plain | blank).all():
        numbers = np.full(len(blank), np.nan)
        numbers[present] = pc.cast(pc.filter(cleaned, pa.array(present)), pa.float64()).to_numpy()
        return pd.Series(numbers)
    objects = np.asarray(cleaned.to_pylist(), dtype=object)
    objects[blank] = None
    return pd.to_numeric(pd.Series(objects), errors="coerce")


def _date_layout(fmt: str) -> tuple[str, dict[str, int]] | None:
    """For a format of fixed-width numbers and literal separators, a matching RE2 pattern and each directive's offset."""
    pattern, offsets, position, index = "^", {}, 0, 0
    while index < len(fmt):
        char = fmt[index]
        if char == "%":
            directive = fmt[index + 1 : index + 2]
            if directive not in DATE_DIRECTIVES or directive.lower() in {d.lower() for d in offsets}:
                return None
            offsets[directive] = position
            pattern += f"[0-9]{{{DATE_DIRECTIVES[directive]}}}"
            position += DATE_DIRECTIVES[directive]
            index += 2
        elif char.isdigit() or not char.isascii() or char.isspace():
            return None
        else:
            pattern += re.escape(char)
            position += 1
            index += 1
    if {d.lower() for d in offsets} != {"d", "m", "y"}:
        return None
    return pattern + "$", offsets


def _fixed_width_dates(text: pa.ChunkedArray, offsets: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """datetime64[ns] of strictly matching strings, NaT where the day or month does not exist (as strptime refuses),
    and whether each year lies inside FAST_YEARS (the others are left to pandas)."""

    def number(directive: str) -> np.ndarray:
        start = offsets[directive]
        digits = pc.utf8_slice_codeunits(text, start, start + DATE_DIRECTIVES[directive])
        return pc.cast(digits, pa.int64()).to_numpy().astype(np.int64)

    if "Y" in offsets:
        year = number("Y")
    else:
        short = number("y")
        year = np.where(short <= 68, 2000 + short, 1900 + short)  # strptime's pivot for %y
    in_range = (year >= FAST_YEARS[0]) & (year <= FAST_YEARS[1])
    year = np.where(in_range, year, 2000)
    month, day = number("m"), number("d")
    valid = in_range & (month >= 1) & (month <= 12) & (day >= 1)
    month_start = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("datetime64[M]")
    days_in_month = ((month_start + 1).astype("datetime64[D]") - month_start.astype("datetime64[D]")).astype(np.int64)
    valid &= day <= days_in_month
    dates = (month_start.astype("datetime64[D]") + (np.clip(day, 1, 31) - 1)).astype("datetime64[ns]")
    return np.where(valid, dates, np.datetime64("NaT", "ns")), in_range


def _dates(text: pa.ChunkedArray, blank: np.ndarray, formats: list[str]) -> np.ndarray:
    """Each value read with the first format that fits, as pd.to_datetime(format=..., errors="coerce") reads it."""
    result = np.full(len(blank), np.datetime64("NaT", "ns"))
    for fmt in formats:
        todo = np.isnat(result) & ~blank
        if not todo.any():
            break
        layout = _date_layout(fmt)
        fast = np.zeros(len(blank), dtype=bool)
        if layout is not None:
            pattern, offsets = layout
            fast = todo & pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy()
            if fast.any():
                dates, in_range = _fixed_width_dates(pc.filter(text, pa.array(fast)), offsets)
                fast[np.flatnonzero(fast)[~in_range]] = False
                result[fast] = dates[in_range]
        rest = todo & ~fast
        if rest.any():
            values = pd.Series(pc.filter(text, pa.array(rest)).to_pylist(), dtype=object)
            parsed = pd.to_datetime(values, format=fmt, errors="coerce")
            parsed = parsed.where((parsed >= pd.Timestamp.min) & (parsed <= pd.Timestamp.max))  # 1500-01-01 is a bad date, not a crash
            result[rest] = parsed.astype("datetime64[ns]").to_numpy()
    return result


def _patch(values: pa.ChunkedArray, rows: np.ndarray, replacement: pa.Array) -> pa.ChunkedArray:
    """`values` with the values at positions `rows` replaced, in order, by `replacement`."""
    index = np.arange(len(values))
    index[rows] = len(values) + np.arange(len(rows))
    return pa.chunked_array(values.chunks + [replacement.cast(values.type)]).take(pa.array(index))


def _edges_within(chunk: pa.Array, allowed: np.ndarray) -> bool:
    """Whether the first and last byte of every non-empty string is one of `allowed` (a 256-entry truth table)."""
    offsets, data = string_buffers(chunk)
    nonempty = offsets[1:] > offsets[:-1]
    if not nonempty.any():
        return True
    return bool(allowed[data[offsets[:-1][nonempty]]].all() and allowed[data[offsets[1:][nonempty] - 1]].all())


def _trim_chunks(values: pa.ChunkedArray, trim, untouched: np.ndarray) -> pa.ChunkedArray:
    """`trim` applied to each chunk, except chunks whose strings all begin and end with bytes it leaves alone: those
    are kept as they are, which saves copying every column of a large export once more."""
    return pa.chunked_array([chunk if _edges_within(chunk, untouched) else trim(chunk) for chunk in values.chunks], type=values.type)


def _joined_swapping(text: pa.ChunkedArray, separator: int) -> tuple[pa.Array, np.ndarray]:
    """The chunks joined into one array (the one copy of the text) with every `separator` byte made LIST_SEPARATOR's, and
    the rows where a separator touches whitespace or another separator (judged by neighbouring bytes, so possibly a few
    more rows than that). A chunk at a time, each scanned while it is still in cache."""
    parts = [string_buffers(chunk) for chunk in text.chunks]
    lengths = np.concatenate([np.diff(offsets) for offsets, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    joined = np.empty(int(offsets[-1]), dtype=np.uint8)
    touching_rows, row, position = [], 0, 0
    for chunk_offsets, chunk_data in parts:
        data = joined[position : position + int(chunk_offsets[-1] - chunk_offsets[0])]
        data[:] = chunk_data[chunk_offsets[0] : chunk_offsets[-1]]
        found = np.flatnonzero(data == separator)
        if found.size:
            data[found] = ord(LIST_SEPARATOR)
            touching = _SPACE_LAST_OR_LIST[data[np.maximum(found - 1, 0)]] | _SPACE_FIRST_OR_LIST[data[np.minimum(found + 1, len(data) - 1)]]
            if touching.any():
                touching_rows.append(row + np.searchsorted(chunk_offsets - chunk_offsets[0], found[touching], side="right") - 1)
        row += len(chunk_offsets) - 1
        position += len(data)
    rows = np.unique(np.concatenate(touching_rows)) if touching_rows else np.zeros(0, dtype=np.int64)
    large = pa.types.is_large_string(text.type) or len(joined) >= 2**31
    valid = _validity_bitmap(pc.is_valid(text).to_numpy(zero_copy_only=False)) if text.null_count else None
    array = pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        len(lengths),
        [valid, pa.py_buffer(offsets if large else offsets.astype(np.int32)), pa.py_buffer(joined)],
        text.null_count,
    )
    return array, rows


def joined_list(text: pa.ChunkedArray, separator: str) -> pa.ChunkedArray:
    """Items joined by LIST_SEPARATOR, the whitespace around separators and empty items dropped."""
    pattern = rf"{SPACE}*(?:{re.escape(separator)}{SPACE}*)+"
    if not (len(separator) == 1 and separator.isascii() and len(LIST_SEPARATOR) == 1):
        joined = pc.replace_substring_regex(text, pattern, LIST_SEPARATOR)
    else:
        # Where no separator touches whitespace or another separator, each match of the pattern is the separator
        # alone: a byte swap does the work, and the pattern runs only on the other rows.
        swapped, rows = _joined_swapping(text, ord(separator))
        joined = pa.chunked_array([swapped])
        if rows.size:
            joined = _patch(joined, rows, pc.replace_substring_regex(text.take(pa.array(rows)), pattern, LIST_SEPARATOR).combine_chunks())
    # the trimmed characters are ASCII, so trimming bytes is trimming characters (and much faster)
    return _trim_chunks(joined, lambda chunk: pc.ascii_trim(chunk, characters=LIST_SEPARATOR + " "), NOT_LIST_EDGE)


@dataclass
class Converted:
    """One field's canonical values, the values that failed at each stage (in stage order), and the values its map did not cover."""

    values: pd.Series
    failures: list[tuple[np.ndarray, str]]  # (rows, rule)
    rule: str  # the rule of the field's type (what convert_column reports when nothing failed)
    unmapped: dict[str, int] = field(default_factory=dict)


def convert_column(values: pa.ChunkedArray, mapping: FieldMapping, canonical: str, fields: dict = FIELD_BY_NAME) -> tuple[pd.Series, np.ndarray, str]:
    """The converted series, a mask of values that failed, and the rule name for failures (the first stage's that failed)."""
    converted = convert_field(values, mapping, canonical, fields)
    failed = np.zeros(len(values), dtype=bool)
    for rows, _ in converted.failures:
        failed |= rows
    return converted.values, failed, converted.failures[0][1] if converted.failures else converted.rule


def convert_field(values: pa.ChunkedArray, mapping: FieldMapping, canonical: str, fields: dict = FIELD_BY_NAME) -> Converted:
    """source text -> extract -> case -> map -> type -> convert; a stage's failures become blanks for the stages after it.
    `fields` are the record kind's canonical fields (the vehicle's unless given)."""
    text = _trim_chunks(values, pc.utf8_trim_whitespace, PRINTABLE_ASCII)
    blank = pc.is_null(text).to_numpy(zero_copy_only=False) | pc.fill_null(pc.equal(text, ""), False).to_numpy()
    if mapping.default is not None:
        text = pc.if_else(pa.array(blank), pa.scalar(mapping.default, text.type), text)
        blank = _blank(text)
    failures: list[tuple[np.ndarray, str]] = []
    if mapping.transforms_text:
        if mapping.extract is not None:
            text, no_match = extract_first(text, blank, mapping.extract)
            if no_match.any():
                failures.append((no_match, "no_match"))
        if mapping.case is not None:
            text = apply_case(text, mapping.case)
        blank = pc.is_null(text).to_numpy(zero_copy_only=False) | pc.fill_null(pc.equal(text, ""), False).to_numpy()
    unmapped: dict[str, int] = {}
    if mapping.map is not None:
        lookup = {key.strip().lower(): value for key, value in mapping.map.items()}
        found = pc.index_in(pc.utf8_lower(text), value_set=pa.array(list(lookup), type=text.type))
        mapped = pa.array(list(lookup.values()), type=text.type).take(found)
        uncovered = ~blank & pc.is_null(mapped).to_numpy(zero_copy_only=False)
        if uncovered.any():
            unmapped = value_counts(text, uncovered)
            if mapping.unmapped == "keep":
                mapped = pc.if_else(pa.array(uncovered), text, mapped)
            elif mapping.unmapped == "default":
                mapped = pc.if_else(pa.array(uncovered), pa.scalar(mapping.map_default, text.type), mapped)
            else:
                failures.append((uncovered, "unknown_value"))
        if mapping.type == "string":
            return Converted(_strings(mapped), failures, "unknown_value", unmapped)
        text = mapped if isinstance(mapped, pa.ChunkedArray) else pa.chunked_array([mapped])
        blank = pc.is_null(text).to_numpy(zero_copy_only=False) | pc.fill_null(pc.equal(text, ""), False).to_numpy()
    converted, failed, rule = _typed(text, blank, mapping, canonical, fields)
    if failed.any():
        failures.append((failed, rule))
    return Converted(converted, failures, rule, unmapped)


def _typed(text: pa.ChunkedArray, blank: np.ndarray, mapping: FieldMapping, canonical: str, fields: dict) -> tuple[pd.Series, np.ndarray, str]:
    """The values read as the field's type (and converted to its unit), the non-blank ones that could not be, and the rule."""
    no_failures = np.zeros(len(blank), dtype=bool)
    kind = mapping.type
    if kind in ("integer", "decimal", "money"):
        numbers = _numbers(text, blank, kind)
        whole = kind == "integer" or fields[canonical].dtype == "Int64"
        if mapping.convert is not None:
            # the source may be in other units with decimals (2.0 litres for 2000 cc): converted, then rounded
            numbers = numbers.mask(numbers.notna() & ~(numbers.abs() <= np.finfo(np.float64).max))
            numbers = convert_units(numbers, mapping.convert, whole)
        # inf, nan and numbers too big to hold (or, for integers, to hold exactly) fail like any other non-number
        unusable = numbers.notna() & ~(numbers.abs() <= (MAX_EXACT_INTEGER if kind == "integer" or (whole and mapping.convert) else np.finfo(np.float64).max))
        numbers = numbers.mask(unusable)
        if kind == "integer" and mapping.convert is None:
            non_integral = numbers.notna() & (numbers != np.floor(numbers.fillna(0)))
            numbers = numbers.mask(non_integral)
        failed = ~blank & numbers.isna().to_numpy()
        dtype = "Int64" if fields[canonical].dtype == "Int64" else "Float64"
        return numbers.astype(dtype), failed, "not_a_number"
    if kind == "date":
        result = _dates(text, blank, mapping.formats or ["%Y-%m-%d"])
        return pd.Series(result, dtype="datetime64[ns]"), ~blank & np.isnat(result), "not_a_date"
    if kind == "boolean":
        lowered = _strings(pc.utf8_lower(text))
        result = pd.Series(pd.NA, index=lowered.index, dtype="boolean")
        result[lowered.isin(TRUE_WORDS).fillna(False)] = True
        result[lowered.isin(FALSE_WORDS).fillna(False)] = False
        return result, ~blank & result.isna().to_numpy(), "not_a_boolean"
    if kind == "list":
        joined = joined_list(text, mapping.separator or ",")
        empty = pc.fill_null(pc.equal(joined, ""), False).to_numpy()
        return _strings(null_where(joined, blank | empty)), no_failures, "list"
    if kind == "registration":
        plate = pc.replace_substring_regex(pc.utf8_upper(text), f"{SPACE}+", "")
        return _strings(null_where(plate, blank)), no_failures, "registration"
    return _strings(null_where(text, blank)), no_failures, "string"


def contiguous(values: pd.Series) -> pd.Series:
    """The column with its Arrow data in one chunk: a CSV is read in blocks, one chunk each, and a row take over a
    many-chunk column is many times slower than over one (and first joins the chunks anyway)."""
    if not isinstance(values.dtype, (pd.StringDtype, pd.ArrowDtype)) or getattr(values.dtype, "storage", "pyarrow") != "pyarrow":
        return values
    arrow = pa.array(values.array)
    if not isinstance(arrow, pa.ChunkedArray) or arrow.num_chunks <= 1:
        return values
    return pd.Series(pd.array(arrow.combine_chunks(), dtype=values.dtype), index=values.index, name=values.name)


def map_to_canonical(raw: dict[str, pa.ChunkedArray], source_rows: pd.Series, profile: MappingProfile, dealer_id: str, file_name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, int]]]:
    """Canonical rows, value-level issues, and per field the values its map did not cover, from raw strings (Arrow
    arrays) keyed by canonical field name.

    `raw` is emptied as its columns are converted, so that a big export's raw text goes as soon as each column is done
    (when the caller holds no other reference). Every column comes out as one contiguous array.
    """
    count = len(source_rows)
    kind = profile.kind
    for name, values in list(raw.items()):
        if not isinstance(values, pa.ChunkedArray):
            raw[name] = pa.chunked_array([values])
    index = pd.RangeIndex(count)
    stock_ids = _strings(_trim_chunks(raw[kind.key], pc.utf8_trim_whitespace, PRINTABLE_ASCII)) if kind.key in raw else pd.Series(pd.NA, index=index, dtype="string")
    columns: dict[str, pd.Series] = {}
    problems = []
    unmapped: dict[str, dict[str, int]] = {}
    fields = [(canonical, mapping) for canonical, mapping in profile.fields.items() if canonical in raw]

    def convert(field: tuple[str, FieldMapping]) -> Converted:
        converted = convert_field(raw[field[0]], field[1], field[0], kind.fields)
        converted.values = contiguous(converted.values)
        return converted

    for (canonical, mapping), converted in zip(fields, ordered_map(convert, fields, threads_for(count))):  # columns in parallel
        columns[canonical] = converted.values
        if converted.unmapped:
            unmapped[canonical] = converted.unmapped
        for failed, rule in converted.failures:
            severity = kind.severity(canonical, rule)
            rows = np.flatnonzero(failed)
            if kind.shows_values:
                bad = pd.Series(_strings(raw[canonical].take(pa.array(rows))).array, index=rows)
                values, messages = bad.str.slice(0, 200), [_failure_message(canonical, mapping, rule, value) for value in bad.str.slice(0, 60)]
            else:  # personal data: the issue names the field and the rule, never the value
                values, messages = pd.Series(pd.NA, index=rows, dtype="string"), _unquoted_failure_message(canonical, mapping, rule)
            problems.append(
                pd.DataFrame(
                    {
                        "source_row": source_rows.iloc[rows].astype("Int64"),
                        kind.issue_key: stock_ids.iloc[rows],
                        "field": canonical,
                        "rule": rule,
                        "value": values,
                        "severity": severity,
                        "message": messages,
                    }
                )
            )
        del raw[canonical]
    for canonical, value in profile.constants.items():
        columns[canonical] = pd.Series(value, index=index, dtype="string")
    frame = pd.DataFrame(columns, index=index)
    frame["dealer_id"] = dealer_id
    frame["source_file"] = file_name
    frame["source_row"] = source_rows.astype("Int64").values
    issues = pd.concat(problems, ignore_index=True) if problems else kind.empty_issues()
    return kind.coerce(frame).reset_index(drop=True), issues.astype({"source_row": "Int64"}), unmapped


def _failure_message(canonical: str, mapping: FieldMapping, rule: str, value: str) -> str:
    if rule == "no_match":
        return f"{canonical}: {value!r} does not match the extract pattern {mapping.extract!r}"
    return f"{canonical}: cannot read {value!r} as {mapping.type if rule != 'unknown_value' else 'a known value'}"


def _unquoted_failure_message(canonical: str, mapping: FieldMapping, rule: str) -> str:
    if rule == "no_match":
        return f"{canonical}: the value does not match the extract pattern {mapping.extract!r}"
    return f"{canonical}: the value cannot be read as {mapping.type if rule != 'unknown_value' else 'a value its map covers'}"
