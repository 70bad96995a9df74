"""Throwaway production servers on loopback for the tests: a PostgreSQL cluster, a Redis server and dagster-celery workers."""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from dms_pipelines.devtools.sshd_harness import free_port

POSTGRES_INSTALL = "PostgreSQL's server (initdb, postgres) is not installed (apt-get install postgresql); `make test` and .ci/run install it"
REDIS_INSTALL = "Redis is not installed (apt-get install redis-server); `make test` and .ci/run install it"
SERVER_USERS = ("postgres", "nobody")  # initdb and postgres refuse to run as root: the cluster runs as the first that exists
CELERY_QUEUE = "dagster"  # the queue dagster-celery's executor sends steps to


def find_postgres() -> tuple[Path | None, str]:
    """The folder holding initdb and postgres (on PATH, else the newest /usr/lib/postgresql/N/bin), or None and why not."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "postgres")):
            return folder, ""
    return None, POSTGRES_INSTALL


def find_redis() -> tuple[str | None, str]:
    """The redis-server binary, or None and why not."""
    for candidate in (shutil.which("redis-server") or "", "/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    return None, REDIS_INSTALL


def _dies_with_parent(sig: int):
    """A preexec function: the child gets `sig` when the thread that started it ends (a killed test session leaves no
    server behind). Linux only; elsewhere nothing. Start servers from the main thread: the signal follows the thread."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child may run as a user who cannot read our files

    def arrange() -> None:
        prctl(1, int(sig))  # PR_SET_PDEATHSIG

    return arrange


def _wait_for_port(host: str, port: int, process: subprocess.Popen, what: str, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {seconds:.0f} s: {_tail(log)}")


def _tail(log: Path, characters: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-characters:]
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen | None, first: int = signal.SIGTERM, group: bool = False, seconds: float = 15) -> None:
    """Stop a process this harness started (its own process group with `group`): `first`, then SIGKILL after `seconds`."""
    if process is None or process.poll() is not None:
        return
    send = (lambda sig: os.killpg(process.pid, sig)) if group else process.send_signal
    try:
        send(first)
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
    if group:  # a child left behind in the group (a Celery pool process) goes too
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class PostgresServer:
    """A PostgreSQL cluster of its own (initdb in a temporary folder) on 127.0.0.1:<free port>, trust authentication for
    the superuser `dms` on loopback only, its unix socket in the same folder; as a non-root user when run as root."""

    user = "dms"

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.base: Path | None = None
        self.process: subprocess.Popen | None = None
        self.run_as: str | None = None

    def start(self) -> "PostgresServer":
        binaries, reason = find_postgres()
        if binaries is None:
            raise RuntimeError(reason)
        # Under /tmp, not under a test's tmp_path: a unix socket path has at most 107 bytes, and the server's user must be
        # able to reach the folder (pytest's are private to root).
        self.base = Path(tempfile.mkdtemp(prefix="dms-pg-"))
        try:
            return self._start(binaries)
        except BaseException:
            self.stop()
            raise

    def _start(self, binaries: Path) -> "PostgresServer":
        data, log = self.base / "data", self.base / "postgres.log"
        owner = {}
        if os.geteuid() == 0:
            self.run_as = next((name for name in SERVER_USERS if _user_exists(name)), None)
            if self.run_as is None:
                raise RuntimeError(f"running as root, and none of the users {', '.join(SERVER_USERS)} exists to run PostgreSQL as")
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            owner = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        initdb = subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True,
            text=True,
            env=environment,
            cwd=self.base,
            **owner,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}): {(initdb.stdout + initdb.stderr)[-2000:]}")
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.base),
            "max_connections": "300",  # Dagster's storage, each worker's steps and each run's engine hold connections at once
            "fsync": "off",  # a throwaway cluster: nothing to keep after a crash
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        arguments = [argument for name, value in settings.items() for argument in ("-c", f"{name}={value}")]
        with open(log, "wb") as output:
            if owner:
                os.chown(log, owner["user"], owner["group"])
            self.process = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), *arguments], stdout=output, stderr=subprocess.STDOUT, env=environment, cwd=self.base, preexec_fn=_dies_with_parent(signal.SIGINT), **owner
            )
        _wait_for_port(self.host, self.port, self.process, "postgres", log)
        self._wait_for_connections(log)
        return self

    def _wait_for_connections(self, log: Path, seconds: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + seconds
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as error:  # "the database system is starting up"
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"postgres does not accept connections: {error}; {_tail(log)}") from None
                time.sleep(0.05)

    def dsn(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def url(self, database: str, driver: str = "psycopg") -> str:
        """A SQLAlchemy URL for the database (psycopg 3; `driver="psycopg2"` for the one dagster-postgres uses)."""
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its name."""
        import psycopg

        name = name or f"db_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        _stop(self.process, first=signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        self.process = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, nothing persisted (no RDB snapshots, no append-only file)."""

    def __init__(self):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.base: Path | None = None
        self.process: subprocess.Popen | None = None
        self._next_db = 0

    def start(self) -> "RedisServer":
        binary, reason = find_redis()
        if binary is None:
            raise RuntimeError(reason)
        self.base = Path(tempfile.mkdtemp(prefix="dms-redis-"))
        try:
            return self._start(binary)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: str) -> "RedisServer":
        log = self.base / "redis.log"
        command = [binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no", "--dir", str(self.base), "--databases", "64", "--protected-mode", "yes"]
        with open(log, "wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=self.base, preexec_fn=_dies_with_parent(signal.SIGTERM))
        _wait_for_port(self.host, self.port, self.process, "redis-server", log)
        deadline = time.monotonic() + 15
        while self.ping() != b"+PONG\r\n":  # it listens before it has loaded (nothing, here)
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server does not answer PING: {_tail(log)}")
            time.sleep(0.05)
        return self

    def ping(self) -> bytes:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64)
        except OSError:
            return b""

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def new_db(self) -> int:
        """A database number no earlier caller was given (a test's broker and backend never see another test's messages)."""
        self._next_db += 1
        if self._next_db >= 64:
            raise RuntimeError("redis-server: all 64 databases handed out")
        return self._next_db

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class CeleryWorkers:
    """`count` Celery workers for dagster-celery, one step at a time each, on the broker: what `dagster-celery worker start
    -A dagster_celery.app -y celery.yaml` starts (a `dagster_celery_config` module with the broker and backend, then
    `celery -A dagster_celery.app worker -Q dagster`), each its own process group, with the environment given (DAGSTER_HOME,
    the data root, the operational database's URL, the secrets)."""

    def __init__(self, base: Path, broker: str, backend: str, env: dict[str, str], count: int = 2, cwd: Path | None = None):
        self.base = Path(base)
        self.broker, self.backend = broker, backend
        self.env = dict(env)
        self.count = count
        self.cwd = cwd
        self.names = [f"dms-{uuid.uuid4().hex[:6]}-{index + 1}" for index in range(count)]
        self.processes: list[subprocess.Popen] = []

    def start(self, seconds: float = 90) -> "CeleryWorkers":
        config = self.base / "config"
        config.mkdir(parents=True, exist_ok=True)
        # dagster_celery.app reads this module when it is importable, as `dagster-celery worker start` arranges
        (config / "dagster_celery_config.py").write_text(f"broker_url = {self.broker!r}\nresult_backend = {self.backend!r}\n")
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(config), env.get("PYTHONPATH", "")]))
        try:
            for name in self.names:
                with open(self.base / f"{name}.log", "wb") as log:
                    arguments = [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "dagster_celery.app",
                        "worker",
                        "--prefetch-multiplier=1",
                        "--concurrency=1",
                        "-Q",
                        CELERY_QUEUE,
                        "-n",
                        f"{name}@%h",
                        "-l",
                        "WARNING",
                    ]
                    process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd, start_new_session=True, preexec_fn=_dies_with_parent(signal.SIGTERM))
                self.processes.append(process)
            self._wait_until_ready(seconds)
        except BaseException:
            self.stop()
            raise
        return self

    def _app(self):
        from dagster_celery.executor import CeleryExecutor
        from dagster_celery.make_app import make_app

        return make_app(CeleryExecutor.for_cli(broker=self.broker, backend=self.backend).app_args())

    def _wait_until_ready(self, seconds: float) -> None:
        app = self._app()
        deadline = time.monotonic() + seconds
        try:
            while True:
                for name, process in zip(self.names, self.processes):
                    if process.poll() is not None:
                        raise RuntimeError(f"celery worker {name} exited with {process.returncode}: {_tail(self.base / f'{name}.log')}")
                answered = {host.split("@", 1)[0] for reply in app.control.ping(timeout=0.5) or [] for host in reply}
                if set(self.names) <= answered:
                    return
                if time.monotonic() > deadline:
                    logs = " | ".join(_tail(self.base / f"{name}.log", 600) for name in self.names)
                    raise RuntimeError(f"celery workers {sorted(set(self.names) - answered)} did not answer within {seconds:.0f} s: {logs}")
                time.sleep(0.2)
        finally:
            app.close()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{_tail(self.base / f'{name}.log', 4000)}" for name in self.names)

    def stop(self) -> None:
        for process in self.processes:
            _stop(process, group=True, seconds=20)  # SIGTERM: Celery's warm shutdown (the step in hand finishes)
        self.processes = []

    def __enter__(self) -> "CeleryWorkers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
