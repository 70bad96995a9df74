"""Snapshot delivery: a whole feed file goes to its destination only when its content differs from what was acknowledged."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine

from dms_pipelines.delivery import ledger
from dms_pipelines.delivery.local import write_if_changed
from dms_pipelines.delivery.staging import StagedFile
from dms_pipelines.operations.statuses import ListingStatus

ACCOUNT = "*"  # the dealer id the ledger uses for an account-wide file


class Destination(Protocol):
    """Where snapshot files go: a local folder, an SFTP server. `content` is the bytes, or a staged file holding them."""

    def put(self, name: str, content: bytes | StagedFile) -> None: ...

    def exists(self, name: str) -> bool: ...

    def identity(self, name: str) -> dict | None:
        """What tells this file from a rewritten one without reading it (size, mtime, inode where there is one); None when absent."""
        ...

    def read(self, name: str) -> bytes | None:
        """The file's bytes as the marketplace would fetch them; None when absent."""
        ...

    def describe(self, name: str) -> str: ...


class LocalFolder:
    def __init__(self, folder: Path):
        self.folder = folder

    def put(self, name: str, content: bytes | StagedFile) -> None:
        write_if_changed(self.folder / name, content)

    def exists(self, name: str) -> bool:
        return (self.folder / name).exists()

    def identity(self, name: str) -> dict | None:
        try:
            status = (self.folder / name).stat()
        except (FileNotFoundError, NotADirectoryError):  # no file there (the folder itself may be gone or not a folder)
            return None
        return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "inode": status.st_ino}

    def read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None

    def describe(self, name: str) -> str:
        return str(self.folder / name)


@dataclass
class SnapshotOutcome:
    """One file's delivery: where it went, whether it was sent, the error if it failed, and the SHA-256 of the bytes the
    marketplace should now hold (with the local copy of them, for the drift oracle to read when the two differ)."""

    file: str
    sent: bool
    error: str | None = None
    sha256: str | None = None
    expected: Path | None = None
    name: str = ""


def _identity_text(destination: Destination, name: str) -> str | None:
    """The delivered file's identity as the ledger keeps it: the oracle reads the file back only when it changed since."""
    identity = destination.identity(name)
    return json.dumps({"identity": identity}, sort_keys=True) if identity is not None else None


def verified(engine: Engine, destination: Destination, marketplace: str, dealer_id: str, name: str, digest: str) -> bool:
    """Whether the destination holds exactly these bytes, known without reading them: acknowledged as these bytes, and the
    file untouched since (same identity as when it was written or last read back)."""
    row = ledger.ledger_rows(engine, marketplace, dealer_id, {f"file:{name}"}).get(f"file:{name}")
    if not row or row["status"] != ListingStatus.ACKNOWLEDGED or row["content_hash"] != digest or not row.get("content"):
        return False
    identity = destination.identity(name)
    return identity is not None and json.loads(row["content"]).get("identity") == identity


def record_verified(engine: Engine, destination: Destination, marketplace: str, dealer_id: str, name: str, digest: str) -> None:
    """The file was read back and holds exactly `digest`: acknowledged, with its identity now."""
    ledger.mark_acknowledged(engine, marketplace, dealer_id, f"file:{name}", digest, content=_identity_text(destination, name))


def deliver_file(
    engine: Engine,
    destination: Destination,
    marketplace: str,
    dealer_id: str,
    name: str,
    content: bytes | StagedFile,
    run_id: str | None = None,
    trigger: str | None = None,
    change_seen_at=None,
) -> SnapshotOutcome:
    """Send `content` as `name` unless the destination holds these exact bytes, untouched since they were written (`verified`)."""
    digest = content.sha256 if isinstance(content, StagedFile) else hashlib.sha256(content).hexdigest()
    key = f"file:{name}"
    if verified(engine, destination, marketplace, dealer_id, name, digest):
        return SnapshotOutcome(destination.describe(name), sent=False, sha256=digest, name=name)
    started = ledger.now()
    ledger.mark_pending(engine, marketplace, dealer_id, key, digest)
    try:
        destination.put(name, content)
    except Exception as error:  # any destination fault: recorded, retried on the next run
        message = f"{type(error).__name__}: {error}"
        ledger.mark_failed(engine, marketplace, dealer_id, key, message)
        ledger.log_delivery(
            engine,
            run_id=run_id,
            marketplace=marketplace,
            dealer_id=dealer_id,
            item_key=key,
            action="file",
            content_hash=digest,
            outcome="failed",
            calls=1,
            error=message,
            trigger=trigger,
            started_at=started,
            change_seen_at=change_seen_at,
        )
        return SnapshotOutcome(destination.describe(name), sent=False, error=message, sha256=digest, name=name)
    ledger.mark_acknowledged(engine, marketplace, dealer_id, key, digest, content=_identity_text(destination, name))
    ledger.log_delivery(
        engine,
        run_id=run_id,
        marketplace=marketplace,
        dealer_id=dealer_id,
        item_key=key,
        action="file",
        content_hash=digest,
        outcome="ok",
        calls=1,
        trigger=trigger,
        started_at=started,
        change_seen_at=change_seen_at,
    )
    return SnapshotOutcome(destination.describe(name), sent=True, sha256=digest, name=name)
