"""A real OpenSSH server on loopback (for the SFTP tests and the SFTP benchmark): own host key, client key, known_hosts."""

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/lib/ssh/sftp-server")


def find_sshd() -> tuple[str | None, str]:
    """The sshd binary, or None and why not."""
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    return None, "OpenSSH's sshd is not installed (apt-get install openssh-server); `make test` and .ci/run install it"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


class SshServer:
    """sshd -D on 127.0.0.1:<free port> as the current user, serving SFTP with internal-sftp."""

    def __init__(self, base: Path):
        self.base = base
        self.host = "127.0.0.1"
        self.port = free_port()
        self.username = pwd.getpwuid(os.getuid()).pw_name
        self.root_dir = base / "remote"
        self.host_key = base / "ssh_host_ed25519_key"
        self.client_key_path = base / "client_key"
        self.other_key_path = base / "other_key"
        self.known_hosts = base / "known_hosts"
        self.process: subprocess.Popen | None = None

    @property
    def client_key_text(self) -> str:
        return self.client_key_path.read_text()

    @property
    def host_fingerprint(self) -> str:
        output = subprocess.run(["ssh-keygen", "-lf", str(self.host_key) + ".pub"], capture_output=True, text=True, check=True).stdout
        return output.split()[1]

    def start(self) -> "SshServer":
        sshd, reason = find_sshd()
        if sshd is None:
            raise RuntimeError(reason)
        self.base.mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(exist_ok=True)
        keygen(self.host_key, "test-host")
        keygen(self.client_key_path, "test-client")
        keygen(self.other_key_path, "not-authorised")
        authorized = self.base / "authorized_keys"
        authorized.write_text((self.client_key_path.with_suffix(".pub")).read_text())
        authorized.chmod(0o600)
        host_public = (self.host_key.with_name(self.host_key.name + ".pub")).read_text().split()
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {host_public[0]} {host_public[1]}\n")
        config = self.base / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.host}:{self.port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.base / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
        self.process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.process.stderr.read().decode()[-1000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not answer within 15 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
