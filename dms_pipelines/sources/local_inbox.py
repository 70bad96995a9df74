"""A local folder as a DMS export source: the embedded default and the demo's inbox."""

import shutil
from pathlib import Path

from dms_pipelines.sources.base import RemoteFile, SourceError, is_in_progress_name


class LocalInboxSource:
    """Lists and copies export files from one folder; never deletes or moves them."""

    def __init__(self, folder: Path):
        self.folder = folder

    def list_files(self) -> list[RemoteFile]:
        if not self.folder.exists():
            return []
        files = []
        for entry in self.folder.iterdir():
            if not entry.is_file() or is_in_progress_name(entry.name):
                continue
            stat = entry.stat()
            if stat.st_size == 0:
                continue
            files.append(RemoteFile(path=str(entry.resolve()), name=entry.name, size=stat.st_size, mtime=stat.st_mtime))
        return sorted(files, key=lambda f: (f.mtime, f.name))

    def fetch(self, remote: RemoteFile, destination: Path) -> None:
        try:
            shutil.copyfile(remote.path, destination)
        except OSError as error:
            raise SourceError(f"cannot copy {remote.path}: {error.strerror}", transient=True) from None
        copied = destination.stat().st_size
        if copied != remote.size:
            raise SourceError(
                f"{remote.path} changed while being copied: got {copied} of {remote.size} bytes", transient=True
            )

    def finish(self, remote: RemoteFile) -> None:
        """The inbox keeps its files; landing is idempotent by checksum."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
