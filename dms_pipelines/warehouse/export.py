"""Copy one dealer's operational rows (manifest, quarantine, deliveries, dead letters, runs) from the operational database for the warehouse."""

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import dead_letters, deliveries, ingested_files, quarantine, sync_runs

WAREHOUSE_TABLES = {"ingested_files": ingested_files, "quarantine": quarantine, "deliveries": deliveries, "dead_letters": dead_letters, "sync_runs": sync_runs}


def operational_rows(engine: Engine, dealer_id: str, tables: tuple[str, ...] = tuple(WAREHOUSE_TABLES)) -> dict[str, pd.DataFrame]:
    """The dealer's rows of each named table (by default every one the warehouse shows)."""
    with engine.connect() as connection:
        return {name: pd.read_sql(select(WAREHOUSE_TABLES[name]).where(WAREHOUSE_TABLES[name].c.dealer_id == dealer_id), connection) for name in tables}
