"""Snapshot delivery: a whole feed file goes to its destination only when its content differs from what was acknowledged."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine

from dms_pipelines.delivery import ledger
from dms_pipelines.delivery.local import write_if_changed
from dms_pipelines.delivery.staging import StagedFile

ACCOUNT = "*"  # dealer id used in the ledger for an account-wide file such as Google's


class Destination(Protocol):
    """Where snapshot files go: a local folder, an SFTP server. `content` is the bytes, or a staged file holding them."""

    def put(self, name: str, content: bytes | StagedFile) -> None: ...

    def exists(self, name: str) -> bool: ...

    def describe(self, name: str) -> str: ...


class LocalFolder:
    def __init__(self, folder: Path):
        self.folder = folder

    def put(self, name: str, content: bytes | StagedFile) -> None:
        write_if_changed(self.folder / name, content)

    def exists(self, name: str) -> bool:
        return (self.folder / name).exists()

    def describe(self, name: str) -> str:
        return str(self.folder / name)


@dataclass
class SnapshotOutcome:
    file: str
    sent: bool
    error: str | None = None


def acknowledged(engine: Engine, destination: Destination, marketplace: str, dealer_id: str, name: str, digest: str) -> bool:
    """Whether the marketplace acknowledged exactly these bytes as `name`, and the file is still there."""
    row = ledger.ledger_rows(engine, marketplace, dealer_id).get(f"file:{name}")
    return bool(row and row["status"] == "acknowledged" and row["content_hash"] == digest and destination.exists(name))


def deliver_file(
    engine: Engine, destination: Destination, marketplace: str, dealer_id: str, name: str, content: bytes | StagedFile,
    run_id: str | None = None, trigger: str | None = None, change_seen_at=None,
) -> SnapshotOutcome:
    """Send `content` as `name` unless the marketplace already acknowledged these exact bytes and the file is still there."""
    digest = content.sha256 if isinstance(content, StagedFile) else hashlib.sha256(content).hexdigest()
    key = f"file:{name}"
    if acknowledged(engine, destination, marketplace, dealer_id, name, digest):
        return SnapshotOutcome(destination.describe(name), sent=False)
    started = ledger.now()
    ledger.mark_pending(engine, marketplace, dealer_id, key, digest)
    try:
        destination.put(name, content)
    except Exception as error:  # any destination fault: recorded, retried on the next run
        message = f"{type(error).__name__}: {error}"
        ledger.mark_failed(engine, marketplace, dealer_id, key, message)
        ledger.log_delivery(engine, run_id=run_id, marketplace=marketplace, dealer_id=dealer_id, item_key=key, action="file", content_hash=digest, outcome="failed", calls=1, error=message, trigger=trigger, started_at=started, change_seen_at=change_seen_at)
        return SnapshotOutcome(destination.describe(name), sent=False, error=message)
    ledger.mark_acknowledged(engine, marketplace, dealer_id, key, digest)
    ledger.log_delivery(engine, run_id=run_id, marketplace=marketplace, dealer_id=dealer_id, item_key=key, action="file", content_hash=digest, outcome="ok", calls=1, trigger=trigger, started_at=started, change_seen_at=change_seen_at)
    return SnapshotOutcome(destination.describe(name), sent=True)

