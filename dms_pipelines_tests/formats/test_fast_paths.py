"""The Arrow fast paths of the mapping engine give what the pandas readings they replace give, edge cases included."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.formats.profile import FieldMapping, find_profile
from dms_pipelines.formats.reader import FIELD_END, read_export
from dms_pipelines.formats.values import SPACE, convert_column, joined_list, null_where
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines_tests.support import star_document, star_item

PROFILES = [BUILTIN_PROFILES]


def column(*values: str | None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(list(values), type=pa.string())])


def pandas_numbers(values: list[str | None], kind: str, dtype: str) -> pd.Series:
    """The reading the fast path replaces: pandas' own parser over the cleaned column."""
    text = pd.Series(values, dtype="string").str.strip()
    blank = text.isna() | (text == "")
    cleaned = text.str.replace("[£, \t\u00a0]|GBP|gbp", "", regex=True) if kind == "money" else text.str.replace(",", "", regex=False)
    numbers = pd.to_numeric(cleaned.astype(object).where(~blank, None), errors="coerce").astype("float64")
    limit = 2**53 if kind == "integer" else np.finfo(np.float64).max  # inf, nan and the unholdable fail (they used to crash)
    numbers = numbers.mask(numbers.notna() & ~(numbers.abs() <= limit))
    if kind == "integer":
        numbers = numbers.mask(numbers.notna() & (numbers != np.floor(numbers.fillna(0))))
    return pd.Series(numbers).astype(dtype)


@pytest.mark.parametrize(
    "values",
    [
        ["12995", "0", "-5", "007", "12.50", None, " 3 "],
        ["-0", "5"],  # pandas reads an integer column's -0 as 0, Arrow as -0.0
        ["-0", ""],
        ["123456789012345678", "1"],  # beyond a double's exact integers
        ["1e3", "inf", "nan", "twenty", "5.", ".5", "+5", "0x10"],
        ["£9,995", "GBP 12,000.50", "9995 gbp"],
    ],
)
@pytest.mark.parametrize("kind, dtype, field", [("money", "Float64", "price"), ("decimal", "Float64", "price"), ("integer", "Int64", "mileage")])
def test_numbers_read_as_pandas_reads_them(values, kind, dtype, field):
    mapping = FieldMapping(column="x", type=kind)
    expected = pandas_numbers(values, kind, dtype)
    converted, failed, _ = convert_column(column(*values), mapping, field)
    pd.testing.assert_series_equal(converted, expected, check_exact=True, check_names=False)
    assert np.signbit(converted.astype("float64").fillna(1).to_numpy()).tolist() == np.signbit(expected.astype("float64").fillna(1).to_numpy()).tolist()
    assert failed.tolist() == (expected.isna() & ~pd.Series([v is None or not v.strip() for v in values])).tolist()


def test_dates_match_pandas_strptime_including_impossible_days_and_the_y_pivot():
    days = [f"{d:02d}/{m:02d}/{y}" for d in (0, 1, 28, 29, 30, 31, 32) for m in (0, 1, 2, 4, 12, 13) for y in ("00", "20", "21", "68", "69", "99", "1900", "2000", "2024")]
    values = days + ["5/10/21", "05/10/2021x", " 05/10/21", "2021-10-05", "", None, "٠٥/١٠/٢١"]
    formats = ["%d/%m/%y", "%d/%m/%Y"]
    converted, failed, _ = convert_column(column(*values), FieldMapping(column="x", type="date", formats=formats), "first_registration_date")
    text = pd.Series(values, dtype="string").str.strip()
    expected = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for fmt in formats:
        todo = expected.isna() & text.notna() & (text != "")
        expected.loc[todo] = pd.to_datetime(text[todo].astype(object), format=fmt, errors="coerce").astype("datetime64[ns]")
    pd.testing.assert_series_equal(converted, expected, check_names=False)
    assert failed.tolist() == (expected.isna() & text.notna() & (text != "")).tolist()


def test_iso_dates_outside_nanosecond_years_go_to_pandas():
    values = ["2021-02-29", "2024-02-29", "1678-01-01", "2261-12-31", "2021-13-01", "2021-1-5"]
    converted, _, _ = convert_column(column(*values), FieldMapping(column="x", type="date"), "mot_expiry")
    expected = pd.to_datetime(pd.Series(values, dtype=object), format="%Y-%m-%d", errors="coerce").astype("datetime64[ns]")
    pd.testing.assert_series_equal(converted, expected, check_names=False)


def test_lists_collapse_whitespace_and_empty_items_as_the_pattern_does():
    values = ["a;b", ";a;;b;", "a ; b", None, "", "à;b", "x\u00a0;y", "a;\u00a0b", ";", "é;è", "abc", "a;b;c ;", " |a;b| "]
    text = pd.Series(values, dtype="string")
    expected = text.str.replace(f"{SPACE}*(?:;{SPACE}*)+", "|", regex=True).str.strip("| ")
    got = joined_list(pa.chunked_array([pa.array(values[:5]), pa.array(values[5:])]), ";")
    assert got.to_pylist() == [None if v is pd.NA else v for v in expected]


def _chunked(values: list, cuts: list[int], lead: int, large: bool) -> pa.ChunkedArray:
    """`values` in chunks split at `cuts`, each chunk a slice `lead` rows into a longer array (a non-zero offset)."""
    bounds = sorted({0, len(values), *(min(cut, len(values)) for cut in cuts)})
    kind = pa.large_string() if large else pa.string()
    chunks = [pa.array(["pad"] * lead + values[a:b], type=kind).slice(lead) for a, b in zip(bounds, bounds[1:])]
    return pa.chunked_array(chunks, type=kind)


LIST_CELLS = st.one_of(st.none(), st.lists(st.sampled_from(["a", "bc", ";", ";", " ", "|", "\u00a0", "é", "\t", "x;y"]), max_size=8).map("".join))


@settings(max_examples=300, deadline=None)
@given(st.lists(LIST_CELLS, max_size=20), st.lists(st.integers(0, 20), max_size=3), st.integers(0, 3), st.booleans())
def test_lists_from_any_chunks_match_the_pattern(values, cuts, lead, large):
    expected = pd.Series(values, dtype="string").str.replace(f"{SPACE}*(?:;{SPACE}*)+", "|", regex=True).str.strip("| ")
    got = joined_list(_chunked(values, cuts, lead, large), ";")
    assert got.to_pylist() == [None if v is pd.NA else v for v in expected]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=4)), st.booleans()), max_size=20), st.lists(st.integers(0, 20), max_size=3), st.integers(0, 3), st.booleans())
def test_masking_sets_nulls_over_the_same_text(rows, cuts, lead, large):
    values = [value for value, _ in rows]
    hidden = np.array([hide for _, hide in rows], dtype=bool)
    masked = null_where(_chunked(values, cuts, lead, large), hidden)
    assert masked.to_pylist() == [None if hide else value for value, hide in rows]
    assert masked.null_count == sum(1 for value, hide in rows if hide or value is None)
    masked.validate(full=True)


def test_star5_records_holding_the_field_marker_are_read_field_by_field(tmp_path: Path):
    odd = star_item("Y002").replace("<VehicleNote>", f"<VehicleNote>note {FIELD_END} ")
    lead = star_item("Y003").replace("<FeatureDescription>Heated seats", "<FeatureDescription><b>x</b>Heated seats")
    path = tmp_path / "inventory_full_202611210200.xml"
    path.write_text(star_document(star_item("Y001"), odd, lead), encoding="utf-8")
    rows = read_export(path, find_profile("star5_xml", PROFILES), "york").rows
    assert rows["stock_id"].tolist() == ["Y001", "Y002", "Y003"]
    assert rows.loc[1, "description"] == f"note {FIELD_END} One owner & FSH" and rows.loc[1, "make"] == "Kia"
    # lxml's .text of an item that starts with an element is None: the item is dropped, as before
    assert rows.loc[2, "features"] == "Reversing camera"


@pytest.mark.parametrize(
    ("kind", "value"),
    [("integer", "inf"), ("integer", "-inf"), ("integer", "nan"), ("integer", "1e400"), ("integer", "99999999999999999999"), ("decimal", "1e400"), ("money", "£1e999")],
)
def test_numbers_that_cannot_be_held_fail_their_row_only(kind, value):
    converted, failed, rule = convert_column(column("12", value, "7"), FieldMapping(column="x", type=kind), "mileage" if kind == "integer" else "price")
    assert failed.tolist() == [False, True, False] and rule == "not_a_number"
    assert converted.iloc[0] == 12 and converted.iloc[2] == 7 and pd.isna(converted.iloc[1])


def test_a_date_outside_the_representable_range_fails_its_row_only():
    converted, failed, rule = convert_column(column("05/10/2021", "01/01/1500", "31/12/9999"), FieldMapping(column="x", type="date", formats=["%d/%m/%Y"]), "first_registration_date")
    assert failed.tolist() == [False, True, True] and rule == "not_a_date"
    assert converted.iloc[0] == pd.Timestamp("2021-10-05")


def test_the_byte_scan_finds_what_a_per_value_check_finds(monkeypatch):
    import random

    from dms_pipelines.kernels import arrow_text

    monkeypatch.setattr(arrow_text, "SCAN_BLOCK", 3)  # hits across block edges, too
    rng = random.Random(3)
    alphabet = ["a", ",", '"', "\n", "\r", "\x01", "\x1f", "é", "\\", " "]
    for _ in range(1500):
        values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) if rng.random() > 0.1 else None for _ in range(rng.randint(0, 6))]
        text = pa.array(values, pa.string())
        if len(text) > 2 and rng.random() < 0.5:
            text = text.slice(1, len(text) - 2)  # a slice's bytes outside it must not count
        for special, below in [(b',"\r\n', 0), (b'"\\', 0x20), (b"", 0x20), (b"|", 0)]:
            expected = any(any(b in special or b < below for b in v.encode()) for v in text.to_pylist() if v is not None)
            assert arrow_text.holds_any_byte(text, special, below) == expected, (values, special, below)


@pytest.mark.parametrize("layout", ["navigator_csv", "pipe_cp1252_csv", "star5_xml"])
def test_columns_converted_on_threads_give_what_one_thread_gives(layout, tmp_path: Path, monkeypatch):
    """A big export's columns are converted in parallel; the rows and issues (planted defects included) are the same."""
    import dms_pipelines.formats.values as values
    from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group

    generate_group(tmp_path, [SampleDealer("leeds", "Leeds Motors", layout)], 400, seed=7)
    [export] = sorted((tmp_path / "leeds").glob("*_full_*"))
    profile = find_profile(layout, PROFILES)
    monkeypatch.setattr(values, "threads_for", lambda rows: 1)
    alone = read_export(export, profile, "leeds")
    monkeypatch.setattr(values, "threads_for", lambda rows: 2)
    threaded = read_export(export, profile, "leeds")
    assert alone.records_total == 400 and alone.rows["price"].isna().any(), "the sample export should carry its planted missing prices"
    pd.testing.assert_frame_equal(threaded.rows, alone.rows)
    pd.testing.assert_frame_equal(threaded.issues, alone.issues)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from([",", ",,", "a", "é", "https://x/1.jpg", " "]), max_size=8).map("".join) | st.none(), max_size=30))
def test_nonempty_fields_count_as_the_pattern_counts(values):
    from dms_pipelines.kernels.arrow_text import nonempty_fields

    expected = ("," + pd.Series(values, dtype="string").fillna("")).str.count(",[^,]").astype(int).tolist()
    expected = [0 if value is None else count for value, count in zip(values, expected)]
    assert nonempty_fields(pa.array(values, pa.large_string()), ord(",")).tolist() == expected
