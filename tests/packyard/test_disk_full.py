"""A full disk: writes answer 507 in packyard's shape, reads and the connection keep working,
and ``/healthz`` says how much space is free and whether writes are taken.

The server's data folder is a 20 MiB tmpfs of its own (mounting needs root, which the test
machines have), filled by a file beside the data.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import create_ns, put_file, unique_ns
from tests.support.procs import running

MiB = 1024 * 1024
MIN_FREE = MiB

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    root = tmp_path_factory.mktemp("disk-full")
    data = root / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(data)], check=True)
    try:
        env = {"PACKYARD_EMBEDDED_WORKER": "false", "PACKYARD_MIN_FREE_BYTES": str(MIN_FREE)}
        live = live_server(root, env)
        with running(live.server):
            yield live, data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the disk of ``folder`` until ``leave`` bytes are free."""
    filler = folder / "filler"
    with filler.open("ab") as out:
        try:
            while True:
                out.write(bytes(MiB))
                out.flush()
        except OSError:
            pass
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    os.truncate(filler, max(filler.stat().st_size - (leave - free), 0))
    return filler


def chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // (256 * 1024)):
        yield os.urandom(256 * 1024)


def test_full_disk_answers_507_and_keeps_reads_and_the_connection(small_disk: tuple[LiveServer, Path]) -> None:
    server, data = small_disk
    ns = unique_ns("disk")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        create_ns(client, server, ns)
        put_file(client, server, ns, "keep.txt", b"kept")
    url = f"/api/v1/namespaces/{ns}/files"
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    conn = http.client.HTTPConnection("127.0.0.1", server.server.port, timeout=60)

    def call(method: str, path: str, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
        conn.request(method, path, **kwargs)  # type: ignore[arg-type]
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()

    def read_works() -> None:
        status, _, body = call("GET", f"{url}/keep.txt")
        assert (status, body) == (200, b"kept")

    filler = fill(data, leave=MIN_FREE + MiB // 2)
    try:
        read_works()
        sock = conn.sock
        # a declared body that does not fit: refused before it is read
        status, headers, body = call("PUT", f"{url}/big.bin", body=os.urandom(4 * MiB), headers=auth)
        assert status == 507, body[:300]
        error = json.loads(body)
        assert error["error"] == "StorageFull" and "no space left" in error["detail"], error
        assert headers.get("connection") != "close"
        read_works()
        # a streamed body the precheck cannot size: the disk fills while it is written
        status, headers, body = call("PUT", f"{url}/streamed.bin", body=chunks(4 * MiB), headers=auth)
        assert status == 507, body[:300]
        assert json.loads(body)["error"] == "StorageFull"
        read_works()
        assert conn.sock is sock, "the connection was closed after the 507"
        assert server.temp_count() == 0
        assert server.count("file_revisions", ns) == 1

        # under the configured margin: healthz says writes are not taken, and any write is a 507
        fill(data, leave=MIN_FREE // 4)
        status, _, body = call("GET", "/healthz")
        health = json.loads(body)
        assert status == 200
        assert health["status"] == "read-only" and health["disk"]["writable"] is False, health
        assert health["disk"]["free_bytes"] < MIN_FREE == health["disk"]["min_free_bytes"], health
        status, _, body = call("PUT", f"{url}/tiny.txt", body=b"x", headers=auth)
        assert (status, json.loads(body)["error"]) == (507, "StorageFull")
        read_works()
        assert conn.sock is sock
    finally:
        filler.unlink()
    status, _, body = call("GET", "/healthz")
    assert json.loads(body)["status"] == "ok" and json.loads(body)["disk"]["writable"] is True
    status, _, body = call("PUT", f"{url}/after.txt", body=b"space again", headers=auth)
    assert status == 201, body
    conn.close()
