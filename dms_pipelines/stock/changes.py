"""Stock generations and the log of vehicles changed by deltas, so feeds can rebuild only what changed since they last ran."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dms_pipelines.stock.merge import rows_at  # zero-copy slices: a spliced stock's columns hold many chunks
from dms_pipelines.stock.schema import coerce_to_schema

GENERATION_KEY = b"dms_pipelines.generation"
FULL_GENERATION_KEY = b"dms_pipelines.full_generation"
GENERATION_COLUMN = "_generation"
MIN_LOG_CAP = 50_000  # a log longer than this and a tenth of the stock is dropped: a full rebuild is then cheaper than reading it


def log_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "stock" / f"{dealer_id}.changes.parquet"


def stock_generation(stock_file: Path) -> int:
    """The generation written in the stock file's footer (0 for a file written before generations, or none at all)."""
    if not stock_file.exists():
        return 0
    metadata = pq.read_schema(stock_file).metadata or {}
    return int(metadata.get(GENERATION_KEY, b"0"))


@dataclass(frozen=True)
class ChangeLog:
    """The rows of every vehicle a delta changed after the last full export (`full_generation`), each with its generation."""

    full_generation: int
    rows: pd.DataFrame

    def changed_since(self, generation: int, current: int) -> pd.DataFrame | None:
        """Each vehicle changed after `generation` up to `current`, as it now stands; None when only the whole stock can say."""
        if generation < self.full_generation or generation > current:
            return None
        wanted = self.rows[(self.rows[GENERATION_COLUMN] > generation) & (self.rows[GENERATION_COLUMN] <= current)]
        latest = wanted.sort_values(GENERATION_COLUMN, kind="stable").drop_duplicates("stock_id", keep="last")
        return coerce_to_schema(latest.drop(columns=[GENERATION_COLUMN]).sort_values("stock_id", kind="stable").reset_index(drop=True))


def read_log(state_dir: Path, dealer_id: str) -> ChangeLog | None:
    path = log_path(state_dir, dealer_id)
    if not path.exists():
        return None
    table = pq.read_table(path)
    full = int((table.schema.metadata or {}).get(FULL_GENERATION_KEY, b"-1"))
    return ChangeLog(full, table.to_pandas())


def next_log(previous: ChangeLog | None, stock: pd.DataFrame, changed_ids: set[str] | None, generation: int) -> ChangeLog:
    """The log once `generation` is applied: emptied by a full export (`changed_ids` None), else grown by the changed vehicles' rows."""
    if changed_ids is None or previous is None or previous.full_generation < 0:
        return ChangeLog(generation, _empty_log(stock))
    rows = rows_at(stock, np.flatnonzero(stock["stock_id"].isin(changed_ids).to_numpy(dtype=bool))).assign(**{GENERATION_COLUMN: generation})
    kept = previous.rows[previous.rows[GENERATION_COLUMN] < generation]
    combined = pd.concat([frame for frame in (kept, rows) if len(frame)] or [rows], ignore_index=True)
    if len(combined) > max(MIN_LOG_CAP, len(stock) // 10):
        return ChangeLog(generation, _empty_log(stock))
    return ChangeLog(previous.full_generation, combined)


def _empty_log(stock: pd.DataFrame) -> pd.DataFrame:
    return stock.iloc[:0].assign(**{GENERATION_COLUMN: pd.Series(dtype="int64")})


def write_log(state_dir: Path, dealer_id: str, log: ChangeLog) -> None:
    from dms_pipelines.stock.store import write_parquet_atomically

    write_parquet_atomically(log.rows, log_path(state_dir, dealer_id), {FULL_GENERATION_KEY: str(log.full_generation).encode()})

