"""The SFTP destination: upload to a temporary name, check the size, then posix_rename over the old file."""

import io
import uuid
from pathlib import PurePosixPath

import paramiko

from dms_pipelines.delivery.staging import StagedFile
from dms_pipelines.paths import DataPaths
from dms_pipelines.sources.base import SourceError
from dms_pipelines.sources.sftp import SftpSettings, SftpSource


class SftpDestination:
    """A marketplace's SFTP drop: a reader polling the folder never sees half a file."""

    def __init__(self, settings: SftpSettings):
        self.settings = settings

    @classmethod
    def from_config(cls, config, paths: DataPaths, environ=None) -> "SftpDestination":
        return cls(SftpSettings.from_config(config, environ, resolve=paths.resolve))

    def put(self, name: str, content: bytes | StagedFile) -> None:
        """Upload the bytes, or stream a staged file from disk."""
        final = str(PurePosixPath(self.settings.remote_dir) / name)
        temporary = str(PurePosixPath(self.settings.remote_dir) / f".{name}.{uuid.uuid4().hex[:8]}.part")
        expected = content.size if isinstance(content, StagedFile) else len(content)
        with SftpSource(self.settings) as connection, _readable(content) as source:
            sftp = connection._connect()
            try:
                sftp.putfo(source, temporary, file_size=expected, confirm=True)
                size = sftp.stat(temporary).st_size
                if size != expected:
                    raise SourceError(f"upload of {name} to {self.settings.endpoint}: {size} of {expected} bytes arrived", transient=True)
                sftp.posix_rename(temporary, final)
            except (OSError, paramiko.SSHException) as error:
                try:
                    sftp.remove(temporary)
                except (OSError, paramiko.SSHException):
                    pass
                raise SourceError(f"upload of {name} to {self.settings.endpoint} failed: {error}", transient=True) from None

    def exists(self, name: str) -> bool:
        with SftpSource(self.settings) as connection:
            try:
                connection._connect().stat(str(PurePosixPath(self.settings.remote_dir) / name))
                return True
            except FileNotFoundError:
                return False

    def identity(self, name: str) -> dict | None:
        """Size and mtime (whole seconds: what SFTP gives)."""
        with SftpSource(self.settings) as connection:
            try:
                status = connection._connect().stat(str(PurePosixPath(self.settings.remote_dir) / name))
            except FileNotFoundError:
                return None
            return {"size": status.st_size, "mtime": int(status.st_mtime or 0)}

    def read(self, name: str) -> bytes | None:
        with SftpSource(self.settings) as connection:
            buffer = io.BytesIO()
            try:
                connection._connect().getfo(str(PurePosixPath(self.settings.remote_dir) / name), buffer)
            except FileNotFoundError:
                return None
            return buffer.getvalue()

    def describe(self, name: str) -> str:
        return f"sftp://{self.settings.username}@{self.settings.endpoint}{PurePosixPath(self.settings.remote_dir) / name}"


def _readable(content: bytes | StagedFile):
    return content.path.open("rb") if isinstance(content, StagedFile) else io.BytesIO(content)
