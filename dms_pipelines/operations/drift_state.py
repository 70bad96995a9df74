"""Drift as recorded: one row per check of a marketplace for a dealer, and the vehicles drifting as of the last check."""

import json
from datetime import datetime, timezone

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import drift_items, marketplace_drift

KINDS = ("sold_live", "missing", "stale", "extra")  # the order drift is told in: a sold car still offered first
SAMPLE_IDS = 50
SHOWN_IDS = 5


def ids_text(ids: list[str], count: int | None = None, shown: int = SHOWN_IDS) -> str:
    """'LEE00001, LEE00007' or 'LEE00001, ... and 12 more' (`count`: how many there are, when `ids` is a sample)."""
    count = len(ids) if count is None else count
    return ", ".join(sorted(ids)[:shown]) + (f" and {count - shown} more" if count > shown else "")


def describe_drift(counts: dict[str, int], stock_ids: dict[str, list[str]], error: str | None = None) -> str:
    """'1 sold but live (LEE00012); 2 stale (LEE00001, LEE00007)', then why it could not be read; '' when in sync."""
    parts = [f"{counts[kind]} {kind.replace('_', ' but ')} ({ids_text(stock_ids.get(kind, []), counts[kind])})" for kind in KINDS if counts.get(kind)]
    if error:
        parts.append(f"cannot be read back: {error}")
    return "; ".join(parts)


def record_drift(engine: Engine, dealer_id: str, marketplace: str, run_id: str | None, checked: int, items: list[tuple[str, str]], error: str | None) -> None:
    """A check's result: its counts (with the first stock ids of each kind) appended, and the drifting vehicles replaced."""
    now = datetime.now(timezone.utc)
    by_kind = {kind: sorted(stock_id for stock_id, k in items if k == kind) for kind in KINDS}
    row = dict(
        run_id=run_id,
        dealer_id=dealer_id,
        marketplace=marketplace,
        checked_at=now,
        vehicles_checked=checked,
        error=error,
        stock_ids=json.dumps({kind: ids[:SAMPLE_IDS] for kind, ids in by_kind.items() if ids}),
        **{kind: len(ids) for kind, ids in by_kind.items()},
    )
    mine = and_(drift_items.c.dealer_id == dealer_id, drift_items.c.marketplace == marketplace)
    with engine.begin() as connection:
        connection.execute(insert(marketplace_drift).values(**row))
        connection.execute(delete(drift_items).where(mine))
        unique = {stock_id: kind for stock_id, kind in reversed(items)}  # one kind per vehicle: the first named wins (sold_live first)
        if unique:
            connection.execute(insert(drift_items), [dict(dealer_id=dealer_id, marketplace=marketplace, stock_id=i, kind=k, checked_at=now) for i, k in unique.items()])


def latest_drift(engine: Engine, dealer_id: str | None = None) -> list[dict]:
    """The last check of each dealer's marketplaces (of one dealer when given), newest first."""
    latest = select(marketplace_drift.c.dealer_id, marketplace_drift.c.marketplace, func.max(marketplace_drift.c.id).label("id")).group_by(
        marketplace_drift.c.dealer_id, marketplace_drift.c.marketplace
    )
    if dealer_id is not None:
        latest = latest.where(marketplace_drift.c.dealer_id == dealer_id)
    latest = latest.subquery()
    with engine.connect() as connection:
        rows = connection.execute(select(marketplace_drift).join(latest, marketplace_drift.c.id == latest.c.id).order_by(marketplace_drift.c.dealer_id, marketplace_drift.c.marketplace))
        return [dict(row) for row in rows.mappings()]


def last_drift_items(engine: Engine, dealer_id: str, marketplace: str) -> tuple[int, list[tuple[str, str]], str | None]:
    """The last check of the marketplace for the dealer: vehicles checked, the drifting (stock id, kind), its error."""
    with engine.connect() as connection:
        last = connection.execute(
            select(marketplace_drift.c.vehicles_checked, marketplace_drift.c.error)
            .where(and_(marketplace_drift.c.dealer_id == dealer_id, marketplace_drift.c.marketplace == marketplace))
            .order_by(marketplace_drift.c.id.desc())
        ).first()
        items = connection.execute(select(drift_items.c.stock_id, drift_items.c.kind).where(and_(drift_items.c.dealer_id == dealer_id, drift_items.c.marketplace == marketplace))).fetchall()
    return (last.vehicles_checked if last else 0), [(i.stock_id, i.kind) for i in items], (last.error if last else None)
