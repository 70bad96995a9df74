"""Landing: copy ready export files into data/landing/<dealer>/ with a checksum and one manifest row each."""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Engine

from dms_pipelines.kernels.atomic import rename_into_place, temporary_sibling
from dms_pipelines.operations.db import ingested_files
from dms_pipelines.operations.statuses import TAKEN_FILE_STATUSES, FileStatus
from dms_pipelines.sources.base import RemoteFile, Source, SourceError, name_problem, shown

MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 60.0
DIGITS = re.compile(r"\d+")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class ExportKinds(Protocol):
    """What landing needs of a dealer's mapping profile (formats.profile.MappingProfile): which kind of export a file name is."""

    def export_kind(self, file_name: str) -> str | None:
        """'full', 'delta', or None for a name that is not one of the dealer's exports."""
        ...


@dataclass
class LandingReport:
    """What one landing pass did, for the run's metadata and logs."""

    landed: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_unmatched: list[str] = field(default_factory=list)
    already_seen: int = 0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def export_timestamp(name: str, mtime: float) -> str:
    """A sortable timestamp: the 12-14 digits of a dated export name, else the file's modification time."""
    digits = "".join(DIGITS.findall(name))
    if 12 <= len(digits) <= 14:
        return digits.ljust(14, "0")
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y%m%d%H%M%S")


def safe_local_name(name: str) -> str:
    """A remote name reduced to one harmless path component (no separators, no leading dots)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = SAFE_NAME.sub("_", base).lstrip(".")
    return cleaned[:200] or "unnamed"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_dated(name: str) -> bool:
    """Whether the name carries the export's own timestamp (its place in the sequence), as export_timestamp reads it."""
    return 12 <= len("".join(DIGITS.findall(name))) <= 14


def redelivered(connection, dealer_id: str, name: str, digest: str):
    """The manifest row of which this file is a redelivery, or None when it is new data.

    A redelivery is the same file again: the same dated name with the same bytes (a name with its own timestamp is one
    place in the sequence), or an undated name whose bytes are those of the last file the dealer sent under that name,
    with nothing landed since. Anything else is a new file in the sequence, whatever its bytes: a price back to an
    earlier value, a car sold again, the last good full export re-sent after a bad one.
    """
    mine = and_(ingested_files.c.dealer_id == dealer_id, ingested_files.c.status.in_(TAKEN_FILE_STATUSES))
    same = and_(mine, ingested_files.c.file_name == name, ingested_files.c.sha256 == digest)
    if is_dated(name):
        return connection.execute(select(ingested_files.c.id, ingested_files.c.file_name).where(same).order_by(ingested_files.c.id)).first()
    last = connection.execute(
        select(ingested_files.c.id, ingested_files.c.file_name, ingested_files.c.sha256, ingested_files.c.status)
        .where(and_(mine, ingested_files.c.status != FileStatus.DUPLICATE))
        .order_by(ingested_files.c.id.desc())
    ).first()
    return last if last is not None and last.file_name == name and last.sha256 == digest else None


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), 3600))


def land_files(
    source: Source,
    files: list[RemoteFile],
    dealer_id: str,
    profile: ExportKinds,
    landing_root: Path,
    engine: Engine,
    run_id: str | None = None,
    now: datetime | None = None,
) -> LandingReport:
    """Land every ready file not landed before; a redelivery of a file already landed is recorded as a duplicate."""
    now = now or utc_now()
    report = LandingReport()
    folder = landing_root / dealer_id
    folder.mkdir(parents=True, exist_ok=True)
    for remote in files:
        kind = profile.export_kind(remote.name)
        if kind is None:
            report.skipped_unmatched.append(shown(remote.name))
            continue
        with engine.begin() as connection:
            previous = connection.execute(
                select(ingested_files.c.id, ingested_files.c.status, ingested_files.c.attempts, ingested_files.c.next_attempt_at)
                .where(
                    and_(
                        ingested_files.c.dealer_id == dealer_id,
                        ingested_files.c.source_path == remote.path,
                        ingested_files.c.size_bytes == remote.size,
                        ingested_files.c.source_mtime == remote.mtime,
                    )
                )
                .order_by(ingested_files.c.id.desc())
            ).first()
        if previous is not None and previous.status != FileStatus.RETRY:
            report.already_seen += 1
            continue
        if previous is not None and previous.next_attempt_at is not None:
            due = previous.next_attempt_at if previous.next_attempt_at.tzinfo else previous.next_attempt_at.replace(tzinfo=timezone.utc)
            if due > now:
                report.already_seen += 1
                continue
        problem = remote.problem or name_problem(remote.name)
        if problem is not None:  # a link, an empty file, a name that would forge what it is shown in: never fetched
            message = shown(f"{remote.name}: {problem}")
            _record_fetch_failure(engine, previous, remote, dealer_id, kind, message, False, now, run_id)
            report.failed.append(message)
            continue
        temporary = temporary_sibling(folder / "incoming", ".part")
        try:
            source.fetch(remote, temporary)
            digest = sha256_of(temporary)
        except SourceError as error:
            temporary.unlink(missing_ok=True)
            _record_fetch_failure(engine, previous, remote, dealer_id, kind, shown(str(error)), error.transient, now, run_id)
            report.failed.append(shown(f"{remote.name}: {error}"))
            continue
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        try:
            file_id, status = _record_landing(engine, previous, remote, dealer_id, kind, digest, temporary, folder, now, run_id, report)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a no-op once it is in place
            raise
        if status == FileStatus.LANDED:
            report.landed.append(file_id)
        try:
            source.finish(remote)
        except SourceError as error:
            report.failed.append(shown(f"{remote.name}: landed, but the after-fetch action failed: {error}"))
    return report


def _record_landing(engine, previous, remote, dealer_id, kind, digest, temporary, folder, now, run_id, report) -> tuple[int, FileStatus]:
    """The fetched file's manifest row: a duplicate (the temporary removed), or landed (the temporary renamed into place,
    durable before the row that says so is written)."""
    with engine.begin() as connection:
        same_content = redelivered(connection, dealer_id, remote.name, digest)
        values = dict(
            dealer_id=dealer_id,
            source_path=remote.path,
            file_name=remote.name,
            size_bytes=remote.size,
            source_mtime=remote.mtime,
            sha256=digest,
            received_at=now,
            export_kind=kind,
            export_timestamp=export_timestamp(remote.name, remote.mtime),
            attempts=(previous.attempts if previous else 0) + 1,
            run_id=run_id,
            landed_run_id=run_id,
        )
        if same_content is not None:
            temporary.unlink(missing_ok=True)
            values.update(status=FileStatus.DUPLICATE, error=f"same content as file #{same_content.id} ({same_content.file_name})")
            report.duplicates.append(remote.name)
        else:
            landed_path = folder / f"{now.strftime('%Y%m%dT%H%M%S')}_{digest[:8]}_{safe_local_name(remote.name)}"
            rename_into_place(temporary, landed_path)  # fsynced, renamed, the folder fsynced: durable before the row says landed
            values.update(status=FileStatus.LANDED, landed_path=str(landed_path), error=None)
        if previous is not None:
            connection.execute(update(ingested_files).where(ingested_files.c.id == previous.id).values(**values))
            file_id = previous.id
        else:
            file_id = connection.execute(insert(ingested_files).values(**values)).inserted_primary_key[0]
        return file_id, values["status"]


def _record_fetch_failure(engine, previous, remote, dealer_id, kind, message, transient, now, run_id) -> None:
    attempts = (previous.attempts if previous else 0) + 1
    final = not transient or attempts >= MAX_ATTEMPTS
    values = dict(
        status=FileStatus.FAILED if final else FileStatus.RETRY,
        attempts=attempts,
        next_attempt_at=None if final else now + _backoff(attempts),
        error=message,
        run_id=run_id,
        landed_run_id=run_id,
    )
    with engine.begin() as connection:
        if previous is not None:
            connection.execute(update(ingested_files).where(ingested_files.c.id == previous.id).values(**values))
        else:
            connection.execute(
                insert(ingested_files).values(
                    dealer_id=dealer_id,
                    source_path=remote.path,
                    file_name=shown(remote.name),  # what every report shows; source_path keeps the name as the source has it
                    size_bytes=remote.size,
                    source_mtime=remote.mtime,
                    sha256="",
                    received_at=now,
                    export_kind=kind,
                    export_timestamp=export_timestamp(remote.name, remote.mtime),
                    **values,
                )
            )
