"""The Arrow paths of the row rules agree with the per-value readings they replace (kept for non-Arrow columns)."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.stock.terminology import normalise_description, normalise_features
from dms_pipelines.stock.validate import check_image_urls, kept_rows

IMAGES = [
    "https://i.example/1.jpg|https://i.example/2.jpg",
    "https://i.example/1.jpg\n|https://i.example/2.jpg",  # Python's $ matches before a final newline
    "https://i.example/1.jpg|ftp://x",
    "https://i.example/a b.jpg",
    "https://i.example/1.jpg||https://i.example/2.jpg",
    "https://i.example/x\ny.jpg",
    "",
    None,
    "http://é.example/ü.jpg",
    "https://.bad",
]


def test_image_counts_and_url_checks_match_the_exploded_reading():
    arrow = pd.Series(IMAGES, dtype="string", index=range(10, 20))
    plain = pd.Series(IMAGES, dtype=object, index=range(10, 20))
    fast_count, fast_bad = check_image_urls(arrow)
    slow_count, slow_bad = check_image_urls(plain)
    pd.testing.assert_series_equal(fast_count, slow_count.astype("Int64"))
    assert fast_bad.tolist() == slow_bad.tolist() == [2, 3, 4, 5, 9]


def test_features_and_descriptions_match_the_per_item_reading():
    features = ["A/C|sat nav| bt |", None, "", "|", "x||CC", "ß|ſh", "ALLOYS", "\u00a0pdc\u2003|\x1csh\x1c"]
    fast = normalise_features(pd.Series(features, dtype="string"))
    slow = normalise_features(pd.Series(features, dtype=object))
    pd.testing.assert_series_equal(fast, slow)
    assert fast.tolist()[:2] == ["Air conditioning|Satellite navigation|Bluetooth|", pd.NA]
    text = pd.Series(["FSH and fsh", None, "FSH and fsh", "nothing", "a/c\n", "1 prev owner, ULEZ"], dtype="string")
    assert normalise_description(text).tolist() == [
        "Full service history and Full service history",
        pd.NA,
        "Full service history and Full service history",
        "nothing",
        "Air conditioning\n",
        "One previous owner, ULEZ compliant",
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A1", "A2", "B1", "b0", "C9", None]), st.booleans()), max_size=30), st.booleans())
def test_kept_rows_are_the_filtered_rows_in_stock_number_order(rows, chunked):
    frame = pd.DataFrame(
        {
            "stock_id": pd.Series([stock_id for stock_id, _ in rows], dtype="string"),
            "b": pd.Series(range(len(rows)), dtype="Int64"),
            "c": pd.Series([f"text {n}" for n in range(len(rows))], dtype="string"),
        },
        index=range(7, 7 + len(rows)),
    )
    if chunked:  # a spliced frame: Arrow columns of several chunks
        frame = pd.concat([frame.iloc[: len(rows) // 2], frame.iloc[len(rows) // 2 :]])
    keep = np.array([kept for _, kept in rows], dtype=bool)
    expected = frame.loc[keep].sort_values("stock_id", kind="stable", na_position="last").reset_index(drop=True)
    pd.testing.assert_frame_equal(kept_rows(frame, keep), expected)


def test_image_checks_on_a_thread_of_their_own_give_the_same_result(tmp_path, monkeypatch):
    from datetime import date

    import dms_pipelines.stock.validate as validate
    from dms_pipelines.config import Validation
    from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group
    from dms_pipelines.formats.profile import find_profile
    from dms_pipelines.formats.reader import read_export
    from dms_pipelines.paths import BUILTIN_PROFILES

    generate_group(tmp_path, [SampleDealer("leeds", "Leeds Motors", "navigator_csv")], 400, seed=3, defect_rate=0.2)
    [export] = sorted((tmp_path / "leeds").glob("*_full_*"))
    rows = read_export(export, find_profile("navigator_csv", [BUILTIN_PROFILES]), "leeds").rows
    results = {}
    for threads in (1, 2):
        monkeypatch.setattr(validate, "threads_for", lambda count, threads=threads: threads)
        results[threads] = validate.validate_stock(rows, export.name, Validation(), date(2026, 11, 21))
    assert (results[1].issues["rule"] == "too_few_images").any()
    pd.testing.assert_frame_equal(results[2].accepted, results[1].accepted)
    pd.testing.assert_frame_equal(results[2].issues, results[1].issues)
