"""Each dealer's current stock as a Parquet file under state/stock/, replaced atomically."""

import os
import uuid
from pathlib import Path

import pandas as pd

from dms_pipelines.stock.schema import FIELD_BY_NAME, coerce_to_schema, empty_stock, pandas_dtype


def stock_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "stock" / f"{dealer_id}.parquet"


def read_stock(state_dir: Path, dealer_id: str) -> pd.DataFrame:
    path = stock_path(state_dir, dealer_id)
    if not path.exists():
        return empty_stock()
    return coerce_to_schema(pd.read_parquet(path))


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


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    frame.to_parquet(temporary, index=False)
    os.replace(temporary, path)


def write_stock(state_dir: Path, dealer_id: str, stock: pd.DataFrame) -> None:
    write_parquet_atomically(coerce_to_schema(stock), stock_path(state_dir, dealer_id))


def history_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "history" / f"{dealer_id}.parquet"


def read_history(state_dir: Path, dealer_id: str) -> pd.DataFrame:
    from dms_pipelines.stock.history import empty_history, stock_history_dtypes

    path = history_path(state_dir, dealer_id)
    return pd.read_parquet(path).astype(stock_history_dtypes()) if path.exists() else empty_history()
