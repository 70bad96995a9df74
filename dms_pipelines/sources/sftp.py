"""An SFTP server as a DMS export source (paramiko): verified host keys, key authentication, timeouts and a watchdog."""

import base64
import fnmatch
import hashlib
import io
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import paramiko
from paramiko.buffered_pipe import BufferedPipe

from dms_pipelines.sources.base import EMPTY_FILE, RemoteFile, SourceError, is_in_progress_name, matches_any

KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
PREFETCH_REQUESTS = 1024  # bounded (x 32 KiB requests = at most ~32 MiB in flight); 64 starved the pipe to ~5 MB/s


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class SftpSettings:
    """Everything needed to reach one SFTP folder; secrets are held here only in memory and never shown."""

    host: str
    username: str
    known_hosts: Path
    port: int = 22
    remote_dir: str = "."
    patterns: tuple[str, ...] = ("*",)
    private_key_path: Path | None = None
    private_key_text: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 15.0
    channel_timeout: float = 30.0
    transfer_timeout: float = 600.0
    keepalive_interval: int = 30
    marker_pattern: str | None = None
    after_fetch: str = "keep"
    move_to: str | None = None

    @classmethod
    def from_config(cls, config, environ=None, resolve=Path) -> "SftpSettings":
        """From a `config.SftpSource` or `config.SftpUploadDestination`, reading secrets from the variables it names."""
        environ = os.environ if environ is None else environ

        def secret(name: str | None) -> str | None:
            if name is None:
                return None
            value = environ.get(name)
            if not value:
                raise SourceError(f"environment variable {name} is not set (it should hold the SFTP credential for {config.username}@{config.host})", transient=False)
            return value

        return cls(
            host=config.host,
            port=config.port,
            username=config.username,
            known_hosts=resolve(config.known_hosts),
            remote_dir=config.remote_dir,
            patterns=tuple(getattr(config, "patterns", ["*"])),
            private_key_path=resolve(config.private_key_path) if config.private_key_path else None,
            private_key_text=secret(config.private_key_env),
            password=secret(config.password_env),
            connect_timeout=config.connect_timeout,
            channel_timeout=config.channel_timeout,
            transfer_timeout=config.transfer_timeout,
            keepalive_interval=config.keepalive_interval,
            marker_pattern=getattr(config, "marker_pattern", None),
            after_fetch=getattr(config, "after_fetch", "keep"),
            move_to=getattr(config, "move_to", None),
        )

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if self.port != 22 else self.host


class RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Never trust a host key on first use: refuse, and name the fingerprint so an operator can verify it."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        raise SourceError(
            f"host key for {hostname} is not in known_hosts {self.known_hosts}; offered {key.get_name()} {fingerprint(key)}; verify it out of band and add it (ssh-keyscan) before connecting",
            transient=False,
        )


def load_private_key(settings: SftpSettings) -> paramiko.PKey | None:
    if settings.private_key_path is None and settings.private_key_text is None:
        return None
    errors = []
    for key_class in KEY_CLASSES:
        try:
            if settings.private_key_text is not None:
                return key_class.from_private_key(io.StringIO(settings.private_key_text))
            return key_class.from_private_key_file(str(settings.private_key_path))
        except (paramiko.SSHException, ValueError) as error:
            errors.append(type(error).__name__)
        except OSError as error:
            raise SourceError(f"cannot read private key {settings.private_key_path}: {error.strerror}", transient=False) from None
    where = "from the environment variable" if settings.private_key_text is not None else str(settings.private_key_path)
    raise SourceError(f"private key {where} is not an Ed25519, ECDSA or RSA key paramiko can read (or it is encrypted)", transient=False)


class FrontTrimmedPipe(BufferedPipe):
    """paramiko's channel buffer on a bytearray: paramiko's own array('B') copies everything still buffered on every read.

    During a prefetched download megabytes sit in the buffer and SFTP reads it a few bytes at a time, so those copies
    were a third of the download's CPU. CPython trims a bytearray's front without copying the rest.
    """

    def __init__(self):
        super().__init__()
        self._buffer = bytearray()

    def _buffer_frombytes(self, data):
        self._buffer += data

    def _buffer_tobytes(self, limit=None):
        return bytes(self._buffer[:limit])


class SftpSource:
    """Lists and downloads export files from one remote folder; one connection per instance, closed by close()."""

    def __init__(self, settings: SftpSettings):
        self.settings = settings
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self.markers: set[str] = set()
        self.refused: list[RemoteFile] = []

    def __repr__(self) -> str:
        return f"SftpSource({self.settings.username}@{self.settings.endpoint}:{self.settings.remote_dir})"

    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        settings = self.settings
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(settings.known_hosts))
        except OSError as error:
            raise SourceError(f"cannot read known_hosts {settings.known_hosts}: {error.strerror}", transient=False) from None
        client.set_missing_host_key_policy(RefuseUnknownHost(settings.known_hosts))
        try:
            client.connect(
                settings.host,
                port=settings.port,
                username=settings.username,
                pkey=load_private_key(settings),
                password=settings.password,
                timeout=settings.connect_timeout,
                banner_timeout=settings.connect_timeout,
                auth_timeout=settings.connect_timeout,
                channel_timeout=settings.channel_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except SourceError:
            client.close()
            raise
        except paramiko.BadHostKeyException as error:
            client.close()
            raise SourceError(
                f"host key for {settings.endpoint} CHANGED: known_hosts {settings.known_hosts} expects {error.expected_key.get_name()} "
                f"{fingerprint(error.expected_key)}, the server offered {error.key.get_name()} {fingerprint(error.key)}; refused "
                "(a reinstalled server or an attack: verify before updating known_hosts)",
                transient=False,
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise SourceError(f"authentication as {settings.username} on {settings.endpoint} failed (key or password refused)", transient=False) from None
        except (OSError, paramiko.SSHException, EOFError) as error:
            client.close()
            raise SourceError(f"cannot connect to {settings.endpoint}: {type(error).__name__}: {error}", transient=True) from None
        transport = client.get_transport()
        if settings.keepalive_interval:
            transport.set_keepalive(settings.keepalive_interval)
        self._client = client
        channel = transport.open_session()
        channel.in_buffer = FrontTrimmedPipe()  # before the subsystem starts, so no byte arrives in the old buffer
        channel.invoke_subsystem("sftp")
        channel.settimeout(settings.channel_timeout)
        self._sftp = paramiko.SFTPClient(channel)
        return self._sftp

    def list_files(self) -> list[RemoteFile]:
        sftp = self._connect()
        folder = PurePosixPath(self.settings.remote_dir)
        try:
            entries = sftp.listdir_attr(str(folder))
        except (OSError, paramiko.SSHException) as error:
            raise SourceError(f"cannot list {folder} on {self.settings.endpoint}: {error}", transient=True) from None
        files, markers, refused = [], set(), []
        for entry in entries:
            name = entry.filename
            link = stat.S_ISLNK(entry.st_mode or 0)  # the server lists entries as lstat sees them: a link is not followed
            if not (link or stat.S_ISREG(entry.st_mode or 0)) or "/" in name or name in (".", ".."):
                continue
            if self.settings.marker_pattern and _is_marker(name, self.settings.marker_pattern):
                if not link:
                    markers.add(name)
                continue
            if is_in_progress_name(name) or not matches_any(name, list(self.settings.patterns)):
                continue
            remote = RemoteFile(path=str(folder / name), name=name, size=int(entry.st_size or 0), mtime=float(entry.st_mtime or 0))
            if link:
                refused.append(RemoteFile(remote.path, name, remote.size, remote.mtime, "is a symbolic link on the server; refused (exports are never links)"))
            elif not remote.size:
                refused.append(RemoteFile(remote.path, name, 0, remote.mtime, EMPTY_FILE))
            else:
                files.append(remote)
        self.markers, self.refused = markers, refused
        return sorted(files, key=lambda f: (f.mtime, f.name))

    def fetch(self, remote: RemoteFile, destination: Path) -> None:
        """Download with an outer wall-clock watchdog: paramiko does not always honour its timeout when a server stalls."""
        sftp = self._connect()
        try:
            linked = stat.S_ISLNK(sftp.lstat(remote.path).st_mode or 0)
        except (OSError, paramiko.SSHException) as error:
            raise SourceError(f"cannot stat {remote.path} on {self.settings.endpoint}: {error}", transient=True) from None
        if linked:  # swapped for a link since the listing: opening it would follow the link
            raise SourceError(f"{remote.path} is a symbolic link on the server; refused (exports are never links)", transient=False)
        timed_out = threading.Event()

        def stop_stalled_transfer() -> None:
            timed_out.set()
            self._abort()

        watchdog = threading.Timer(self.settings.transfer_timeout, stop_stalled_transfer)
        watchdog.daemon = True
        watchdog.start()
        try:
            with destination.open("wb") as handle:
                sftp.getfo(remote.path, handle, prefetch=True, max_concurrent_prefetch_requests=PREFETCH_REQUESTS)
        except (OSError, paramiko.SSHException, EOFError) as error:
            if timed_out.is_set():
                raise SourceError(f"transfer of {remote.path} from {self.settings.endpoint} timed out after {self.settings.transfer_timeout:g} s", transient=True) from None
            raise SourceError(f"download of {remote.path} from {self.settings.endpoint} failed: {type(error).__name__}: {error}", transient=True) from None
        finally:
            watchdog.cancel()
        if timed_out.is_set():
            raise SourceError(f"transfer of {remote.path} from {self.settings.endpoint} timed out after {self.settings.transfer_timeout:g} s", transient=True)
        size = destination.stat().st_size
        if size != remote.size:
            raise SourceError(f"size mismatch for {remote.path}: got {size} of {remote.size} bytes (still being written?)", transient=True)

    def finish(self, remote: RemoteFile) -> None:
        """Keep (default), move into move_to, or delete the remote file once it is safely landed."""
        if self.settings.after_fetch == "keep":
            return
        sftp = self._connect()
        try:
            if self.settings.after_fetch == "delete":
                sftp.remove(remote.path)
            else:
                sftp.posix_rename(remote.path, str(PurePosixPath(self.settings.move_to) / remote.name))
        except (OSError, paramiko.SSHException) as error:
            raise SourceError(f"cannot {self.settings.after_fetch} {remote.path} on {self.settings.endpoint}: {error}", transient=True) from None

    def _abort(self) -> None:
        try:
            if self._client is not None:
                self._client.close()
        finally:
            self._client = None
            self._sftp = None

    def close(self) -> None:
        self._abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_marker(name: str, marker_pattern: str) -> bool:
    return fnmatch.fnmatch(name, marker_pattern.replace("{name}", "*").replace("{stem}", "*"))
