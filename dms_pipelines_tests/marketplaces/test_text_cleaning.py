"""Text cleaning skips the values it cannot change; the result is the regular expressions' result for every value."""

import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dms_pipelines.marketplaces.base import _clean_each, _cleaned, cut_at_word

PIECES = ["a", "Ford", " ", "  ", "\t", "\n", "\r", "\xa0", "\u2003", "\x00", "\x0b", "\x1c", "\x7f", "<b>", "</p", ">", "&amp;",
          "&", "£", "é", "🚗", ".", ",", "\u0085", "\u3000"]


@settings(max_examples=400, deadline=None)
@example(["Ford  Focus", "Ford\xa0Focus", "Ford Focus", "Ford\tFocus", " Ford", "Ford\u2003", "", None, "a<b>c", "&amp;"], None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=10).map("".join) | st.none(), max_size=25), st.sampled_from([None, 5, 12]))
def test_cleaning_only_what_may_change_equals_cleaning_everything(values, max_length):
    text = pd.Series(values, dtype="string", index=range(3, 3 + len(values)))
    expected = _cleaned(text)
    if max_length:
        expected = expected.map(lambda v: cut_at_word(v, max_length) if isinstance(v, str) else v).astype("string")
    pd.testing.assert_series_equal(_clean_each(text, max_length), expected)
