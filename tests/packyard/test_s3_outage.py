"""An S3 outage is answered 503 in packyard's error shape, and ends cleanly (issue 13, item 5).

A dedicated S3 gateway (``weed s3`` over the session's SeaweedFS filer) and server for this
module: the gateway is SIGKILLed, every read and write through the real server must answer
503 JSON — a file GET before any 200, on the FastAPI route and on the anonymous hot path in
front of it — and ``/healthz`` must say the storage is unavailable. Started again on the same
port, everything works as before and no ``tmp/`` key is left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import put_file, unique_ns, upload
from tests.support.dists import make_wheel
from tests.support.procs import S3Gateway, SeaweedFS, running, wait_until

BIG = 9 * 1024 * 1024
"""Over the S3 part size: the multipart path through a tmp/ key."""


@pytest.fixture(scope="module")
def outage(weed: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Gateway, LiveServer]]:
    root = tmp_path_factory.mktemp("s3-outage")
    gateway = S3Gateway(weed, root / "gateway.log").start()
    try:
        live = live_server(root, {"PACKYARD_GC_INTERVAL_SECONDS": "0"}, weed, "outage")
        live.server.env["PACKYARD_S3_ENDPOINT"] = gateway.endpoint
        with running(live.server):
            yield gateway, live
    finally:
        gateway.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.headers, response.content[:200])
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == "BackendUnavailable", body
    assert "unavailable" in body["detail"], body


def test_an_s3_outage_is_503_json_and_recovers(outage: tuple[S3Gateway, LiveServer], tmp_path: Path) -> None:
    gateway, live = outage
    ns = unique_ns()
    small, big = os.urandom(1000), os.urandom(BIG)
    wheel = make_wheel(tmp_path, "outagepkg", "1.0")
    with httpx.Client(base_url=live.url, timeout=60) as http:
        put_file(http, live, ns, "small.bin", small)
        put_file(http, live, ns, "big.bin", big)
        upload(http, live, ns, wheel)
        dist_url = f"/{ns}/dists/{wheel.name}"
        assert http.get(dist_url).content == wheel.read_bytes()  # fills the hot path's cache
        assert http.get("/healthz").status_code == 200

        gateway.stop()
        for path in ("small.bin", "big.bin"):
            assert_unavailable(http.get(f"/api/v1/namespaces/{ns}/files/{path}", headers=live.admin))
        assert_unavailable(http.get(dist_url))  # anonymous: the hot path answers it
        head = http.head(f"/api/v1/namespaces/{ns}/files/small.bin", headers=live.admin)
        assert (head.status_code, head.headers["content-type"]) == (503, "application/json")  # no body on HEAD
        assert_unavailable(
            http.get(f"/api/v1/namespaces/{ns}/files/small.bin", headers={**live.admin, "Range": "bytes=0-9"})
        )
        assert_unavailable(http.put(f"/api/v1/namespaces/{ns}/files/new.bin", content=b"new", headers=live.admin))
        assert_unavailable(
            http.put(f"/api/v1/namespaces/{ns}/files/new-big.bin", content=big[::-1], headers=live.admin)
        )
        assert_unavailable(http.get("/healthz"))
        # the refused writes changed nothing
        assert live.rows("SELECT path FROM file_heads WHERE namespace = ? ORDER BY path", (ns,)) == [
            ("big.bin",),
            ("small.bin",),
        ]

        gateway.start()
        wait_until(lambda: http.get("/healthz").status_code == 200, 30, "healthz after the outage")
        big_url = f"/api/v1/namespaces/{ns}/files/big.bin"
        wait_until(lambda: http.get(big_url, headers=live.admin).status_code == 200, 30, "reads after the outage")
        assert http.get(big_url, headers=live.admin).content == big
        assert http.get(dist_url).content == wheel.read_bytes()
        put_file(http, live, ns, "after.bin", big[::-1])
        assert http.get(f"/api/v1/namespaces/{ns}/files/after.bin", headers=live.admin).content == big[::-1]
    assert live.temp_count() == 0
