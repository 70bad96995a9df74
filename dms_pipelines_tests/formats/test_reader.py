"""The CSV and XML mapping engines on the three shipped profiles, and their refusals of unreadable files."""

from pathlib import Path

import pandas as pd
import pytest

from dms_pipelines.formats.profile import ProfileError, find_profile, load_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines_tests.support import NAVIGATOR_HEADER, PIPE_HEADER, navigator_row, star_document, star_item

PROFILES = [BUILTIN_PROFILES]


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_navigator_csv_keeps_identifiers_exact_and_maps_values(tmp_path):
    rows = [navigator_row(s) for s in ("00123", "NA12ABC", "1E10", "NULL")]
    path = write(tmp_path / "stock_full_20261121_0200.csv", "\ufeff" + "\r\n".join([NAVIGATOR_HEADER, *rows]) + "\r\n")
    result = read_export(path, find_profile("navigator_csv", PROFILES), "leeds")
    assert result.rows["stock_id"].tolist() == ["00123", "NA12ABC", "1E10", "NULL"]
    assert result.encoding == "utf-8-sig"
    first = result.rows.iloc[0]
    assert (first["fuel_type"], first["transmission"], first["status"], first["condition"]) == ("petrol", "manual", "available", "used")
    assert first["price"] == 12995 and first["first_registration_date"] == pd.Timestamp("2021-10-05")
    assert first["features"] == "A/C|Sat Nav" and first["private_key_code"] == "K-77"
    assert result.rows["source_row"].tolist() == [1, 2, 3, 4]
    assert result.issues.empty


def test_an_unquoted_thousands_comma_quarantines_only_its_row(tmp_path):
    rows = [navigator_row("001"), navigator_row("002", price="9,995"), navigator_row("003", price='"9,995"', description='Two\nlines, "quoted"'.replace('"', '""').join('""'))]
    path = write(tmp_path / "stock_full_20261121_0200.csv", "\r\n".join([NAVIGATOR_HEADER, *rows]) + "\r\n")
    result = read_export(path, find_profile("navigator_csv", PROFILES), "leeds")
    assert result.records_total == 3
    assert result.rows["stock_id"].tolist() == ["001", "003"]
    assert result.rows.loc[1, "price"] == 9995
    assert result.rows.loc[1, "description"] == 'Two\nlines, "quoted"'
    issue = result.issues.iloc[0]
    assert (issue["source_row"], issue["stock_id"], issue["rule"], issue["severity"]) == (2, "002", "field_count", "error")
    assert "45 fields where the header has 44" in issue["message"]


def test_values_that_cannot_be_read_are_issues_not_crashes(tmp_path):
    bad = navigator_row("004").replace("20000", "twenty thousand").replace("In Stock", "Unknown State")
    path = write(tmp_path / "stock_full_20261121_0200.csv", "\r\n".join([NAVIGATOR_HEADER, navigator_row("001"), bad]) + "\r\n")
    result = read_export(path, find_profile("navigator_csv", PROFILES), "leeds")
    rules = dict(zip(result.issues["field"], result.issues["rule"]))
    assert rules == {"mileage": "not_a_number", "status": "unknown_value"}
    assert set(result.issues["source_row"]) == {2}


def test_missing_required_columns_are_named(tmp_path):
    header = "StockNo," + NAVIGATOR_HEADER.removeprefix("Stock,").replace(",WebPrice,", ",")
    path = write(tmp_path / "stock_full_20261121_0200.csv", header + "\r\n")
    with pytest.raises(MappingError) as caught:
        read_export(path, find_profile("navigator_csv", PROFILES), "leeds")
    assert "stock_full_20261121_0200.csv: row 1 (header): required columns missing ['Stock', 'WebPrice']" in str(caught.value)


def test_unknown_columns_are_reported_as_schema_drift(tmp_path):
    path = write(tmp_path / "stock_full_20261121_0200.csv", NAVIGATOR_HEADER + ",NewColumn\r\n" + navigator_row("001") + ",x\r\n")
    result = read_export(path, find_profile("navigator_csv", PROFILES), "leeds")
    assert any("NewColumn" in w for w in result.warnings)
    assert len(result.rows) == 1


def test_empty_and_undecodable_files_are_refused(tmp_path):
    profile = find_profile("navigator_csv", PROFILES)
    with pytest.raises(MappingError, match="empty file"):
        read_export(write(tmp_path / "a.csv", ""), profile, "leeds")
    (tmp_path / "b.csv").write_bytes(NAVIGATOR_HEADER.encode() + b"\r\n\x81\x8d\x8f\r\n")
    with pytest.raises(MappingError, match="cannot decode"):
        read_export(tmp_path / "b.csv", profile, "leeds")


def test_a_utf8_export_is_streamed_from_disk_and_reads_as_its_bytes_would(tmp_path, monkeypatch):
    """UTF-8 files (with or without a byte-order mark, blank lines before the header) are never read whole into memory."""
    import dms_pipelines.formats.reader as reader

    profile = find_profile("navigator_csv", PROFILES)
    body = NAVIGATOR_HEADER + "\r\n" + navigator_row("001", description="Café racer") + "\r\n" + navigator_row("002") + "\r\n"
    plain = tmp_path / "stock_full_20261121_0200.csv"
    plain.write_bytes(body.encode("utf-8"))
    marked = tmp_path / "stock_full_20261121_0300.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self.name} read whole"))
    first, second = read_export(plain, profile, "leeds"), read_export(marked, profile, "leeds")
    assert (first.encoding, second.encoding) == ("utf-8", "utf-8-sig")
    assert first.rows["stock_id"].tolist() == second.rows["stock_id"].tolist() == ["001", "002"]
    assert first.rows["description"].tolist()[0] == "Café racer"
    blank = tmp_path / "blank.csv"
    blank.write_bytes(b" \r\n" * (reader.HEAD_BYTES // 3 + 10))
    with pytest.raises(MappingError, match="empty file"):
        read_export(blank, profile, "leeds")


def test_pipe_cp1252_export_with_pound_prices_and_short_dates(tmp_path):
    row = "S0042|YC19 ABC|VF1RJA00X12345678|Citroën|C3|1.2 PureTech Shine|Shine|Hatchback|P|M|5|5|1199|104|Euro 6|Red|31000|15/04/19|2019|£9,995|£10,495|M|U|RS|02/11/26|01/05/27|Great value – FSH|Bluetooth,Cruise|https://i.example/a.jpg,https://i.example/b.jpg|£7,000|12|Mr Keeper|Mr Keeper"
    path = write(tmp_path / "export_full_20261121_0200.txt", PIPE_HEADER + "\r\n" + row + "\r\n", encoding="cp1252")
    result = read_export(path, find_profile("pipe_cp1252_csv", PROFILES), "sheffield")
    assert result.encoding == "cp1252"
    vehicle = result.rows.iloc[0]
    assert vehicle["make"] == "Citroën" and vehicle["registration"] == "YC19ABC"
    assert (vehicle["price"], vehicle["previous_price"], vehicle["private_cost_price"]) == (9995, 10495, 7000)
    assert vehicle["first_registration_date"] == pd.Timestamp("2019-04-15")
    assert (vehicle["status"], vehicle["vat_status"], vehicle["vehicle_type"]) == ("reserved", "marginal", "car")
    assert vehicle["description"] == "Great value – FSH"


def test_star5_xml_by_xpath(tmp_path):
    path = write(tmp_path / "inventory_full_202611210200.xml", star_document(star_item("Y001"), star_item("Y002", "oops")))
    result = read_export(path, find_profile("star5_xml", PROFILES), "york")
    assert result.records_total == 2 and result.rows["stock_id"].tolist() == ["Y001", "Y002"]
    vehicle = result.rows.iloc[0]
    assert (vehicle["colour"], vehicle["fuel_type"], vehicle["transmission"]) == ("Grey", "hybrid", "automatic")
    assert vehicle["features"] == "Heated seats|Reversing camera" and vehicle["private_cost_price"] == 15000
    assert vehicle["description"] == "One owner & FSH"
    assert result.issues[["source_row", "field", "rule"]].values.tolist() == [[2, "price", "not_a_number"]]


def test_xml_with_entities_is_refused_before_parsing(tmp_path):
    bomb = '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    path = write(tmp_path / "inventory_full_202611210200.xml", star_document(star_item("Y001"), prolog=bomb))
    with pytest.raises(MappingError, match="DOCTYPE or entities"):
        read_export(path, find_profile("star5_xml", PROFILES), "york")


def test_xml_without_records_or_malformed(tmp_path):
    profile = find_profile("star5_xml", PROFILES)
    with pytest.raises(MappingError, match="no <s:VehicleInventoryVehicleLineItem> records"):
        read_export(write(tmp_path / "a.xml", "<Other/>"), profile, "york")
    with pytest.raises(MappingError, match="malformed XML at line"):
        read_export(write(tmp_path / "b.xml", star_document(star_item("Y1"))[:-40]), profile, "york")


def test_profile_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nformat: csv\nfiles: {full: ['*.csv']}\nfields: {stock_number: {column: Stock}}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(bad)
    assert "format csv needs a 'csv' section" in str(caught.value) or "fields.stock_number" in str(caught.value)
    with pytest.raises(ProfileError, match="mapping profile 'nope' not found"):
        find_profile("nope", PROFILES)
