"""Copy one dealer's operational rows (manifest, quarantine, deliveries, dead letters, runs) from the operational database for the warehouse."""

import glob
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine

from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.operations.db import dead_letters, deliveries, drift_items, ingested_files, marketplace_drift, quarantine, sync_runs
from dms_pipelines.paths import DataPaths
from dms_pipelines.warehouse.tables import conform, table_file

WAREHOUSE_TABLES = {
    "ingested_files": ingested_files,
    "quarantine": quarantine,
    "deliveries": deliveries,
    "dead_letters": dead_letters,
    "sync_runs": sync_runs,
    "marketplace_drift": marketplace_drift,
    "drift_items": drift_items,
}
APPEND_ONLY = {"deliveries": deliveries, "marketplace_drift": marketplace_drift}  # rows are only ever inserted, with increasing ids: exported as parts, only the new rows each time
MAX_PARTS = 24  # a dealer's parts are merged into one when there are more (a day of hourly runs)
LAST_ID_KEY = b"dms_pipelines.last_id"


def rows_of(table, dealer_id: str | None, account_wide: frozenset[str] = frozenset()):
    """Which rows of `table` a dealer's export holds (`dealer_id`), or the account run's (None: the drift of the
    `account_wide` marketplaces' files).

    Drift of an account-wide file is checked after the dealers' runs, so its rows go out with the account file's run;
    a dealer's export holds its other rows."""
    if "marketplace" in table.c and table.name in ("marketplace_drift", "drift_items"):
        if dealer_id is None:
            return table.c.marketplace.in_(sorted(account_wide))
        return and_(table.c.dealer_id == dealer_id, table.c.marketplace.not_in(sorted(account_wide))) if account_wide else table.c.dealer_id == dealer_id
    return table.c.dealer_id == dealer_id


def operational_rows(
    engine: Engine,
    dealer_id: str | None,
    tables: tuple[str, ...] = tuple(set(WAREHOUSE_TABLES) - set(APPEND_ONLY)),
    account_wide: frozenset[str] = frozenset(),
) -> dict[str, pd.DataFrame]:
    """The dealer's rows of each named table (by default every one the warehouse shows whole: not the append-only ones);
    `account_wide`: the marketplaces whose drift rows are the account run's (see rows_of)."""
    with engine.connect() as connection:
        return {name: _rows(connection, WAREHOUSE_TABLES[name], dealer_id, account_wide=account_wide) for name in tables}


def _rows(connection, table, dealer_id: str | None, after_id: int | None = None, account_wide: frozenset[str] = frozenset()) -> pd.DataFrame:
    query = select(table).where(rows_of(table, dealer_id, account_wide))
    if after_id is not None:
        query = query.where(table.c.id > after_id)
    return pd.read_sql(query.order_by(table.c.id) if after_id is not None else query, connection)


def part_files(paths: DataPaths, table: str, file_key: str) -> list[Path]:
    """The parts of an append-only table for one dealer (by its file key), oldest first."""
    folder = table_file(paths, table, file_key).parent
    pattern = re.compile(rf"dealer={re.escape(file_key)}__from=\d+\.parquet")
    return sorted(p for p in folder.glob(f"dealer={glob.escape(file_key)}__from=*.parquet") if pattern.fullmatch(p.name))


def publish_appended(
    paths: DataPaths,
    engine: Engine,
    table: str,
    dealer_id: str | None,
    file_key: str | None = None,
    account_wide: frozenset[str] = frozenset(),
) -> int:
    """The dealer's rows of an append-only table in the warehouse, as parts: only the rows added since the last part are
    read and written. When the database does not hold exactly the published rows plus those (it was replaced, or a row
    committed late under an earlier id), every row is exported again. Returns how many rows the warehouse holds.
    `file_key` names the files (default: the dealer id); a None dealer id exports the account run's rows (rows_of, with
    `account_wide`)."""
    source, file_key = APPEND_ONLY[table], file_key or dealer_id
    parts = part_files(paths, table, file_key)
    published = sum(pq.read_metadata(p).num_rows for p in parts)
    last_id = int((pq.read_schema(parts[-1]).metadata or {}).get(LAST_ID_KEY, b"-1")) if parts else -1
    with engine.connect() as connection:
        held = connection.execute(select(func.count()).where(rows_of(source, dealer_id, account_wide))).scalar_one()
        fresh = _rows(connection, source, dealer_id, after_id=last_id, account_wide=account_wide)
        if published + len(fresh) != held:
            fresh, parts = _rows(connection, source, dealer_id, after_id=-1, account_wide=account_wide), _drop(parts)
    table_file(paths, table, file_key).unlink(missing_ok=True)  # the one file per dealer of earlier versions
    if len(fresh):
        first = int(fresh["id"].iloc[0])
        write_parquet_atomically(conform(table, fresh), table_file(paths, table, f"{file_key}__from={first:012d}"), {LAST_ID_KEY: str(int(fresh["id"].iloc[-1])).encode()})
        parts = part_files(paths, table, file_key)
    if len(parts) > MAX_PARTS:
        _merge(parts)
    return held


def _drop(parts: list[Path]) -> list[Path]:
    for part in parts:
        part.unlink(missing_ok=True)
    return []


def _merge(parts: list[Path]) -> None:
    """The parts as one file under the first part's name (the others removed after it is in place)."""
    tables = [pq.read_table(p) for p in parts]
    merged = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    write_parquet_atomically(merged, parts[0], {LAST_ID_KEY: (tables[-1].schema.metadata or {})[LAST_ID_KEY]})
    _drop(parts[1:])
