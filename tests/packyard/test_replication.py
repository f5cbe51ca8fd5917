"""The SQLite catalog streamed into the bucket with Litestream, and a machine brought back from it.

Against the real SeaweedFS of the session: a server started with ``--replicate`` takes
writes of every kind (files with history, dists uploaded with twine, a yank, a token, a
real build), its machine is lost (the server killed with SIGKILL, the data folder
deleted), ``packyard restore`` brings the catalog back from the bucket alone, and the server
started again answers every page byte for byte as before, with every file, token and build.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from packyard.store.errors import InvalidInput

from tests.builder.conftest import put_files, queued, tiny_project, wait_build
from tests.conftest import BUCKET
from tests.support.clients import (
    JSON_V1,
    TWINE,
    create_token,
    output,
    packyard_cli,
    put_file,
    run,
    twine_env,
)
from tests.support.dists import make_sdist, make_wheel
from tests.support.procs import Server, s3_env, wait_until


@dataclass
class Admin:
    """What the shared API helpers need of a server: its admin token."""

    admin: dict[str, str]
    admin_token: str


def operator_env(data: Path, s3: dict[str, str]) -> dict[str, str]:
    """What an operator's shell holds for the server's commands: the data folder and the bucket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    return {**env, "PACKYARD_DATA": str(data), **s3}


def restored_tokens(data: Path, s3: dict[str, str]) -> set[str]:
    """Token ids in a catalog restored from the bucket into ``data`` (a throwaway folder), by
    the code ``packyard restore`` runs (in this process: the probe is polled)."""
    from packyard.replication import restore
    from packyard.settings import Settings

    shutil.rmtree(data, ignore_errors=True)
    restore(Settings(**{k.removeprefix("PACKYARD_").lower(): v for k, v in s3.items()}, data=data))
    conn = sqlite3.connect(f"file:{data / 'catalog.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM tokens")}
    finally:
        conn.close()


def snapshot(http: httpx.Client, admin: dict[str, str], ns: str, build_id: int) -> dict[str, bytes]:
    """Every page and listing a client sees of ``ns``, and every file's bytes, by URL."""
    pages: dict[str, bytes] = {}

    def get(url: str, **headers: str) -> httpx.Response:
        response = http.get(url, headers={**admin, **headers})
        assert response.status_code == 200, (url, response.status_code, response.text)
        pages[f"{url} {headers}"] = response.content
        return response

    for accept in ("text/html", JSON_V1):
        index = get(f"/{ns}/simple/", Accept=accept)
        for project in ("keep", "tinybuilt"):
            get(f"/{ns}/simple/{project}/", Accept=accept)
    assert b"keep" in index.content
    for url in (
        "/api/v1/namespaces",
        f"/api/v1/namespaces/{ns}",
        f"/api/v1/namespaces/{ns}/files",
        f"/api/v1/namespaces/{ns}/dists",
        "/api/v1/tokens",
        f"/api/v1/builds?namespace={ns}",
        f"/api/v1/builds/{build_id}",
        f"/api/v1/builds/{build_id}/log",
    ):
        get(url)
    for item in http.get(f"/api/v1/namespaces/{ns}/files", headers=admin).json():
        for rev in get(f"/api/v1/namespaces/{ns}/revisions/{item['path']}").json():
            if not rev.get("deleted"):
                get(f"/api/v1/namespaces/{ns}/files/{item['path']}?revision={rev['revision']}")
    for dist in http.get(f"/api/v1/namespaces/{ns}/dists", headers=admin).json():
        get(f"/{ns}/dists/{dist['filename']}")
        if dist["core_metadata"]:
            get(f"/{ns}/dists/{dist['filename']}.metadata")
    return pages


def litestreams_of(config: Path) -> list[int]:
    """Running litestream processes reading ``config``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"litestream") and str(config).encode() in argv:
            found.append(int(proc.name))
    return found


def test_a_lost_machine_comes_back_from_the_bucket_alone(weed, tmp_path: Path) -> None:
    s3 = s3_env(weed, BUCKET, prefix=f"replica-{uuid.uuid4().hex[:10]}")
    data = tmp_path / "data"
    server = Server(data, {**s3, "PACKYARD_REPLICATE": "true"})
    ns = f"r{uuid.uuid4().hex[:8]}"
    # a fresh machine and an empty bucket: what a container runs before every start does
    # nothing; an explicit restore says there is no replica
    quiet = packyard_cli(operator_env(data, s3), "restore", "--if-needed")
    assert "nothing restored" in output(quiet)
    missing = packyard_cli(operator_env(data, s3), "restore", check=False)
    assert missing.returncode == 3 and "no catalog replica" in output(missing), output(missing)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            admin = {"Authorization": f"Bearer {server.admin_token}"}
            live = Admin(admin, server.admin_token)
            # files with history: two revisions, a deletion, a file written again after it
            put_file(http, live, ns, "conf/app.toml", b"v = 1\n")
            put_file(http, live, ns, "conf/app.toml", b"v = 2\n")
            put_file(http, live, ns, "gone.txt", b"soon gone\n")
            assert http.delete(f"/api/v1/namespaces/{ns}/files/gone.txt", headers=admin).status_code == 200
            put_file(http, live, ns, "gone.txt", b"back again\n")
            # distributions uploaded with twine, and a yank
            token_id, writer = create_token(http, live, ns, "write", "ci")
            dists = [
                make_wheel(tmp_path / "d", "keep", "1.0"),
                make_sdist(tmp_path / "d", "keep", "1.0"),
                make_wheel(tmp_path / "d", "keep", "2.0", requires_python=">=3.8"),
            ]
            run(
                [*TWINE, "upload", "--repository-url", f"{server.url}/{ns}/", "-u", "__token__", "-p", writer,
                 "--non-interactive", "--disable-progress-bar", *dists],
                twine_env(),
            )  # fmt: skip
            yank = http.post(f"/api/v1/namespaces/{ns}/dists/keep/2.0/yank", json={"reason": "broken"}, headers=admin)
            assert yank.status_code == 200, yank.text
            # a real build, published into the namespace
            put_files(http, live, f"{ns}.src", tiny_project("tinybuilt", "0.3.0"))
            build = wait_build(http, queued(http, live, f"{ns}.src", publish_to=ns)["id"])
            assert build["state"] == "succeeded", build
            # the last write: once the bucket has it, it has everything before it
            last_id, _ = create_token(http, live, ns, "read", "last")
            before = snapshot(http, admin, ns, build["id"])

        # the replica follows within seconds (the bucket alone, restored into a scratch folder)
        wait_until(lambda: last_id in restored_tokens(tmp_path / "probe", s3), 60, "replication of the last write")

        # the machine is lost: the server is killed outright, its Litestream goes with it
        config = data / "litestream.yml"
        assert litestreams_of(config), "the server runs no litestream"
        os.kill(server.proc.pid, signal.SIGKILL)  # the server only: Litestream must notice by itself
        server.proc.wait()
        wait_until(lambda: not litestreams_of(config), 15, "litestream to end with its server")
        shutil.rmtree(data)

        restore = packyard_cli(operator_env(data, s3), "restore")
        assert "restored" in output(restore)
        again = packyard_cli(operator_env(data, s3), "restore", check=False)
        assert again.returncode == 2 and "exists" in output(again)  # never over a catalog
        server.proc = None
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            after = snapshot(http, admin, ns, build["id"])
            assert after.keys() == before.keys()
            for url, body in before.items():
                assert after[url] == body, url
            # the tokens work as before
            wrote = http.put(
                f"/api/v1/namespaces/{ns}/files/after.txt", content=b"x", headers={"Authorization": f"Bearer {writer}"}
            )
            assert wrote.status_code == 201, wrote.text
            assert {t["id"] for t in http.get("/api/v1/tokens", headers=admin).json()} >= {token_id, last_id}
    finally:
        server.stop()


def test_replication_refuses_what_it_cannot_bring_back(tmp_path: Path) -> None:
    """With local blobs the bucket could bring back a catalog whose files are gone; with
    PostgreSQL the catalog is not a file: both are refused with the reason, changing nothing."""
    from packyard.replication import check_replicable
    from packyard.settings import Settings

    env = operator_env(tmp_path / "data", {"PACKYARD_PORT": "9"})
    serve = packyard_cli(env, "serve", "--replicate", check=False, timeout=60)
    assert serve.returncode == 2 and "needs the S3 blob backend" in output(serve), output(serve)
    restore = packyard_cli(env, "restore", check=False)
    assert restore.returncode == 2 and "needs the S3 blob backend" in output(restore), output(restore)
    assert not (tmp_path / "data" / "catalog.db").exists()
    postgres = Settings(
        data=tmp_path / "data",
        database_url="postgresql://packyard:x@127.0.0.1:9/packyard",
        s3_endpoint="http://127.0.0.1:9",
        s3_access_key="k",
        s3_secret_key="s",
    )
    with pytest.raises(InvalidInput, match="catalog is in PostgreSQL"):
        check_replicable(postgres, "--replicate")
