"""Requests that try to starve the server, against a real ``packyard serve`` of its own.

The server's peak memory is read from ``/proc/<pid>/status`` (``VmHWM``, reset through
``clear_refs`` before each abusive burst) and its CPU from ``/proc/<pid>/stat``: resource
bounds, not timings. Connections are raw sockets where the abuse is below HTTP clients'
reach (oversized heads, slow heads and bodies).
"""

from __future__ import annotations

import gzip
import json
import os
import select
import socket
import struct
import tarfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import create_ns, unique_ns
from tests.support.procs import running, wait_until

MiB = 1024 * 1024
WEBHOOK_SECRET = "resilience-webhook-secret"
HEADERS_TIMEOUT = 2
BODY_TIMEOUT = 2


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A local server with short connection timeouts and no build worker (its CPU is the requests')."""
    root = tmp_path_factory.mktemp("resilience-server")
    env = {
        "PACKYARD_LOG_REQUESTS": "true",
        "PACKYARD_EMBEDDED_WORKER": "false",
        "PACKYARD_HEADERS_TIMEOUT": str(HEADERS_TIMEOUT),
        "PACKYARD_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "PACKYARD_MAX_UPLOAD_BYTES": str(64 * MiB),
        "PACKYARD_CREDENTIAL_ENVS": "WEBHOOK_SECRET_TEST",
        "WEBHOOK_SECRET_TEST": WEBHOOK_SECRET,
    }
    live = live_server(root, env)
    with running(live.server):
        yield live


@pytest.fixture(scope="module")
def ghttp(guarded: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, timeout=60) as client:
        yield client


def pid(server: LiveServer) -> int:
    assert server.server.proc is not None
    return server.server.proc.pid


def peak_rss_mb(server: LiveServer) -> float:
    status = Path(f"/proc/{pid(server)}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kb / 1024


def reset_peak(server: LiveServer) -> None:
    Path(f"/proc/{pid(server)}/clear_refs").write_text("5")


def cpu_seconds(server: LiveServer) -> float:
    fields = Path(f"/proc/{pid(server)}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def port(server: LiveServer) -> int:
    return server.server.port


def zeros(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    for _ in range(total // chunk):
        yield block


def status_of(raw: bytes) -> int | None:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


def read_all(sock: socket.socket, limit: float = 15) -> bytes:
    """Everything the server sends until it closes (or ``limit`` seconds pass)."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def read_response(sock: socket.socket, limit: float = 15) -> bytes:
    """One response (head and its Content-Length of body), leaving the connection open."""
    sock.settimeout(limit)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def send_until_answered(sock: socket.socket, pieces: Iterator[bytes], pause: float = 0.0) -> None:
    """Send pieces until the server answers (or stops reading): what a patient client sends."""
    for piece in pieces:
        if select.select([sock], [], [], pause)[0]:
            return
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return


def body_json(raw: bytes) -> dict:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


# -- item 2: bodies are capped per route, and checked for a token before they are read ----------------


def test_oversized_bodies_are_refused_before_they_are_read(guarded: LiveServer, ghttp: httpx.Client) -> None:
    ns = unique_ns("limits")
    create_ns(ghttp, guarded, ns)
    admin = guarded.admin
    reset_peak(guarded)

    # no credentials, 256 MiB of JSON for the token endpoint: 401 before a byte of it is read
    with socket.create_connection(("127.0.0.1", port(guarded))) as sock:
        sock.sendall(
            b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (256 * MiB)
        )
        sock.sendall(b'{"scope": "' + bytes(MiB))
        answer = read_response(sock)
    assert status_of(answer) == 401, answer[:300]
    assert body_json(answer)["error"] == "Unauthenticated"

    # the same streamed without a length (chunked), and with a wrong token
    for headers in ({}, {"Authorization": "Bearer wrong-token"}):
        response = ghttp.post("/api/v1/tokens", content=zeros(256 * MiB), headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "Unauthenticated"

    # an admin's oversized JSON: 413 from its declared length, and at the cap when chunked
    response = ghttp.post("/api/v1/tokens", content=b"x" * (2 * MiB), headers=admin)
    assert (response.status_code, response.json()["error"]) == (413, "TooLarge"), response.text
    assert "PACKYARD_MAX_JSON_BYTES" in response.json()["detail"]
    response = ghttp.post("/api/v1/tokens", content=zeros(256 * MiB), headers=admin)
    assert (response.status_code, response.json()["error"]) == (413, "TooLarge"), response.text

    # the resolution lock's cap is the route's body cap: a 100 MiB body is not parsed to find out
    response = ghttp.put(f"/api/v1/namespaces/{ns}/resolutions", content=zeros(100 * MiB), headers=admin)
    assert (response.status_code, response.json()["error"]) == (413, "TooLarge"), response.text

    # a webhook with a wrong signature: bounded by the webhook cap (25 MiB), declared or streamed
    url = "/api/v1/syncs/nope/webhook"
    # a loopback remote the test server allows (nothing listens there; the sync never runs)
    sync = {"name": "capped", "namespace": ns, "url": "http://127.0.0.1:9/r.git"}
    registered = ghttp.post("/api/v1/syncs", json={**sync, "webhook_secret_env": "WEBHOOK_SECRET_TEST"}, headers=admin)
    assert registered.status_code == 201, registered.text
    url = "/api/v1/syncs/capped/webhook"
    wrong = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    response = ghttp.post(url, content=zeros(512 * MiB), headers=wrong)
    assert (response.status_code, response.json()["error"]) == (413, "TooLarge"), response.text
    with socket.create_connection(("127.0.0.1", port(guarded))) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: %d\r\n\r\n"
            % (url.encode(), 512 * MiB)
        )
        assert status_of(read_response(sock)) == 413
    # GitLab's token is checked before the body is read (a refused delivery is told nothing: 404)
    response = ghttp.post(url, content=zeros(512 * MiB), headers={"X-Gitlab-Token": "wrong"})
    assert response.status_code == 404, response.text

    peak = peak_rss_mb(guarded)
    print(f"peak RSS of the server under oversized bodies: {peak:.0f} MB")
    assert peak < 150, f"the server's peak RSS reached {peak:.0f} MB"
    assert ghttp.get("/healthz").status_code == 200


# -- item 3: a bundle that expands enormously is refused while it streams ----------------------------


def bundle_bomb(expanded: int) -> bytes:
    """A gzip'd tar (a venv's pyvenv.cfg, then ``expanded`` bytes of zeros in one member), made
    without compressing the zeros one by one: a fully flushed deflate block of 1 MiB of zeros
    decompresses the same wherever it is repeated."""
    cfg = tarfile.TarInfo("pyvenv.cfg")
    cfg_data = b"home = /usr/bin\n"
    cfg.size = len(cfg_data)
    big = tarfile.TarInfo("lib/zeros.bin")
    big.size = expanded
    prefix = cfg.tobuf() + cfg_data + bytes(512 - len(cfg_data)) + big.tobuf()
    tail = bytes(1024 + 8192)  # end-of-archive blocks and record padding: zeros as well
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)]
    block = deflate.compress(bytes(MiB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    out += [block] * (expanded // MiB)
    out.append(deflate.compress(tail) + deflate.flush(zlib.Z_FINISH))
    crc = zlib.crc32(prefix)
    megabyte = bytes(MiB)
    for _ in range(expanded // MiB):
        crc = zlib.crc32(megabyte, crc)
    crc = zlib.crc32(tail, crc)
    size = len(prefix) + expanded + len(tail)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + b"".join(out) + struct.pack("<II", crc, size & 0xFFFFFFFF)


def test_bundle_bomb_is_refused_before_it_is_expanded(guarded: LiveServer, ghttp: httpx.Client) -> None:
    ns = unique_ns("bomb")
    create_ns(ghttp, guarded, ns)
    bomb = bundle_bomb(650 * MiB)
    assert len(bomb) < 1 * MiB
    with gzip.GzipFile(fileobj=__import__("io").BytesIO(bomb[:4096])) as probe:  # a real gzip'd tar
        assert tarfile.TarInfo.frombuf(probe.read(512), "utf-8", "surrogateescape").name == "pyvenv.cfg"

    before = cpu_seconds(guarded)
    response = ghttp.put(f"/api/v1/namespaces/{ns}/bundles/{'b' * 64}", content=bomb, headers=guarded.admin)
    spent = cpu_seconds(guarded) - before
    print(f"server CPU for a {len(bomb) // 1024} KiB bundle declaring 650 MiB: {spent:.2f} s")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "UnsafeArchive"
    # refused at the member's header, from its declared size: its 650 MiB were never inflated
    assert "lib/zeros.bin" in response.json()["detail"], response.text
    assert spent < 2, f"refusing the bomb took {spent:.2f} s of server CPU"
    assert guarded.rows("SELECT count(*) FROM bundles WHERE namespace = ?", (ns,)) == [(0,)]
    assert guarded.temp_count() == 0


# -- item 7: integers beyond SQLite's range are refused at the edge, in packyard's shape ---------------


def test_integers_out_of_range_are_422_in_packyards_shape(guarded: LiveServer, ghttp: httpx.Client) -> None:
    ns = unique_ns("ints")
    create_ns(ghttp, guarded, ns)
    ghttp.put(f"/api/v1/namespaces/{ns}/files/a.txt", content=b"a", headers=guarded.admin)
    huge = 2**63
    anonymous = [
        ("GET", f"/api/v1/builds/{huge}", None),
        ("GET", f"/api/v1/builds/{huge}/log", None),
        ("GET", "/api/v1/builds/1/log?offset=" + str(huge), None),
        ("GET", f"/api/v1/namespaces/{ns}/files/a.txt?revision={huge}", None),
        ("GET", f"/api/v1/builds/{-huge}", None),
    ]
    admin = [
        ("POST", f"/api/v1/builds/{huge}/cancel", None),
        ("POST", f"/api/v1/builds/{huge}/heartbeat", {"worker": "w"}),
        ("POST", f"/api/v1/builds/{huge}/log?worker=w", None),
        ("POST", f"/api/v1/builds/{huge}/finish", {"worker": "w", "state": "failed"}),
        ("POST", f"/api/v1/builds/{huge}/artifacts", None),
        ("POST", f"/api/v1/namespaces/{ns}/restore/a.txt?revision={huge}", None),
    ]
    for headers, cases in (({}, anonymous), (guarded.admin, admin)):
        for method, url, body in cases:
            response = ghttp.request(method, url, json=body, headers=headers)
            assert response.status_code == 422, (method, url, response.text)
            error = response.json()
            assert error["error"] == "InvalidInput", error
            assert (
                isinstance(error["detail"], str)
                and "less than or equal to" in error["detail"]
                or "greater" in error["detail"]
            ), error
    assert "Traceback" not in "\n".join(guarded.log_lines())


# -- item 8: POST /healthz, and a client leaving mid-upload -------------------------------------------


def test_post_healthz_is_405_with_allow(ghttp: httpx.Client) -> None:
    response = ghttp.post("/healthz", content=b"x")
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "GET"
    assert response.json()["error"] == "MethodNotAllowed"


def test_client_leaving_mid_upload_leaves_nothing_and_logs_no_traceback(
    guarded: LiveServer, ghttp: httpx.Client
) -> None:
    ns = unique_ns("gone")
    create_ns(ghttp, guarded, ns)
    mark = len(guarded.log_lines())
    blobs = guarded.blob_hashes()
    for path, head_extra in (
        (f"/api/v1/namespaces/{ns}/files/big.bin", b""),
        (f"/api/v1/namespaces/{ns}/bundles/{'c' * 64}", b""),
        (f"/{ns}/", b"Content-Type: multipart/form-data; boundary=xyz\r\n"),
    ):
        with socket.create_connection(("127.0.0.1", port(guarded))) as sock:
            sock.sendall(
                b"%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%sContent-Length: %d\r\n\r\n"
                % (
                    b"POST" if path.endswith("/") else b"PUT",
                    path.encode(),
                    guarded.admin_token.encode(),
                    head_extra,
                    8 * MiB,
                )  # fmt: skip
            )
            sock.sendall(b"--xyz\r\n" + bytes(2 * MiB) if head_extra else bytes(2 * MiB))
            time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and guarded.temp_count():
        time.sleep(0.1)
    assert guarded.temp_count() == 0
    assert guarded.blob_hashes() == blobs
    assert guarded.count("file_revisions", ns) == 0
    time.sleep(0.5)
    log = "\n".join(guarded.log_lines()[mark:])
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]


# -- item 10: heads and bodies that are too big or too slow ----------------------------------------------


def test_oversized_heads_are_431(guarded: LiveServer) -> None:
    big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MiB + b"\r\n\r\n"
    many_headers = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n"
    )
    for request in (big_header, many_headers):
        with socket.create_connection(("127.0.0.1", port(guarded))) as sock:
            send_until_answered(sock, (request[i : i + 16384] for i in range(0, len(request), 16384)))
            answer = read_all(sock)
        assert status_of(answer) == 431, answer[:300]
        assert body_json(answer)["error"] == "TooLarge"
    # a normal request on a fresh connection still works
    assert httpx.get(f"{guarded.url}/healthz").status_code == 200


def test_slow_heads_and_bodies_are_closed(guarded: LiveServer, ghttp: httpx.Client) -> None:
    ns = unique_ns("slow")
    create_ns(ghttp, guarded, ns)
    # slowloris: a header line every half second, forever — answered 408 and closed
    with socket.create_connection(("127.0.0.1", port(guarded))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        lines = (b"X-Slow-%d: v\r\n" % i for i in range(40))  # 20 s of dribbling at most
        send_until_answered(sock, lines, pause=0.5)
        answer = read_all(sock)
    assert status_of(answer) == 408, answer[:300]
    assert "request head" in body_json(answer)["detail"]

    # a connection that sends nothing at all is closed too
    with socket.create_connection(("127.0.0.1", port(guarded))) as sock:
        assert read_all(sock, limit=20) == b""

    # a body that stalls, and one that trickles a byte every half second: 408, nothing stored
    path = f"/api/v1/namespaces/{ns}/files/slow.bin"
    for pause in (30.0, 0.5):
        with socket.create_connection(("127.0.0.1", port(guarded))) as sock:
            sock.sendall(
                b"PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\nstart"
                % (path.encode(), guarded.admin_token.encode())
            )
            send_until_answered(sock, (b"x" for _ in range(40)), pause=pause)
            answer = read_all(sock)
        assert status_of(answer) == 408, (pause, answer[:300])
        assert "request body" in body_json(answer)["detail"]
    assert guarded.count("file_revisions", ns) == 0
    # the endpoint undoes its work once it sees the disconnect, which may be a moment after the
    # client has the 408 and the end of the connection (the refusal is written first)
    wait_until(lambda: guarded.temp_count() == 0, 10, "the refused uploads' temporary files to go")
    # a brisk upload is untouched by these limits
    response = ghttp.put(path, content=os.urandom(MiB), headers=guarded.admin)
    assert response.status_code == 201, response.text
