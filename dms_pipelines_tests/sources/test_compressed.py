"""Compressed exports: .gz and .zip read through the profile; bombs, escaping members and garbage refused with the file named."""

import gzip
import zipfile

import pytest

from dms_pipelines.devtools.sample.generator import default_dealers, generate_group
from dms_pipelines.formats.profile import find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError
from dms_pipelines.paths import BUILTIN_PROFILES

PROFILES = [BUILTIN_PROFILES]


@pytest.fixture
def export(tmp_path):
    report = generate_group(tmp_path / "gen", default_dealers(1), 40, seed=2)
    return report.files[0]


def test_gzip_and_zip_give_the_same_rows_as_the_plain_file(tmp_path, export):
    profile = find_profile("navigator_csv", PROFILES)
    plain = read_export(export, profile, "leeds")
    gz = tmp_path / (export.name + ".gz")
    gz.write_bytes(gzip.compress(export.read_bytes()))
    zipped = tmp_path / (export.name + ".zip")
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(export.name, export.read_bytes())
    assert profile.export_kind(gz.name) == "full" and profile.export_kind(zipped.name) == "full"
    for path in (gz, zipped):
        result = read_export(path, profile, "leeds")
        assert result.rows.drop(columns="source_file").equals(plain.rows.drop(columns="source_file"))
        assert result.file_name == path.name


def test_a_bomb_is_refused_at_the_cap(tmp_path):
    bomb = tmp_path / "stock_full_20261121_0200.csv.gz"
    with gzip.open(bomb, "wb") as handle:
        handle.write(b"0" * (20 << 20))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(MappingError, match="stock_full_20261121_0200.csv.gz: expands past the cap of 1,048,576 bytes"):
        read_export(bomb, find_profile("navigator_csv", PROFILES), "leeds", max_uncompressed_bytes=1 << 20)


def test_escaping_or_several_members_and_garbage_are_refused(tmp_path):
    profile = find_profile("navigator_csv", PROFILES)
    escaping = tmp_path / "stock_full_a.csv.zip"
    with zipfile.ZipFile(escaping, "w") as archive:
        archive.writestr("../../etc/stock_full_a.csv", b"x")
    with pytest.raises(MappingError, match="would escape the landing folder"):
        read_export(escaping, profile, "leeds")
    several = tmp_path / "stock_full_b.csv.zip"
    with zipfile.ZipFile(several, "w") as archive:
        archive.writestr("a.csv", b"x")
        archive.writestr("b.csv", b"y")
    with pytest.raises(MappingError, match="exactly one file, it holds 2"):
        read_export(several, profile, "leeds")
    garbage = tmp_path / "stock_full_c.csv.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(MappingError, match="not a readable .gz file"):
        read_export(garbage, profile, "leeds")
