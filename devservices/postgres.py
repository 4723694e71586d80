"""A real PostgreSQL server from Debian's packages, in a temporary folder.

``initdb`` with trust authentication on loopback only, a free port, and the
socket inside the work folder, so parallel runs never collide. PostgreSQL
refuses to run as root: as root, the server runs as the ``postgres`` system
user (created by Debian's postgresql-common), which then owns the folder.

``durable`` decides whether the server may lose acknowledged commits:
``True`` (the default) keeps PostgreSQL's own defaults (``fsync``,
``synchronous_commit`` and ``full_page_writes`` on), as a production server
runs and as ``make bench`` measures; ``False`` turns all three off, which is
faster and fine for tests that never crash the machine, but a figure measured
that way says nothing about a real deployment.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devservices.pki import Certificate
from devservices.process import ManagedProcess, ServiceError, free_port

SERVICE_USER = "postgres"

#: What ``durable=False`` changes: every setting that trades crash safety for speed.
UNSAFE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
#: Set either way.
COMMON_SETTINGS = {"max_connections": "200", "shared_buffers": "256MB"}
#: Reported by ``server_settings()`` (what a benchmark should name beside its figures).
REPORTED_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "wal_sync_method",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
)


def pg_bindir() -> Path:
    """The newest installed PostgreSQL's bin folder."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return Path(explicit)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise ServiceError("postgres: no server under /usr/lib/postgresql (apt-get install -y postgresql)")
    return versions[-1].parent


@dataclass
class PostgresServer:
    """One running PostgreSQL and how to reach it."""

    workdir: Path
    #: Crash-safe settings (PostgreSQL's defaults) when True; fsync, synchronous_commit and
    #: full_page_writes off when False (tests only: fast, loses commits on a machine crash).
    durable: bool = True
    host: str = "127.0.0.1"
    port: int = 0
    user: str = "postgres"
    startup_seconds: float = 0.0
    process: ManagedProcess | None = None
    #: With a certificate: ``ssl=on`` with it (its CA also checks client certificates), and TCP
    #: connections over TLS only (``hostssl``; the database ``mtls`` also asks a client certificate).
    tls: Certificate | None = None
    #: A network whose clients are trusted as on loopback (a real node's pods: devservices/node.py).
    trusted_network: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgres.log"

    def settings(self) -> dict[str, str]:
        """The ``-c`` settings this server is started with."""
        tls = {} if self.tls is None else {"ssl": "on"} | self._tls_files(self.tls)
        return ({} if self.durable else dict(UNSAFE_SETTINGS)) | COMMON_SETTINGS | tls

    def _tls_files(self, certificate: Certificate) -> dict[str, str]:
        """Copies of ``certificate``'s files the server may read (its key private to the server's user)."""
        folder = self.workdir / "tls"
        folder.mkdir(exist_ok=True)
        out = {}
        for setting, source in (("ssl_cert_file", certificate.cert), ("ssl_key_file", certificate.key),
                                ("ssl_ca_file", certificate.ca)):  # fmt: skip
            copy = folder / setting  # fixed names: use_certificate rewrites them and reloads
            shutil.copyfile(source, copy)
            copy.chmod(0o600)
            owner = self._run_as()
            if owner is not None:
                shutil.chown(copy, owner, owner)
            out[setting] = str(copy)
        return out

    def use_certificate(self, certificate: Certificate) -> None:
        """Serve ``certificate`` from the next connection on (a configuration reload, no restart)."""
        assert self.tls is not None, "a server started without TLS"
        self._tls_files(certificate)
        self.psql("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the postmaster reloads asynchronously

    def _write_hba(self) -> None:
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "hostssl mtls all 127.0.0.1/32 trust clientcert=verify-ca\n"
            "hostssl all all 127.0.0.1/32 trust\n"
        )
        owner = self._run_as()
        if owner is not None:
            shutil.chown(hba, owner, owner)

    def server_settings(self) -> dict[str, str]:
        """The running server's own view of the settings that decide durability and speed."""
        names = ", ".join(f"'{name}'" for name in REPORTED_SETTINGS)  # constants, not input
        out = self.psql(f"SELECT name, setting, unit FROM pg_settings WHERE name IN ({names}) ORDER BY name")  # noqa: S608
        settings = {}
        for line in out.splitlines():
            name, value, unit = line.split("|")
            if not unit:
                settings[name] = value
            else:  # "32768" of "8kB" units is 256 MB: say both
                settings[name] = f"{value} x {unit}" if unit[0].isdigit() else f"{value} {unit}"
        return settings

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _run_as(self) -> str | None:
        return SERVICE_USER if os.geteuid() == 0 else None

    def start(self, timeout: float = 60.0) -> None:
        started = time.monotonic()
        bindir = pg_bindir()
        self.port = self.port or free_port(self.host)
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if run_as is not None:
            try:
                account = pwd.getpwnam(run_as)
            except KeyError as exc:
                raise ServiceError(
                    f"postgres: running as root needs the '{run_as}' user (apt-get install postgresql)"
                ) from exc
            blocked = [p for p in self.workdir.parents if not os.stat(p).st_mode & 0o001]
            if blocked:
                raise ServiceError(
                    f"postgres: the '{run_as}' user cannot reach {self.workdir}: {blocked[0]} is not traversable "
                    "by others (chmod o+x it, or use a folder under /tmp made with mode 0711)"
                )
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        initdb = [
            str(bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ]
        if run_as is not None:
            initdb = ["runuser", "-u", run_as, "--", *initdb]
        result = subprocess.run(initdb, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"postgres: {' '.join(initdb)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        if self.tls is not None:
            self._write_hba()
        if self.trusted_network is not None:
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.trusted_network} trust\n")
        self._launch(timeout)
        self.startup_seconds = time.monotonic() - started

    def _launch(self, timeout: float) -> None:
        """Run the server on the initialised data folder and wait until it answers."""
        bindir = pg_bindir()
        run_as = self._run_as()
        self.process = ManagedProcess(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                str(self.workdir),
                *(arg for name, value in self.settings().items() for arg in ("-c", f"{name}={value}")),
            ],
            self.log_file,
            user=run_as,
        )
        if run_as is not None:
            self.log_file.touch()
            shutil.chown(self.log_file, run_as, run_as)
        self.process.start()
        self.process.wait_until(self._answers, timeout=timeout)

    def restart(self, timeout: float = 60.0) -> None:
        """Start the stopped server again: same data, same port (tests of sink outages)."""
        self._launch(timeout)

    def _answers(self) -> bool:
        bindir = pg_bindir()
        result = subprocess.run(
            [str(bindir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", self.user],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql and return its output."""
        result = subprocess.run(
            ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.dsn(database), "-c", sql],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"postgres: psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its DSN."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20.0)


@contextlib.contextmanager
def running_postgres(
    workdir: Path, *, durable: bool = True, tls: Certificate | None = None
) -> Iterator[PostgresServer]:
    """Start PostgreSQL in ``workdir``, yield it, and always stop it (``durable``, ``tls``: see PostgresServer)."""
    server = PostgresServer(workdir=workdir, durable=durable, tls=tls)
    try:
        server.start()
        yield server
    finally:
        server.stop()
