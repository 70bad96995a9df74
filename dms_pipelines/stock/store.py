"""Each dealer's current stock under state/stock/: a base Parquet file and the log of deltas since it, each replaced atomically."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.stock.changes import GENERATION_KEY, ChangeLog, footer_generation, read_log
from dms_pipelines.stock.merge import apply_delta
from dms_pipelines.stock.schema import FIELD_BY_NAME, coerce_to_schema, empty_stock, pandas_dtype


def stock_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "stock" / f"{dealer_id}.parquet"


def stored(state_dir: Path, dealer_id: str) -> tuple[int, ChangeLog | None]:
    """The base file's generation and the log on top of it (None when there is none)."""
    base_generation = footer_generation(stock_path(state_dir, dealer_id))
    return base_generation, read_log(state_dir, dealer_id, base_generation)


def read_stock(state_dir: Path, dealer_id: str) -> pd.DataFrame:
    """The dealer's current stock: the base file with the vehicles changed since (the log) put in their places."""
    path = stock_path(state_dir, dealer_id)
    if not path.exists():
        return empty_stock()
    base = coerce_to_schema(pd.read_parquet(path))
    _, log = stored(state_dir, dealer_id)
    if log is None or log.rows.empty:
        return base
    return apply_delta(base, ChangeLog.latest(log.rows)).stock


def stock_ids(state_dir: Path, dealer_id: str) -> pa.Array:
    """Every stock number in the dealer's current stock, each once (as Arrow strings): the base's one column, then the
    logged vehicles the base does not hold."""
    path = stock_path(state_dir, dealer_id)
    base = pq.read_table(path, columns=["stock_id"])["stock_id"].combine_chunks().cast(pa.string()) if path.exists() else pa.array([], pa.string())
    _, log = stored(state_dir, dealer_id)
    if log is None or not len(log.rows):
        return base
    return with_new_ids(base, sorted(set(log.rows["stock_id"].astype(str))))


def with_new_ids(held: pa.Array, ids: list[str]) -> pa.Array:
    """`held` (distinct stock numbers) with those of `ids` it lacks appended; only the few `ids` are hashed, not the many held."""
    known = set(held.filter(pc.is_in(held, value_set=pa.array(ids, pa.string()))).to_pylist()) if ids else set()
    fresh = [stock_id for stock_id in ids if stock_id not in known]
    return pa.concat_arrays([held, pa.array(fresh, pa.string())]) if fresh else held


def status_counts(state_dir: Path, dealer_id: str) -> dict[str, int]:
    """Vehicles by status in the dealer's current stock (and "vehicles", all of them), from two columns and the log."""
    path = stock_path(state_dir, dealer_id)
    if not path.exists():
        return {"vehicles": 0}
    frame = pq.read_table(path, columns=["stock_id", "status"]).to_pandas()
    _, log = stored(state_dir, dealer_id)
    if log is not None and len(log.rows):
        latest = ChangeLog.latest(log.rows)[["stock_id", "status"]]
        frame = pd.concat([frame[~frame["stock_id"].isin(latest["stock_id"])], latest], ignore_index=True)
    return counts_by_status(frame)


def counts_by_status(stock: pd.DataFrame) -> dict[str, int]:
    """ "vehicles" (all of them) and the vehicles of each status."""
    return {"vehicles": len(stock)} | {str(k): int(v) for k, v in stock["status"].value_counts().items()}


class StockView:
    """A dealer's current stock as a feed needs it: whole (read once, when first asked), or the vehicles changed since a generation."""

    def __init__(self, state_dir: Path, dealer_id: str, stock: pd.DataFrame | None = None):
        self.state_dir, self.dealer_id = state_dir, dealer_id
        base_generation, self._log = stored(state_dir, dealer_id)
        self.generation = self._log.generation if self._log is not None else base_generation
        self._whole = stock

    def whole(self) -> pd.DataFrame:
        if self._whole is None:
            self._whole = read_stock(self.state_dir, self.dealer_id)
        return self._whole

    def changed_since(self, generation: int) -> pd.DataFrame | None:
        """The vehicles deltas changed after `generation`, as they now stand; None when a full export or a gap means any may have."""
        return self._log.changed_since(generation) if self._log is not None and self.generation > 0 else None


PRICE_REFERENCE_COLUMNS = ["make", "model", "first_registration_date", "year", "price"]


def read_price_reference(state_dir: Path, dealer_ids: list[str]) -> pd.DataFrame:
    """The columns the price-outlier rule compares against, for the dealers' whole current stock, read in one pass.

    Only these five columns (and the keys to put the logged changes in place) are read, not every dealer's whole stock,
    so the cost stays small for a big group.
    """
    files = [str(p) for d in dealer_ids if (p := stock_path(state_dir, d)).exists()]
    if not files:
        return empty_stock()[PRICE_REFERENCE_COLUMNS]
    import pyarrow.dataset as ds

    changed = [ChangeLog.latest(log.rows) for d in dealer_ids if (log := stored(state_dir, d)[1]) is not None and len(log.rows)]
    keys = ["dealer_id", "stock_id"] if changed else []  # read only to put logged rows in place
    frame = ds.dataset(files, format="parquet").to_table(columns=[*keys, *PRICE_REFERENCE_COLUMNS]).to_pandas()
    if changed:
        changed_rows = pd.concat(changed, ignore_index=True)
        replaced = _rows_of(frame, changed_rows)
        frame = pd.concat([frame[~replaced], changed_rows[frame.columns]], ignore_index=True)
    return pd.DataFrame({name: frame[name].astype(pandas_dtype(FIELD_BY_NAME[name])) for name in PRICE_REFERENCE_COLUMNS})


def write_stock(state_dir: Path, dealer_id: str, stock: pd.DataFrame, generation: int | None = None) -> None:
    """The base stock file (a full export's stock, or a compaction); `generation` (see stock.changes) is written in its
    footer, so it is replaced together with the rows."""
    metadata = {GENERATION_KEY: str(generation).encode()} if generation is not None else None
    write_parquet_atomically(coerce_to_schema(stock), stock_path(state_dir, dealer_id), metadata)


def among(stock_ids: pd.Series, wanted: pd.Series) -> np.ndarray:
    """Per stock number of `stock_ids`, whether `wanted` holds it: Arrow hashes the (few) wanted ones and scans the many."""
    value_set = pa.array(wanted.astype(str).unique().tolist(), pa.string())
    return pc.is_in(pa.array(stock_ids.astype(str).array, pa.string()), value_set=value_set).to_numpy(zero_copy_only=False)


def _rows_of(frame: pd.DataFrame, changed: pd.DataFrame) -> np.ndarray:
    """Per row of `frame`, whether `changed` holds its dealer and stock number: the few rows whose stock number is changed
    anywhere are found by Arrow first, then only those are matched on both keys."""
    found = np.zeros(len(frame), dtype=bool)
    positions = np.flatnonzero(among(frame["stock_id"], changed["stock_id"]))
    if len(positions):
        keys = pd.MultiIndex.from_frame(changed[["dealer_id", "stock_id"]].astype(str))
        found[positions] = pd.MultiIndex.from_frame(frame.iloc[positions][["dealer_id", "stock_id"]].astype(str)).isin(keys)
    return found
