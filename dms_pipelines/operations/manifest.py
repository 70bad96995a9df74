"""The file manifest (ingested_files): which exports are waiting, their statuses, and the figures of each dealer's runs."""

from datetime import datetime, timezone

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import ingested_files, quarantine, source_listings, sync_runs
from dms_pipelines.operations.statuses import FileStatus

UNMATCHED_SAMPLE = 5  # names of unmatched files kept for the operator's message


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def pending_files(engine: Engine, dealer_id: str) -> list:
    """The dealer's landed files not yet parsed, in export order."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(ingested_files).where(and_(ingested_files.c.dealer_id == dealer_id, ingested_files.c.status == "landed")).order_by(ingested_files.c.export_timestamp, ingested_files.c.id)
            )
        )


def set_status(engine: Engine, file_id: int, **values) -> None:
    with engine.begin() as connection:
        connection.execute(update(ingested_files).where(ingested_files.c.id == file_id).values(**values))


def last_full_rows(engine: Engine, dealer_id: str) -> int | None:
    """Rows of the dealer's newest applied full export (the delisting guard's yardstick)."""
    with engine.connect() as connection:
        return connection.execute(
            select(ingested_files.c.rows_total)
            .where(and_(ingested_files.c.dealer_id == dealer_id, ingested_files.c.export_kind == "full", ingested_files.c.status == "processed"))
            .order_by(ingested_files.c.export_timestamp.desc(), ingested_files.c.id.desc())
        ).scalar()


def supersede_held_before(engine: Engine, dealer_id: str, export_timestamp: str, file_name: str) -> None:
    """A full export applied: the dealer's older exports still held are superseded (nothing is left to release)."""
    with engine.begin() as connection:
        connection.execute(
            update(ingested_files)
            .where(and_(ingested_files.c.dealer_id == dealer_id, ingested_files.c.status == "held", ingested_files.c.export_timestamp < export_timestamp))
            .values(status="superseded", error=f"superseded by the newer full export {file_name}, applied", processed_at=utc_now())
        )


def release_held_files(engine: Engine, dealer_id: str, released_by: str) -> int:
    """Put a dealer's held exports back in the queue, marked so that the guards (delisting, distribution) let them through
    once. The deltas applied after the oldest released full export go back in the queue too, so that they are applied
    again after it (a held full export never holds the deltas after it: they were applied to the stock before it)."""
    with engine.begin() as connection:
        held = and_(ingested_files.c.dealer_id == dealer_id, ingested_files.c.status == "held")
        oldest = connection.execute(select(func.min(ingested_files.c.export_timestamp)).where(and_(held, ingested_files.c.export_kind == "full"))).scalar()
        result = connection.execute(update(ingested_files).where(held).values(status="landed", error=None, released_by=released_by))
        if oldest is not None:
            later = and_(
                ingested_files.c.dealer_id == dealer_id,
                ingested_files.c.export_kind == "delta",
                ingested_files.c.status == "processed",
                ingested_files.c.export_timestamp > oldest,
            )
            connection.execute(update(ingested_files).where(later).values(status="landed", error=None))
        return result.rowcount


def seen_files(engine: Engine, dealer_id: str) -> dict[tuple, object]:
    """The dealer's manifest rows by (source path, size, mtime): what a listing of its source has landed already."""
    with engine.connect() as connection:
        return {
            (row.source_path, row.size_bytes, row.source_mtime): row
            for row in connection.execute(
                select(ingested_files.c.source_path, ingested_files.c.size_bytes, ingested_files.c.source_mtime, ingested_files.c.status, ingested_files.c.next_attempt_at).where(
                    ingested_files.c.dealer_id == dealer_id
                )
            )
        }


def retry_due(row, now: datetime) -> bool:
    """A file waiting for a retry whose time has come."""
    due = utc_aware(row.next_attempt_at)
    return row.status == "retry" and (due is None or due <= now)


def record_sync_run(engine: Engine, run_id: str, dealer_id: str, trigger: str, vehicles: int, problems: int = 0) -> None:
    """One row per dealer run for the sync_runs table, from the files the run landed, applied, held or could not read
    (replaced if re-executed); `problems`: how many things are wrong for the dealer after it (run_health)."""
    dealer = ingested_files.c.dealer_id == dealer_id
    with engine.connect() as connection:
        started = connection.execute(select(func.min(ingested_files.c.received_at)).where(and_(dealer, ingested_files.c.run_id == run_id))).scalar()
        files = connection.execute(
            select(ingested_files.c.id, ingested_files.c.status, ingested_files.c.rows_total, ingested_files.c.rows_accepted, ingested_files.c.rows_quarantined, ingested_files.c.rows_skipped).where(
                and_(dealer, ingested_files.c.run_id == run_id, ingested_files.c.status.in_([FileStatus.PROCESSED, FileStatus.HELD]))
            )
        ).fetchall()
        landed = connection.execute(select(func.count()).where(and_(dealer, ingested_files.c.landed_run_id == run_id, ingested_files.c.status != FileStatus.DUPLICATE))).scalar()
        failed = connection.execute(select(func.count()).where(and_(dealer, ingested_files.c.run_id == run_id, ingested_files.c.status == FileStatus.FAILED))).scalar()
        issues = connection.execute(select(func.count()).where(and_(quarantine.c.file_id.in_([f.id for f in files]), quarantine.c.severity == "error"))).scalar() if files else 0
    held = sum(1 for f in files if f.status == FileStatus.HELD)
    values = dict(
        run_id=run_id,
        dealer_id=dealer_id,
        trigger=trigger,
        started_at=started,
        finished_at=utc_now(),
        files=len(files),
        records=sum(f.rows_total or 0 for f in files),
        accepted=sum(f.rows_accepted or 0 for f in files),
        quarantined=sum(f.rows_quarantined or 0 for f in files),
        held=held,
        vehicles=vehicles,
        problems=problems,
        landed=landed,
        failed=failed,
        skipped=sum(f.rows_skipped or 0 for f in files),
        quarantine_issues=issues,
        outcome="held" if held else "problems" if problems else "ok" if files else "no_change",
    )
    with engine.begin() as connection:
        connection.execute(delete(sync_runs).where(and_(sync_runs.c.run_id == run_id, sync_runs.c.dealer_id == dealer_id)))
        connection.execute(insert(sync_runs).values(**values))


def sync_run_figures(engine: Engine, run_id: str, dealer_id: str):
    """The sync_runs row of the dealer's run (None when the run recorded none: it crashed before its last stage)."""
    with engine.connect() as connection:
        return connection.execute(select(sync_runs).where(and_(sync_runs.c.run_id == run_id, sync_runs.c.dealer_id == dealer_id))).first()


def record_source_listing(engine: Engine, dealer_id: str, files: int, unmatched: list[str]) -> None:
    """What the dealer's source held at this landing: how many ready files, and those matching none of the profile's patterns."""
    now = utc_now()
    values = dict(listed_at=now, files=files, unmatched=len(unmatched), unmatched_sample="\n".join(unmatched[:UNMATCHED_SAMPLE]) or None)
    with engine.begin() as connection:
        updated = connection.execute(update(source_listings).where(source_listings.c.dealer_id == dealer_id).values(**values)).rowcount
        if not updated:
            connection.execute(insert(source_listings).values(dealer_id=dealer_id, first_listed_at=now, **values))


def source_listing(engine: Engine, dealer_id: str):
    """The dealer's last source listing (None before its first landing)."""
    with engine.connect() as connection:
        return connection.execute(select(source_listings).where(source_listings.c.dealer_id == dealer_id)).first()


def change_seen_at(engine: Engine, run_id: str) -> datetime | None:
    """When the run's earliest applied export was received: the start of the clock for delivery latency."""
    with engine.connect() as connection:
        value = connection.execute(
            select(ingested_files.c.received_at).where(and_(ingested_files.c.run_id == run_id, ingested_files.c.status == "processed")).order_by(ingested_files.c.received_at)
        ).scalar()
    return utc_aware(value)


def hours_since_last_export(engine: Engine, dealer_id: str, now: datetime | None = None) -> float | None:
    """Hours since the dealer's newest received export (None when nothing was ever received)."""
    with engine.connect() as connection:
        newest = connection.execute(select(ingested_files.c.received_at).where(ingested_files.c.dealer_id == dealer_id).order_by(ingested_files.c.received_at.desc())).scalar()
    if newest is None:
        return None
    return ((now or utc_now()) - utc_aware(newest)).total_seconds() / 3600


def reprocess_files(engine: Engine, dealer_id: str, file_name: str | None, requested_by: str) -> tuple[list, list]:
    """Put the dealer's failed files (or the one named `file_name`, whatever became of it) back in the queue, to be read
    again through the current mapping profile by the next run; returns (queued, superseded) manifest rows.

    A file older than the dealer's newest applied full export is superseded instead: that export already replaced
    everything it said. The deltas applied after the oldest file queued are queued again too, so that they apply again
    after it (a reprocessed delta must not undo a later change). Raises LookupError when `file_name` names no landed file.
    """
    now = utc_now()
    with engine.begin() as connection:
        dealer = ingested_files.c.dealer_id == dealer_id
        if file_name is None:
            chosen = connection.execute(select(ingested_files).where(and_(dealer, ingested_files.c.status == FileStatus.FAILED, ingested_files.c.landed_path.is_not(None)))).fetchall()
        else:
            named = connection.execute(select(ingested_files).where(and_(dealer, ingested_files.c.file_name == file_name)).order_by(ingested_files.c.id.desc())).fetchall()
            chosen = [row for row in named if row.landed_path and row.status != FileStatus.RETRY][:1]
            if not chosen:
                names = (
                    connection.execute(select(ingested_files.c.file_name).where(and_(dealer, ingested_files.c.landed_path.is_not(None))).order_by(ingested_files.c.id.desc()).limit(10)).scalars().all()
                )
                why = "it was never landed (it is still being fetched, or it failed before landing)" if named else "no such file"
                raise LookupError(f"{file_name}: {why} for dealer {dealer_id}; its landed files are: {', '.join(names) or 'none'}")
        newest_full = connection.execute(
            select(ingested_files.c.export_timestamp, ingested_files.c.file_name)
            .where(and_(dealer, ingested_files.c.export_kind == "full", ingested_files.c.status == FileStatus.PROCESSED))
            .order_by(ingested_files.c.export_timestamp.desc(), ingested_files.c.id.desc())
        ).first()
        queued, superseded = [], []
        for row in chosen:
            if newest_full is not None and row.export_timestamp < newest_full.export_timestamp:
                superseded.append(row)
                connection.execute(
                    update(ingested_files).where(ingested_files.c.id == row.id).values(status=FileStatus.SUPERSEDED, error=f"superseded by the newer full export {newest_full.file_name}")
                )
            else:
                queued.append(row)
        reprocess = dict(status=FileStatus.LANDED, error=None, reprocessed_at=now, reprocessed_by=requested_by)
        for row in queued:
            connection.execute(update(ingested_files).where(ingested_files.c.id == row.id).values(**reprocess))
        if queued:
            oldest = min(row.export_timestamp for row in queued)
            later = and_(
                dealer,
                ingested_files.c.export_kind == "delta",
                ingested_files.c.status == FileStatus.PROCESSED,
                ingested_files.c.export_timestamp > oldest,
                ingested_files.c.id.not_in([row.id for row in queued]),
            )
            connection.execute(update(ingested_files).where(later).values(status=FileStatus.LANDED, error=None))
    return queued, superseded
