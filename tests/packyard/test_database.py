"""The PostgreSQL catalog's bad input: a wrong ``PACKYARD_DATABASE_URL`` stops the start with
one line, a database that goes away answers 503 in packyard's error shape, and the server
recovers by itself when it comes back. Real PostgreSQL throughout (its own cluster here, since
one test stops it)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import PACKYARD, create_ns, ok, output, packyard_cli, put_file, run, unique_ns
from tests.support.postgres import Postgres
from tests.support.procs import free_port, running

PASSWORD = "hunter2-never-printed"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Postgres]:
    pg = Postgres().start()
    try:
        yield pg
    finally:
        pg.remove()


@pytest.fixture(scope="module")
def pg_server(cluster: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"PACKYARD_DATABASE_URL": cluster.create_database("outage"), "PACKYARD_DATABASE_TIMEOUT": "2"}
    live = live_server(tmp_path_factory.mktemp("pg-outage"), env)
    with running(live.server):
        yield live


def serve(tmp_path: Path, url: str) -> tuple[int, str]:
    """``packyard serve`` with the catalog at ``url``: its exit code and everything it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    env |= {
        "PACKYARD_DATA": str(tmp_path / "data"),
        "PACKYARD_PORT": str(free_port()),
        "PACKYARD_DATABASE_URL": url,
        "PACKYARD_DATABASE_TIMEOUT": "3",
    }
    proc = run([sys.executable, "-m", "packyard", "serve"], env, check=False, timeout=120)
    return proc.returncode, output(proc)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    assert PASSWORD not in text
    return lines[0]


def test_an_unreachable_database_fails_the_start_with_one_line(tmp_path: Path) -> None:
    code, out = serve(tmp_path, f"postgresql://packyard:{PASSWORD}@127.0.0.1:{free_port()}/packyard")
    line = one_line(out)
    assert code == 8, out
    assert line.startswith("error: cannot open the catalog database at 127.0.0.1:"), line
    assert "Connection refused" in line
    assert not (tmp_path / "data" / "catalog.db").exists()  # no SQLite fallback behind the operator's back


def test_a_missing_database_fails_the_start_with_one_line(tmp_path: Path, cluster: Postgres) -> None:
    missing = f"nope_{uuid.uuid4().hex[:8]}"
    code, out = serve(tmp_path, f"postgresql://postgres:{PASSWORD}@127.0.0.1:{cluster.port}/{missing}")
    line = one_line(out)
    assert code == 8, out
    assert f'database "{missing}" does not exist' in line, line


@pytest.mark.parametrize(
    "url",
    [f"mysql://root:{PASSWORD}@127.0.0.1/packyard", f"postgresql://root:{PASSWORD}@[::1/packyard"],
    ids=["other-engine", "unparsable"],
)
def test_a_malformed_url_fails_as_bad_input(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    proc = run([*PACKYARD, "token", "list", "--local"], {**env, "PACKYARD_DATABASE_URL": url}, check=False)
    line = one_line(output(proc))
    assert proc.returncode == 2, output(proc)
    assert line.startswith("error: PACKYARD_DATABASE_URL must be a postgresql://"), line


def test_local_token_commands_use_the_postgresql_catalog(pg_server: LiveServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    env |= {"PACKYARD_DATABASE_URL": pg_server.server.database_url or "", "PACKYARD_DATA": "/nonexistent"}
    created = ok(packyard_cli(env, "token", "create", "--local", "--scope", "*", "--role", "admin", "--json"))
    secret = __import__("json").loads(created)["secret"]
    with httpx.Client(base_url=pg_server.url, timeout=30) as http:
        response = http.get("/api/v1/tokens", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200, response.text
    env["PACKYARD_DATABASE_URL"] = f"postgresql://x:{PASSWORD}@127.0.0.1:{free_port()}/x"
    failed = run([*PACKYARD, "token", "list", "--local"], env, check=False)
    assert failed.returncode == 8
    assert one_line(output(failed)).startswith("error: cannot open the catalog database")


def test_a_database_that_goes_away_gives_503_and_the_server_recovers(pg_server: LiveServer, cluster: Postgres) -> None:
    ns = unique_ns("outage")
    with httpx.Client(base_url=pg_server.url, timeout=60) as http:
        create_ns(http, pg_server, ns)
        put_file(http, pg_server, ns, "before.txt", b"kept")
        cluster.stop()
        try:
            for attempt in (
                lambda: http.get(f"/api/v1/namespaces/{ns}", headers=pg_server.admin),
                lambda: http.put(f"/api/v1/namespaces/{ns}/files/during.txt", content=b"x", headers=pg_server.admin),
            ):
                response = attempt()
                assert response.status_code == 503, response.text
                body = response.json()
                assert body["error"] == "BackendUnavailable", body
                assert body["detail"] == "the catalog database is unavailable; retry once it is back", body
        finally:
            cluster.start()
        # the operator learns where and why from the log; clients learn neither
        assert any(f"the catalog database at 127.0.0.1:{cluster.port}/" in line for line in pg_server.log_lines())
        deadline = time.monotonic() + 60  # a bound for the pool to reconnect, not a measurement
        while (response := http.get(f"/api/v1/namespaces/{ns}", headers=pg_server.admin)).status_code != 200:
            assert response.status_code == 503 and time.monotonic() < deadline, response.text
            time.sleep(0.2)
        assert response.json()["files"] == 1
        listed = http.get(f"/api/v1/namespaces/{ns}/files", headers=pg_server.admin).json()
        assert [f["path"] for f in listed] == ["before.txt"], listed
        put_file(http, pg_server, ns, "after.txt", b"new")
