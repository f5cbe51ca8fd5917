"""Shared test infrastructure: one SeaweedFS and one packyard server per backend per session.

Tests isolate themselves by namespace (the ``ns`` fixture gives each a fresh one), so one
server process serves the whole session. ``backend`` parametrizes store-level tests over
the local directory and S3; ``server`` does the same for tests through the real server.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from packyard.store.blobs import LocalBlobStore, S3BlobStore
from packyard.store.blobs.base import BlobStore
from packyard.store.dialects import PostgresDialect

from tests.support.clients import unique_ns
from tests.support.postgres import Postgres
from tests.support.procs import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedFS, Server, running, s3_env

BUCKET = "packyard-tests"


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    seaweed = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield seaweed
    finally:
        seaweed.stop()


def s3_blobs(weed: SeaweedFS, prefix: str) -> S3BlobStore:
    return S3BlobStore(weed.endpoint, BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, prefix=prefix)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL cluster for the session; tests and servers each get a fresh schema or database."""
    cluster = Postgres().start()
    try:
        yield cluster
    finally:
        cluster.remove()


CATALOGS = ("sqlite", "postgres")
ALL_SERVERS = ("local", "s3", "s3-postgres")
"""What a module sets as ``SERVERS`` to run its server tests on the PostgreSQL catalog too."""


@pytest.hookimpl(tryfirst=True)  # before the fixture params of ``backend`` are applied
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take ``catalog_url`` run on both catalogs; with blobs too, on SQLite with
    each blob backend and on PostgreSQL with local blobs (the catalog and the blob store do
    not meet below the store, so S3 with PostgreSQL adds nothing here but time)."""
    if "catalog_engine" not in metafunc.fixturenames:
        return
    if "backend" in metafunc.fixturenames:
        pairs = [("local", "sqlite"), ("s3", "sqlite"), ("local", "postgres")]
        metafunc.parametrize(("backend", "catalog_engine"), pairs, ids=["-".join(p) for p in pairs])
    else:
        metafunc.parametrize("catalog_engine", CATALOGS)


@pytest.fixture
def catalog_url(
    catalog_engine: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str | None]:
    """None for SQLite (in the test's data folder), else a fresh PostgreSQL schema's URL.

    The connection pools the test opens on it are closed after the test (tests rarely close
    their stores), so a session does not pile up idle connections and pool threads.
    """
    if catalog_engine == "sqlite":
        yield None
        return
    opened: list[PostgresDialect] = []
    init = PostgresDialect.__init__

    def tracked(self: PostgresDialect, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(PostgresDialect, "__init__", tracked)
    yield request.getfixturevalue("postgres").create_schema()
    for dialect in opened:
        dialect.close()


@pytest.fixture
def blob_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> BlobStore:
    """A fresh, empty blob store on the parametrized backend."""
    if backend == "local":
        return LocalBlobStore(tmp_path / "blobs")
    weed = request.getfixturevalue("weed")
    return s3_blobs(weed, f"unit-{uuid.uuid4().hex[:12]}")


@dataclass
class LiveServer:
    """A running ``packyard serve`` plus direct read access to what it stores."""

    server: Server
    blobs: BlobStore

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def backend(self) -> str:
        return self.server.backend

    @property
    def admin_token(self) -> str:
        return self.server.admin_token

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.admin_token}"}

    def client_env(self, token: str | None = None) -> dict[str, str]:
        return self.server.client_env(token)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the server's catalog directly (read-only) to check what a request left."""
        if self.server.database_url:
            import psycopg

            with psycopg.connect(self.server.database_url) as pg:
                return pg.execute(sql.replace("?", "%s"), params).fetchall()
        conn = sqlite3.connect(f"file:{self.server.data / 'catalog.db'}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def count(self, table: str, namespace: str) -> int:
        column = "name" if table == "namespaces" else "namespace"
        return self.rows(f"SELECT count(*) FROM {table} WHERE {column} = ?", (namespace,))[0][0]

    def blob_hashes(self) -> set[str]:
        return set(self.blobs.hashes())

    def referenced_hashes(self) -> set[str]:
        """Every blob digest a catalog row references (the columns ``store/refs.py`` knows)."""
        from packyard.store.refs import COLUMNS

        sql = " UNION ".join(f"SELECT {c} FROM {t} WHERE {c} IS NOT NULL" for t, c, _ in COLUMNS)
        return {row[0] for row in self.rows(sql)}

    def new_references(self, before: set[str]) -> set[str]:
        """Blobs stored since ``before`` that a catalog row references: none after a refused change.

        A refused change may leave bytes it stored before it found the input bad (no request
        deletes a blob; the collector takes them past its grace period), but nothing points at them.
        """
        return (self.blob_hashes() - before) & self.referenced_hashes()

    def temp_count(self) -> int:
        return self.blobs.temp_count()  # type: ignore[attr-defined]

    def log_lines(self) -> list[str]:
        """The server's log so far (with PACKYARD_LOG_REQUESTS, one access line per request)."""
        return self.server.log_path.read_text(errors="replace").splitlines()

    def requests_since(self, mark: int) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request logged after line ``mark`` (a ``len(log_lines())``)."""
        found = []
        for line in self.log_lines()[mark:]:
            match = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})', line)
            if match:
                found.append((match[1], match[2], int(match[3])))
        return found


def live_server(root: Path, env: dict[str, str], weed: SeaweedFS | None = None, prefix: str = "server") -> LiveServer:
    """A server (not started yet) with its data under ``root``: blobs in S3 under ``prefix`` with ``weed``, else local.

    Its :class:`LiveServer` reads the same blobs the server writes, so tests can check what it stored.
    Syncs may use git repositories anywhere under the session's temporary folder (``root``'s
    parent), where the tests make them; the server's own data folder stays refused. Git
    remotes on loopback (the tests' smart-HTTP server, tests/sync/conftest.py) are allowed
    the way an operator would allow an internal git host (``PACKYARD_SYNC_ALLOW_HOSTS``).
    """
    env = {"PACKYARD_SYNC_LOCAL_ROOTS": str(root.parent), "PACKYARD_SYNC_ALLOW_HOSTS": "127.0.0.1", **env}
    if weed is None:
        blobs: BlobStore = LocalBlobStore(root / "data" / "blobs")
    else:
        env = {**env, **s3_env(weed, BUCKET, prefix)}
        blobs = s3_blobs(weed, prefix)
    return LiveServer(Server(root / "data", env), blobs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "servers(*names): the ``server`` fixture params this test runs on")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``s3-postgres`` server runs only the modules that list it in ``SERVERS`` and the
    tests marked ``@pytest.mark.servers(*ALL_SERVERS)``: a representative part of the suite
    (the catalog adapter itself is covered on both engines by the store tests)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("server") if callspec else None
        marker = item.get_closest_marker("servers")
        wanted = marker.args if marker else getattr(getattr(item, "module", None), "SERVERS", ("local", "s3"))
        (drop if param is not None and param not in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", params=ALL_SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server per backend for the whole session (and one with a PostgreSQL catalog
    and S3 blobs, ``s3-postgres``, for the modules that list it in ``SERVERS``)."""
    root = tmp_path_factory.mktemp(f"server-{request.param}")
    env = {
        "PACKYARD_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
        "PACKYARD_LOG_REQUESTS": "true",
        # variables tests name as credentials; the server never holds them (see store/credentials.py)
        "PACKYARD_CREDENTIAL_ENVS": "WEBHOOK_SECRET_TEST,GIT_TOKEN_TEST,NOT_SET_ON_THE_SERVER,NO_SUCH_VAR_FOR_TEST",
        # the tests' upstreams run on loopback, which only an operator can allow (store/egress.py)
        "PACKYARD_UPSTREAM_ALLOW_HOSTS": "127.0.0.1",
    }
    if request.param == "s3-postgres":
        env["PACKYARD_DATABASE_URL"] = request.getfixturevalue("postgres").create_database("server")
    weed = request.getfixturevalue("weed") if request.param.startswith("s3") else None
    live = live_server(root, env, weed, "server")
    with running(live.server):
        yield live


@pytest.fixture
def ns() -> str:
    """A namespace no other test uses."""
    return unique_ns("team")


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def module_http(server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client for module-scoped fixtures (``http`` is per test)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client
