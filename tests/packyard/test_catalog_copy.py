"""``packyard copy-catalog``: a packyard that grew up on the embedded SQLite catalog moves to
PostgreSQL (the multi-server shape) with everything it holds, and a second copy, or a copy
into a database that is not empty, changes nothing.

Real processes throughout: a SQLite server is filled through its API, stopped, its catalog
copied by the CLI into a database of a throwaway cluster, and a server started on that
database and the same data folder (the blobs stay where they are) must answer as the first
did — pages, files with their history, tokens, index state — and go on taking writes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx

from tests.conftest import live_server
from tests.support.clients import (
    JSON_V1,
    PACKYARD,
    create_ns,
    create_token,
    ok,
    output,
    pip_env,
    put_file,
    run,
    unique_ns,
    upload,
)
from tests.support.dists import make_wheel
from tests.support.postgres import Postgres
from tests.support.procs import running


def cli_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    return env | {"PACKYARD_DATA": str(data)} | extra


def snapshot(http: httpx.Client, admin: dict, parent: str, child: str, reader: str) -> dict:
    """What a user can see of the two namespaces, as plain data."""
    seen = {}
    for ns in (parent, child):
        seen[f"{ns} page"] = http.get(f"/{ns}/simple/moved/", headers={"Accept": JSON_V1}).json()
        seen[f"{ns} root"] = http.get(f"/{ns}/simple/", headers={"Accept": JSON_V1}).json()
        seen[f"{ns} state"] = http.get(f"/api/v1/namespaces/{ns}/index-state", headers=admin).json()
    seen["history"] = http.get(f"/api/v1/namespaces/{parent}/revisions/conf/app.toml", headers=admin).json()
    seen["file"] = http.get(f"/api/v1/namespaces/{parent}/files/conf/app.toml").content.decode()
    seen["settings"] = http.get(f"/api/v1/namespaces/{child}", headers=admin).json()
    seen["tokens"] = http.get("/api/v1/tokens", headers=admin).json()
    seen["reader"] = http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {reader}"}).json()
    return seen


def test_a_sqlite_catalog_moves_to_postgresql_whole(postgres: Postgres, tmp_path: Path) -> None:
    root = tmp_path / "site"
    parent = unique_ns("moving")
    child = f"{parent}.team"
    sqlite = live_server(root, {})
    with running(sqlite.server), httpx.Client(base_url=sqlite.url, timeout=60) as http:
        create_ns(http, sqlite, parent, child)
        upload(
            http, sqlite, parent, make_wheel(tmp_path / "w", "moved", "1.0"), make_wheel(tmp_path / "w", "moved", "1.1")
        )
        upload(http, sqlite, child, make_wheel(tmp_path / "w2", "moved", "1.2"))
        yank = http.post(
            f"/api/v1/namespaces/{parent}/dists/moved/1.0/yank", json={"reason": "old"}, headers=sqlite.admin
        )
        assert yank.status_code == 200, yank.text
        for text in ("a = 1\n", "a = 2\n", "a = 3\n"):
            put_file(http, sqlite, parent, "conf/app.toml", text.encode())
        settings = http.patch(f"/api/v1/namespaces/{child}/settings", json={"keep_revisions": 5}, headers=sqlite.admin)
        assert settings.status_code == 200, settings.text
        _, reader = create_token(http, sqlite, child, "read", "moved reader")
        before = snapshot(http, sqlite.admin, parent, child, reader)

    url = postgres.create_database("moved")
    copied = json.loads(ok(run([*PACKYARD, "copy-catalog", "--to", url, "--json"], cli_env(root / "data"))))
    assert copied["tables"]["namespaces"] >= 2 and copied["tables"]["dists"] == 3
    assert copied["tables"]["file_revisions"] == 3 and copied["rows"] == sum(copied["tables"].values())

    moved = live_server(root, {"PACKYARD_DATABASE_URL": url}, prefix="moved")
    with running(moved.server), httpx.Client(base_url=moved.url, timeout=60) as http:
        assert snapshot(http, moved.admin, parent, child, reader) == before
        # real installers read the moved index: the yanked 1.0 is skipped, the child sees 1.2
        download = run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-d",
                tmp_path / "dl",
                "--index-url",
                f"{moved.url}/{child}/simple/",
                "moved",
            ],
            pip_env(),
        )
        assert (tmp_path / "dl" / "moved-1.2-py3-none-any.whl").is_file(), output(download)
        # new rows get new ids: the identity sequences were moved past the copied ones
        put_file(http, moved, parent, "conf/app.toml", b"a = 4\n")
        history = http.get(f"/api/v1/namespaces/{parent}/revisions/conf/app.toml", headers=moved.admin).json()
        assert sorted(r["revision"] for r in history) == [1, 2, 3, 4]
        upload(http, moved, child, make_wheel(tmp_path / "w3", "moved", "1.3"))
        _, another = create_token(http, moved, parent, "write", "after the move")
        assert http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {another}"}).status_code == 200


def test_a_second_copy_or_a_used_database_is_refused(postgres: Postgres, tmp_path: Path) -> None:
    root = tmp_path / "site"
    sqlite = live_server(root, {})
    with running(sqlite.server), httpx.Client(base_url=sqlite.url, timeout=60) as http:
        create_ns(http, sqlite, unique_ns("first"))
    url = postgres.create_database("twice")
    env = cli_env(root / "data")
    ok(run([*PACKYARD, "copy-catalog", "--to", url], env))
    again = run([*PACKYARD, "copy-catalog", "--to", url], env, check=False)
    assert again.returncode != 0
    lines = output(again).strip().splitlines()
    assert lines == [
        "error: the target database already holds a packyard catalog (table namespaces has rows): "
        "copy into an empty database"
    ], lines
    missing = run([*PACKYARD, "copy-catalog", "--to", url], cli_env(tmp_path / "nothing-here"), check=False)
    assert missing.returncode != 0 and output(missing).strip().startswith("error: no SQLite catalog at")
    assert not (tmp_path / "nothing-here" / "catalog.db").exists()
    unnamed = run([*PACKYARD, "copy-catalog"], env, check=False)
    assert unnamed.returncode != 0 and "PACKYARD_DATABASE_URL" in output(unnamed)
