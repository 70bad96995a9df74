"""The SFTP destination: upload to a temporary name, check the size, then posix_rename over the old file."""

import io
import os
import uuid
from pathlib import PurePosixPath

import paramiko

from dms_pipelines.paths import DataPaths
from dms_pipelines.sources.base import SourceError
from dms_pipelines.sources.sftp import SftpSettings, SftpSource


class SftpDestination:
    """A marketplace's SFTP drop: a reader polling the folder never sees half a file."""

    def __init__(self, settings: SftpSettings):
        self.settings = settings

    @classmethod
    def from_config(cls, config, paths: DataPaths, environ=None) -> "SftpDestination":
        environ = os.environ if environ is None else environ

        def secret(name):
            if name is None:
                return None
            if not environ.get(name):
                raise SourceError(f"environment variable {name} is not set (it should hold the SFTP credential for {config.username}@{config.host})", transient=False)
            return environ[name]

        return cls(
            SftpSettings(
                host=config.host, port=config.port, username=config.username, known_hosts=paths.resolve(config.known_hosts),
                remote_dir=config.remote_dir, private_key_path=paths.resolve(config.private_key_path) if config.private_key_path else None,
                private_key_text=secret(config.private_key_env), password=secret(config.password_env),
                connect_timeout=config.connect_timeout, channel_timeout=config.channel_timeout,
                transfer_timeout=config.transfer_timeout, keepalive_interval=config.keepalive_interval,
            )
        )

    def put(self, name: str, content: bytes) -> None:
        final = str(PurePosixPath(self.settings.remote_dir) / name)
        temporary = str(PurePosixPath(self.settings.remote_dir) / f".{name}.{uuid.uuid4().hex[:8]}.part")
        with SftpSource(self.settings) as connection:
            sftp = connection._connect()
            try:
                sftp.putfo(io.BytesIO(content), temporary, file_size=len(content), confirm=True)
                size = sftp.stat(temporary).st_size
                if size != len(content):
                    raise SourceError(f"upload of {name} to {self.settings.endpoint}: {size} of {len(content)} bytes arrived", transient=True)
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

    def describe(self, name: str) -> str:
        return f"sftp://{self.settings.username}@{self.settings.endpoint}{PurePosixPath(self.settings.remote_dir) / name}"
