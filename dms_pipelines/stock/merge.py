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


def apply_full(previous: pd.DataFrame, accepted: pd.DataFrame, quarantined_ids: set[str]) -> MergeOutcome:
    """The full export becomes the stock; a vehicle whose new row was quarantined keeps its last accepted version."""
    new = accepted.drop_duplicates("stock_id", keep="last")
    old_ids, new_ids = previous["stock_id"], new["stock_id"]
    new_known = _member_of(new_ids, old_ids)
    keep = _member_of(old_ids, pd.Series(sorted(quarantined_ids), dtype="string")) & ~_member_of(old_ids, new_ids)
    stock = pd.concat([new, previous.loc[keep]], ignore_index=True) if keep.any() else new
    removed = int((~_member_of(old_ids, stock["stock_id"])).sum())
    return MergeOutcome(_sorted(coerce_to_schema(stock.reset_index(drop=True))), int((~new_known).sum()), int(new_known.sum()), removed, int(keep.sum()))


def apply_delta(previous: pd.DataFrame, accepted: pd.DataFrame) -> MergeOutcome:
    """Rows in the delta replace or add vehicles by stock number; nothing else changes.

    `previous` is a stock as this module leaves it (one row per stock number, sorted), so the result is spliced together
    from slices of it around the delta's rows: the cost grows with the delta, and the untouched rows are never copied.
    """
    new = _sorted(coerce_to_schema(accepted.drop_duplicates("stock_id", keep="last").reset_index(drop=True)))
    ids = previous["stock_id"].to_numpy(dtype=object, na_value=None)
    new_ids = new["stock_id"].to_numpy(dtype=object, na_value=None)
    if len(ids) and not (None in new_ids or None in ids or (ids[1:] > ids[:-1]).all()):
        return _apply_delta_by_sorting(previous, new)
    positions = np.searchsorted(ids, new_ids) if len(ids) else np.zeros(len(new_ids), dtype=np.int64)
    existing = np.array([p < len(ids) and ids[p] == key for p, key in zip(positions, new_ids)], dtype=bool)
    pieces, start = [], 0
    for row, (position, known) in enumerate(zip(positions, existing)):
        pieces.append(previous.iloc[start:position])
        pieces.append(new.iloc[row : row + 1])
        start = position + 1 if known else position
    pieces.append(previous.iloc[start:])
    stock = pd.concat([p for p in pieces if len(p)] or [previous.iloc[:0]], ignore_index=True)
    added = int((~existing).sum())
    return MergeOutcome(stock, added, len(new) - added, 0, 0)


def _apply_delta_by_sorting(previous: pd.DataFrame, new: pd.DataFrame) -> MergeOutcome:
    """The delta for a stock not in stock-number order (written by an older version): replace, append, sort."""
    existing = _member_of(new["stock_id"], previous["stock_id"])
    stock = pd.concat([previous.loc[~_member_of(previous["stock_id"], new["stock_id"])], new], ignore_index=True)
    added = int((~existing).sum())
    return MergeOutcome(_sorted(coerce_to_schema(stock)), added, len(new) - added, 0, 0)


def rows_at(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """The rows at ascending `positions`, put together from zero-copy slices: a spliced stock's Arrow columns hold many
    chunks, and a row take over them would first join every chunk (the whole stock) into one copy."""
    if len(positions) == 0:
        return frame.iloc[:0]
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    pieces = [frame.iloc[run[0] : run[-1] + 1] for run in np.split(positions, breaks)]
    return pd.concat(pieces) if len(pieces) > 1 else pieces[0]


def _member_of(values: pd.Series, candidates: pd.Series) -> np.ndarray:
    """values.isin(candidates) through Arrow's hash kernel (pandas' string isin walks Python objects)."""
    haystack = pa.array(values)
    return pc.is_in(haystack, value_set=pa.array(candidates).cast(haystack.type)).fill_null(False).to_numpy(zero_copy_only=False)


def _sorted(stock: pd.DataFrame) -> pd.DataFrame:
    """Rows in stock-number order (stable), without touching them when they already are."""
    order = pc.sort_indices(pa.array(stock["stock_id"])).to_numpy()
    if np.array_equal(order, np.arange(len(stock))):
        return stock.reset_index(drop=True)
    return stock.take(order).reset_index(drop=True)
