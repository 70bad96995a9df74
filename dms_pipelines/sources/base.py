"""The interface every DMS export source implements: list what is there, fetch one file."""

import fnmatch
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

IN_PROGRESS_PATTERNS = (".*", "*.tmp", "*.part", "*.filepart")
EMPTY_FILE = "empty file (0 bytes); refused (an export always has at least a header: was it written at all?)"
CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")  # controls, format (bidi) characters, line/paragraph separators, undecodable bytes


@dataclass(frozen=True)
class RemoteFile:
    """One file as a source lists it: enough to decide readiness and build a run key."""

    path: str  # path as the source knows it (remote path for SFTP, absolute path for the inbox)
    name: str  # base name, never containing a folder separator
    size: int
    mtime: float
    problem: str | None = None  # why it must not be taken (a symbolic link, an empty file): recorded as failed once ready

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

    refused: list[RemoteFile]  # from the last listing: entries never to take (each with its `problem`), to report once

    def list_files(self) -> list[RemoteFile]:
        """Every candidate file (in-progress names excluded; symbolic links and empty files go to `refused` instead)."""
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


def shown(name: str) -> str:
    """An untrusted name as it may go into a message or a log line: unchanged unless it holds a backslash or a character
    that is not printable (a newline, an ANSI escape, a bidi override, an undecodable byte); those are written as Python
    escapes (\\n, \\x1b, \\u202e, \\\\), so no name can start a forged log line or disguise itself."""
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(_escaped(c) for c in name)


def _escaped(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")


def name_problem(name: str) -> str | None:
    """Why a name must not be landed: control or format characters (newlines, escapes, bidi overrides) that no DMS
    export name holds and that would make the name mean something else wherever it is shown; None for a good name."""
    odd = sorted({f"U+{ord(c):04X}" + (f" {unicodedata.name(c, '')}".rstrip()) for c in name if unicodedata.category(c) in CONTROL_CATEGORIES})
    return f"its name holds control or undecodable characters ({', '.join(odd)}); refused (rename the file at the source)" if odd else None
