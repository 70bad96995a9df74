"""Property-based tests: any bytes either parse to canonical rows or fail with the engine's own error; diff then apply reaches the target."""

import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.delivery.diff import apply, diff
from dms_pipelines.formats.profile import find_profile
from dms_pipelines.formats.reader import read_export
from dms_pipelines.formats.values import MappingError
from dms_pipelines.paths import BUILTIN_PROFILES
from dms_pipelines.stock.schema import STOCK_COLUMNS
from dms_pipelines_tests.support import NAVIGATOR_HEADER, STATS, star_document, star_item

PROFILES = [BUILTIN_PROFILES]
NAVIGATOR = find_profile("navigator_csv", PROFILES)
STAR = find_profile("star5_xml", PROFILES)
cell = st.text(alphabet=string.printable + "£€é–\x00", max_size=30)


def parse_or_refuse(data: bytes, profile, name: str) -> None:
    STATS["hostile inputs tried"] += 1
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            result = read_export(path, profile, "leeds")
        except MappingError as error:
            assert name in str(error)
            return
        assert list(result.rows.columns) == STOCK_COLUMNS
        assert result.records_total >= len(result.rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_any_bytes_through_the_csv_engine(data):
    parse_or_refuse(data, NAVIGATOR, "stock_full_fuzz.csv")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cell, min_size=40, max_size=48), max_size=8))
def test_csv_shaped_rows_with_any_values(rows):
    text = NAVIGATOR_HEADER + "\r\n" + "\r\n".join(",".join(r) for r in rows)
    parse_or_refuse(text.encode("utf-8"), NAVIGATOR, "stock_full_rows.csv")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=400))
def test_xml_with_bytes_spliced_in(noise, position):
    document = star_document(star_item("Y1"), star_item("Y2")).encode()
    position = min(position, len(document))
    parse_or_refuse(document[:position] + noise + document[position:], STAR, "inventory_full_fuzz.xml")


keys = st.text(alphabet="abcdef", min_size=1, max_size=3)
hashes = st.text(alphabet="0123456789", max_size=2)


@given(st.dictionaries(keys, hashes), st.dictionaries(keys, hashes))
def test_diff_then_apply_reproduces_the_target(acknowledged, desired):
    desired = {k: v or "0" for k, v in desired.items()}
    changes = diff(desired, acknowledged)
    assert apply(acknowledged, desired, changes) == desired
    assert not set(changes.creates) & set(changes.updates)
    assert set(changes.unchanged) == {k for k in desired if acknowledged.get(k) == desired[k]}
