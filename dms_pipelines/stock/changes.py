"""Stock generations and the log of vehicles changed by deltas since the base stock file: the stock is the base with the
log applied, and feeds rebuild only what changed since they last ran."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.stock.merge import rows_at  # zero-copy slices: a spliced stock's columns hold many chunks
from dms_pipelines.stock.schema import coerce_to_schema

GENERATION_KEY = b"dms_pipelines.generation"
FULL_GENERATION_KEY = b"dms_pipelines.full_generation"
GENERATION_COLUMN = "_generation"
MIN_LOG_CAP = 50_000  # a log longer than this and a tenth of the stock is dropped: a full rebuild is then cheaper than reading it


def log_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "stock" / f"{dealer_id}.changes.parquet"


def footer_generation(path: Path, key: bytes = GENERATION_KEY) -> int:
    """A generation written in a Parquet file's footer (0 for a file written before generations, or none at all)."""
    if not path.exists():
        return 0
    metadata = pq.read_schema(path).metadata or {}
    return int(metadata.get(key, b"0"))


@dataclass(frozen=True)
class ChangeLog:
    """The rows of every vehicle a delta changed after the base stock file was written (at `full_generation`, by a full
    export or a compaction), each with its generation; `generation` is the latest."""

    full_generation: int
    generation: int
    rows: pd.DataFrame

    def changed_since(self, generation: int) -> pd.DataFrame | None:
        """Each vehicle changed after `generation`, as it now stands; None when only the whole stock can say."""
        if generation < self.full_generation or generation > self.generation:
            return None
        return self.latest(self.rows[self.rows[GENERATION_COLUMN] > generation])

    @staticmethod
    def latest(rows: pd.DataFrame) -> pd.DataFrame:
        newest = rows.sort_values(GENERATION_COLUMN, kind="stable").drop_duplicates("stock_id", keep="last")
        return coerce_to_schema(newest.drop(columns=[GENERATION_COLUMN]).sort_values("stock_id", kind="stable").reset_index(drop=True))


def read_log(state_dir: Path, dealer_id: str, base_generation: int) -> ChangeLog | None:
    """The log on top of the base stock file of `base_generation`; None when there is none, or it was written on another
    base (a run stopped between writing a new base and emptying the log)."""
    path = log_path(state_dir, dealer_id)
    if not path.exists():
        return None
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    full, generation = int(metadata.get(FULL_GENERATION_KEY, b"-1")), int(metadata.get(GENERATION_KEY, b"-1"))
    if full != base_generation or generation < full:
        return None
    return ChangeLog(full, generation, table.to_pandas())


def next_log(previous: ChangeLog | None, stock: pd.DataFrame, changed_ids: set[str] | None, generation: int, stock_size: int | None = None) -> ChangeLog:
    """The log once `generation` is applied: grown by the changed vehicles' rows (taken from `stock`, the whole stock or
    just those vehicles; `stock_size` is the whole stock's); emptied, with the whole stock to be written as the new base
    (`full_generation == generation`), by a full export (`changed_ids` None), when there is no usable log, or when the
    log has grown past its cap."""
    if changed_ids is None or previous is None:
        return ChangeLog(generation, generation, _empty_log(stock))
    rows = rows_at(stock, np.flatnonzero(stock["stock_id"].isin(changed_ids).to_numpy(dtype=bool))).assign(**{GENERATION_COLUMN: generation})
    kept = previous.rows[previous.rows[GENERATION_COLUMN] < generation]
    combined = pd.concat([frame for frame in (kept, rows) if len(frame)] or [rows], ignore_index=True)
    if len(combined) > max(MIN_LOG_CAP, (len(stock) if stock_size is None else stock_size) // 10):
        return ChangeLog(generation, generation, _empty_log(stock))
    return ChangeLog(previous.full_generation, generation, combined)


def _empty_log(stock: pd.DataFrame) -> pd.DataFrame:
    return stock.iloc[:0].assign(**{GENERATION_COLUMN: pd.Series(dtype="int64")})


def write_log(state_dir: Path, dealer_id: str, log: ChangeLog) -> None:
    footer = {FULL_GENERATION_KEY: str(log.full_generation).encode(), GENERATION_KEY: str(log.generation).encode()}
    write_parquet_atomically(log.rows, log_path(state_dir, dealer_id), footer)
