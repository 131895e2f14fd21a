"""A real PostgreSQL server for the tests, in a temporary directory, on a loopback port.

initdb and pg_ctl come from the distribution's PostgreSQL packages (on PATH, or under
/usr/lib/postgresql/<version>/bin where Debian puts them; `.ci/run` installs them). initdb
refuses to run as root, so as root the cluster belongs to `nobody` (its directory made for
it) and both commands run through runuser. Durability is switched off: the server dies with
the test session, and fsync would only make every commit slower.

Connections over TCP need the password (scram-sha-256), so a wrong one is really refused;
each test gets a database of its own (`new_database`).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

USER = "switchboard"
PASSWORD = "test-secret-not-for-production"
_RUN_AS_WHEN_ROOT = "nobody"


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path is not None and shutil.which("pg_ctl") is not None:
        return Path(on_path).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    binaries: Path
    directory: Path
    port: int = 0
    _names: count[int] = field(default_factory=lambda: count(1))

    @property
    def _as_user(self) -> list[str]:
        return ["runuser", "-u", _RUN_AS_WHEN_ROOT, "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as_user, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, _RUN_AS_WHEN_ROOT)
        data = self.directory / "data"
        password_file = self.directory / "password"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, _RUN_AS_WHEN_ROOT)
        self._run(
            str(self.binaries / "initdb"),
            "-D", str(data), "-U", USER, f"--pwfile={password_file}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        self.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        self._run(
            str(self.binaries / "pg_ctl"), "-D", str(data), "-l", str(self.directory / "log"),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip

    def stop(self) -> None:
        data = self.directory / "data"
        try:
            self._run(str(self.binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def dsn(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={USER} password={password}"
            f" dbname={database} connect_timeout=5"
        )

    def new_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg

        name = f"sb_test_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            # FILE_COPY: with fsync off, copying the template's files beats WAL-logging them.
            admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.dsn(name)


def start_server() -> PostgresServer | None:
    """A running server, or None when PostgreSQL is not installed here."""
    binaries = find_binaries()
    if binaries is None:
        return None
    server = PostgresServer(binaries, Path(tempfile.mkdtemp(prefix="sb-postgres-")))
    try:
        server.start()
    except BaseException:
        shutil.rmtree(server.directory, ignore_errors=True)
        raise
    return server
