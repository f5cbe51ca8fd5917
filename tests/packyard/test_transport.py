"""The client's HTTP (``packyard/transport.py``) against a scripted server on a raw socket:
what a real server only does when something breaks — a body cut short, a connection closed
after the request arrived, a redirect."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from packyard.store import errors

from packyard.transport import Transport, raise_for

Script = Callable[[socket.socket, bytes, int], bool]
"""Answer one request (its head, its number on the server): False closes the connection."""


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], tuple[str, list[bytes]]]]:
    servers: list[socket.socket] = []

    def start(script: Script) -> tuple[str, list[bytes]]:
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)
        seen: list[bytes] = []

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    while head := read_head(conn):
                        seen.append(head.split(b"\r\n", 1)[0])
                        if not script(conn, head, len(seen)):
                            break

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}", seen

    yield start
    for listener in servers:
        listener.close()


def answer(
    conn: socket.socket, body: bytes, length: int | None = None, status: str = "200 OK", extra: str = ""
) -> None:
    size = len(body) if length is None else length
    conn.sendall(f"HTTP/1.1 {status}\r\ncontent-length: {size}\r\n{extra}\r\n".encode() + body)


def test_a_body_that_ends_short_is_an_error_not_a_shorter_file(scripted) -> None:  # noqa: ANN001
    url, _ = scripted(lambda conn, head, n: answer(conn, b"0123456789", length=1000) or False)
    transport = Transport(url, {})
    with pytest.raises(errors.BackendUnavailable, match="990 bytes short"):
        list(transport.send("GET", "/file").iter_bytes(4096))
    with pytest.raises(errors.BackendUnavailable, match="broke off"):
        transport.send("GET", "/file").content  # noqa: B018


def test_a_post_is_not_sent_twice_when_the_connection_drops(scripted) -> None:  # noqa: ANN001
    """The second request arrives on the kept-alive connection and the server closes it
    without an answer: it may have acted on it, so a POST fails rather than repeats."""

    def script(conn: socket.socket, head: bytes, n: int) -> bool:
        if n == 2:
            return False  # read, then closed unanswered
        answer(conn, b"{}")
        return True

    url, seen = scripted(script)
    transport = Transport(url, {})
    assert transport.send("GET", "/one").content == b"{}"
    with pytest.raises(errors.BackendUnavailable):
        transport.send("POST", "/api/v1/tokens", json={"scope": "*"})
    assert [line.split()[0] for line in seen] == [b"GET", b"POST"]
    assert transport.send("GET", "/three").content == b"{}"  # and the next request goes through


def test_a_get_is_sent_again_on_a_new_connection(scripted) -> None:  # noqa: ANN001
    def script(conn: socket.socket, head: bytes, n: int) -> bool:
        if n == 2:
            return False
        answer(conn, b"{}")
        return True

    url, seen = scripted(script)
    transport = Transport(url, {})
    transport.send("GET", "/one").content  # noqa: B018
    assert transport.send("GET", "/two").content == b"{}"
    assert [line.split()[1] for line in seen] == [b"/one", b"/two", b"/two"]


def test_a_redirect_is_not_followed_and_not_taken_for_success(scripted) -> None:  # noqa: ANN001
    def script(conn: socket.socket, head: bytes, n: int) -> bool:
        answer(conn, b"", status="302 Found", extra="location: https://bucket.example:9000/blobs/x?sig=1\r\n")
        return True

    url, seen = scripted(script)
    response = Transport(url, {"Authorization": "Bearer secret"}).send("GET", "/ns/dists/a.whl")
    with pytest.raises(errors.RemoteFailed, match="a redirect to bucket.example:9000"):
        raise_for(response)
    assert len(seen) == 1
