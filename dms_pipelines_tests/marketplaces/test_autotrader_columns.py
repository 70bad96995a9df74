"""Auto Trader's column-wise render agrees with the per-value rules it replaced: list cells, whole pounds, attention grabbers."""

import numpy as np
import pandas as pd
import pytest

from dms_pipelines.marketplaces import autotrader
from dms_pipelines.marketplaces.base import list_lengths, list_parts, list_series

CELLS = [None, "", "|", "||", "a", "a|b", "|a", "a|", "a||b", "a|b||c|", "é|🚗|x y", " | ", "Heated seats|Heated seats"]


def per_row_lists(values: pd.Series) -> list:
    return [list(filter(None, v.split("|"))) if isinstance(v, str) else [] for v in values.astype(object)]


@pytest.mark.parametrize("cells", [CELLS, CELLS * 400, ["Bluetooth|Isofix|Heated seats", None, "Isofix||Bluetooth|"] * 3000, [None] * 5, ["", ""], []])
def test_list_parts_match_per_row_split(cells):
    values = pd.Series(cells, dtype="string", index=pd.RangeIndex(10, 10 + len(cells)))
    assert list_parts(values).to_pylist() == per_row_lists(values)
    assert list_parts(values.iloc[3:]).to_pylist() == per_row_lists(values.iloc[3:])


def test_rendered_list_columns_read_back_as_lists():
    lists = list_series(list_parts(pd.Series(CELLS, dtype="string")), pd.RangeIndex(len(CELLS)))
    assert [list(cell) for cell in lists.tolist()] == per_row_lists(pd.Series(CELLS, dtype="string"))
    assert list_lengths(lists).tolist() == [len(cell) for cell in per_row_lists(pd.Series(CELLS, dtype="string"))]


def test_list_lengths_of_python_lists():
    lengths = list_lengths(pd.Series([[], ["a"], ["a", "b"]], dtype=object, index=[3, 4, 5]))
    assert lengths.tolist() == [0, 1, 2] and lengths.dtype == np.int64 and lengths.index.tolist() == [3, 4, 5]


def test_whole_pounds_matches_int_of_price_plus_half():
    prices = pd.array([None, 0.0, -1.0, -0.6, -0.4, 12345.5, 12344.5, 0.5, 1.5, 0.004, 0.005, 99999999.995, 1e9, 7.125, 2.675, 1e15], dtype="Float64")
    expected = (pd.Series(prices) + 0.5).apply(lambda p: int(p) if pd.notna(p) else pd.NA).astype("Int64")
    pd.testing.assert_series_equal(autotrader.whole_pounds(pd.Series(prices)), expected)
    with pytest.raises(OverflowError):
        autotrader.whole_pounds(pd.Series(pd.array([1.0, float("inf")], dtype="Float64")))


def test_first_sentence_matches_split_on_dot():
    description = pd.Series([None, "", ".", "No dot", "One. Two. Three", ". Lead", "Café 2.0 TDI. Next", "line\nbreak. x"], dtype="string")
    expected = description.fillna("").astype(object).map(lambda v: v.split(".")[0]).astype("string")
    pd.testing.assert_series_equal(autotrader.first_sentence(description), expected)
