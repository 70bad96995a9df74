"""The interface every DMS export source implements: list what is there, fetch one file."""

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

IN_PROGRESS_PATTERNS = (".*", "*.tmp", "*.part", "*.filepart")


@dataclass(frozen=True)
class RemoteFile:
    """One file as a source lists it: enough to decide readiness and build a run key."""

    path: str  # path as the source knows it (remote path for SFTP, absolute path for the inbox)
    name: str  # base name, never containing a folder separator
    size: int
    mtime: float

    @property
    def key(self) -> str:
        return f"{self.path}:{self.size}:{int(self.mtime)}"


class SourceError(Exception):
    """A source could not be listed or read; `transient` says whether retrying may help."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class Source(Protocol):
    """A place DMS exports appear: a local inbox folder or an SFTP server."""

    def list_files(self) -> list[RemoteFile]:
        """Every candidate file (in-progress names and empty files already excluded)."""
        ...

    def fetch(self, remote: RemoteFile, destination: Path) -> None:
        """Copy `remote` to the local path `destination` (which the caller later renames)."""
        ...

    def close(self) -> None: ...


def is_in_progress_name(name: str) -> bool:
    """True for names a writer uses while a file is still being written (`.x`, `*.tmp`, `*.part`, `*.filepart`)."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in IN_PROGRESS_PATTERNS)


def matches_any(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
