"""An append-only operational table reaches the warehouse as parts: only new rows are written, and nothing is lost or doubled."""

from datetime import datetime, timezone

import duckdb
import pyarrow.parquet as pq
from sqlalchemy import insert

from dms_pipelines.operations.db import deliveries, engine_for
from dms_pipelines.paths import DataPaths
from dms_pipelines.warehouse import export
from dms_pipelines.warehouse.export import part_files, publish_appended
from dms_pipelines.warehouse.tables import rebuild_catalog

AT = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)


def _deliver(engine, dealer_id: str, count: int, first_id: int | None = None) -> None:
    rows = [
        {"marketplace": "google", "dealer_id": dealer_id, "item_key": f"S{n}", "action": "file", "outcome": "ok", "calls": 1, "started_at": AT, "finished_at": AT}
        | ({"id": first_id + n} if first_id is not None else {})
        for n in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(insert(deliveries), rows)


def _warehouse_ids(paths: DataPaths, dealer_id: str) -> list[int]:
    rebuild_catalog(paths)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        return [row[0] for row in db.execute(f"SELECT id FROM deliveries WHERE dealer_id = '{dealer_id}' ORDER BY id").fetchall()]


def test_each_publish_writes_only_the_rows_added_since(tmp_path):
    paths = DataPaths(tmp_path)
    engine = engine_for(f"sqlite:///{tmp_path / 'operations.sqlite'}")
    _deliver(engine, "leeds", 5)
    _deliver(engine, "york", 2)
    assert publish_appended(paths, engine, "deliveries", "leeds") == 5
    _deliver(engine, "leeds", 3)
    assert publish_appended(paths, engine, "deliveries", "leeds") == 8
    assert publish_appended(paths, engine, "deliveries", "leeds") == 8  # nothing new: no new part
    parts = part_files(paths, "deliveries", "leeds")
    assert [pq.read_metadata(p).num_rows for p in parts] == [5, 3]
    assert _warehouse_ids(paths, "leeds") == [1, 2, 3, 4, 5, 8, 9, 10]  # york's 6 and 7 are york's


def test_a_row_committed_late_under_an_earlier_id_makes_every_row_exported_again(tmp_path):
    paths = DataPaths(tmp_path)
    engine = engine_for(f"sqlite:///{tmp_path / 'operations.sqlite'}")
    _deliver(engine, "leeds", 3, first_id=10)
    publish_appended(paths, engine, "deliveries", "leeds")
    _deliver(engine, "leeds", 1, first_id=5)  # below the last id published
    _deliver(engine, "leeds", 1, first_id=20)
    assert publish_appended(paths, engine, "deliveries", "leeds") == 5
    assert _warehouse_ids(paths, "leeds") == [5, 10, 11, 12, 20]
    assert len(part_files(paths, "deliveries", "leeds")) == 1


def test_many_parts_are_merged_into_one(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MAX_PARTS", 2)
    paths = DataPaths(tmp_path)
    engine = engine_for(f"sqlite:///{tmp_path / 'operations.sqlite'}")
    for _ in range(3):
        _deliver(engine, "leeds", 2)
        publish_appended(paths, engine, "deliveries", "leeds")
    assert len(part_files(paths, "deliveries", "leeds")) == 1
    _deliver(engine, "leeds", 1)
    publish_appended(paths, engine, "deliveries", "leeds")  # the merged part still tells where the next one starts
    assert _warehouse_ids(paths, "leeds") == list(range(1, 8))
