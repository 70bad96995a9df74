"""Guards that hold a full export instead of applying it: one that would delist the dealer, one whose values jump."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dms_pipelines.config import Validation


def delisting_guard(rows_in_export: int, last_full_rows: int | None, min_share: float) -> str | None:
    """Why a full export must be held instead of applied, or None when it may go ahead."""
    if rows_in_export == 0:
        return "the full export has no vehicles; applying it would delist the whole dealer"
    if last_full_rows and rows_in_export < min_share * last_full_rows:
        return (
            f"the full export has {rows_in_export} vehicles, fewer than {min_share:.0%} of the last accepted full export ({last_full_rows}); held so that a truncated export cannot delist the dealer"
        )
    return None


def distribution_guard(accepted: pd.DataFrame, stock: pd.DataFrame, rules: Validation) -> str | None:
    """Why a full export must be held because its values jump against the dealer's last accepted stock, or None.

    Each row rule sees one value, and a price and mileage exchanged in the header keep every value plausible (45,000
    miles becomes £45,000); what gives them away is the vehicles in both, compared with themselves: their median price
    moves, most of their prices change a lot, their mileage goes down, newer cars become the cheaper ones (a swap keeps
    the correlation of price with mileage, so that one is not a signal). Under `guard_min_vehicles` in both (a first
    export, a tiny dealer, a renumbered stock) nothing is judged. Only the stock numbers and the price, mileage and year
    of the vehicles in both are read: the stock is never copied.
    """
    if len(accepted) < rules.guard_min_vehicles or len(stock) < rules.guard_min_vehicles:
        return None
    new_rows, old_rows = _in_both(accepted["stock_id"], stock["stock_id"])
    if len(new_rows) < rules.guard_min_vehicles:
        return None
    new_price, old_price = _floats(accepted["price"], new_rows), _floats(stock["price"], old_rows)
    priced = ~np.isnan(new_price) & ~np.isnan(old_price) & (old_price > 0)
    vehicles = int(priced.sum())
    if vehicles < rules.guard_min_vehicles:
        return None
    new_price, old_price = new_price[priced], old_price[priced]
    found = []
    factor = rules.guard_median_price_factor
    if factor:
        new_median, old_median = float(np.median(new_price)), float(np.median(old_price))
        ratio = new_median / old_median
        if ratio > factor or ratio < 1 / factor:
            found.append(f"median price £{new_median:,.0f} against £{old_median:,.0f} in the last accepted stock (x{ratio:.2f}, limit x{factor:g} either way)")
    if rules.guard_repriced_share:
        share = float((np.abs(new_price - old_price) > rules.guard_repriced_by * old_price).mean())
        if share > rules.guard_repriced_share:
            found.append(f"{share:.0%} of the {vehicles:,} vehicles in both changed price by more than {rules.guard_repriced_by:.0%} (limit {rules.guard_repriced_share:.0%})")
    if rules.guard_mileage_down_share:
        new_miles, old_miles = _floats(accepted["mileage"], new_rows), _floats(stock["mileage"], old_rows)
        known = ~np.isnan(new_miles) & ~np.isnan(old_miles)
        if known.sum() >= rules.guard_min_vehicles:
            share = float((new_miles[known] < old_miles[known]).mean())
            if share > rules.guard_mileage_down_share:
                found.append(f"the mileage of {share:.0%} of the {int(known.sum()):,} vehicles in both went down (limit {rules.guard_mileage_down_share:.0%})")
    level = rules.guard_price_year_correlation
    if level:
        new_year, old_year = _floats(accepted["year"], new_rows)[priced], _floats(stock["year"], old_rows)[priced]
        known = ~np.isnan(new_year) & ~np.isnan(old_year)
        if known.sum() >= rules.guard_min_vehicles:
            before = _rank_correlation(old_price[known], old_year[known])
            after = _rank_correlation(new_price[known], new_year[known]) if before >= level else np.nan
            if after <= -level:
                found.append(f"the rank correlation of price with year went from {before:+.2f} to {after:+.2f} (newer cars now cost less; limit: from at least +{level:.2f} to at most -{level:.2f})")
    if not found:
        return None
    return (
        f"the full export's values jump against the dealer's last accepted stock, comparing the {vehicles:,} vehicles in both: "
        + "; ".join(found)
        + "; held so that a swapped or mis-mapped column cannot reprice the dealer; release it if the change is real"
    )


def _in_both(new_ids: pd.Series, old_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Positions in each of the stock numbers found in both (Arrow's hash kernel; a stock number is unique in a stock)."""
    haystack = pa.array(old_ids)
    needles = pa.array(new_ids).cast(haystack.type)
    found = pc.index_in(needles, value_set=haystack.combine_chunks() if isinstance(haystack, pa.ChunkedArray) else haystack)
    positions = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.flatnonzero(positions >= 0)
    return rows, positions[rows]


def _floats(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """The values at `rows` as floats, NaN where missing (only those rows are taken)."""
    return column.iloc[rows].to_numpy(dtype="float64", na_value=np.nan)


def _rank_correlation(x: np.ndarray, y: np.ndarray, most: int = 100_000) -> float:
    """Spearman's correlation (ties ranked by their mean); NaN when either side does not vary. Over `most` vehicles
    taken evenly from a larger stock (ranking is the cost, and the estimate is already within a few thousandths)."""
    step = max(1, len(x) // most)
    rx, ry = pd.Series(x[::step]).rank().to_numpy(), pd.Series(y[::step]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return np.nan
    return float(np.corrcoef(rx, ry)[0, 1])
