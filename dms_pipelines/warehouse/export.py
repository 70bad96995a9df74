"""Copy one dealer's operational rows (manifest, quarantine) from the operational database for the warehouse."""

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import ingested_files, quarantine


def operational_rows(engine: Engine, dealer_id: str) -> dict[str, pd.DataFrame]:
    with engine.connect() as connection:
        files = pd.read_sql(select(ingested_files).where(ingested_files.c.dealer_id == dealer_id), connection)
        issues = pd.read_sql(select(quarantine).where(quarantine.c.dealer_id == dealer_id), connection)
    return {"ingested_files": files, "quarantine": issues}
