"""Readiness with memory: file observations kept per dealer in the operational database between listings."""

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from dms_pipelines.operations.db import file_observations
from dms_pipelines.sources.base import RemoteFile
from dms_pipelines.sources.readiness import FileObservation, ready_files


def ready_with_observations(source, listing: list[RemoteFile], dealer_id: str, engine: Engine, now: float, stability_seconds: float, marker_pattern: str | None) -> list[RemoteFile]:
    with engine.begin() as connection:
        previous = {
            row.source_path: FileObservation(row.source_path, row.size_bytes, row.source_mtime, row.first_seen)
            for row in connection.execute(select(file_observations).where(file_observations.c.dealer_id == dealer_id))
        }
        ready, observations = ready_files(listing, previous, now, stability_seconds, marker_pattern, getattr(source, "markers", set()) or _local_markers(source))
        connection.execute(delete(file_observations).where(file_observations.c.dealer_id == dealer_id))
        if observations:
            connection.execute(
                insert(file_observations),
                [{"dealer_id": dealer_id, "source_path": o.path, "size_bytes": o.size, "source_mtime": o.mtime, "first_seen": o.first_seen} for o in observations.values()],
            )
    return ready


def _local_markers(source) -> set[str]:
    folder = getattr(source, "folder", None)
    return {p.name for p in folder.iterdir()} if folder is not None and folder.exists() else set()
