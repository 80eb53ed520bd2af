"""A throw-away PostgreSQL cluster for the tests of the PostgreSQL store (SPEC §12).

One cluster per pytest run (session scope): `initdb` into a temporary directory as an
unprivileged user (PostgreSQL refuses to run as root; Debian's package creates `postgres`),
started on a free loopback port with its socket in that directory, stopped and removed at the
end. Each test gets a database of its own (`fresh_database`), so tests never see each
other's data sources and need no cleanup.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

BIN_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def _binary(name: str) -> str | None:
    for directory in BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


def available() -> bool:
    return all(_binary(n) for n in ("initdb", "pg_ctl", "postgres")) and shutil.which("psql") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`url(db)` is what the agent takes as `--store`; `psql(db, sql)` runs SQL as the superuser."""

    superuser = "postgres"

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dsa-pg-"))
        self.data = self.directory / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            # The server refuses root: the cluster belongs to the unprivileged `postgres` user.
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            os.chmod(self.directory, 0o700)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_user, *command], check=True, capture_output=True, text=True, **kwargs)

    def start(self, tls_only: bool = False) -> "Cluster":
        """`tls_only`: the server has a self-signed certificate and refuses TCP clients that
        do not encrypt (`hostssl` lines only)."""
        self._run(_binary("initdb"), "-D", str(self.data), "-U", self.superuser, "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--locale=C.UTF-8")
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        if tls_only:
            self._make_certificate()
            options += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
            hba = self.data / "pg_hba.conf"
            self._run("sh", "-c", f"printf 'local all all trust\\nhostssl all all 127.0.0.1/32 trust\\n' > {hba}")
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")
        return self

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1, owned by the server's user (no client
        trusts it, so `sslmode=verify-full` must refuse it)."""
        self._run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                  "-keyout", str(self.data / "server.key"), "-out", str(self.data / "server.crt"))
        self._run("chmod", "600", str(self.data / "server.key"))

    def restart(self) -> None:
        """Restarts the server (fast shutdown: every client connection is closed)."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-l", str(self.directory / "log"), "-w", "restart")

    def stop(self) -> None:
        try:
            self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgres://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.superuser, "-d", database, "-c", sql],
            check=True, capture_output=True, text=True)
        return result.stdout.strip()

    def fresh_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return name
