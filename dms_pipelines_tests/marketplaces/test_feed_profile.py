"""Feed profiles: the shipped Carsnip profile on the fixed stock (golden file, columns, formats, rules, privacy, files,
read-back) and small profiles written here for what it does not use (enums, account-wide files, the loader's errors)."""

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.config import DealerMarketplace
from dms_pipelines.kernels.csv_bytes import FORMULA_START
from dms_pipelines.marketplaces.base import render_for
from dms_pipelines.marketplaces.feed_profile import FOLDER, FeedProfileError, builtin_feed_profiles, load_feed_profile
from dms_pipelines.marketplaces.row_files import whole
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, coerce_to_schema
from dms_pipelines_tests.support import GOLDEN, PRIVATE_MARKERS, feed_vehicle, fixed_dealer, fixed_stock

SHIPPED = FOLDER / "carsnip.yaml"
ACCOUNT = DealerMarketplace(feed_id="CS-LEEDS", list_reserved=True)


def shipped():
    return load_feed_profile(SHIPPED)


def files_of(spec, stock=None, dealer=None, account=ACCOUNT):
    """The rendered feed and its files' bytes by name, as the pipeline builds them."""
    dealer = dealer or fixed_dealer()
    rendered = render_for(spec, fixed_stock() if stock is None else stock, dealer, account)
    built = {}
    for file in spec.files(dealer, account, spec.formats[0]):
        pieces = whole(file.rows, rendered.items) if file.rows is not None else file.build(rendered.items, dealer, account)
        built[file.name] = b"".join(pieces)
    return rendered, built


def csv_rows(data: bytes, delimiter: str = ",") -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter))


def stock_of(*vehicles) -> pd.DataFrame:
    return coerce_to_schema(pd.DataFrame(list(vehicles)))


def minimal(**changes) -> dict:
    """A small profile of our own: an enum, a number with its currency, a list item, a date, an account setting."""
    raw = {
        "name": "test_feed",
        "source": "https://example.invalid/feed-spec",
        "scope": "dealer",
        "file": {"name": "{dealer_id}.csv"},
        "account_settings": ["feed_id"],
        "key": "id",
        "columns": [
            {"column": "id", "field": "stock_id", "required": True},
            {"column": "condition", "field": "condition", "enum": ["new", "used"], "required": True},
            {"column": "make", "field": "make", "format": "text", "required": True},
            {"column": "price", "field": "price", "format": "number:{:.2f} GBP"},
            {"column": "image", "field": "image_urls", "item": 0},
            {"column": "in_stock", "field": "date_in_stock", "format": "date:%Y-%m-%d"},
            {"column": "title", "template": "{year} {make} {model}", "max_length": 40},
        ],
    }
    raw.update(changes)
    return raw


def written(tmp_path: Path, raw: dict, name: str = "profile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def with_column(tmp_path: Path, column: dict) -> Path:
    raw = minimal()
    raw["columns"] = raw["columns"] + [column]
    return written(tmp_path, raw)


# ---------------------------------------------------------------------------------------------------- the shipped profile


def test_the_shipped_profile_is_builtin():
    specs = {spec.name: spec for spec in builtin_feed_profiles()}
    spec = specs["carsnip"]
    assert spec.mode == "snapshot" and spec.scope == "dealer" and spec.formats == ("csv",) and spec.account_settings == ("feed_id",)
    assert len(spec.fingerprint) == 64 and spec.description


def test_golden_file():
    _, built = files_of(shipped())
    produced = built["leeds_vehicles.csv"]
    golden = GOLDEN / "carsnip_vehicles.csv"  # the file the Python module wrote before this profile replaced it
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_bytes(produced)
    assert produced == golden.read_bytes(), "carsnip_vehicles.csv changed; if intended, run with UPDATE_GOLDEN=1 and review the diff"


def test_columns_in_the_profiles_order_and_their_formats():
    declared = [column["column"] for column in yaml.safe_load(SHIPPED.read_text())["columns"]]
    _, built = files_of(shipped())
    rows = {row["Vehicle_Id"]: row for row in csv_rows(built["leeds_vehicles.csv"])}
    assert next(csv.reader(io.StringIO(built["leeds_vehicles.csv"].decode()))) == declared
    assert "A0003" not in rows and "A0002" in rows  # sold removed; reserved kept (the account lists reserved cars)
    first = rows["A0001"]
    assert first["Feed_Id"] == "CS-LEEDS" and first["Cap_Id"] == "" and first["Make"] == "Ford" and first["Variant"] == "1.0 EcoBoost 125 Titanium 5dr"
    assert first["Year"] == "2021" and first["Price"] == "12995" and first["Mileage"] == "21000" and first["FullRegistration"] == "YD71KPR"
    assert first["Vehicle_URL"] == "https://www.airevalleymotors.example/leeds/used-cars/a0001"
    assert first["PictureRefs"].split(",") == [f"https://img.example/{n}.jpg" for n in range(1, 9)]
    assert first["Doors"] == "5" and first["EngineSize"] == "999" and first["Colour"] == "Blue"
    assert (first["FuelType"], first["BodyType"]) == ("Petrol", "Hatchback")
    assert (rows["A0002"]["FuelType"], rows["A0002"]["BodyType"], rows["A0002"]["Price"]) == ("Hybrid", "SUV", "23495")
    assert rows["A0008"]["FuelType"] == "Electric" and rows["A0008"]["EngineSize"] == "0" and len(rows["A0008"]["PictureRefs"].split(",")) == 2
    assert list(rows) == sorted(rows)  # sorted by Vehicle_Id


def test_the_dealer_file():
    _, built = files_of(shipped())
    (row,) = csv_rows(built["leeds_dealer.csv"])
    assert row == {
        "Dealer_Id": "CS-LEEDS",
        "DealerName": "Aire Valley Motors Leeds",
        "Postcode": "LS3 1JL",
        "BuildingName": "",
        "BuildingNumber": "120",
        "StreetName": "Kirkstall Road",
        "Locality": "West Yorkshire",
        "Town": "Leeds",
        "Phone": "0113 496 0120",
        "EmailAddress": "",
        "WebsiteURL": "https://www.airevalleymotors.example/leeds",
    }


def test_fallbacks_feed_id_to_dealer_id_and_registration_year_to_model_year():
    stock = stock_of(feed_vehicle("B0001", first_registration_date=pd.NaT, year=2019))
    _, built = files_of(shipped(), stock, account=DealerMarketplace())
    (row,) = csv_rows(built["leeds_vehicles.csv"])
    assert row["Year"] == "2019" and row["Feed_Id"] == "leeds"
    assert csv_rows(built["leeds_dealer.csv"])[0]["Dealer_Id"] == "leeds"


def test_reserved_cars_follow_the_accounts_list_reserved():
    rendered, _ = files_of(shipped(), account=DealerMarketplace(feed_id="CS-LEEDS", list_reserved=False))
    assert "A0002" not in set(rendered.items["Vehicle_Id"]) and "A0001" in set(rendered.items["Vehicle_Id"])


def test_a_car_missing_a_required_field_is_held_back_with_the_reason():
    stock = stock_of(feed_vehicle("C0001"), feed_vehicle("C0002", registration=None), feed_vehicle("C0003", image_urls=None, derivative="   "))
    rendered, built = files_of(shipped(), stock)
    held = dict(zip(rendered.held["stock_id"], rendered.held["reasons"]))
    assert held == {"C0002": "FullRegistration missing", "C0003": "Variant missing; PictureRefs missing"}
    assert [row["Vehicle_Id"] for row in csv_rows(built["leeds_vehicles.csv"])] == ["C0001"]


def test_completeness_counts_the_images():
    rendered, _ = files_of(shipped())
    scores = rendered.completeness.set_index("stock_id")["completeness"]
    assert scores["A0008"] < scores["A0001"] <= 1  # two images instead of eight; Cap_Id always missing


def test_nothing_private_leaves():
    _, built = files_of(shipped())
    for data in built.values():
        for marker in PRIVATE_MARKERS:
            assert marker not in data.decode("utf-8")


def test_formula_like_cells_are_defused_in_both_files():
    stock = stock_of(feed_vehicle("D0001", derivative='=HYPERLINK("http://evil.example","x")', colour="@SUM(A1)", registration="+44"))
    dealer = fixed_dealer().model_copy(update={"name": "=cmd|' /C calc'!A0"})
    _, built = files_of(shipped(), stock, dealer)
    (row,) = csv_rows(built["leeds_vehicles.csv"])
    assert row["Variant"] == '\'=HYPERLINK("http://evil.example","x")' and row["Colour"] == "'@SUM(A1)" and row["FullRegistration"] == "'+44"
    assert csv_rows(built["leeds_dealer.csv"])[0]["DealerName"] == "'=cmd|' /C calc'!A0"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_any_free_text_gives_no_formula_cell_and_one_row_per_listed_car(texts):
    stock = stock_of(*[feed_vehicle(f"H{n:04d}", derivative=text, colour=text[::-1], make=text or "Ford") for n, text in enumerate(texts)])
    spec = shipped()
    rendered, built = files_of(spec, stock)
    data = built["leeds_vehicles.csv"]
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert len(rows) == 1 + len(rendered.items)
    assert len(rendered.items) + len(rendered.held) == len(texts)
    for row in rows[1:]:
        assert len(row) == len(rows[0])
        for cell in row:
            assert not cell.startswith(FORMULA_START), cell
    assert sorted(spec.read_back("leeds_vehicles.csv", data)) == sorted(rendered.items["Vehicle_Id"])


def test_read_back_gives_one_entry_per_listed_car():
    spec = shipped()
    rendered, built = files_of(spec)
    shown = spec.read_back("leeds_vehicles.csv", built["leeds_vehicles.csv"])
    assert sorted(shown) == sorted(rendered.items["Vehicle_Id"]) and len(shown) == len(rendered.items) == 7
    assert spec.read_back("leeds_dealer.csv", built["leeds_dealer.csv"]) is None  # the dealer file is compared whole


# ---------------------------------------------------------------------------------------------------- profiles of our own


def test_enums_formats_and_templates_of_a_profile(tmp_path):
    spec = load_feed_profile(written(tmp_path, minimal()))
    stock = stock_of(feed_vehicle("E0001"), feed_vehicle("E0002", condition="demo"), feed_vehicle("E0003", make=None), feed_vehicle("E0004", model="X" * 40))
    rendered, built = files_of(spec, stock)
    held = dict(zip(rendered.held["stock_id"], rendered.held["reasons"]))
    assert held == {"E0002": "condition not one of new/used", "E0003": "make missing", "E0004": "title longer than 40"}
    (row,) = csv_rows(built["leeds.csv"])
    assert row == {
        "id": "E0001",
        "condition": "used",
        "make": "Ford",
        "price": "12995.00 GBP",
        "image": "https://img.example/1.jpg",
        "in_stock": "2026-10-01",
        "title": "2021 Ford Fiesta",
    }


def test_file_names_per_dealer(tmp_path):
    assert [file.name for file in shipped().files(fixed_dealer(), ACCOUNT, "csv")] == ["leeds_dealer.csv", "leeds_vehicles.csv"]
    spec = load_feed_profile(written(tmp_path, minimal(file={"name": "stock_{feed_id}.csv"})))
    assert [file.name for file in spec.files(fixed_dealer(), ACCOUNT, "csv")] == ["stock_CS-LEEDS.csv"]
    with pytest.raises(ValueError, match="sets no feed_id"):
        spec.files(fixed_dealer(), DealerMarketplace(), "csv")
    with pytest.raises(ValueError, match="not a plain file name"):
        spec.files(fixed_dealer(), DealerMarketplace(feed_id="../../etc/passwd"), "csv")


def test_an_account_wide_file(tmp_path):
    raw = minimal(scope="account", file={"name": "vehicles_all.tsv", "delimiter": "\t"}, dealer_column="store", sort=["store", "id"])
    raw["columns"] = [{"column": "store", "account": "feed_id", "fallback": {"dealer": "id"}, "required": True}] + raw["columns"]
    spec = load_feed_profile(written(tmp_path, raw))
    assert spec.scope == "account" and spec.formats == ("tsv",) and spec.account_asset == "test_feed_feed"
    assert spec.account_file.name("tsv") == "vehicles_all.tsv" and spec.account_file.delimiter("tsv") == "\t"
    assert spec.account_file.columns == ("store", "id", "condition", "make", "price", "image", "in_stock", "title")
    (part,) = spec.files(fixed_dealer(), ACCOUNT, "tsv")
    assert part.name == "rows.tsv"
    rendered, built = files_of(spec)
    rows = built["rows.tsv"]
    assert not rows.startswith(b"store")  # a dealer's part is headless: the account file is the header and every part
    assert spec.account_file.part_key(fixed_dealer(), ACCOUNT) == "CS-LEEDS|"
    assert spec.account_file.part_key(fixed_dealer(), DealerMarketplace()) == "leeds|"
    content = spec.account_file.header("tsv") + rows
    shown = spec.read_back("vehicles_all.tsv", content)
    assert sorted(shown) == sorted(f"CS-LEEDS|{stock_id}" for stock_id in rendered.items["id"])
    assert all(row["store"] == "CS-LEEDS" for row in csv_rows(content, "\t"))


# ---------------------------------------------------------------------------------------------------- what the loader refuses


@pytest.mark.parametrize("field", [*PRIVATE_COLUMNS, "cost_price"])
def test_private_fields_can_never_be_named(tmp_path, field):
    path = with_column(tmp_path, {"column": "Secret", "field": field})
    with pytest.raises(FeedProfileError) as raised:
        load_feed_profile(path)
    message = str(raised.value)
    assert str(path) in message and "columns[7] (Secret).field" in message and field in message and "private" in message


@pytest.mark.parametrize(
    "column",
    [
        {"column": "Secret", "template": "{website}/{private_key_code}"},
        {"column": "Secret", "field": "colour", "format": "text", "fallback": {"field": "private_memo"}},
    ],
)
def test_private_fields_cannot_hide_in_templates_or_fallbacks(tmp_path, column):
    path = with_column(tmp_path, column)
    with pytest.raises(FeedProfileError, match=r"columns\[7\] \(Secret\).*private"):
        load_feed_profile(path)


def test_an_unknown_field_is_named_with_a_suggestion(tmp_path):
    path = with_column(tmp_path, {"column": "Miles", "field": "milage", "format": "integer"})
    with pytest.raises(FeedProfileError) as raised:
        load_feed_profile(path)
    assert str(path) in str(raised.value) and "columns[7] (Miles).field: unknown canonical field milage (did you mean mileage?)" in str(raised.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda raw: raw["columns"][2].update(colum="x"), r"columns\[2\] \(make\)\.colum: unknown key \(did you mean column\?\)"),
        (lambda raw: raw.update(colums=[]), r"colums: unknown key \(did you mean columns\?\)"),
        (lambda raw: raw["columns"][3].update(format="decimals:2"), r"columns\[3\] \(price\)\.format: unknown format 'decimals:2' \(did you mean decimal\?\)"),
        (lambda raw: raw["columns"][5].update(format=None), r"columns\[5\] \(in_stock\)\.format: date_in_stock is a date"),
        (lambda raw: raw["columns"][2].update(format="integer"), r"columns\[2\] \(make\)\.format: integer is for a number"),
        (lambda raw: raw["file"].update(name="stock_{store}.csv"), r"file\.name: unknown placeholder \{store\}"),
        (lambda raw: raw["file"].update(name="../stock.csv"), r"file\.name: '\.\./stock\.csv' must be a plain file name"),
        (lambda raw: raw["columns"][6].update(template="{yaer} {make}"), r"columns\[6\] \(title\)\.template: unknown placeholder \{yaer\} \(did you mean year\?\)"),
        (lambda raw: raw["columns"][1].update(map={"used": "USED"}), r"columns\[1\] \(condition\)\.map: 'USED' is not one of its enum"),
        (lambda raw: raw["columns"][1].update(map={"usd": "used"}), r"columns\[1\] \(condition\)\.map: 'usd' is not a value of condition \(did you mean used\?\)"),
        (lambda raw: raw["columns"][4].update(item=None), r"columns\[4\] \(image\): image_urls is a list"),
        (lambda raw: raw["columns"].append({"column": "store", "account": "store_code"}), r"columns\[7\] \(store\)\.account: store_code is not one of account_settings"),
        (lambda raw: raw["columns"].append({"column": "where", "dealer": "postcode"}), r"unknown dealer attribute postcode \(did you mean address\.postcode\?\)"),
        (lambda raw: raw["columns"].append({"column": "both", "field": "make", "value": "x"}), r"needs exactly one of field, value, dealer, account, template \(has field, value\)"),
        (lambda raw: raw.update(key="make"), r"key: column make must be the stock number"),
        (lambda raw: raw.update(sort=["prize"]), r"sort: prize is not one of the columns \(did you mean price\?\)"),
        (lambda raw: raw.update(scope="account", file={"name": "all.csv"}), r"dealer_column: an account-wide file needs the column naming the dealer"),
        (lambda raw: raw.update(name="Test Feed"), r"name: 'Test Feed' must be lower-case"),
        (lambda raw: raw["columns"].append({"column": "make", "field": "model"}), r"columns: make appears more than once"),
    ],
)
def test_other_mistakes_name_the_file_and_the_key(tmp_path, change, expected):
    raw = minimal()
    change(raw)
    path = written(tmp_path, raw)
    with pytest.raises(FeedProfileError, match=expected) as raised:
        load_feed_profile(path)
    assert str(path) in str(raised.value)


def test_a_file_that_is_not_yaml_or_not_a_mapping(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(FeedProfileError, match="broken.yaml: not valid YAML"):
        load_feed_profile(broken)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(FeedProfileError, match="listed.yaml: a feed profile is a mapping"):
        load_feed_profile(listed)
    with pytest.raises(FeedProfileError, match="absent.yaml: cannot read"):
        load_feed_profile(tmp_path / "absent.yaml")
