"""The analysts' warehouse: one Parquet file per table and dealer, and a DuckDB file of views swapped in atomically."""

import os
import uuid
from pathlib import Path

import duckdb
import pandas as pd

from dms_pipelines.paths import DataPaths
from dms_pipelines.stock.schema import PRIVATE_COLUMNS, STOCK_COLUMNS, empty_stock
from dms_pipelines.stock.store import write_parquet_atomically

EMPTY_FILE = "_empty.parquet"


def _typed(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def stock_current_empty() -> pd.DataFrame:
    return empty_stock()[[c for c in STOCK_COLUMNS if c not in PRIVATE_COLUMNS]]


TABLE_SCHEMAS: dict[str, pd.DataFrame] = {
    "stock_current": stock_current_empty(),
    "quarantine": _typed(
        {
            "dealer_id": "string", "file_id": "Int64", "source_file": "string", "source_row": "Int64", "stock_id": "string",
            "field": "string", "rule": "string", "value": "string", "severity": "string", "message": "string",
            "first_seen": "datetime64[us, UTC]", "status": "string",
        }
    ),
    "ingested_files": _typed(
        {
            "id": "Int64", "dealer_id": "string", "source_path": "string", "file_name": "string", "size_bytes": "Int64",
            "source_mtime": "Float64", "sha256": "string", "landed_path": "string", "received_at": "datetime64[us, UTC]",
            "export_kind": "string", "export_timestamp": "string", "status": "string", "attempts": "Int64",
            "rows_total": "Int64", "rows_accepted": "Int64", "rows_quarantined": "Int64", "encoding": "string",
            "error": "string", "processed_at": "datetime64[us, UTC]",
        }
    ),
}

VIEWS: dict[str, str] = {}


def conform(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with exactly the table's columns and types (extra columns dropped, missing ones empty)."""
    schema = TABLE_SCHEMAS[table]
    out = {}
    for name, dtype in schema.dtypes.items():
        if name in frame:
            column = frame[name]
            if str(dtype).startswith("datetime64") and "UTC" in str(dtype):
                column = pd.to_datetime(column, utc=True)
            out[name] = column.astype(dtype)
        else:
            out[name] = pd.Series(pd.NA, index=frame.index).astype(dtype)
    return pd.DataFrame(out, index=frame.index).reset_index(drop=True)


def table_file(paths: DataPaths, table: str, dealer_id: str) -> Path:
    return paths.warehouse_tables / table / f"dealer={dealer_id}.parquet"


def publish(paths: DataPaths, dealer_id: str, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Replace the dealer's file of each table; other dealers' files are never touched, so dealers publish in parallel."""
    counts = {}
    for table, frame in tables.items():
        write_parquet_atomically(conform(table, frame), table_file(paths, table, dealer_id))
        counts[table] = len(frame)
    return counts


def rebuild_catalog(paths: DataPaths) -> Path:
    """Build a fresh DuckDB file of views over the Parquet files and swap it in; a reader holding the old file keeps reading it."""
    paths.warehouse_tables.mkdir(parents=True, exist_ok=True)
    temporary = paths.warehouse_db.with_name(f".{paths.warehouse_db.name}.{uuid.uuid4().hex}.tmp")
    connection = duckdb.connect(str(temporary))
    try:
        for table, empty in TABLE_SCHEMAS.items():
            folder = paths.warehouse_tables / table
            if not (folder / EMPTY_FILE).exists():
                write_parquet_atomically(conform(table, empty), folder / EMPTY_FILE)
            pattern = str(folder.resolve() / "*.parquet").replace("'", "''")
            connection.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)")
        for name, sql in VIEWS.items():
            connection.execute(f"CREATE VIEW {name} AS {sql}")
        connection.execute("CHECKPOINT")
    finally:
        connection.close()
    os.replace(temporary, paths.warehouse_db)
    return paths.warehouse_db
