"""Big feeds are rendered in slices on threads and written in parts: the bytes, held items and scores equal the whole-frame ones."""

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms_pipelines.delivery.snapshot import LocalFolder
from dms_pipelines.delivery.staging import stage
from dms_pipelines.kernels.parallel import ordered_map
from dms_pipelines.marketplaces import google, meta, website
from dms_pipelines.marketplaces.base import render_for
from dms_pipelines.marketplaces.registry import SPECS
from dms_pipelines.marketplaces.row_files import whole
from dms_pipelines.operations.db import engine_for
from dms_pipelines.paths import DataPaths
from dms_pipelines.pipeline.feeds import deliver_pieces
from dms_pipelines_tests.support import GOLDEN, feed_file, fixed_dealer, fixed_stock

PARTS = {
    "google.csv": ("google", lambda items, dealer, rows: google.serialise_parts(items, part_rows=rows)),
    "website.json": ("website", lambda items, dealer, rows: website.serialise_parts(items, dealer, part_rows=rows)),
    "meta.csv": ("meta", lambda items, dealer, rows: meta.serialise_parts(items, "csv", part_rows=rows)),
    "carsnip_vehicles.csv": ("carsnip", lambda items, dealer, rows: iter(whole(feed_file("carsnip", "_vehicles.csv", dealer).rows, items, rows))),
}


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("rows", [1, 2, 3, 7])
@pytest.mark.parametrize("name", sorted(PARTS))
def test_sliced_rendering_and_parts_give_the_golden_bytes(name, rows, threads, monkeypatch):
    monkeypatch.setenv("DMS_PIPELINES_THREADS", threads)
    marketplace, parts = PARTS[name]
    dealer = fixed_dealer()
    stock = fixed_stock().sample(frac=1, random_state=rows).reset_index(drop=True)  # out of order: the parts must sort
    whole = render_for(SPECS[marketplace], stock, dealer, dealer.marketplaces[marketplace])
    sliced = render_for(SPECS[marketplace], stock, dealer, dealer.marketplaces[marketplace], slice_rows=rows)
    pd.testing.assert_frame_equal(sliced.items, whole.items)
    pd.testing.assert_frame_equal(sliced.held, whole.held)
    pd.testing.assert_frame_equal(sliced.completeness, whole.completeness)
    pieces = list(parts(sliced.items, dealer, rows))
    assert len(pieces) > 2, "the file was not built in parts"
    assert b"".join(pieces) == (GOLDEN / name).read_bytes()


def test_ordered_map_keeps_order_and_raises_the_first_error(monkeypatch):
    assert list(ordered_map(lambda n: n * n, range(50), threads=2)) == [n * n for n in range(50)]
    assert list(ordered_map(lambda n: n, [], threads=2)) == []
    assert list(ordered_map(lambda n: n is None, [None], threads=2)) == [True]  # None is an item, not the end

    def fails_at_seven(n):
        if n == 7:
            raise ValueError("slice 7")
        return n

    seen = []
    with pytest.raises(ValueError, match="slice 7"):
        for value in ordered_map(fails_at_seven, range(20), threads=2):
            seen.append(value)
    assert seen == list(range(7))
    monkeypatch.setenv("DMS_PIPELINES_THREADS", "two")
    with pytest.raises(ValueError, match="DMS_PIPELINES_THREADS"):
        list(ordered_map(lambda n: n, range(3)))


def test_a_file_that_fails_while_being_built_leaves_nothing_staged(tmp_path: Path):
    def pieces():
        yield b"header\r\n"
        raise RuntimeError("render failed half way")

    with pytest.raises(RuntimeError):
        stage(tmp_path, "feed.csv", pieces())
    assert list(tmp_path.iterdir()) == []
    staged = stage(tmp_path, "feed.csv", [b"a,b\r\n", memoryview(b"1,2\r\n")])
    assert staged.path.read_bytes() == b"a,b\r\n1,2\r\n" and staged.size == 10


def test_a_staged_feed_is_delivered_once_and_never_left_in_staging(tmp_path: Path):
    paths = DataPaths(tmp_path / "data")
    engine = engine_for(f"sqlite:///{tmp_path / 'ops.sqlite'}")
    outbox = LocalFolder(tmp_path / "outbox")
    first = deliver_pieces(engine, outbox, paths, "website", "leeds", "leeds.json", iter([b'{"a":', b"1}"]))
    again = deliver_pieces(engine, outbox, paths, "website", "leeds", "leeds.json", iter([b'{"a":1', b"}"]))
    changed = deliver_pieces(engine, outbox, paths, "website", "leeds", "leeds.json", iter([b'{"a":2}']))
    assert (first.sent, again.sent, changed.sent) == (True, False, True)
    assert (tmp_path / "outbox" / "leeds.json").read_bytes() == b'{"a":2}'
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["leeds.json"]
    assert not any((paths.state / "staging").rglob("*.staged"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["B1", "A2", None]), st.sampled_from(["x9", "X1", "é", "", None, "a b"])), max_size=30))
def test_sort_order_is_pandas_stable_sort(rows):
    from dms_pipelines.marketplaces.base import sort_order

    items = pd.DataFrame({"store_code": pd.Series([a for a, _ in rows], dtype="string"), "id": pd.Series([b for _, b in rows], dtype="string")})
    expected = items.sort_values(["store_code", "id"], kind="stable").index.to_numpy()
    order = sort_order(items, ["store_code", "id"])
    assert (list(range(len(rows))) if order is None else order.tolist()) == expected.tolist()


def test_a_staged_feed_on_another_filesystem_is_copied_into_place(tmp_path: Path, monkeypatch):
    import errno

    from dms_pipelines.delivery import local

    staged = stage(tmp_path / "staging", "york.csv", [b"a,b\r\n", b"1,2\r\n"])
    calls = []

    def across_devices(source, target):
        calls.append(Path(source))
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(local.os, "link", across_devices)
    assert local.write_if_changed(tmp_path / "outbox" / "york.csv", staged)
    assert (tmp_path / "outbox" / "york.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    assert calls == [staged.path] and [p.name for p in (tmp_path / "outbox").iterdir()] == ["york.csv"]  # no temporary left
    assert staged.path.exists()  # the staged file stays for the caller (kept as the next rebuild's base, or discarded)
    assert not local.write_if_changed(tmp_path / "outbox" / "york.csv", staged)  # the same bytes: nothing written
