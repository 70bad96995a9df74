"""Listing rows as a base and the changed vehicles' rows: read back, counted and shown in the warehouse as a whole render gives them."""

import duckdb
import pandas as pd

from dms_pipelines.marketplaces.base import Rendered
from dms_pipelines.paths import DataPaths
from dms_pipelines.warehouse import listings
from dms_pipelines.warehouse.listings import changes_path, listings_path, patch_listings, publish_listings, read_listings, save_listings
from dms_pipelines.warehouse.tables import rebuild_catalog


def rendered(shown: dict[str, float | None]) -> Rendered:
    """A render of these vehicles: a score lists the vehicle, None holds it back."""
    listed = {k: v for k, v in shown.items() if v is not None}
    held = [k for k, v in shown.items() if v is None]
    return Rendered(
        "website",
        "leeds",
        pd.DataFrame({"x": range(len(listed))}),
        pd.DataFrame({"stock_id": pd.Series(held, dtype="string"), "reasons": pd.Series(["price missing"] * len(held), dtype="string")}),
        pd.DataFrame(
            {"stock_id": pd.Series(list(listed), dtype="string"), "completeness": pd.Series(list(listed.values()), dtype="float"), "missing": pd.Series([pd.NA] * len(listed), dtype="string")}
        ),
    )


def comparable(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values("stock_id").reset_index(drop=True)


def test_changes_over_the_base_read_count_and_publish_as_the_whole_render(tmp_path):
    paths = DataPaths(tmp_path)
    shown = {f"S{n}": 0.5 + n / 20 for n in range(8)}
    save_listings(paths, "website", "leeds", rendered(shown))
    base_bytes = listings_path(paths, "website", "leeds").read_bytes()
    for changed in ({"S1": 0.9, "S9": 0.7}, {"S2": None, "S1": 0.95}, {"S3": "gone", "S9": None}, {"S10": 0.6}):
        for stock_id, value in changed.items():
            shown.pop(stock_id, None) if value == "gone" else shown.__setitem__(stock_id, value)
        subset = {k: v for k, v in changed.items() if v != "gone"}
        counts = patch_listings(paths, "website", "leeds", rendered(subset), set(changed))
        whole_dir = tmp_path / "whole"
        whole_counts = save_listings(DataPaths(whole_dir), "website", "leeds", rendered(shown))
        expected = read_listings(DataPaths(whole_dir), "website", "leeds")
        pd.testing.assert_frame_equal(comparable(read_listings(paths, "website", "leeds")), comparable(expected))
        assert counts == whole_counts
    assert listings_path(paths, "website", "leeds").read_bytes() == base_bytes  # only the changes file was written

    assert publish_listings(paths, "leeds") == len(shown)
    rebuild_catalog(paths)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        seen = db.execute("SELECT stock_id, listed FROM marketplace_listings WHERE dealer_id = 'leeds' ORDER BY stock_id").fetchall()
    assert seen == sorted((k, v is not None) for k, v in shown.items())


def test_a_whole_render_after_changes_leaves_no_changes_behind(tmp_path):
    paths = DataPaths(tmp_path)
    save_listings(paths, "website", "leeds", rendered({"S1": 0.5, "S2": 0.6}))
    patch_listings(paths, "website", "leeds", rendered({"S1": 0.9}), {"S1"})
    stale = changes_path(paths, "website", "leeds").read_bytes()
    save_listings(paths, "website", "leeds", rendered({"S1": 0.5, "S2": 0.6}))
    changes_path(paths, "website", "leeds").write_bytes(stale)  # as if the run had stopped before removing it
    assert read_listings(paths, "website", "leeds")["completeness"].tolist() == [0.5, 0.6]


def test_changes_past_their_cap_become_the_new_base(tmp_path, monkeypatch):
    monkeypatch.setattr(listings, "MIN_LOG_CAP", 1)
    paths = DataPaths(tmp_path)
    save_listings(paths, "website", "leeds", rendered({"S1": 0.5, "S2": 0.6}))
    patch_listings(paths, "website", "leeds", rendered({"S1": 0.9, "S3": 0.7}), {"S1", "S3"})
    assert not changes_path(paths, "website", "leeds").exists()
    assert comparable(read_listings(paths, "website", "leeds"))["completeness"].tolist() == [0.9, 0.6, 0.7]
