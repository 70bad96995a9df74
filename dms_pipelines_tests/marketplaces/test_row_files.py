"""A feed file rebuilt from the last one's bytes and the changed vehicles equals the file built whole, byte for byte, row index too."""

from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms_pipelines.devtools.sample.generator import sample_vehicles
from dms_pipelines.marketplaces import meta, website
from dms_pipelines.marketplaces.base import KEY, render_for
from dms_pipelines.marketplaces.registry import SPECS
from dms_pipelines.marketplaces.row_files import spliced, whole
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines_tests.support import feed_file, fixed_dealer, fixed_stock

LAYOUTS = {
    "website": lambda dealer: website.row_file(dealer),
    "meta": lambda dealer: meta.row_file("csv"),
    "meta_tsv": lambda dealer: meta.row_file("tsv"),
    "carsnip": lambda dealer: feed_file("carsnip", "_vehicles.csv", dealer).rows,
}


@lru_cache(maxsize=1)
def _pool() -> pd.DataFrame:
    generated = sample_vehicles(60, "B", 1, np.random.default_rng(7), datetime(2026, 11, 21), "leeds", "Yorkshire")
    return generated.drop(columns=[c for c in generated.columns if c not in fixed_stock().columns])


def _stock(n: int, seed: int) -> pd.DataFrame:
    """The awkward fixed vehicles and `n` generated ones."""
    generated = _pool().sample(n=min(n, len(_pool())), random_state=seed)
    return coerce_to_schema(pd.concat([fixed_stock(), generated], ignore_index=True)).sort_values("stock_id", ignore_index=True)


def _build(layout, stock, dealer, marketplace, part_rows=7):
    items = render_for(SPECS[marketplace], stock, dealer, dealer.marketplaces[marketplace]).items
    built = whole(layout, items, part_rows)
    return b"".join(bytes(piece) for piece in built), built.index


def _delta(stock: pd.DataFrame, rng: np.random.Generator, next_number: int) -> pd.DataFrame:
    """Some vehicles repriced, sold, reserved, stripped of images or of their VIN (held back), and a few new ones."""
    changed = stock.sample(n=min(len(stock), int(rng.integers(0, 12))), random_state=int(rng.integers(1 << 30))).copy()
    for position, index in enumerate(changed.index):
        kind = rng.integers(0, 6)
        if kind == 0:
            changed.loc[index, "price"] = float(rng.integers(500, 90_000))
        elif kind == 1:
            changed.loc[index, "status"] = "sold"
        elif kind == 2:
            changed.loc[index, "status"] = rng.choice(["available", "reserved"])
        elif kind == 3:
            changed.loc[index, "image_urls"] = "|".join(f"https://img.example/x{n}.jpg" for n in range(int(rng.integers(0, 25))))
        elif kind == 4:
            changed.loc[index, "vin"] = "SHORT"
        else:
            changed.loc[index, "description"] = 'New "words", with a comma\nand a line break'
    new = coerce_to_schema(_pool().sample(n=int(rng.integers(0, 4)), random_state=int(rng.integers(1 << 30))).reset_index(drop=True))
    new["stock_id"] = [f"N{next_number + n:05d}" for n in range(len(new))]
    return coerce_to_schema(pd.concat([changed, new], ignore_index=True))


def _apply(stock: pd.DataFrame, delta: pd.DataFrame) -> pd.DataFrame:
    kept = stock[~stock["stock_id"].isin(delta["stock_id"])]
    return coerce_to_schema(pd.concat([kept, delta], ignore_index=True)).sort_values("stock_id", ignore_index=True)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), size=st.integers(0, 40))
def test_a_chain_of_deltas_rebuilt_from_bytes_equals_the_whole_file(name, seed, size, tmp_path: Path):
    dealer = fixed_dealer()
    marketplace = name.split("_")[0]
    layout = LAYOUTS[name](dealer)
    rng = np.random.default_rng(seed)
    stock = _stock(size, seed)
    content, index = _build(layout, stock, dealer, marketplace)
    assert index is not None
    previous = tmp_path / f"{name}-{seed}-{size}"
    previous.write_bytes(content)
    rebuilt_from_bytes = 0
    for step in range(3):
        delta = _delta(stock, rng, 100 * step)
        stock = _apply(stock, delta)
        expected, expected_index = _build(layout, stock, dealer, marketplace)
        changed = render_for(SPECS[marketplace], delta, dealer, dealer.marketplaces[marketplace]).items
        built = spliced(layout, previous, index, set(delta["stock_id"]), changed)
        if built is None:  # only when the row layout itself changed (Meta's image columns): a whole build is then right
            assert marketplace == "meta" and expected_index.width != index.width
            content, index = expected, expected_index
        else:
            content = b"".join(bytes(piece) for piece in built)
            assert content == expected
            assert built.index.table.equals(expected_index.table)
            assert (built.index.head_length, built.index.width) == (expected_index.head_length, expected_index.width)
            index = built.index
            rebuilt_from_bytes += 1
        previous.write_bytes(content)
    if marketplace != "meta":
        assert rebuilt_from_bytes == 3


def test_the_index_points_at_each_row_and_its_vehicle(tmp_path: Path):
    dealer = fixed_dealer()
    content, index = _build(feed_file("carsnip", "_vehicles.csv", dealer).rows, _stock(30, 3), dealer, "carsnip")
    table = index.table.to_pydict()
    lines = content.decode("utf-8").split("\r\n")[1:-1]
    assert len(lines) == len(table["stock_id"]) > 0
    for stock_id, start, length, line in zip(table["stock_id"], table["start"], table["length"], lines):
        assert content[start : start + length].decode("utf-8") == line
        assert stock_id in line.split(",")  # Vehicle_Id is the stock number


def test_keys_out_of_order_or_missing_keep_no_index():
    dealer = fixed_dealer()
    items = render_for(SPECS["carsnip"], _stock(5, 1), dealer, dealer.marketplaces["carsnip"]).items
    broken = items.copy()
    broken.loc[0, "Vehicle_Id"] = None
    built = whole(feed_file("carsnip", "_vehicles.csv").rows, broken)
    b"".join(bytes(piece) for piece in built)
    assert built.index is None
    assert isinstance(whole(feed_file("carsnip", "_vehicles.csv").rows, items).index, type(None))  # not known before the pieces are taken
    ids = pa.array(items[KEY].astype(str))
    assert len(ids) == len(items)


def _google_part(stock: pd.DataFrame, dealer, folder: Path, name: str):
    from dms_pipelines.marketplaces import google

    items = render_for(SPECS["google"], stock, dealer, dealer.marketplaces["google"]).items
    built = whole(google.row_file("csv", header=False), items)
    (folder / name).write_bytes(b"".join(bytes(piece) for piece in built))
    return items, (folder / name, built.index)


@pytest.mark.parametrize("store_codes", [("LEEDS", "YORK"), ("SAME", "SAME"), ("YORK", "LEEDS")])
def test_the_account_file_from_dealer_parts_equals_the_whole_sort(store_codes, tmp_path: Path):
    from dms_pipelines.marketplaces import google
    from dms_pipelines.marketplaces.row_files import merged

    dealer = fixed_dealer()
    first = dealer.model_copy(update={"marketplaces": {**dealer.marketplaces, "google": dealer.marketplaces["google"].model_copy(update={"store_code": store_codes[0]})}})
    second = dealer.model_copy(update={"id": "york", "marketplaces": {**dealer.marketplaces, "google": dealer.marketplaces["google"].model_copy(update={"store_code": store_codes[1]})}})
    stock = _stock(30, 5)
    other = _stock(20, 6)
    other["stock_id"] = [f"{s}-Y" if n % 2 else s for n, s in enumerate(other["stock_id"])]  # some ids shared with the first dealer
    items_a, part_a = _google_part(stock, first, tmp_path, "a.csv")
    items_b, part_b = _google_part(coerce_to_schema(other).sort_values("stock_id", ignore_index=True), second, tmp_path, "b.csv")
    expected = google.serialise(pd.concat([items_a, items_b], ignore_index=True))
    with part_a[0].open("rb") as a, part_b[0].open("rb") as b:
        assert b"".join(bytes(p) for p in merged(google.header(), [(a, part_a[1]), (b, part_b[1])])) == expected
        without_index = b"".join(bytes(p) for p in merged(google.header(), [(a, None), (b, part_b[1])]))
    assert sorted(without_index.split(b"\r\n")) == sorted(expected.split(b"\r\n"))  # every row there, the unindexed part last


def test_a_kept_part_opens_with_the_index_of_that_very_file(tmp_path: Path):
    from dms_pipelines.delivery import feed_cache
    from dms_pipelines.delivery.staging import stage

    dealer = fixed_dealer()
    items = render_for(SPECS["carsnip"], _stock(10, 2), dealer, dealer.marketplaces["carsnip"]).items
    built = whole(feed_file("carsnip", "_vehicles.csv").rows, items)
    feed_cache.keep(tmp_path, "carsnip", "leeds", "v.csv", stage(tmp_path / "staging", "v.csv", built), built.index, 3, "fp")
    handle, index = feed_cache.open_kept(tmp_path, "carsnip", "leeds", "v.csv")
    with handle:
        assert index is not None and index.table.equals(built.index.table)
        assert handle.read() == b"".join(bytes(p) for p in whole(feed_file("carsnip", "_vehicles.csv").rows, items))
    kept = feed_cache.kept_path(tmp_path, "carsnip", "leeds", "v.csv")
    kept.write_bytes(kept.read_bytes() + b"x\r\n")  # replaced by something its index does not describe
    handle, index = feed_cache.open_kept(tmp_path, "carsnip", "leeds", "v.csv")
    with handle:
        assert index is None
    assert feed_cache.open_kept(tmp_path, "carsnip", "york", "v.csv") is None
