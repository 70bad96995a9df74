"""Each vehicle's versions over time (valid_from, valid_to), kept per dealer so analysts can see price changes and days in stock."""

from datetime import datetime

import numpy as np
import pandas as pd
from pandas.util import hash_pandas_object

from dms_pipelines.stock.hashing import row_digests
from dms_pipelines.stock.merge import rows_at
from dms_pipelines.stock.schema import LINEAGE_COLUMNS, PRIVATE_COLUMNS, STOCK_COLUMNS

TRACKED = [c for c in STOCK_COLUMNS if c not in PRIVATE_COLUMNS and c not in LINEAGE_COLUMNS]


HASH_SCHEME = "m1:"  # version hashes written before it (bare numbers) are re-checked with legacy_row_hashes once


def row_hashes(stock: pd.DataFrame) -> pd.Series:
    """A content hash per vehicle over the public fields, all rows at once (stock/hashing.py)."""
    if stock.empty:
        return pd.Series(dtype="string")
    return pd.Series([HASH_SCHEME + d for d in row_digests(stock, TRACKED)], index=stock.index, dtype="string")


def legacy_row_hashes(stock: pd.DataFrame) -> pd.Series:
    """The hash earlier versions stored (pandas' row hash of the fields as text): read only to recognise an unchanged vehicle."""
    if stock.empty:
        return pd.Series(dtype="string")
    return hash_pandas_object(stock[TRACKED].astype("string").fillna("\x00"), index=False).astype("string")


def empty_history() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=d) for c, d in stock_history_dtypes().items()})
    return frame


def stock_history_dtypes() -> dict[str, str]:
    return {
        "dealer_id": "string",
        "stock_id": "string",
        "version_hash": "string",
        "price": "Float64",
        "status": "string",
        "mileage": "Int64",
        "make": "string",
        "model": "string",
        "date_in_stock": "datetime64[ns]",
        "source_file": "string",
        "valid_from": "datetime64[us, UTC]",
        "valid_to": "datetime64[us, UTC]",
    }


def update_history(history: pd.DataFrame, stock: pd.DataFrame, at: datetime, changed_ids: set[str] | None = None) -> pd.DataFrame:
    """Close the open version of every vehicle that changed or left, and open a version for every new or changed one.

    With `changed_ids` (an hourly delta's vehicles) only those vehicles are compared, so the cost grows with the delta and
    not with the stock; without it (a full export) every vehicle is.
    """
    at_ts = pd.Timestamp(at)
    at_ts = at_ts.tz_localize("UTC") if at_ts.tzinfo is None else at_ts.tz_convert("UTC")
    history = history if len(history) else empty_history()
    if changed_ids is not None:
        stock = rows_at(stock, np.flatnonzero(stock["stock_id"].isin(changed_ids).to_numpy(dtype=bool)))
    current = stock.assign(version_hash=row_hashes(stock).values) if len(stock) else stock.assign(version_hash=pd.Series(dtype="string"))
    is_open = history["valid_to"].isna()
    if changed_ids is not None:
        is_open &= history["stock_id"].isin(changed_ids)
    open_versions = history.loc[is_open, ["stock_id", "version_hash"]]
    merged = open_versions.merge(current[["stock_id", "version_hash"]], on="stock_id", how="left", suffixes=("", "_now"))
    history = history.copy()
    relabelled = _recognise_legacy_hashes(merged, current)
    if relabelled:
        relabel = is_open & history["stock_id"].isin(relabelled)
        history.loc[relabel, "version_hash"] = history.loc[relabel, "stock_id"].map(relabelled).astype("string")
    to_close = set(merged.loc[merged["version_hash_now"].isna() | (merged["version_hash_now"] != merged["version_hash"]), "stock_id"])
    closing = is_open & history["stock_id"].isin(to_close)
    if closing.any():
        history.loc[closing, "valid_to"] = at_ts
    still_open = set(open_versions["stock_id"]) - to_close
    fresh = current[~current["stock_id"].isin(still_open)]
    if len(fresh):
        new_rows = pd.DataFrame({c: fresh[c] for c in stock_history_dtypes() if c in fresh.columns})
        new_rows["valid_from"] = at_ts
        new_rows["valid_to"] = pd.Series(pd.NaT, index=new_rows.index, dtype="datetime64[us, UTC]")
        history = pd.concat([history, new_rows.astype(stock_history_dtypes())], ignore_index=True)
    return history.astype(stock_history_dtypes()).reset_index(drop=True)


def _recognise_legacy_hashes(merged: pd.DataFrame, current: pd.DataFrame) -> dict[str, str]:
    """Open versions hashed by an earlier scheme whose vehicle has not changed: their new hash, by stock number.

    `merged` (open versions beside the current hashes) is updated in place so those vehicles compare as unchanged.
    """
    legacy = merged["version_hash"].notna() & ~merged["version_hash"].str.startswith(HASH_SCHEME).fillna(False).astype(bool)
    if not legacy.any():
        return {}
    ids = set(merged.loc[legacy, "stock_id"])
    subset = current[current["stock_id"].isin(ids)]
    old_hash = dict(zip(subset["stock_id"], legacy_row_hashes(subset)))
    same = legacy & (merged["stock_id"].map(old_hash) == merged["version_hash"]).fillna(False).astype(bool)
    merged.loc[same, "version_hash"] = merged.loc[same, "version_hash_now"]
    return dict(zip(merged.loc[same, "stock_id"], merged.loc[same, "version_hash_now"]))
