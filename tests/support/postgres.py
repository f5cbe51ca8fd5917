"""A throwaway PostgreSQL cluster for tests and benchmarks: real ``initdb`` + ``pg_ctl``.

``initdb`` refuses to run as root, so under root the cluster belongs to the ``postgres``
user (Debian's package creates it) and lives in a folder that user owns; otherwise it runs
as whoever runs the tests. It listens on 127.0.0.1 only, trusts local connections and turns
fsync off: it holds nothing worth keeping. Each test or server gets its own database
(``CREATE DATABASE`` takes milliseconds), so one cluster serves a whole session.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import free_port


def pg_bin(tool: str) -> str:
    """``tool`` from the newest ``/usr/lib/postgresql/*/bin`` (Debian keeps it off PATH), else PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return found[-1]
    on_path = shutil.which(tool)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {tool} is not installed (scripts/test.sh installs Debian's postgresql)")
    return on_path


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Postgres:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="packyard-pg-")))
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        done = subprocess.run(_as_owner(list(argv)), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def init(self) -> Postgres:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> Postgres:
        if not self.data.exists():
            self.init()
        self.port = self.port or free_port()
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def create_schema(self, prefix: str = "t") -> str:
        """A URL whose tables live in a fresh, empty schema of the ``postgres`` database: as
        good as a database of its own for a catalog, and made in a fraction of a millisecond."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.admin_url}?options=-csearch_path%3D{name}"
