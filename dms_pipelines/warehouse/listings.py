"""What each marketplace shows per vehicle of a dealer, kept as a base file and the changed vehicles' rows since it."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from dms_pipelines.kernels.frame_files import write_parquet_atomically
from dms_pipelines.marketplaces.base import Rendered, listing_rows
from dms_pipelines.marketplaces.registry import SPECS
from dms_pipelines.paths import DataPaths
from dms_pipelines.stock.changes import GENERATION_KEY, MIN_LOG_CAP, footer_generation
from dms_pipelines.stock.store import among
from dms_pipelines.warehouse.tables import conform, link_into, table_file

ROWS_KEY = b"dms_pipelines.rows"  # in a changes file's footer: the dealer's rows with the changes in place


@dataclass(frozen=True)
class ListingCounts:
    """Over every vehicle of the dealer: how many the marketplace lists, how many it would reject, the listed ones' mean completeness."""

    listed: int
    held_back: int
    mean_completeness: float


def listings_path(paths: DataPaths, marketplace: str, dealer_id: str) -> Path:
    return paths.state / "listings" / marketplace / f"{dealer_id}.parquet"


def changes_path(paths: DataPaths, marketplace: str, dealer_id: str) -> Path:
    return paths.state / "listings" / marketplace / f"{dealer_id}.changes.parquet"


def save_listings(paths: DataPaths, marketplace: str, dealer_id: str, rendered: Rendered | None) -> ListingCounts:
    """Every vehicle's row as the new base (a whole render), with no changes on it; both removed when `rendered` is None."""
    base, changes = listings_path(paths, marketplace, dealer_id), changes_path(paths, marketplace, dealer_id)
    if rendered is None:
        base.unlink(missing_ok=True)
        changes.unlink(missing_ok=True)
        return ListingCounts(0, 0, 0.0)
    rows = _rows(rendered)
    generation = footer_generation(base) + 1  # a changes file left on the old base no longer matches it
    write_parquet_atomically(rows, base, {GENERATION_KEY: str(generation).encode()})
    changes.unlink(missing_ok=True)
    return _counts(rows)


def patch_listings(paths: DataPaths, marketplace: str, dealer_id: str, rendered: Rendered, changed_ids: set[str]) -> ListingCounts:
    """The changed vehicles' rows (from `rendered`, rendered from them alone) written over the kept ones: to the changes
    file, with a removal for each changed vehicle the marketplace no longer shows. Past a tenth of the base (at least
    MIN_LOG_CAP rows), the changes become part of a new base."""
    base_file = listings_path(paths, marketplace, dealer_id)
    generation = footer_generation(base_file)
    fresh = _rows(rendered).assign(removed=False)
    gone = sorted(changed_ids - set(fresh["stock_id"].astype(str)))
    removals = conform("marketplace_listings", pd.DataFrame({"stock_id": gone, "dealer_id": dealer_id, "marketplace": marketplace})).assign(removed=True)
    earlier = _changes(paths, marketplace, dealer_id, generation)
    earlier = earlier[~earlier["stock_id"].astype(str).isin(changed_ids)]
    changes = conform("marketplace_listings_changes", pd.concat([f for f in (earlier, fresh, removals) if len(f)] or [earlier], ignore_index=True))
    base_rows = pq.read_metadata(base_file).num_rows if base_file.exists() else 0
    if len(changes) > max(MIN_LOG_CAP, base_rows // 10):
        whole = _applied(pd.read_parquet(base_file) if base_file.exists() else conform("marketplace_listings", pd.DataFrame()), changes)
        write_parquet_atomically(whole, base_file, {GENERATION_KEY: str(generation + 1).encode()})
        changes_path(paths, marketplace, dealer_id).unlink(missing_ok=True)
        return _counts(whole)
    counts = _counts(_applied(_base_columns(base_file), changes))
    footer = {GENERATION_KEY: str(generation).encode(), ROWS_KEY: str(counts.listed + counts.held_back).encode()}
    write_parquet_atomically(changes, changes_path(paths, marketplace, dealer_id), footer)
    return counts


def read_listings(paths: DataPaths, marketplace: str, dealer_id: str) -> pd.DataFrame:
    """Every vehicle's row, the changes put in place over the base."""
    base_file = listings_path(paths, marketplace, dealer_id)
    base = pd.read_parquet(base_file) if base_file.exists() else conform("marketplace_listings", pd.DataFrame())
    return _applied(conform("marketplace_listings", base), _changes(paths, marketplace, dealer_id, footer_generation(base_file)))


def publish_listings(paths: DataPaths, dealer_id: str) -> int:
    """The dealer's listing rows in the warehouse: each marketplace's base and changes, linked in from where they are kept
    (no copy); the `marketplace_listings` view puts the changes in place. Returns the rows that makes."""
    table_file(paths, "marketplace_listings", dealer_id).unlink(missing_ok=True)  # the one file per dealer of earlier versions
    rows = 0
    for marketplace in SPECS:
        key = f"{dealer_id}__{marketplace}"
        base_file, changes_file = listings_path(paths, marketplace, dealer_id), changes_path(paths, marketplace, dealer_id)
        generation = footer_generation(base_file)
        changes = _changes(paths, marketplace, dealer_id, generation)
        for source, table in ((base_file, "marketplace_listings"), (changes_file, "marketplace_listings_changes")):
            target = table_file(paths, table, key)
            if source.exists() and (table == "marketplace_listings" or len(changes)):
                link_into(source, target)
            else:
                target.unlink(missing_ok=True)
        if len(changes):
            rows += int(pq.read_schema(changes_file).metadata[ROWS_KEY])
        elif base_file.exists():
            rows += pq.read_metadata(base_file).num_rows
    return rows


def _rows(rendered: Rendered) -> pd.DataFrame:
    spec = SPECS[rendered.marketplace]
    offered = spec.offered(rendered.items) if spec.offered is not None else None
    return conform("marketplace_listings", listing_rows(rendered, offered))


def _changes(paths: DataPaths, marketplace: str, dealer_id: str, generation: int) -> pd.DataFrame:
    """The changes kept on the base of `generation` (none when the file was left on another base)."""
    path = changes_path(paths, marketplace, dealer_id)
    if not path.exists() or footer_generation(path) != generation:
        return conform("marketplace_listings_changes", pd.DataFrame())
    return conform("marketplace_listings_changes", pd.read_parquet(path))


def _base_columns(base_file: Path) -> pd.DataFrame:
    """The base's columns the counts need."""
    if not base_file.exists():
        return pd.DataFrame({"stock_id": pd.Series(dtype="string"), "listed": pd.Series(dtype="boolean"), "completeness": pd.Series(dtype="Float64")})
    return pq.read_table(base_file, columns=["stock_id", "listed", "completeness"]).to_pandas()


def _applied(base: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """The base's rows of vehicles without changes, then the changed vehicles' rows that are not removals."""
    if not len(changes):
        return base.reset_index(drop=True)
    keep = ~among(base["stock_id"], changes["stock_id"])
    present = changes.loc[~changes["removed"].astype(bool), [c for c in base.columns if c in changes.columns]]
    return pd.concat([base[keep], present], ignore_index=True)


def _counts(rows: pd.DataFrame) -> ListingCounts:
    listed = rows["listed"].astype(bool)
    scores = pd.to_numeric(rows.loc[listed.to_numpy(), "completeness"])
    return ListingCounts(int(listed.sum()), int((~listed).sum()), float(scores.mean()) if len(scores) else 0.0)
