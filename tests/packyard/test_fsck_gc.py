"""Crash leftovers are found by ``packyard fsck`` and cleaned by ``packyard gc`` and the server (issue 13, item 4).

A dedicated server per backend (its collector off unless a test turns it on): it is killed
with SIGKILL in the middle of a large upload, and the CLI, opening the same catalog and
blob store, must report the leftover, list it in a dry run without deleting it, and delete
it with ``--apply``; a blob deleted behind the catalog's back is damage (exit 1); and a
server started with a zero grace cleans what a crash left on its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BUCKET, LiveServer, live_server
from tests.support.clients import packyard_cli, put_file, sha256, unique_ns
from tests.support.procs import SeaweedFS, running, wait_until


@pytest.fixture(scope="module")
def box(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"fsck-{request.param}")
    weed: SeaweedFS | None = request.getfixturevalue("weed") if request.param == "s3" else None
    live = live_server(root, {"PACKYARD_GC_INTERVAL_SECONDS": "0", "PACKYARD_FSYNC": "false"}, weed, "fsck")
    with running(live.server):
        yield live


def cli_env(live: LiveServer) -> dict[str, str]:
    """What an operator sets to run fsck/gc: the server's data folder and blob backend."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    env.update({k: v for k, v in live.server.env.items() if k.startswith("PACKYARD_S3_")})
    env["PACKYARD_DATA"] = str(live.server.data)
    return env


def cli_json(live: LiveServer, *args: str, code: int = 0) -> dict:
    proc = packyard_cli(cli_env(live), *args, "--json", check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def leave_an_orphan(http: httpx.Client, live: LiveServer, ns: str) -> str:
    """A zip import that fails after storing its first member: an unreferenced blob."""
    first, tail = os.urandom(3000), os.urandom(3000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.bin", first)
        z.writestr("b.bin", tail)
    body = bytearray(buf.getvalue())
    body[bytes(body).find(tail[:32]) + 100] ^= 0xFF
    response = http.post(f"/api/v1/namespaces/{ns}/import", content=bytes(body), headers=live.admin)
    assert response.status_code == 400, response.text
    return sha256(first)


def kill_mid_upload(live: LiveServer, http: httpx.Client, ns: str) -> None:
    """SIGKILL the server while a 64 MiB PUT is streaming into it."""
    started = threading.Event()

    def body() -> Iterator[bytes]:
        for _ in range(64):
            yield os.urandom(1024 * 1024)
            started.set()
            time.sleep(0.05)

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under it
            http.put(f"/api/v1/namespaces/{ns}/files/huge.bin", content=body(), headers=live.admin)

    thread = threading.Thread(target=send)
    thread.start()
    started.wait(30)
    if live.backend == "local":
        wait_until(lambda: live.temp_count() == 1, 30, "the upload's temporary file")
    else:
        time.sleep(1.5)  # past the first 8 MiB part
    assert live.server.proc is not None
    os.killpg(live.server.proc.pid, signal.SIGKILL)
    live.server.proc.wait()
    live.server.proc = None
    thread.join()


@pytest.mark.parametrize("box", ["local", "s3"], indirect=True)
def test_kill_mid_upload_then_fsck_and_gc(box: LiveServer) -> None:
    live, ns = box, unique_ns()
    with httpx.Client(base_url=live.url, timeout=60) as http:
        kept = put_file(http, live, ns, "kept.bin", os.urandom(5000))["sha256"]
        gone = put_file(http, live, ns, "gone.bin", os.urandom(4000))["sha256"]
        orphan = leave_an_orphan(http, live, ns)
        kill_mid_upload(live, http, ns)
    if live.backend == "s3":
        # S3 shows a multipart upload only once complete; a crash between the upload to tmp/
        # and its removal (or an outage then) leaves a key like this one
        live.blobs.client.put_object(BUCKET, "fsck/tmp/crashed", io.BytesIO(b"partial"), 7)  # type: ignore[attr-defined]
    assert live.temp_count() == 1

    report = cli_json(live, "fsck")  # default grace (1 h): the leftovers may still be in flight
    assert not report["damaged"] and report["dangling"] == []
    assert (report["temps_young"]["count"], report["temps"]["count"]) == (1, 0)
    assert report["unreferenced_young"]["count"] == 1

    dry = cli_json(live, "gc", "--grace", "0")
    names = {item["name"] for item in dry["collectable"]}
    assert orphan in names and len(names) == 2, dry["collectable"]
    assert dry["removed"]["count"] == 0
    assert live.temp_count() == 1 and live.blobs.exists(orphan)  # a dry run deletes nothing

    done = cli_json(live, "gc", "--apply", "--grace", "0")
    assert done["removed"]["count"] == 2 and done["removed"]["bytes"] > 0
    assert live.temp_count() == 0 and not live.blobs.exists(orphan)
    assert live.blobs.exists(kept) and live.blobs.exists(gone)

    # a referenced blob deleted behind the catalog's back is damage: exit 1, the row named
    live.blobs.delete(gone)
    text = packyard_cli(cli_env(live), "fsck", check=False)
    row = f"file_revisions.sha256 (namespace={ns}, path=gone.bin, revision=1) -> {gone} is missing"
    assert text.returncode == 1 and row in text.stdout and "damaged" in text.stdout, text.stdout + text.stderr

    live.server.start()  # a clean restart: the kept file reads back
    with httpx.Client(base_url=live.url, timeout=60) as http:
        assert sha256(http.get(f"/api/v1/namespaces/{ns}/files/kept.bin", headers=live.admin).content) == kept


@pytest.mark.parametrize("box", ["local"], indirect=True)  # the collector is the same code on S3 (above)
def test_a_server_started_with_no_grace_cleans_crash_leftovers(box: LiveServer) -> None:
    """Last in the module: it leaves the server stopped."""
    live, ns = box, unique_ns()
    with httpx.Client(base_url=live.url, timeout=60) as http:
        kept = put_file(http, live, ns, "kept.bin", os.urandom(5000))["sha256"]
        orphan = leave_an_orphan(http, live, ns)
        kill_mid_upload(live, http, ns)
    export = live.server.data / "tmp" / "export-crashed.zip"
    export.write_bytes(b"an export zip a crash left")
    leftovers = live.temp_count()
    assert leftovers == (1 if live.backend == "local" else 0)
    assert live.blobs.exists(orphan)

    live.server.env["PACKYARD_GC_GRACE_SECONDS"] = "0"
    live.server.env["PACKYARD_GC_INTERVAL_SECONDS"] = "3600"
    live.server.start()
    wait_until(lambda: not live.blobs.exists(orphan) and not export.exists(), 30, "the collector at start")
    assert live.temp_count() == 0 and live.blobs.exists(kept)
