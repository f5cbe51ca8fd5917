"""An ASGI app that answers with ``http.response.pathsend`` when its server offers it, for
``tests/packyard/test_protocol_send.py`` (run under uvicorn with packyard's protocol class).

``GET /file?path=P&length=N`` sends the file at P with Content-Length N (the file's size
when N is not given; a larger N is a file that shrank after the head was sent); a server
that does not offer the extension gets 501. ``GET /small`` is a plain two-message answer.

Like packyard's app it has an ``answer_now`` the protocol asks first: ``/answered`` is
answered by the connection itself, ``/slow`` takes 2 s, ``/faulty`` raises there (and the app then answers 500,
as packyard's routes answer a fault).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

PATHSEND = "http.response.pathsend"
FAULT_BODY = b"the app answered the fault"


async def app(scope, receive, send) -> None:  # noqa: ANN001 - an ASGI callable
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":  # longer than the server's keep-alive timeout (the fixture's 1 s)
        await asyncio.sleep(2)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"slow"})
        return
    if scope["path"] == "/faulty":
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"26")]})
        await send({"type": "http.response.body", "body": FAULT_BODY})
        return
    if scope["path"] == "/small":
        body = b"small answer"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"12")]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
        return
    if PATHSEND not in scope.get("extensions", {}):
        await send({"type": "http.response.start", "status": 501, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    query = parse_qs(scope["query_string"].decode())
    path = query["path"][0]
    length = int(query["length"][0]) if "length" in query else os.path.getsize(path)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(length).encode())]})
    await send({"type": PATHSEND, "path": path})


def answer_now(method: str, path: str, headers: list) -> object:
    from packyard.index.hot import Answer

    if path == "/faulty":
        raise RuntimeError("a fault while answering from the connection")
    if path == "/answered":
        return Answer(200, ((b"content-length", b"8"),), b"content-length: 8\r\n", b"answered")
    return None


app.answer_now = answer_now  # type: ignore[attr-defined]


if __name__ == "__main__":  # python -m tests.support.pathsend_app PORT: with packyard's protocol, as serve
    import sys

    import uvicorn

    from packyard.protocol_env import uvicorn_options
    from packyard.settings import get_settings

    uvicorn.run(app, port=int(sys.argv[1]), **uvicorn_options(get_settings()))
