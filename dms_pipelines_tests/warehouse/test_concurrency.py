"""The warehouse under contention: an analyst holding the file open, and dealers publishing in parallel processes."""

import multiprocessing
import re

import duckdb
import pandas as pd

from dms_pipelines.paths import PROJECT_ROOT, DataPaths
from dms_pipelines.stock.schema import coerce_to_schema
from dms_pipelines.warehouse.tables import TABLE_SCHEMAS, VIEWS, publish, rebuild_catalog


def dealer_stock(dealer_id: str, vehicles: int) -> pd.DataFrame:
    return coerce_to_schema(pd.DataFrame({"dealer_id": dealer_id, "stock_id": [f"{dealer_id[:3].upper()}{i:05d}" for i in range(vehicles)], "price": 9995.0, "status": "available"})).drop(
        columns=["private_cost_price", "private_prep_cost", "private_key_code", "private_memo", "private_previous_keeper"]
    )


def publish_many_times(root: str, dealer_id: str, rounds: int) -> None:
    paths = DataPaths(__import__("pathlib").Path(root))
    for round_number in range(rounds):
        publish(paths, dealer_id, {"stock_current": dealer_stock(dealer_id, 50 + round_number)})
        rebuild_catalog(paths)


def test_parallel_dealers_and_an_open_reader_all_succeed(tmp_path):
    paths = DataPaths(tmp_path)
    publish(paths, "seed", {"stock_current": dealer_stock("seed", 5)})
    rebuild_catalog(paths)
    reader = duckdb.connect(str(paths.warehouse_db), read_only=True)
    assert reader.execute("SELECT count(*) FROM stock_current").fetchall() == [(5,)]

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=publish_many_times, args=(str(tmp_path), dealer, 8)) for dealer in ("leeds", "york", "sheffield", "hull")]
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        assert reader.execute("SELECT count(*) FROM stock_current").fetchall()[0][0] >= 5  # the held-open session keeps working
    assert all(w.exitcode == 0 for w in workers)
    reader.close()

    with duckdb.connect(str(paths.warehouse_db), read_only=True) as fresh:
        counts = dict(fresh.execute("SELECT dealer_id, count(*) FROM stock_current GROUP BY ALL").fetchall())
    assert counts == {"seed": 5, "leeds": 57, "york": 57, "sheffield": 57, "hull": 57}


def test_every_table_and_view_exists_even_before_any_data(tmp_path):
    paths = DataPaths(tmp_path)
    rebuild_catalog(paths)
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        names = {row[0] for row in db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert set(TABLE_SCHEMAS) | set(VIEWS) <= names
        for name in names:
            db.execute(f"SELECT * FROM {name} LIMIT 1").fetchall()


def test_the_documented_example_queries_run(tmp_path):
    paths = DataPaths(tmp_path)
    publish(paths, "leeds", {"stock_current": dealer_stock("leeds", 3)})
    rebuild_catalog(paths)
    queries = re.findall(r"```sql\n(.*?)```", (PROJECT_ROOT / "docs" / "warehouse.md").read_text(encoding="utf-8"), flags=re.S)
    assert len(queries) >= 5
    with duckdb.connect(str(paths.warehouse_db), read_only=True) as db:
        for query in queries:
            db.execute(query).fetchall()
