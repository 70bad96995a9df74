"""A local folder as a DMS export source: the embedded default and the demo's inbox."""

import errno
import os
import shutil
import stat
from pathlib import Path

from dms_pipelines.sources.base import EMPTY_FILE, RemoteFile, SourceError, is_in_progress_name, shown

NOT_UTF8 = "its name is not valid UTF-8; refused (rename the file at the source)"


class LocalInboxSource:
    """Lists and copies export files from one folder; never deletes or moves them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.refused: list[RemoteFile] = []

    def list_files(self) -> list[RemoteFile]:
        """Regular files, never following a link: a symbolic link or an empty file goes to `refused` with its reason."""
        self.refused = []
        if not self.folder.exists():
            return []
        folder = self.folder.resolve()
        files = []
        for entry in self.folder.iterdir():
            if is_in_progress_name(entry.name):
                continue
            try:
                info = entry.lstat()
            except FileNotFoundError:
                continue  # renamed or removed since the folder was read
            remote = RemoteFile(path=str(folder / entry.name), name=entry.name, size=info.st_size, mtime=info.st_mtime)
            if not entry.name.isascii() and not _utf8(entry.name):  # never fetched: the path kept is one the manifest can hold
                self.refused.append(RemoteFile(shown(remote.path), remote.name, info.st_size, info.st_mtime, NOT_UTF8))
            elif stat.S_ISLNK(info.st_mode):
                self.refused.append(RemoteFile(remote.path, remote.name, info.st_size, info.st_mtime, _link_problem(entry)))
            elif not stat.S_ISREG(info.st_mode):
                continue  # folders, sockets, pipes: never exports
            elif info.st_size == 0:
                self.refused.append(RemoteFile(remote.path, remote.name, 0, info.st_mtime, EMPTY_FILE))
            else:
                files.append(remote)
        return sorted(files, key=lambda f: (f.mtime, f.name))

    def fetch(self, remote: RemoteFile, destination: Path) -> None:
        """Copy a regular file, opened without following a link (one swapped in since the listing is refused)."""
        try:
            descriptor = os.open(remote.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise SourceError(f"{remote.path} is a symbolic link; refused (exports are never links)", transient=False) from None
            raise SourceError(f"cannot copy {remote.path}: {error.strerror}", transient=True) from None
        with os.fdopen(descriptor, "rb") as source:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise SourceError(f"{remote.path} is not a regular file; refused", transient=False)
            try:
                with destination.open("wb") as copy:
                    _copy(descriptor, source, copy)
            except OSError as error:
                raise SourceError(f"cannot copy {remote.path}: {error.strerror}", transient=True) from None
        copied = destination.stat().st_size
        if copied != remote.size:
            raise SourceError(f"{remote.path} changed while being copied: got {copied} of {remote.size} bytes", transient=True)

    def finish(self, remote: RemoteFile) -> None:
        """The inbox keeps its files; landing is idempotent by checksum."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _link_problem(entry: Path) -> str:
    try:
        target = f" (to {os.readlink(entry)})"
    except OSError:
        target = ""
    return f"is a symbolic link{target}; refused (exports are never links: a link can point the pipeline at any file on this machine)"


def _copy(descriptor: int, source, copy) -> None:
    """In the kernel (sendfile, as shutil.copyfile does) from the descriptor already opened, else through a buffer."""
    try:
        while os.sendfile(copy.fileno(), descriptor, None, 1 << 30):
            pass
    except (AttributeError, OSError) as error:
        if isinstance(error, OSError) and (error.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP) or copy.tell()):
            raise
        shutil.copyfileobj(source, copy, 1 << 20)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as lone surrogates
        return False
    return True
