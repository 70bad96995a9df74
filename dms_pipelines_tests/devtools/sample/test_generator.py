"""The sample generator: reproducible, parseable by standard parsers, believable plates, planted defects really dirty."""

import csv
import io

import pandas as pd
from lxml import etree

from dms_pipelines.devtools.sample.generator import default_dealers, generate_group
from dms_pipelines.devtools.sample.plates import age_identifier

STAR = "{http://www.starstandard.org/STAR/5}"


def read_navigator(path):
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = generate_group(tmp_path / "a", default_dealers(3), 90, seed=5, deltas=1)
    second = generate_group(tmp_path / "b", default_dealers(3), 90, seed=5, deltas=1)
    third = generate_group(tmp_path / "c", default_dealers(3), 90, seed=6, deltas=1)
    for a, b, c in zip(first.files, second.files, third.files):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


def test_each_layout_parses_with_a_standard_parser_and_has_every_vehicle(tmp_path):
    report = generate_group(tmp_path, default_dealers(3), 300, seed=1)
    leeds, york, sheffield = report.files
    navigator = read_navigator(leeds)
    planted = list(csv.DictReader(open(tmp_path / "planted_defects.csv", encoding="utf-8")))
    shifted = sum(1 for p in planted if p["dealer_id"] == "leeds" and p["defect"] == "unquoted_comma")
    assert len(navigator) == report.vehicles["leeds"] == 100
    assert sum(1 for row in navigator if None in row) == shifted > 0  # only the planted rows have an extra field
    assert leeds.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in leeds.read_bytes()
    items = etree.parse(str(york)).getroot().findall(f".//{STAR}VehicleInventoryVehicleLineItem")
    assert len(items) == report.vehicles["york"]
    text = sheffield.read_bytes().decode("cp1252")
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="|"))
    assert len(rows) == report.vehicles["sheffield"]
    assert any(r["PRICE"].startswith("£") and "," in r["PRICE"] for r in rows)
    assert all(r["STOCK_NO"].startswith("0") for r in rows)


def test_plates_carry_the_age_identifier_of_their_registration_date(tmp_path):
    report = generate_group(tmp_path, default_dealers(1), 200, seed=3, defect_rate=0)
    rows = pd.DataFrame(read_navigator(report.files[0]))
    dates = pd.to_datetime(rows["RegDate"], format="%d/%m/%y")
    assert (rows["Reg"].str.slice(2, 4) == age_identifier(dates)).all()
    assert rows["InternalMemo"].str.startswith("PX from").all()


def test_planted_defects_are_really_in_the_file(tmp_path):
    generate_group(tmp_path, default_dealers(3), 600, seed=9)
    planted = pd.read_csv(tmp_path / "planted_defects.csv", dtype=str)
    assert set(planted["defect"]) == {"missing_price", "placeholder_price", "bad_plate", "duplicate_stock_id", "impossible_year", "unquoted_comma"}
    navigator = pd.DataFrame(read_navigator(tmp_path / "leeds" / "stock_full_20261121_0200.csv")).set_index("Stock", drop=False)
    leeds = planted[planted["dealer_id"] == "leeds"]
    for defect in leeds.itertuples():
        rows = navigator.loc[[defect.stock_id]]
        if defect.defect == "missing_price":
            assert (rows["WebPrice"] == "").all()
        elif defect.defect == "placeholder_price":
            assert rows["WebPrice"].isin(["1", "99999", "123456"]).all()
        elif defect.defect == "bad_plate":
            assert rows["Reg"].isin(["ABC12345", "XX", "L1 VERYLONG"]).all()
        elif defect.defect == "impossible_year":
            assert rows["Year"].isin(["1850", "2031"]).all()
        elif defect.defect == "duplicate_stock_id":
            assert len(rows) == 2


def test_deltas_carry_sales_reservations_price_drops_and_arrivals(tmp_path):
    report = generate_group(tmp_path, default_dealers(1), 400, seed=4, deltas=2)
    full = pd.DataFrame(read_navigator(report.files[0])).drop_duplicates("Stock").set_index("Stock")
    delta = pd.DataFrame(read_navigator(report.files[1])).set_index("Stock")
    assert {"Sold", "Reserved"} <= set(delta["OrderStatus"])
    known = delta.index.intersection(full.index)
    dropped = delta.loc[known][delta.loc[known, "PreviousPrice"] == full.loc[known, "WebPrice"]]
    assert len(dropped) >= 1
    assert len(delta.index.difference(full.index)) >= 1


def test_ten_vehicles_one_dealer(tmp_path):
    report = generate_group(tmp_path, default_dealers(1), 10, seed=1)
    assert report.vehicles == {"leeds": 10} and len(read_navigator(report.files[0])) == 10
