"""Auto Trader's column-wise render agrees with the per-value rules it replaced: list cells, whole pounds, attention grabbers."""

import gc

import numpy as np
import pandas as pd
import pytest

from dms_pipelines.marketplaces import autotrader
from dms_pipelines.marketplaces.base import list_lengths, split_list

CELLS = [None, "", "|", "||", "a", "a|b", "|a", "a|", "a||b", "a|b||c|", "é|🚗|x y", " | ", "Heated seats|Heated seats"]


def per_row_lists(values: pd.Series) -> list:
    return [list(filter(None, v.split("|"))) if isinstance(v, str) else [] for v in values.astype(object)]


@pytest.mark.parametrize("cells", [CELLS, CELLS * 400, ["Bluetooth|Isofix|Heated seats", None, "Isofix||Bluetooth|"] * 3000, [None] * 5, ["", ""], []])
def test_split_list_matches_per_row_split(cells):
    values = pd.Series(cells, dtype="string", index=pd.RangeIndex(10, 10 + len(cells)))
    lists = split_list(values)
    assert lists.dtype == object
    assert lists.index.equals(values.index)
    assert lists.tolist() == per_row_lists(values)
    assert all(type(cell) is list and all(type(part) is str for part in cell) for cell in lists)


def test_split_list_of_a_slice_and_restores_the_collector():
    values = pd.Series(CELLS * 50, dtype="string").iloc[7:300]
    assert gc.isenabled()
    assert split_list(values).tolist() == per_row_lists(values)
    assert gc.isenabled()
    gc.disable()
    try:
        split_list(values)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_split_list_cells_are_separate_lists():
    lists = split_list(pd.Series(["a|b", "a|b"] * 2000, dtype="string"))
    lists.iloc[0].append("c")
    assert lists.iloc[1] == ["a", "b"]


def test_list_lengths_of_python_lists():
    lengths = list_lengths(pd.Series([[], ["a"], ["a", "b"]], dtype=object, index=[3, 4, 5]))
    assert lengths.tolist() == [0, 1, 2] and lengths.dtype == np.int64 and lengths.index.tolist() == [3, 4, 5]


def test_whole_pounds_matches_int_of_price_plus_half():
    prices = pd.array([None, 0.0, -1.0, -0.6, -0.4, 12345.5, 12344.5, 0.5, 1.5, 0.004, 0.005, 99999999.995, 1e9, 7.125, 2.675, 1e15], dtype="Float64")
    expected = (pd.Series(prices) + 0.5).apply(lambda p: int(p) if pd.notna(p) else pd.NA).astype("Int64")
    pd.testing.assert_series_equal(autotrader._whole_pounds(pd.Series(prices)), expected)
    with pytest.raises(OverflowError):
        autotrader._whole_pounds(pd.Series(pd.array([1.0, float("inf")], dtype="Float64")))


def test_first_sentence_matches_split_on_dot():
    description = pd.Series([None, "", ".", "No dot", "One. Two. Three", ". Lead", "Café 2.0 TDI. Next", "line\nbreak. x"], dtype="string")
    expected = description.fillna("").astype(object).map(lambda v: v.split(".")[0]).astype("string")
    pd.testing.assert_series_equal(autotrader._first_sentence(description), expected)
