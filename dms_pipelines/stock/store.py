"""Each dealer's current stock as a Parquet file under state/stock/, replaced atomically."""

import os
import uuid
from pathlib import Path

import pandas as pd

from dms_pipelines.stock.schema import coerce_to_schema, empty_stock


def stock_path(state_dir: Path, dealer_id: str) -> Path:
    return state_dir / "stock" / f"{dealer_id}.parquet"


def read_stock(state_dir: Path, dealer_id: str) -> pd.DataFrame:
    path = stock_path(state_dir, dealer_id)
    if not path.exists():
        return empty_stock()
    return coerce_to_schema(pd.read_parquet(path))


def read_group_stock(state_dir: Path, dealer_ids: list[str]) -> pd.DataFrame:
    frames = [read_stock(state_dir, d) for d in dealer_ids]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty_stock()


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
