"""The quarantine table's writes: a file's issues replace its earlier ones; a full export resolves the dealer's open rows."""

from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import and_, delete, insert, update
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import quarantine

ISSUE_TYPES = {"source_row": "Int64"} | {name: "string" for name in ("stock_id", "field", "rule", "value", "severity", "message")}


def record_quarantine(engine: Engine, dealer_id: str, file_id: int, file_name: str, issues: pd.DataFrame, export_kind: str) -> None:
    """The file's issues (replacing those of an earlier run of it); a full export resolves the dealer's other open rows."""
    now = datetime.now(timezone.utc)
    varying = {name: issues[name].astype(dtype).to_numpy(dtype=object, na_value=None).tolist() for name, dtype in ISSUE_TYPES.items()}  # a column at a time
    fixed = {"dealer_id": dealer_id, "file_id": file_id, "source_file": file_name, "first_seen": now, "status": "open"}
    rows = [fixed | dict(zip(varying, values)) for values in zip(*varying.values())]
    with engine.begin() as connection:
        connection.execute(delete(quarantine).where(quarantine.c.file_id == file_id))
        if rows and dealer_id:
            if export_kind == "full":
                connection.execute(update(quarantine).where(and_(quarantine.c.dealer_id == dealer_id, quarantine.c.status == "open")).values(status="resolved"))
            connection.execute(insert(quarantine), rows)
