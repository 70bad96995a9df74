"""Per-field transforms (several sources, extract, case, unmapped values, unit conversion) and the skip filter, on the CSV engine."""

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.formats.profile import FieldMapping, MappingProfile, find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.transforms import KM_PER_MILE, convert_units, first_non_empty
from dms_pipelines.formats.values import MappingError, convert_column
from dms_pipelines.paths import BUILTIN_PROFILES

BASE_FIELDS = {"stock_id": {"column": "Stock"}}


def profile(fields: dict, **extra) -> MappingProfile:
    return MappingProfile.model_validate({"name": "acme_csv", "format": "csv", "csv": {"delimiter": ","}, "files": {"full": ["*.csv"]}, "fields": {**BASE_FIELDS, **fields}, **extra})


def export(tmp_path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[row.get(name, "") for name in header] for row in rows])
    path = tmp_path / "stock_full_20261121_0200.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def column(*values: str | None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(list(values), type=pa.string())])


# --- several sources ----------------------------------------------------------------------------------------------------

CELL = st.sampled_from(["", " ", "\t", "a", " b ", "é", "x y"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(CELL, CELL, CELL), max_size=25), st.integers(1, 3))
def test_the_first_non_empty_of_several_sources(rows, width):
    sources = [column(*[row[index] for row in rows]) for index in range(width)]
    converted, failed, _ = convert_column(first_non_empty(sources), FieldMapping(column=["A", "B", "C"][:width]), "colour")
    expected = [next((value.strip() for value in row[:width] if value.strip()), None) for row in rows]
    assert [None if pd.isna(value) else value for value in converted] == expected
    assert not failed.any()


def test_csv_columns_listed_must_exist_unless_optional(tmp_path):
    rows = [{"Stock": "1", "Colour": "", "Paint": "Flame Red"}, {"Stock": "2", "Colour": "Red", "Paint": "Flame Red"}]
    strict = profile({"colour": {"column": ["Colour", "Paint", "Shade"]}})
    with pytest.raises(MappingError, match=r"required columns missing \['Shade'\]"):
        read_export(export(tmp_path, rows), strict, "leeds")
    lenient = profile({"colour": {"column": ["Colour", "Paint", "Shade"], "optional": True}})
    result = read_export(export(tmp_path, rows), lenient, "leeds")
    assert result.rows["colour"].tolist() == ["Flame Red", "Red"] and result.issues.empty


def test_a_missing_required_column_suggests_the_nearest_header_cell(tmp_path):
    with pytest.raises(MappingError, match=r"required columns missing \['Colour'\] .*closest in the file: Colour -> Color\?"):
        read_export(export(tmp_path, [{"Stock": "1", "Color": "Red"}]), profile({"colour": {"column": "Colour"}}), "leeds")


# --- extract --------------------------------------------------------------------------------------------------------------


def test_extract_takes_the_first_group_or_the_whole_match(tmp_path):
    rows = [{"Stock": "1", "Engine": "2.0L", "Doors": "5dr", "Trim": "SR (2019)"}, {"Stock": "2", "Engine": " 1.5 L ", "Doors": "3 dr", "Trim": "EX"}]
    result = read_export(
        export(tmp_path, rows),
        profile(
            {
                "engine_size_cc": {"column": "Engine", "extract": "([0-9.]+)", "type": "integer", "convert": "litres_to_cc"},
                "doors": {"column": "Doors", "extract": "[0-9]+", "type": "integer"},
                "trim": {"column": "Trim", "extract": r"^(\w+)(?: \((\d+)\))?"},
            }
        ),
        "leeds",
    )
    assert result.rows["engine_size_cc"].tolist() == [2000, 1500]
    assert result.rows["doors"].tolist() == [5, 3]
    assert result.rows["trim"].tolist() == ["SR", "EX"]
    assert result.issues.empty


def test_a_value_the_pattern_does_not_match_is_a_no_match_issue_naming_the_pattern(tmp_path):
    rows = [{"Stock": "1", "Engine": "2.0L", "Make": "Honda"}, {"Stock": "2", "Engine": "Electric", "Make": "(none)"}, {"Stock": "3", "Engine": "", "Make": "Kia"}]
    result = read_export(
        export(tmp_path, rows),
        profile({"engine_size_cc": {"column": "Engine", "extract": "([0-9.]+)L", "type": "integer", "convert": "litres_to_cc"}, "make": {"column": "Make", "extract": "^[A-Z][a-z]+$"}}),
        "leeds",
    )
    issues = result.issues.set_index("field")
    assert issues.loc["engine_size_cc", ["source_row", "rule", "value", "severity"]].tolist() == [2, "no_match", "Electric", "error"]
    assert issues.loc["engine_size_cc", "message"] == "engine_size_cc: 'Electric' does not match the extract pattern '([0-9.]+)L'"
    assert issues.loc["make", ["rule", "severity"]].tolist() == ["no_match", "error"]  # required or not: a value that cannot be read
    engine = result.rows["engine_size_cc"]
    assert engine.iloc[0] == 2000 and engine.iloc[1:].isna().all()
    assert len(result.issues) == 2  # the blank one is blank, not a failure


# --- case and maps --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "expected"), [("upper", ["HONDA", "MERCEDES-BENZ"]), ("lower", ["honda", "mercedes-benz"]), ("title", ["Honda", "Mercedes-Benz"])])
def test_case_changes_the_text(case, expected):
    converted, failed, _ = convert_column(column("HONDA", "mercedes-BENZ"), FieldMapping(column="Make", case=case), "make")
    assert converted.tolist() == expected and not failed.any()


def test_case_comes_before_the_map_whose_output_is_verbatim(tmp_path):
    rows = [{"Stock": str(n), "Make": make} for n, make in enumerate(["HONDA", "bmw", "BMW", " Vw ", "", "KIA"], start=1)]
    result = read_export(export(tmp_path, rows), profile({"make": {"column": "Make", "case": "title", "map": {"BMW": "BMW", "vw": "Volkswagen"}, "unmapped": "keep"}}), "leeds")
    assert result.rows["make"].tolist()[:4] == ["Honda", "BMW", "BMW", "Volkswagen"] and pd.isna(result.rows["make"].iloc[4])
    assert result.rows["make"].iloc[5] == "Kia"
    assert result.unmapped == {"make": {"Honda": 1, "Kia": 1}} and result.issues.empty


def test_unmapped_default_replaces_what_the_map_does_not_cover_and_blanks_stay_blank(tmp_path):
    rows = [{"Stock": "1", "Body": "HATCH"}, {"Stock": "2", "Body": "LIMO"}, {"Stock": "3", "Body": ""}, {"Stock": "4", "Body": "limo"}]
    mapping = {"column": "Body", "map": {"HATCH": "hatchback"}, "unmapped": "default", "map_default": "other"}
    result = read_export(export(tmp_path, rows), profile({"body_type": mapping}), "leeds")
    assert result.rows["body_type"].tolist()[:2] == ["hatchback", "other"] and pd.isna(result.rows["body_type"].iloc[2])
    assert result.unmapped == {"body_type": {"LIMO": 1, "limo": 1}} and result.issues.empty
    filled = read_export(export(tmp_path, rows), profile({"body_type": {**mapping, "default": "HATCH"}}), "leeds")
    assert filled.rows["body_type"].iloc[2] == "hatchback"  # the existing default still fills blanks, before the map


def test_unmapped_error_is_todays_unknown_value_and_is_counted(tmp_path):
    rows = [{"Stock": "1", "Fuel": "P", "Status": "AV"}, {"Stock": "2", "Fuel": "MHEV", "Status": "GONE"}, {"Stock": "3", "Fuel": "MHEV", "Status": "AV"}]
    result = read_export(export(tmp_path, rows), profile({"fuel_type": {"column": "Fuel", "map": {"P": "petrol"}}, "status": {"column": "Status", "map": {"AV": "available"}}}), "leeds")
    assert result.unmapped == {"fuel_type": {"MHEV": 2}, "status": {"GONE": 1}}
    severity = result.issues.groupby("field")["severity"].unique().map(list).to_dict()
    assert severity == {"fuel_type": ["warning"], "status": ["error"]}  # as before: an unknown value is an error only for a required field
    assert set(result.issues["rule"]) == {"unknown_value"}


# --- unit conversion ------------------------------------------------------------------------------------------------------


def test_an_integer_field_takes_decimals_only_to_convert_them():
    converted, failed, _ = convert_column(column("2.0", "1.6", "2.5", ""), FieldMapping(column="x", type="integer", convert="litres_to_cc"), "engine_size_cc")
    assert converted.tolist()[:3] == [2000, 1600, 2500] and pd.isna(converted.iloc[3]) and not failed.any()
    converted, failed, rule = convert_column(column("2", "2.5"), FieldMapping(column="x", type="integer"), "engine_size_cc")
    assert failed.tolist() == [False, True] and rule == "not_a_number"  # without convert, 2.5 is still not an integer


def test_converted_integers_round_half_away_from_zero():
    litres = pd.Series([1.0625, 2.0625, -1.0625, 0.0])  # exact in binary: 1062.5 cc, 2062.5 cc
    assert convert_units(litres, "litres_to_cc", whole=True).tolist() == [1063, 2063, -1063, 0]
    assert convert_units(litres, "litres_to_cc", whole=False).tolist() == [1062.5, 2062.5, -1062.5, 0]


def test_kilometres_become_miles(tmp_path):
    rows = [{"Stock": "1", "Km": "41250"}, {"Stock": "2", "Km": "10"}, {"Stock": "3", "Km": "1,609.344"}, {"Stock": "4", "Km": "lots"}]
    result = read_export(export(tmp_path, rows), profile({"mileage": {"column": "Km", "type": "integer", "convert": "km_to_miles"}}), "leeds")
    assert result.rows["mileage"].tolist()[:3] == [25632, 6, 1000]  # 41,250 km; 10 km rounds to 6 miles; a thousands comma is read
    assert result.issues[["source_row", "rule"]].values.tolist() == [[4, "not_a_number"]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2_000_000), min_size=1, max_size=30))
def test_km_to_miles_and_back_is_within_rounding(kilometres):
    miles, failed, _ = convert_column(column(*map(str, kilometres)), FieldMapping(column="x", type="integer", convert="km_to_miles"), "mileage")
    back, failed_back, _ = convert_column(column(*map(str, miles)), FieldMapping(column="x", type="integer", convert="miles_to_km"), "mileage")
    assert not failed.any() and not failed_back.any()
    assert (np.abs(miles.to_numpy(dtype=float) - np.array(kilometres) / KM_PER_MILE) <= 0.5).all()
    assert (np.abs(back.to_numpy(dtype=float) - np.array(kilometres)) <= 0.5 * KM_PER_MILE + 0.5).all()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False), min_size=1, max_size=20))
def test_decimal_conversions_round_trip(values):
    there, _, _ = convert_column(column(*map(str, values)), FieldMapping(column="x", type="decimal", convert="miles_to_km"), "price")
    back, _, _ = convert_column(column(*map(repr, there.astype(float))), FieldMapping(column="x", type="decimal", convert="km_to_miles"), "price")
    assert np.allclose(back.to_numpy(dtype=float), [float(v) for v in values], rtol=1e-12, atol=1e-9)


# --- skip -----------------------------------------------------------------------------------------------------------------

SKIP_ROWS = [
    {"Stock": "1", "Usage": "Retail", "Make": "Honda"},
    {"Stock": "2", "Usage": " company ", "Make": "Honda"},
    {"Stock": "3", "Usage": "Retail", "Make": "Trade: Kia"},
    {"Stock": "4", "Usage": "", "Make": "Honda"},
    {"Stock": "5", "Usage": "COMPANY", "Make": "Trade: Ford"},
    {"Stock": "6", "Usage": "Retail", "Make": "Mazda"},
]


def test_skipped_records_are_counted_per_reason_and_keep_their_numbers(tmp_path):
    rules = [
        {"column": "Usage", "in": ["Company"], "reason": "company vehicle, not for sale"},
        {"column": "Make", "matches": "^Trade:", "reason": "trade only"},
        {"column": "Usage", "empty": True, "reason": "no usage given"},
    ]
    result = read_export(export(tmp_path, SKIP_ROWS), profile({"make": {"column": "Make"}}, skip=rules), "leeds")
    assert result.rows["stock_id"].tolist() == ["1", "6"] and result.rows["source_row"].tolist() == [1, 6]
    assert result.skipped == {"company vehicle, not for sale": 2, "trade only": 1, "no usage given": 1}  # stock 5 counts for the first rule only
    assert (result.records_total, result.records_in_file) == (2, 6)
    assert result.issues.empty and result.warnings == []


def test_empty_false_skips_the_records_with_a_value(tmp_path):
    result = read_export(export(tmp_path, SKIP_ROWS), profile({}, skip=[{"column": "Usage", "empty": False, "reason": "has a usage"}]), "leeds")
    assert result.rows["stock_id"].tolist() == ["4"] and result.skipped == {"has a usage": 5}


def test_a_skip_rules_column_must_be_in_the_file(tmp_path):
    with pytest.raises(MappingError, match=r"required columns missing \['Usage'\]"):
        read_export(export(tmp_path, [{"Stock": "1"}]), profile({}, skip=[{"column": "Usage", "in": ["Company"], "reason": "company car"}]), "leeds")


def test_a_skipped_file_still_conserves_rows_with_a_broken_record(tmp_path):
    text = "Stock,Usage\r\n1,Retail\r\n2,Company\r\n3,Retail,extra\r\n4,Retail\r\n"
    path = tmp_path / "stock_full_20261121_0200.csv"
    path.write_text(text, encoding="utf-8")
    result = read_export(path, profile({}, skip=[{"column": "Usage", "in": ["Company"], "reason": "company car"}]), "leeds")
    assert result.rows["source_row"].tolist() == [1, 4] and result.issues["source_row"].tolist() == [3]
    assert result.records_total == 3 and result.records_in_file == 4  # rows + the broken record; the skipped one aside


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["Retail", "Company", " company", "", "Demo"]), max_size=30))
def test_rows_and_skipped_records_partition_the_file(usages):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = export(Path(folder), [{"Stock": str(n), "Usage": usage} for n, usage in enumerate(usages, start=1)], header=["Stock", "Usage"])
        result = read_export(path, profile({}, skip=[{"column": "Usage", "in": ["company"], "reason": "company car"}]), "leeds")
    kept = [n for n, usage in enumerate(usages, start=1) if usage.strip().lower() != "company"]
    assert result.rows["source_row"].tolist() == kept
    assert result.records_in_file == len(usages) and result.records_total == len(kept)
    assert result.skipped == ({"company car": len(usages) - len(kept)} if len(kept) < len(usages) else {})


# --- what did not change --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["navigator_csv", "pipe_cp1252_csv"])
def test_a_list_of_one_column_and_a_rule_that_never_holds_change_nothing(layout, tmp_path):
    from dms_pipelines.devtools.sample.generator import SampleDealer, generate_group

    generate_group(tmp_path, [SampleDealer("leeds", "Leeds Motors", layout)], 300, seed=11)
    [path] = sorted((tmp_path / "leeds").glob("*_full_*"))
    builtin = find_profile(layout, [BUILTIN_PROFILES])
    raw = builtin.model_dump(by_alias=True, exclude_defaults=True)
    for mapping in raw["fields"].values():
        mapping["column"] = [mapping["column"]]
    stock_column = builtin.fields["stock_id"].column
    raw["skip"] = [{"column": stock_column, "matches": "^never$", "reason": "never"}]
    plain, listed = read_export(path, builtin, "leeds"), read_export(path, MappingProfile.model_validate(raw), "leeds")
    pd.testing.assert_frame_equal(listed.rows, plain.rows)
    pd.testing.assert_frame_equal(listed.issues, plain.issues)
    assert listed.skipped == plain.skipped == {} and listed.records_total == plain.records_total == 300


def test_csv_drift_is_a_warning_and_a_list(tmp_path):
    result = read_export(export(tmp_path, [{"Stock": "1", "Colour": "Red", "Location": "Yard", "Notes": "x"}]), profile({"colour": {"column": "Colour"}}, ignored_columns=["Location"]), "leeds")
    assert result.unread_sources == ["Notes"]
    assert result.warnings == ["stock_full_20261121_0200.csv: columns not in profile 'acme_csv' (ignored): ['Notes']"]
