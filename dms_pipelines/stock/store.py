"""Each dealer's current stock as a Parquet file under state/stock/, replaced atomically."""

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dms_pipelines.stock.changes import GENERATION_KEY, read_log, stock_generation
from dms_pipelines.stock.schema import FIELD_BY_NAME, coerce_to_schema, empty_stock, pandas_dtype


def stock_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "stock" / f"{dealer_id}.parquet"


def read_stock(state_dir: Path, dealer_id: str) -> pd.DataFrame:
    path = stock_path(state_dir, dealer_id)
    if not path.exists():
        return empty_stock()
    return coerce_to_schema(pd.read_parquet(path))


class StockView:
    """A dealer's current stock as a feed needs it: whole (read once, when first asked), or the vehicles changed since a generation."""

    def __init__(self, state_dir: Path, dealer_id: str, stock: pd.DataFrame | None = None):
        self.state_dir, self.dealer_id = state_dir, dealer_id
        self.generation = stock_generation(stock_path(state_dir, dealer_id))
        self._whole = stock

    def whole(self) -> pd.DataFrame:
        if self._whole is None:
            self._whole = read_stock(self.state_dir, self.dealer_id)
        return self._whole

    def changed_since(self, generation: int) -> pd.DataFrame | None:
        """The vehicles deltas changed after `generation`, as they now stand; None when a full export or a gap means any may have."""
        log = read_log(self.state_dir, self.dealer_id)
        return log.changed_since(generation, self.generation) if log is not None and self.generation > 0 else None


PRICE_REFERENCE_COLUMNS = ["make", "model", "first_registration_date", "year", "price"]


def read_price_reference(state_dir: Path, dealer_ids: list[str]) -> pd.DataFrame:
    """The columns the price-outlier rule compares against, for the dealers' whole current stock, read in one pass.

    Only these five columns are read (not every dealer's whole stock), so the cost stays small for a big group.
    """
    files = [str(p) for d in dealer_ids if (p := stock_path(state_dir, d)).exists()]
    if not files:
        return empty_stock()[PRICE_REFERENCE_COLUMNS]
    import pyarrow.dataset as ds

    frame = ds.dataset(files, format="parquet").to_table(columns=PRICE_REFERENCE_COLUMNS).to_pandas()
    return pd.DataFrame({name: frame[name].astype(pandas_dtype(FIELD_BY_NAME[name])) for name in PRICE_REFERENCE_COLUMNS})


def write_parquet_atomically(frame: pd.DataFrame, path: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write through a temporary name, so a reader sees the old file or the new one; `metadata` goes into the file's footer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    if metadata:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), temporary)
    else:
        frame.to_parquet(temporary, index=False)
    os.replace(temporary, path)


def write_stock(state_dir: Path, dealer_id: str, stock: pd.DataFrame, generation: int | None = None) -> None:
    """The stock file; `generation` (see stock.changes) is written in its footer, so it is replaced together with the rows."""
    metadata = {GENERATION_KEY: str(generation).encode()} if generation is not None else None
    write_parquet_atomically(coerce_to_schema(stock), stock_path(state_dir, dealer_id), metadata)


def history_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "history" / f"{dealer_id}.parquet"


def read_history(state_dir: Path, dealer_id: str) -> pd.DataFrame:
    from dms_pipelines.stock.history import empty_history, stock_history_dtypes

    path = history_path(state_dir, dealer_id)
    return pd.read_parquet(path).astype(stock_history_dtypes()) if path.exists() else empty_history()
