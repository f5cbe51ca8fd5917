"""Packyard's uvicorn protocol (``packyard/protocol.py``) offers ``http.response.pathsend``:
large downloads leave by ``os.sendfile`` from the event loop, on a connection that stays
usable afterwards. Run against uvicorn with packyard's protocol class and a small ASGI
app (``tests/support/pathsend_app.py``) so every edge of the extension can be reached; raw
sockets, to read slowly (the socket's buffer fills and the server must wait for it) and to
leave mid-file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.support.pathsend_app import FAULT_BODY
from tests.support.procs import free_port, stop_process, wait_until

SIZE = 12 * 1024 * 1024
"""Well over what a loopback socket buffers, so sendfile meets a full socket."""


@pytest.fixture(scope="module")
def sendfile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, bytes]]:
    root = tmp_path_factory.mktemp("pathsend")
    data = os.urandom(SIZE)
    (root / "big.bin").write_bytes(data)
    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.pathsend_app", str(port)]
    env = {**os.environ, "PACKYARD_DATA": str(root / "data"), "PACKYARD_KEEP_ALIVE_TIMEOUT": "1"}
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[2])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/small").status_code == 200, 30, "uvicorn with packyard's protocol", proc)
        yield url, root / "big.bin", data
    finally:
        stop_process(proc, 10)
    log = (root / "server.log").read_bytes()
    # the one fault a test injects on purpose is logged with its traceback; nothing else may be
    assert log.count(b"Traceback") == log.count(b"RuntimeError: a fault while answering from the connection"), log


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def read_response(
    sock: socket.socket, pending: bytearray, slow: bool = False, bodyless: bool = False
) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length response (``bodyless``: an answer to HEAD);
    ``pending`` keeps what follows it."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the head"
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = 0 if bodyless else int(fields[b"content-length"])
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(16384 if slow else 1 << 20)
        assert chunk, f"connection closed after {len(body)} of {length} bytes"
        body += chunk
        if slow and len(body) < 4 * 16384:
            time.sleep(0.05)  # let the server's socket buffer fill and sendfile meet EAGAIN
    pending[:] = body[length:]
    return head, bytes(body[:length])


def test_pathsend_sends_the_file_and_the_connection_goes_on(sendfile_server: tuple[str, Path, bytes]) -> None:
    url, path, data = sendfile_server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        pending = bytearray()
        for slow in (True, False):
            sock.sendall(request(f"/file?path={quote(str(path))}"))
            head, body = read_response(sock, pending, slow=slow)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert body == data
        sock.sendall(request("/small") + request("/small", "HEAD"))  # pipelined, after the file
        head, body = read_response(sock, pending)
        assert (head.startswith(b"HTTP/1.1 200"), body) == (True, b"small answer")
        head, _ = read_response(sock, pending, bodyless=True)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 12" in head.lower()


def test_a_file_shorter_than_its_head_ends_the_connection(sendfile_server: tuple[str, Path, bytes]) -> None:
    """The head promised more than the file holds: the client gets what there is and an end
    of connection, not a wait for bytes that never come."""
    url, path, data = sendfile_server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request(f"/file?path={quote(str(path))}&length={SIZE + 1000}"))
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
    assert received.endswith(data)


def test_a_client_leaving_mid_file_leaves_the_server_serving(sendfile_server: tuple[str, Path, bytes]) -> None:
    url, path, data = sendfile_server
    port = int(url.rsplit(":", 1)[1])
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(request(f"/file?path={quote(str(path))}"))
        assert sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
        sock.close()
    with httpx.Client(base_url=url, timeout=30) as http:
        got = http.get("/file", params={"path": str(path)})
        assert (got.status_code, got.content == data) == (200, True)


def test_a_fault_in_the_connections_answer_goes_to_the_app(sendfile_server: tuple[str, Path, bytes]) -> None:
    """``answer_now`` raising inside the parser's callback must not read as the client's
    fault (uvicorn answers a parser error 400 and closes): the app gets the request, and
    the connection goes on."""
    url, _, _ = sendfile_server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        pending = bytearray()
        for path, status, body in (("/faulty", 500, FAULT_BODY), ("/answered", 200, b"answered")) * 2:
            sock.sendall(request(path))
            head, got = read_response(sock, pending)
            assert head.split()[1] == str(status).encode() and got == body


def test_a_request_behind_the_connections_answer_outlives_the_keep_alive_timer(
    sendfile_server: tuple[str, Path, bytes],
) -> None:
    """The answer from the connection arms uvicorn's keep-alive timer (1 s here); a request in
    the same chunk behind it that takes longer (2 s) must still be answered whole."""
    url, _, _ = sendfile_server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request("/answered") + request("/slow"))
        pending = bytearray()
        assert read_response(sock, pending)[1] == b"answered"
        assert read_response(sock, pending)[1] == b"slow"
