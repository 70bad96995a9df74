"""Text cleaning and blank detection skip the values they cannot change; the result is the slow rule's result for every value."""

import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dms_pipelines.marketplaces.base import clean_every_value, clean_text, cut_at_word, is_empty
from dms_pipelines.marketplaces.registry import SPECS

PIECES = ["a", "Ford", " ", "  ", "\t", "\n", "\r", "\xa0", "\u2003", "\x00", "\x0b", "\x1c", "\x7f", "<b>", "</p", ">", "&amp;", "&", "£", "é", "🚗", ".", ",", "\u0085", "\u3000"]


@settings(max_examples=400, deadline=None)
@example(["Ford  Focus", "Ford\xa0Focus", "Ford Focus", "Ford\tFocus", " Ford", "Ford\u2003", "", None, "a<b>c", "&amp;"], None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=10).map("".join) | st.none(), max_size=25), st.sampled_from([None, 5, 12]))
def test_cleaning_only_what_may_change_equals_cleaning_everything(values, max_length):
    text = pd.Series(values, dtype="string", index=range(3, 3 + len(values)))
    expected = clean_every_value(text)
    if max_length:
        expected = expected.map(lambda v: cut_at_word(v, max_length) if isinstance(v, str) else v).astype("string")
    pd.testing.assert_series_equal(clean_text(text, max_length), expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=4).map("".join) | st.none(), max_size=25), st.integers(0, 4))
def test_blank_text_found_from_first_bytes_equals_stripping_every_value(values, skipped):
    text = pd.Series(values, dtype="string").iloc[skipped:]  # a slice: its Arrow data starts at an offset
    expected = (text.isna() | (text.str.strip() == "")).astype(bool)
    pd.testing.assert_series_equal(is_empty(text), expected, check_names=False)


def test_numbers_and_dates_are_blank_only_when_missing():
    for column in (pd.Series([1.5, None, 0.0], dtype="Float64"), pd.Series([3, None, 0], dtype="Int64"), pd.Series(pd.to_datetime(["2024-01-01", None, "2024-02-01"]))):
        assert is_empty(column).tolist() == [False, True, False]


@given(st.lists(st.lists(st.sampled_from(["a", ",", "", "é", " "]), max_size=6).map("".join) | st.none(), max_size=20))
def test_carsnip_counts_its_non_empty_picture_references(values):
    refs = pd.Series(values, dtype="string")
    expected = refs.fillna("").map(lambda text: sum(1 for part in text.split(",") if part))
    assert SPECS["carsnip"].image_count(pd.DataFrame({"PictureRefs": refs})).tolist() == expected.tolist()
