"""A cached index page is answered by the connection itself (``packyard/protocol.py`` calls
``HotIndex.answer_now``), without an ASGI cycle: it must answer exactly as the ASGI path,
keep pipelined answers in order, check tokens as the routes do, log its access line, and
leave the connection to uvicorn's keep-alive rules.

Raw sockets: the answer's bytes, pipelining and an idle connection are not visible through
an HTTP client. A request with ``Connection: close`` always takes uvicorn's path (the
connection's own answer is for keep-alive requests only), which gives the reference answer.
"""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ALL_SERVERS, LiveServer
from tests.support.clients import JSON_V1, create_token, unique_ns, upload
from tests.support.dists import make_wheel

SERVERS = ALL_SERVERS
"""On the PostgreSQL catalog too: its change signal is another class (``store/generations.py``)."""


@pytest.fixture(scope="module")
def page(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The path of a project page with two files, read once so it is cached."""
    ns = unique_ns("answer")
    out = tmp_path_factory.mktemp("answer")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/api/v1/namespaces", json={"name": ns}, headers=server.admin).status_code == 201
        upload(http, server, ns, make_wheel(out, "answered", "1.0"), make_wheel(out, "answered", "1.1"))
        for accept in ("text/html", JSON_V1):
            assert http.get(f"/{ns}/simple/answered/", headers={"Accept": accept}).status_code == 200
    return f"/{ns}/simple/answered/"


def connect(server: LiveServer) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def request(path: str, method: str = "GET", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket, pending: bytearray, *, bodyless: bool = False) -> tuple[str, dict, bytes]:
    """(status line, headers, body) of the next Content-Length answer on ``sock``."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an answer"
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines)
    length = 0 if bodyless or status.split()[1] == "304" else int(fields["content-length"])
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    pending[:] = body[length:]
    return status, fields, bytes(body[:length])


def exchange(server: LiveServer, raw: bytes, *, bodyless: bool = False) -> tuple[str, dict, bytes]:
    with connect(server) as sock:
        sock.sendall(raw)
        return read_answer(sock, bytearray(), bodyless=bodyless)


def without(fields: dict, *names: str) -> dict:
    return {k: v for k, v in fields.items() if k not in names}


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {}),
        ("GET", {"Accept": JSON_V1}),
        ("GET", {"Accept": "application/vnd.pypi.simple.v1+json, text/html; q=0.01"}),
        ("HEAD", {"Accept": JSON_V1}),
        ("GET", {"Accept": "text/html", "Accept_Encoding": "gzip"}),
    ],
)
def test_the_connection_answers_as_uvicorn_does(server: LiveServer, page: str, method: str, headers: dict) -> None:
    bodyless = method == "HEAD"
    reference = exchange(server, request(page, method, Connection="close", **headers), bodyless=bodyless)
    answered = exchange(server, request(page, method, **headers), bodyless=bodyless)
    assert answered[0] == reference[0] == "HTTP/1.1 200 OK"
    assert without(answered[1], "date") == without(reference[1], "date", "connection")
    assert "connection" not in answered[1] and "date" in answered[1] and "server" in answered[1]
    assert answered[2] == reference[2]
    assert (answered[2] == b"") is bodyless


def test_a_matching_etag_is_a_304_on_both_paths(server: LiveServer, page: str) -> None:
    _, fields, _ = exchange(server, request(page, Accept=JSON_V1))
    etag = fields["etag"]
    reference = exchange(server, request(page, Accept=JSON_V1, If_None_Match=etag, Connection="close"))
    answered = exchange(server, request(page, Accept=JSON_V1, If_None_Match=etag))
    assert answered[0] == reference[0] == "HTTP/1.1 304 Not Modified"
    assert without(answered[1], "date") == without(reference[1], "date", "connection")
    assert answered[2] == reference[2] == b""


def test_pipelined_requests_are_answered_in_order(server: LiveServer, page: str) -> None:
    """A page asked for behind a request still being answered waits its turn; one asked for
    first goes out before the slower request behind it."""
    with connect(server) as sock:
        sock.sendall(
            request("/healthz")
            + request(page, Accept=JSON_V1)
            + request("/api/v1/whoami")
            + request(page)
            + request(page, Accept=JSON_V1)
            + request("/healthz")
        )
        pending = bytearray()
        answers = [read_answer(sock, pending) for _ in range(6)]
    kinds = [fields["content-type"] for _, fields, _ in answers]
    assert kinds == [
        "application/json",
        JSON_V1,
        "application/json",
        "text/html; charset=utf-8",
        JSON_V1,
        "application/json",
    ]
    assert b'"status"' in answers[0][2] and b'"status"' in answers[5][2]
    assert b'"role"' in answers[2][2]
    assert all(status.startswith("HTTP/1.1 200") for status, _, _ in answers)


def test_tokens_are_checked_before_a_cached_page(server: LiveServer, page: str) -> None:
    ns = page.split("/")[1]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        _, reader = create_token(http, server, ns, "read")
        _, elsewhere = create_token(http, server, unique_ns("other"), "read")
    basic = base64.b64encode(f"__token__:{reader}".encode()).decode()
    cases = [
        ({"Authorization": "Bearer pky_not_a_token"}, 401),
        ({"Authorization": "Basic !!!"}, 401),
        ({"Authorization": "Digest abc"}, 401),
        ({"Authorization": f"Bearer {elsewhere}"}, 403),
        ({"Authorization": f"Bearer {reader}"}, 200),
        ({"Authorization": f"Basic {basic}"}, 200),
    ]
    with connect(server) as sock:
        pending = bytearray()
        for headers, status in cases:
            sock.sendall(request(page, **headers))
            line, fields, body = read_answer(sock, pending)
            assert line.split()[1] == str(status), (headers, line, body[:200])
            if status != 200:
                assert fields["content-type"] == "application/json" and b"answered" not in body


def test_each_answer_is_logged_as_uvicorn_logs(server: LiveServer, page: str) -> None:
    mark = len(server.log_lines())
    with connect(server) as sock:
        pending = bytearray()
        sock.sendall(request(page + "?x=1"))
        _, fields, _ = read_answer(sock, pending)
        sock.sendall(request(page, If_None_Match=fields["etag"]))
        read_answer(sock, pending)
        sock.sendall(request(page, "HEAD"))
        read_answer(sock, pending, bodyless=True)
    logged = server.requests_since(mark)
    assert logged == [("GET", page + "?x=1", 200), ("GET", page, 304), ("HEAD", page, 200)]


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(server: LiveServer, page: str) -> None:
    """The connection's own answer arms uvicorn's keep-alive timer as a cycle's would: a client
    that asks once and then sits on the connection does not hold it for ever (5 s default)."""
    with connect(server) as sock:
        pending = bytearray()
        sock.sendall(request(page))
        read_answer(sock, pending)
        start = time.monotonic()
        sock.settimeout(20)
        assert sock.recv(1) == b""  # closed by the server
        assert time.monotonic() - start < 15


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.servers("local")
def test_a_client_that_never_reads_cannot_fill_the_servers_memory(server: LiveServer, page: str) -> None:
    """Pipelined page requests from a client that reads nothing: once the connection's write
    buffer is full the server must stop answering from the connection and stop reading (as
    uvicorn's own path does), not buffer every answer (here ~200 MB of them)."""
    pid = server.server.proc.pid  # type: ignore[union-attr]
    before = rss_bytes(pid)
    burst = request(page) * 1000
    sock = connect(server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(3)
    sent = 0
    try:
        for _ in range(200):  # up to 200,000 requests
            sock.sendall(burst)
            sent += len(burst)
    except TimeoutError:
        pass  # the server stopped reading: what it should do
    time.sleep(1)
    grown = rss_bytes(pid) - before
    sock.close()
    assert grown < 64 * 1024 * 1024, f"server grew by {grown >> 20} MB after {sent >> 20} MB of requests"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(page).status_code == 200  # and goes on serving
