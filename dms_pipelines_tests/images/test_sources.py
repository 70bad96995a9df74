"""Imaging feeds read through mapping profiles (record: images): the two built-in layouts, bad rows quarantined with file, row and field, a new layout onboarded by YAML alone, and the newest-file rule."""

import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.devtools.sample.generator import sample_vehicles
from dms_pipelines.devtools.sample.imaging_feed import write_imaging_feed
from dms_pipelines.formats.profile import ProfileError, load_profile
from dms_pipelines.formats.values import MappingError
from dms_pipelines.images.sources import imaging_profile, latest_imaging_feed, read_imaging_feed
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.stock.imaging_schema import FIELDS, IMAGE_COLUMNS, IMAGE_SCHEMA

DOCS = Path(__file__).resolve().parents[2] / "docs" / "canonical-images.md"
CITNOW_HEADER = "Registration,VIN,StockNo,ImageURL,Sequence,MediaType,ImageTag,CapturedDate,Branch\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_every_field_is_listed_in_the_docs_and_the_builtin_image_profiles_read_images():
    listed = set(re.findall(r"^\| `([a-z_]+)` \| (?:string|Int64|datetime) \|", DOCS.read_text(encoding="utf-8"), flags=re.M))
    assert {field.name for field in FIELDS} == listed
    kinds = {path.stem: load_profile(path).record for path in BUILTIN_PROFILES.glob("*.yaml")}
    assert kinds["citnow_images_csv"] == kinds["autosonshow_images_csv"] == "images"
    assert kinds["navigator_csv"] == "vehicle" and kinds["navigator_customers_csv"] == "customer"  # the other kinds as before


def test_a_citnow_feed_is_read_with_bad_rows_quarantined_naming_file_row_and_field(tmp_path):
    name = "citnow_leeds_20240501_0600.csv"
    path = write(
        tmp_path / name,
        CITNOW_HEADER
        + "ab12 cde,wba00000000000001,L001,https://img.example/L001/01.jpg,1,Photo,Exterior front,01/05/2024 10:30,Leeds\n"  # 1 good
        + "AB12CDE,,L001,https://img.example/L001/02.jpg,x,Photo,,31/02/2024 10:30,Leeds\n"  # 2 position and time unreadable: warnings
        + ",,L002,https://img.example/L002/walk.mp4,,Video,,,Leeds\n"  # 3 a video: skipped, not quarantined
        + ",,,https://img.example/nobody.jpg,1,Photo,,,Leeds\n"  # 4 names no vehicle
        + "CD34EFG,,L003,ftp://img.example/L003/01.jpg,1,Photo,,,Leeds\n"  # 5 not http(s)
        + "CD34EFG,,L003,,2,Photo,,,Leeds\n"  # 6 no URL
        + "CD34EFG,NOTAVIN,L003,https://img.example/L003/03.jpg,0,Photo,,,Leeds\n"  # 7 VIN and position dropped
        + "ab12 cde,wba00000000000001,L001,https://img.example/L001/01.jpg,3,Photo,,,Leeds\n",  # 8 the image of row 1 again
    )
    feed = read_imaging_feed(path, "citnow_images_csv", "leeds")
    assert list(feed.frame.columns) == IMAGE_COLUMNS
    IMAGE_SCHEMA.validate(feed.frame)
    assert feed.frame[["stock_id", "image_url", "source_row"]].values.tolist() == [
        ["L001", "https://img.example/L001/01.jpg", 1],
        ["L001", "https://img.example/L001/02.jpg", 2],
        ["L003", "https://img.example/L003/03.jpg", 7],
    ]
    first = feed.frame.iloc[0]
    assert (first["registration"], first["vin"], first["position"], first["tag"], first["captured_at"]) == (
        "AB12CDE",
        "WBA00000000000001",
        1,
        "Exterior front",
        pd.Timestamp("2024-05-01 10:30", tz="UTC"),
    )
    assert pd.isna(feed.frame.iloc[1]["position"]) and pd.isna(feed.frame.iloc[1]["captured_at"])
    assert pd.isna(feed.frame.iloc[2]["vin"]) and pd.isna(feed.frame.iloc[2]["position"])
    assert feed.skipped == {"not a photograph (video or 360 spin): no marketplace takes it as an image": 1}
    assert feed.quarantined[["source_row"]].values.ravel().tolist() == [4, 5, 6]
    reasons = feed.quarantined["reason"].tolist()
    assert reasons[0].startswith(f"{name}: row 4: stock_id/vin/registration: none given")
    assert reasons[1] == f"{name}: row 5: image_url: not an absolute http(s) URL without spaces (the row is quarantined)"
    assert reasons[2].startswith(f"{name}: row 6: image_url: missing")
    issues = feed.issues
    assert issues[["source_row", "field", "rule", "severity"]].values.tolist() == [
        [2, "position", "not_a_number", "warning"],
        [2, "captured_at", "not_a_date", "warning"],
        [4, "stock_id/vin/registration", "no_vehicle", "error"],
        [5, "image_url", "not_a_url", "error"],
        [6, "image_url", "missing_url", "error"],
        [7, "vin", "invalid_vin", "warning"],
        [7, "position", "invalid_position", "warning"],
        [8, "image_url", "duplicate_image", "warning"],
    ]
    assert all(message.startswith(f"{name}: row {row}: {field}: ") for message, row, field in zip(issues["message"], issues["source_row"], issues["field"]))
    assert "NOTAVIN" not in " ".join(issues["message"]) and issues.loc[issues["field"] == "vin", "value"].isna().all()  # a VIN is never quoted
    assert (feed.records_total, feed.images_read, feed.duplicates) == (7, 7, 1)
    assert feed.images_read == len(feed.frame) + len(feed.quarantined) + feed.duplicates


def test_a_one_row_per_vehicle_feed_becomes_one_row_per_image_in_list_order(tmp_path):
    path = write(
        tmp_path / "autosonshow_leeds_1.csv",
        "VehicleRef,RegNo,Chassis,PhotoUrls,LastModified,PhotoCount\n"
        '"L001",AB12 CDE,,"https://a.example/1.jpg; https://a.example/2.jpg;;https://a.example/3.jpg",2024-05-01T10:00:00Z,3\n'
        ",,WBA00000000000002,https://a.example/9.jpg;not a url;https://a.example/8.jpg,2024-05-02T11:00:00Z,2\n"
        "L003,,,,2024-05-01T10:00:00Z,0\n",
    )
    feed = read_imaging_feed(path, "autosonshow_images_csv", "leeds")
    assert feed.frame[["stock_id", "vin", "registration", "image_url", "position", "source_row"]].astype(object).where(feed.frame.notna(), None).values.tolist() == [
        ["L001", None, "AB12CDE", "https://a.example/1.jpg", 1, 1],
        ["L001", None, "AB12CDE", "https://a.example/2.jpg", 2, 1],
        ["L001", None, "AB12CDE", "https://a.example/3.jpg", 3, 1],
        [None, "WBA00000000000002", None, "https://a.example/9.jpg", 1, 2],
        [None, "WBA00000000000002", None, "https://a.example/8.jpg", 3, 2],
    ]
    assert (feed.frame["captured_at"].iloc[3]) == pd.Timestamp("2024-05-02 11:00", tz="UTC")
    assert feed.quarantined[["source_row", "position", "image_url"]].astype(object).where(feed.quarantined[["source_row", "position", "image_url"]].notna(), None).values.tolist() == [
        [2, 2, "not a url"],
        [3, 1, None],
    ]
    assert feed.quarantined["reason"].str.startswith(("autosonshow_leeds_1.csv: row 2: image_url: not an absolute", "autosonshow_leeds_1.csv: row 3: image_url: missing")).all()
    assert (feed.records_total, feed.images_read) == (3, 7)


def test_both_builtin_layouts_of_the_sample_feed_read_the_same_images(tmp_path):
    stock = sample_vehicles(40, "L", 1, np.random.default_rng(3), datetime(2024, 5, 1), "leeds", "Y")
    truth = write_imaging_feed(stock, "leeds", tmp_path / "inbox", "https://imaging.example")
    columns = ["stock_id", "vin", "registration", "image_url", "position"]
    read = {layout: read_imaging_feed(path, layout, "leeds") for layout, path in truth.paths.items()}
    for feed in read.values():
        assert feed.issues.empty and feed.quarantined.empty
        assert len(feed.frame) == len(truth.images)
    citnow, autosonshow = (read[layout].frame[columns].sort_values(["image_url"]).reset_index(drop=True) for layout in ("citnow_images_csv", "autosonshow_images_csv"))
    pd.testing.assert_frame_equal(citnow, autosonshow)
    expected = truth.images.assign(registration=truth.images["registration"].str.upper())[columns].sort_values(["image_url"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(citnow.astype(object).where(citnow.notna(), None), expected.astype(object).where(expected.notna(), None), check_dtype=False)
    assert read["citnow_images_csv"].skipped == {"not a photograph (video or 360 spin): no marketplace takes it as an image": truth.videos} and truth.videos > 0


def test_a_new_layout_is_onboarded_by_a_profile_alone(tmp_path):
    (tmp_path / "profiles").mkdir()
    write(
        tmp_path / "profiles" / "spyne_images_psv.yaml",
        """name: spyne_images_psv
format: csv
record: images
csv: {delimiter: "|", quotechar: '"'}
files: {full: ["spyne_*.txt"]}
fields:
  stock_id: {column: [Stock Ref, Alt Ref]}
  registration: {column: Plate, type: registration}
  image_url: {column: Photos, type: list, separator: ","}
  position: {column: Start, type: integer, optional: true}
  captured_at: {column: Shot, type: date, formats: ["%Y%m%d"]}
  tag: {column: View, case: title, optional: true}
ignored_columns: [Studio]
""",
    )
    path = write(
        tmp_path / "spyne_leeds_20240501.txt",
        "Stock Ref|Alt Ref|Plate|Photos|Shot|View|Studio\n"
        " |S-9|yk19 xyz|https://s.example/a.jpg , https://s.example/b.jpg|20240430|front|Leeds\n"
        "S-10||YK20ABC|https://s.example/c.jpg|2024043x|REAR|Leeds\n",
    )
    feed = read_imaging_feed(path, "spyne_images_psv", "leeds", search_dirs=[tmp_path / "profiles", BUILTIN_PROFILES])
    assert feed.frame[["stock_id", "registration", "image_url", "position", "tag"]].values.tolist() == [
        ["S-9", "YK19XYZ", "https://s.example/a.jpg", 1, "Front"],
        ["S-9", "YK19XYZ", "https://s.example/b.jpg", 2, "Front"],
        ["S-10", "YK20ABC", "https://s.example/c.jpg", 1, "Rear"],
    ]
    assert feed.frame["captured_at"].iloc[0] == pd.Timestamp("2024-04-30", tz="UTC") and pd.isna(feed.frame["captured_at"].iloc[2])
    assert feed.issues[["source_row", "field", "rule"]].values.tolist() == [[2, "captured_at", "not_a_date"]]
    assert feed.issues["message"].iloc[0].startswith("spyne_leeds_20240501.txt: row 2: captured_at: ")
    by_path = read_imaging_feed(path, tmp_path / "profiles" / "spyne_images_psv.yaml", "leeds")
    pd.testing.assert_frame_equal(by_path.frame, feed.frame)


def test_a_profile_that_does_not_read_images_and_a_file_without_the_url_column_are_refused(tmp_path):
    with pytest.raises(ProfileError, match=r"'navigator_csv' reads vehicle records \(record: vehicle\); an imaging feed needs a profile with record: images"):
        imaging_profile("navigator_csv")
    path = write(tmp_path / "citnow_x.csv", "Registration,VIN,StockNo,ImageUrl,Sequence,MediaType\nAB12CDE,,L1,https://a/1.jpg,1,Photo\n")
    with pytest.raises(MappingError, match=r"citnow_x.csv: row 1 \(header\): required columns missing \['ImageURL'\].*ImageURL -> ImageUrl"):
        read_imaging_feed(path, "citnow_images_csv", "leeds")
    with pytest.raises(ProfileError, match="images field"):
        write(tmp_path / "bad.yaml", "name: bad\nformat: csv\nrecord: images\ncsv: {}\nfiles: {full: ['*.csv']}\nfields:\n  image_link: {column: URL}\n")
        load_profile(tmp_path / "bad.yaml")


def test_the_latest_feed_is_the_file_modified_last_ties_to_the_greater_name_in_progress_names_aside(tmp_path):
    assert latest_imaging_feed(tmp_path / "absent") is None
    assert latest_imaging_feed(tmp_path) is None
    stamps = {
        "citnow_leeds_20240501.csv": 100,
        "citnow_leeds_20240502.csv": 300,
        "citnow_leeds_20240503.csv": 300,
        "citnow_leeds_20240504.csv": 200,
        "notes.txt": 900,
        ".citnow_leeds_20240509.csv": 999,
        "citnow_leeds_20240510.csv.part": 999,
    }
    for name, stamp in stamps.items():
        write(tmp_path / name, CITNOW_HEADER)
        os.utime(tmp_path / name, ns=(stamp * 10**9, stamp * 10**9))
    (tmp_path / "citnow_folder.csv").mkdir()
    assert latest_imaging_feed(tmp_path) == tmp_path / "notes.txt"
    assert latest_imaging_feed(tmp_path, ["citnow_*.csv"]) == tmp_path / "citnow_leeds_20240503.csv"
    assert latest_imaging_feed(tmp_path, ["autosonshow_*.csv"]) is None


LINES = st.lists(
    st.tuples(
        st.sampled_from(["L1", "L2", "", " L3 "]),
        st.sampled_from(["AB12CDE", "ab12 cde", ""]),
        st.sampled_from(["https://i.example/1.jpg", "https://i.example/2.jpg", "http://i.example/x y.jpg", "mailto:x", ""]),
        st.sampled_from(["1", "2", "0", "-3", "x", ""]),
        st.sampled_from(["Photo", "Video"]),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=LINES)
def test_every_image_row_is_accepted_quarantined_with_a_reason_or_a_reported_duplicate(tmp_path, lines):
    path = write(tmp_path / "citnow_p.csv", CITNOW_HEADER + "".join(f"{plate},,{stock},{url},{position},{media},,,\n" for stock, plate, url, position, media in lines))
    feed = read_imaging_feed(path, "citnow_images_csv", "leeds")
    photos = [line for line in lines if line[4] == "Photo"]
    assert feed.images_read == len(photos) == len(feed.frame) + len(feed.quarantined) + feed.duplicates
    assert sum(feed.skipped.values()) == len(lines) - len(photos)
    assert feed.quarantined["reason"].str.match(r"^citnow_p\.csv: row \d+: (image_url|stock_id/vin/registration): ").all()
    assert not feed.frame.duplicated(["stock_id", "registration", "image_url"]).any()
    IMAGE_SCHEMA.validate(feed.frame)
    assert set(feed.frame["source_row"]) | set(feed.quarantined["source_row"]) | set(feed.issues.loc[feed.issues["rule"] == "duplicate_image", "source_row"]) == {
        number for number, line in enumerate(lines, start=1) if line[4] == "Photo"
    }


def test_a_record_the_engine_cannot_split_is_quarantined_whole_and_counted(tmp_path):
    path = write(
        tmp_path / "citnow_fc.csv",
        CITNOW_HEADER + "AB12CDE,,L1,https://a/1.jpg,1,Photo,,,Leeds\nAB12CDE,,L1,https://a/2.jpg,2,Photo,Front, rear,,Leeds\nAB12CDE,,L1,https://a/3.jpg,3,Photo,,,Leeds\n",
    )
    feed = read_imaging_feed(path, "citnow_images_csv", "leeds")
    assert feed.frame["source_row"].tolist() == [1, 3]
    assert feed.quarantined[["source_row", "stock_id", "reason"]].values.tolist() == [[2, "L1", "citnow_fc.csv: row 2: 10 fields where the header has 9 (an unquoted delimiter?)"]]
    assert feed.issues[["source_row", "rule", "severity"]].values.tolist() == [[2, "field_count", "error"]]
    assert feed.images_read == len(feed.frame) + len(feed.quarantined) + feed.duplicates == feed.records_total == 3
