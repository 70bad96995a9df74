"""Apply exports to a dealer's stock: a full export replaces it, a delta patches it, a bad row keeps the last good version."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.stock.schema import coerce_to_schema


@dataclass
class MergeOutcome:
    stock: pd.DataFrame
    added: int
    updated: int
    removed: int
    kept_last_good: int


def _by_stock_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates("stock_id", keep="last").set_index("stock_id", drop=False)


def apply_full(previous: pd.DataFrame, accepted: pd.DataFrame, quarantined_ids: set[str]) -> MergeOutcome:
    """The full export becomes the stock; a vehicle whose new row was quarantined keeps its last accepted version."""
    old = _by_stock_id(previous)
    new = _by_stock_id(accepted)
    keep_ids = [s for s in quarantined_ids if s in old.index and s not in new.index]
    kept = old.loc[keep_ids]
    stock = pd.concat([new, kept]) if len(kept) else new
    added = int((~new.index.isin(old.index)).sum())
    updated = int(new.index.isin(old.index).sum())
    removed = int((~old.index.isin(stock.index)).sum())
    return MergeOutcome(_tidy(stock), added, updated, removed, len(keep_ids))


def apply_delta(previous: pd.DataFrame, accepted: pd.DataFrame) -> MergeOutcome:
    """Rows in the delta replace or add vehicles by stock number; nothing else changes.

    `previous` is a stock as this module leaves it (one row per stock number, sorted), so a delta costs one membership
    test and one sort by key over the stock, never a re-index or a re-typing of every row.
    """
    new = coerce_to_schema(accepted.drop_duplicates("stock_id", keep="last"))
    replaced = _member_of(previous["stock_id"], new["stock_id"])
    existing = _member_of(new["stock_id"], previous["stock_id"])
    stock = pd.concat([previous.loc[~replaced], new], ignore_index=True)
    order = pc.sort_indices(pa.array(stock["stock_id"])).to_numpy()  # stable, in C++
    added = int((~existing).sum())
    return MergeOutcome(stock.take(order).reset_index(drop=True), added, len(new) - added, 0, 0)


def _member_of(values: pd.Series, candidates: pd.Series) -> np.ndarray:
    """values.isin(candidates) through Arrow's hash kernel (pandas' string isin walks Python objects)."""
    return pc.is_in(pa.array(values), value_set=pa.array(candidates)).fill_null(False).to_numpy(zero_copy_only=False)


def _tidy(stock: pd.DataFrame) -> pd.DataFrame:
    return coerce_to_schema(stock.reset_index(drop=True)).sort_values("stock_id", kind="stable").reset_index(drop=True)


def delisting_guard(rows_in_export: int, last_full_rows: int | None, min_share: float) -> str | None:
    """Why a full export must be held instead of applied, or None when it may go ahead."""
    if rows_in_export == 0:
        return "the full export has no vehicles; applying it would delist the whole dealer"
    if last_full_rows and rows_in_export < min_share * last_full_rows:
        return (
            f"the full export has {rows_in_export} vehicles, fewer than {min_share:.0%} of the last accepted full export "
            f"({last_full_rows}); held so that a truncated export cannot delist the dealer"
        )
    return None
