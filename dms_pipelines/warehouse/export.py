"""Copy one dealer's operational rows (manifest, quarantine, deliveries, ledger, runs) from the operational database for the warehouse."""

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import dead_letters, deliveries, ingested_files, listing_ledger, quarantine, sync_runs


def operational_rows(engine: Engine, dealer_id: str) -> dict[str, pd.DataFrame]:
    with engine.connect() as connection:
        def rows(table):
            return pd.read_sql(select(table).where(table.c.dealer_id == dealer_id), connection)

        return {
            "ingested_files": rows(ingested_files),
            "quarantine": rows(quarantine),
            "deliveries": rows(deliveries),
            "dead_letters": rows(dead_letters),
            "sync_runs": rows(sync_runs),
            "ledger": rows(listing_ledger),
        }
