"""The one atomic file writer: a hidden unique temporary sibling, its data fsynced, renamed over the final name, the folder fsynced; nothing partial is ever left under the final name."""

import contextlib
import os
import threading
import uuid
from pathlib import Path
from typing import IO, Callable, Iterator

TEMPORARY_SUFFIX = ".tmp"
WRITE_MODES = ("w", "wb", "wt", "x", "xb", "xt")

_counts_lock = threading.Lock()
_counts = {"file": 0, "directory": 0}


def _fsync(descriptor: int, kind: str) -> None:
    """The only fsync in the package's writers: the call, and its count."""
    os.fsync(descriptor)
    with _counts_lock:
        _counts[kind] += 1


def fsync_counts() -> dict[str, int]:
    """How many fsyncs this process made so far, of files' data ("file") and of folders ("directory")."""
    with _counts_lock:
        return dict(_counts)


def temporary_sibling(path: Path, suffix: str = TEMPORARY_SUFFIX) -> Path:
    """A hidden, unique name beside `path`: `.<name>.<random hex><suffix>`."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{suffix}")


def sync_file(handle: IO) -> None:
    """Flush an open file's buffers and fsync its data."""
    handle.flush()
    _fsync(handle.fileno(), "file")


def sync_path(path: Path) -> None:
    """Fsync the data of a closed file (one a library wrote by its path)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        _fsync(descriptor, "file")
    finally:
        os.close(descriptor)


def sync_directory(folder: Path) -> None:
    """Fsync a folder, so the names created, renamed or removed in it survive a crash (a no-op where folders cannot be
    opened, as on Windows)."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        _fsync(descriptor, "directory")
    finally:
        os.close(descriptor)


def rename_into_place(source: Path, target: Path, durable: bool = False) -> None:
    """Move `source` (a file in `target`'s folder) onto `target` in one step, then fsync the folder; its data is fsynced
    first unless it is `durable` already (written by this module, or synced when it was written)."""
    if not durable:
        sync_path(source)
    os.replace(source, target)
    sync_directory(Path(target).parent)


def link_into_place(source: Path, target: Path) -> None:
    """`target` becomes the durable file `source` (which stays where it is) through a hard link to a temporary sibling,
    renamed into place; no data is written. Raises OSError (nothing left behind) where the filesystem cannot link."""
    target = Path(target)
    temporary = temporary_sibling(target)
    try:
        os.link(source, temporary)
        rename_into_place(temporary, target, durable=True)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """A file object on a temporary sibling of `path`, renamed over `path` when the block ends without an error.

    The policy, the same for every file the package writes locally (every helper here follows it):

    1. The data goes to a temporary sibling of the final name (same folder, so the rename is atomic): hidden (a leading
       dot, which listings and readers skip) and unique (a random token), so concurrent writers never share one.
    2. The data is fsynced before the rename: the final name never points at bytes that are only in the page cache.
    3. The rename replaces the final name in one step (`os.replace`): a reader sees the old file or the new one, never
       a mix, and a crash at any point never leaves a partial file under the final name.
    4. The folder is fsynced after the rename, so the new name itself survives a crash; only then does the call return.
       A file is durable before anything (the ledger, the manifest, a marker) records it as written or delivered.
    5. On any error or interruption before the rename the temporary is removed, and the final name is untouched.

    A file moved or linked into place that is already durable (a staged file, synced when written) skips step 2. Every
    fsync goes through one function, which counts them by kind (`fsync_counts()`).
    """
    if mode not in WRITE_MODES:
        raise ValueError(f"atomic_write writes a new file: mode must be one of {WRITE_MODES}, not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        with open(temporary, mode.replace("w", "x") if "x" not in mode else mode, encoding=encoding) as handle:
            yield handle
            sync_file(handle)
        rename_into_place(temporary, path, durable=True)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, by the policy above."""
    with atomic_write(path) as handle:
        handle.write(data)


def replace_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Replace `path` with the file `writer` writes at the path it is given (a temporary sibling), for libraries that
    write by path (Parquet, Arrow IPC, DuckDB): fsynced, renamed into place, the folder fsynced. If `writer` raises,
    whatever it wrote is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        writer(temporary)
        rename_into_place(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
