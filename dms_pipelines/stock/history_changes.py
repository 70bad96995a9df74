"""A dealer's history as a base file and a log of the versions opened and closed since, so a delta writes only what it changed."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.stock.changes import GENERATION_KEY, MIN_LOG_CAP, footer_generation
from dms_pipelines.stock.history import HASH_SCHEME, empty_history, stock_history_dtypes, update_history

OPENED, CLOSED = "opened", "closed"


@dataclass(frozen=True)
class HistoryLog:
    """What deltas changed since the base history file (written at `base_generation`): the versions they opened, in the
    order they were opened (closed since when `valid_to` is set), and the base's open versions they closed."""

    base_generation: int
    opened: pd.DataFrame
    closed: pd.DataFrame  # stock_id, valid_to

    @classmethod
    def empty(cls, base_generation: int) -> "HistoryLog":
        return cls(base_generation, empty_history(), empty_history()[["stock_id", "valid_to"]])


def history_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "history" / f"{dealer_id}.parquet"


def history_log_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "history" / f"{dealer_id}.changes.parquet"


def read_history_log(state_dir: Path, dealer_id: str) -> HistoryLog:
    """The log on top of the base file; empty when there is none, or when it was written on another base (a run that
    stopped between writing a new base and emptying the log: the base already holds everything)."""
    base_generation = footer_generation(history_path(state_dir, dealer_id))
    path = history_log_path(state_dir, dealer_id)
    if not path.exists() or footer_generation(path) != base_generation:
        return HistoryLog.empty(base_generation)
    rows = pd.read_parquet(path)
    kind = rows.pop("kind").to_numpy()
    dtypes = stock_history_dtypes()
    opened = rows[kind == OPENED].reset_index(drop=True).astype(dtypes)
    closed = rows.loc[kind == CLOSED, ["stock_id", "valid_to"]].reset_index(drop=True).astype({"stock_id": dtypes["stock_id"], "valid_to": dtypes["valid_to"]})
    return HistoryLog(base_generation, opened, closed)


def write_history_log(state_dir: Path, dealer_id: str, log: HistoryLog) -> None:
    closed = _partial(log.closed[["stock_id", "valid_to"]])
    rows = pd.concat([log.opened.assign(kind=OPENED), closed.assign(kind=CLOSED)], ignore_index=True)
    _write(rows, history_log_path(state_dir, dealer_id), log.base_generation)


def write_history(state_dir: Path, dealer_id: str, history: pd.DataFrame, generation: int) -> None:
    """The whole history as the new base, then an empty log on it."""
    _write(history.astype(stock_history_dtypes()), history_path(state_dir, dealer_id), generation)
    write_history_log(state_dir, dealer_id, HistoryLog.empty(generation))


def _partial(columns: pd.DataFrame) -> pd.DataFrame:
    """History rows with only these columns known (the others empty)."""
    rows = empty_history().reindex(range(len(columns)))
    for name in columns.columns:
        rows[name] = columns[name].to_numpy()
    return rows.astype(stock_history_dtypes())


def _write(frame: pd.DataFrame, path: Path, generation: int) -> None:
    write_parquet_atomically(frame, path, {GENERATION_KEY: str(generation).encode()})


def applied(base: pd.DataFrame, log: HistoryLog) -> pd.DataFrame:
    """The whole history: the base with the versions the log closed given their end, then the versions the log opened."""
    if len(log.closed):
        ends = log.closed.set_index("stock_id")["valid_to"]
        closing = base["valid_to"].isna() & base["stock_id"].isin(ends.index)
        if closing.any():
            base = base.copy()
            base.loc[closing, "valid_to"] = base.loc[closing, "stock_id"].map(ends).to_numpy()
    if not len(log.opened):
        return base.astype(stock_history_dtypes()).reset_index(drop=True)
    return pd.concat([base, log.opened], ignore_index=True).astype(stock_history_dtypes())


def read_history(state_dir: Path, dealer_id: str) -> pd.DataFrame:
    """The dealer's whole history (the base with its log applied)."""
    path = history_path(state_dir, dealer_id)
    base = pd.read_parquet(path).astype(stock_history_dtypes()) if path.exists() else empty_history()
    return applied(base, read_history_log(state_dir, dealer_id))


def record_versions(state_dir: Path, dealer_id: str, changed: pd.DataFrame, at: datetime, changed_ids: set[str], generation: int) -> None:
    """An hourly delta's versions: the changed vehicles' open versions compared and, where they changed, closed, and new
    ones opened, written to the log alone. The base is read for three columns only; it is rewritten when the log has
    outgrown it (or holds a version hashed by an earlier scheme), as a full export's history is."""
    base_file = history_path(state_dir, dealer_id)
    log = read_history_log(state_dir, dealer_id)
    following = _next_log(_open_in_base(base_file, changed_ids - set(log.closed["stock_id"])), log, changed, at, changed_ids)
    base_rows = pq.read_metadata(base_file).num_rows if base_file.exists() else 0
    if following is None or len(following.opened) > max(MIN_LOG_CAP, base_rows // 10):
        write_history(state_dir, dealer_id, update_history(read_history(state_dir, dealer_id), changed, at, changed_ids), generation)
    else:
        write_history_log(state_dir, dealer_id, following)


def _open_in_base(path: Path, stock_ids: set[str]) -> pd.DataFrame:
    """stock_id and version_hash of the base's open versions of these vehicles."""
    if not path.exists() or not stock_ids:
        return pd.DataFrame({"stock_id": pd.Series(dtype="string"), "version_hash": pd.Series(dtype="string")})
    table = pq.read_table(path, columns=["stock_id", "version_hash", "valid_to"])
    wanted = pc.and_(pc.is_in(table["stock_id"], value_set=pa.array(sorted(stock_ids), table.schema.field("stock_id").type)), pc.is_null(table["valid_to"]))
    found = table.filter(wanted)
    return pd.DataFrame({"stock_id": found["stock_id"].to_pandas().astype("string"), "version_hash": found["version_hash"].to_pandas().astype("string")})


def _next_log(base_open: pd.DataFrame, log: HistoryLog, changed: pd.DataFrame, at: datetime, changed_ids: set[str]) -> HistoryLog | None:
    """The log after this delta, from the history rows it can touch: the base's open versions of the changed vehicles
    and the versions opened since. None when one of them was hashed by an earlier scheme (the whole history decides)."""
    candidates = pd.concat([base_open["version_hash"], log.opened.loc[log.opened["valid_to"].isna(), "version_hash"]])
    if (~candidates.str.startswith(HASH_SCHEME).fillna(True).astype(bool)).any():
        return None
    touched = pd.concat([_partial(base_open[["stock_id", "version_hash"]]), log.opened], ignore_index=True)
    updated = update_history(touched, changed, at, changed_ids)
    in_base = updated.iloc[: len(base_open)]
    ended = in_base.loc[in_base["valid_to"].notna(), ["stock_id", "valid_to"]]
    closed = pd.concat([frame for frame in (log.closed, ended) if len(frame)] or [log.closed], ignore_index=True)
    return HistoryLog(log.base_generation, updated.iloc[len(base_open) :].reset_index(drop=True), closed)
