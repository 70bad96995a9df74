"""Compressed exports (.gz, .zip): streamed out with a cap on the uncompressed size, so a bomb cannot fill the disk."""

import gzip
import zipfile
import zlib
from pathlib import Path, PurePosixPath

COMPRESSED_SUFFIXES = (".gz", ".zip")
CHUNK = 1 << 20


class CompressedFileError(ValueError):
    """A compressed export that cannot be safely expanded; the message names the file and the reason."""


def is_compressed(name: str) -> bool:
    return name.lower().endswith(COMPRESSED_SUFFIXES)


def inner_name(name: str) -> str:
    """The export's own name inside the compression: 'stock_full_x.csv.gz' -> 'stock_full_x.csv'."""
    lowered = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _copy_capped(source, target, limit: int, label: str) -> int:
    written = 0
    while True:
        block = source.read(CHUNK)
        if not block:
            return written
        written += len(block)
        if written > limit:
            raise CompressedFileError(f"{label}: expands past the cap of {limit:,} bytes; refused")
        target.write(block)


def decompress(path: Path, destination: Path, max_uncompressed_bytes: int, label: str | None = None) -> Path:
    """Expand `path` into `destination` (one file); never trusts sizes declared in headers."""
    label = label or path.name
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as source, destination.open("wb") as target:
                _copy_capped(source, target, max_uncompressed_bytes, label)
            return destination
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise CompressedFileError(f"{label}: a zip export must hold exactly one file, it holds {len(members)}")
            member = members[0]
            pure = PurePosixPath(member.filename.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts:
                raise CompressedFileError(f"{label}: member name {member.filename!r} would escape the landing folder; refused")
            with archive.open(member) as source, destination.open("wb") as target:
                _copy_capped(source, target, max_uncompressed_bytes, label)
            return destination
    except CompressedFileError:
        destination.unlink(missing_ok=True)
        raise
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile) as error:
        destination.unlink(missing_ok=True)
        raise CompressedFileError(f"{label}: not a readable {path.suffix} file: {error}") from None
