"""Limits on the HTTP connection itself, for a server that faces clients without a proxy.

uvicorn's httptools protocol takes a request head of any size and any number of headers,
and waits forever for a head or a body that trickles in (only the idle gap between requests
is timed). A proxy usually enforces these; this subclass enforces them in the server:

- ``max_header_bytes``: the request line and headers together (431 past it);
- ``max_headers``: how many header fields (431 past it);
- ``headers_timeout``: from a new connection, or from the first bytes of a head, to the
  complete head; a connection that sends nothing, or dribbles its head (slowloris), is
  answered 408 and closed (between requests, uvicorn's keep-alive timeout applies);
- ``body_timeout`` and ``body_min_rate``: while a request body is still expected, every
  ``body_timeout`` seconds must bring at least ``body_min_rate`` bytes per second (and at
  least one byte): a silent or trickling body is answered 408 and closed, and the endpoint
  sees a disconnect and undoes its work. Time the server itself spends not reading
  (back-pressure while a slow store catches up) does not count.

A refused connection is closed gracefully: the answer is sent, the server stops writing and
discards what still arrives for a moment (so the client reads the answer instead of a reset).

The answers are packyard's error shape, written straight to the socket: no application code
runs for a request that breaks these limits.

Each request's response goes through :class:`PackyardCycle` (uvicorn's request/response
cycle, two things added), because downloads are most of an install's requests:

- the status line and headers are held until the first body bytes and leave in the same
  write: a small answer (a cached wheel, a page, a 304) is one ``send()`` and one segment,
  not two (the second write was a quarter of the server's time for a 2 kB wheel);
- the ASGI ``http.response.pathsend`` extension: the file goes out with ``os.sendfile``
  from the event loop, the kernel copying page cache to socket, instead of 1 MiB reads in a
  worker thread and copies through the transport (``blob_send.py`` uses it for large blobs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import httptools
from uvicorn.middleware.message_logger import MessageLoggerMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

log = logging.getLogger("packyard.protocol")

PATHSEND = "http.response.pathsend"
FALLBACK_CHUNK = 1024 * 1024
WRITABLE_POLL = 1.0


def _wake(ready: asyncio.Future) -> None:
    if not ready.done():
        ready.set_result(None)


class HeldHead:
    """The transport as one response's cycle sees it: the write after ``hold()`` (the status
    line and headers) is kept back and goes out with the next write (the body, or its first
    chunk), or when the response ends or the connection closes."""

    __slots__ = ("transport", "held", "holding")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held = b""
        self.holding = False

    def write(self, data: bytes) -> None:
        if self.holding:
            self.holding = False
            self.held = data
            return
        if self.held:
            held, self.held = self.held, b""
            if len(data) <= 64 * 1024:
                data = held + data
            else:
                self.transport.writelines((held, data))  # one writev; no copy of a big chunk
                return
        self.transport.write(data)

    def flush(self) -> None:
        self.holding = False
        if self.held:
            held, self.held = self.held, b""
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class PackyardCycle(RequestResponseCycle):
    """uvicorn's request/response cycle with the head held for the body, and pathsend.

    ``GuardedHttpToolsProtocol._start_asgi_task`` turns each cycle uvicorn makes into one
    of these before its task first runs (uvicorn names its cycle class inside the protocol's
    header callback, which is not ours to copy)."""

    transport: HeldHead  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        if message["type"] == PATHSEND:
            if self.disconnected:
                return  # the client left: uvicorn dropped the start too, and there is no one to send to
            if not self.response_started or self.response_complete:
                raise RuntimeError("http.response.pathsend must follow http.response.start, once")
            await self._pathsend(message["path"])
            return
        if not self.response_started:
            self.transport.holding = True
        await super().send(message)
        if self.response_complete or self.disconnected:
            self.transport.flush()  # a HEAD or an empty body wrote nothing to carry the head

    async def _pathsend(self, path: str) -> None:
        """Send the file's first Content-Length bytes (all of it, as the extension means) with
        ``os.sendfile`` on a duplicate of the socket's descriptor, then end the response.

        The duplicate keeps the descriptor number ours while we use it: if the client leaves
        and uvicorn closes the transport, its number may be handed to a new connection, which
        must never get these bytes. A file that cannot be opened or is shorter than promised
        ends the connection (the head promised a length): the caller checked it just before.
        """
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            self.transport.close()
            return
        with file:
            count = self.expected_content_length if self.scope["method"] != "HEAD" else 0
            self.transport.flush()
            transport = self.transport.transport
            sock = transport.get_extra_info("socket")
            if transport.is_closing():
                return
            plain = sock is not None and transport.get_extra_info("sslcontext") is None and hasattr(os, "sendfile")
            if count and (not plain or transport.get_write_buffer_size()):
                await self._stream(file, count)  # TLS, or bytes still queued ahead of us: keep their order
                return
            sent = await self._sendfile(sock.fileno(), file.fileno(), count) if count else 0
            if sent < count:
                if not self.disconnected:
                    self.transport.close()  # a short file: the client must not wait for the rest
                return
            self.expected_content_length = 0
            await super().send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _sendfile(self, socket_fd: int, file_fd: int, count: int) -> int:
        loop = asyncio.get_running_loop()
        out = os.dup(socket_fd)
        offset = 0
        try:
            while offset < count and not self.disconnected:
                try:
                    sent = os.sendfile(out, file_fd, offset, count - offset)
                except BlockingIOError:
                    ready = loop.create_future()
                    loop.add_writer(out, _wake, ready)
                    try:
                        await asyncio.wait_for(ready, WRITABLE_POLL)
                    except TimeoutError:
                        pass  # still full: look at self.disconnected, then wait again
                    finally:
                        loop.remove_writer(out)
                    continue
                except OSError:
                    self.disconnected = True  # reset or broken pipe: the client left
                    break
                if sent == 0:
                    break
                offset += sent
                await asyncio.sleep(0)  # a reader as fast as the kernel must not hold the loop for the whole file
        finally:
            os.close(out)
        return offset

    async def _stream(self, file: Any, count: int) -> None:
        while count > 0 and not self.disconnected:
            chunk = await anyio.to_thread.run_sync(file.read, min(FALLBACK_CHUNK, count))
            if not chunk:
                self.transport.close()
                return
            count -= len(chunk)
            await self.send({"type": "http.response.body", "body": chunk, "more_body": count > 0})


UVICORN_OWNS = frozenset(
    (b"content-length", b"transfer-encoding", b"upgrade", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded")
)
"""Request headers that leave a request to uvicorn's own path: a body to read, a protocol
switch, or proxy headers (uvicorn may rewrite the client's address and scheme from them)."""


def _answerer(app: Any) -> Callable[[str, str, list[tuple[bytes, bytes]]], Any] | None:
    """The application's ``answer_now`` (``HotIndex``), under what uvicorn itself wraps around
    it (its proxy-headers and message-logger middlewares), or None: a middleware of anyone else
    in front of the app must see every request, so it is never stepped over."""
    while isinstance(app, ProxyHeadersMiddleware | MessageLoggerMiddleware):
        app = app.app
    return getattr(app, "answer_now", None)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    max_headers = 100
    headers_timeout = 10.0
    body_timeout = 30.0
    body_min_rate = 1024
    linger = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._in_body = False
        self._header_count = 0
        self._refusal: tuple[int, str, str] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._window = 0
        self._closing = False
        self._answer = _answerer(self.app)
        self._answered = False
        self._defaults_of: list[tuple[bytes, bytes]] | None = None
        self._defaults_head = b""

    # timers ----------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._head_bytes:
            self._refuse(408, "InvalidInput", f"the request head took longer than {self.headers_timeout:g} s")
        else:
            self._close()

    def _body_check(self) -> None:
        self._timer = None
        window, self._window = self._window, 0
        if self.flow.read_paused or window >= max(1, self.body_min_rate * self.body_timeout):
            self._arm(self.body_timeout, self._body_check)  # a paused read is the server's doing
            return
        if self.cycle is not None and self.cycle.response_complete:
            self._close()  # answered already (say a 401 before the body): just stop waiting for it
            return
        self._refuse(
            408,
            "InvalidInput",
            f"the request body arrived slower than {self.body_min_rate} bytes/s over {self.body_timeout:g} s",
        )

    def _close(self) -> None:
        """Stop writing, discard what still arrives for ``linger`` seconds, then close."""
        self._disarm()
        self._closing = True
        if self.transport.is_closing():
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.flow.resume_reading()
            self._timer = self.loop.call_later(self.linger, self.transport.close)
        else:
            self.transport.close()

    def _refuse(self, status: int, error: str, detail: str) -> None:
        """Answer in packyard's shape (unless a response has begun) and close the connection."""
        self._disarm()
        if self.transport.is_closing() or self._closing:
            return
        cycle = self.cycle
        active = cycle is not None and not cycle.response_complete
        if not (active and cycle.response_started):
            body = json.dumps({"error": error, "detail": detail}).encode()
            head = (
                STATUS_LINE[status] + b"content-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head + body)
        if active:  # the endpoint sees a disconnect, and whatever it answers is dropped
            cycle.disconnected = True
            cycle.message_event.set()
        self._close()

    # connection events ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.headers_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = PackyardCycle
        cycle.transport = HeldHead(cycle.transport)  # type: ignore[assignment]
        cycle.scope.setdefault("extensions", {})[PATHSEND] = {}
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        if self._closing or self.transport.is_closing():
            return
        if self._in_head:
            self._head_bytes += len(data)
        else:
            self._window += len(data)
        super().data_received(data)
        if self._refusal is not None:
            self._refuse(*self._refusal)
        elif self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(431, "TooLarge", f"the request head is larger than {self.max_header_bytes} bytes")
        elif self._timer is None:
            # armed only when a head or a body is left incomplete by this chunk: a request that
            # arrives whole (every GET of the hot path) costs no timer at all
            if self._in_body:
                self._arm(self.body_timeout, self._body_check)
            elif self._in_head and self._head_bytes:
                self._arm(self.headers_timeout, self._head_timed_out)

    # parser callbacks ----------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head, self._header_count = True, 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refusal is not None:
            return
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refusal = (431, "TooLarge", f"the request has more than {self.max_headers} header fields")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refusal is not None:
            return
        self._disarm()
        self._in_head, self._head_bytes = False, 0
        self._in_body, self._window = True, 0
        if self._answer_now():
            self._answered = True
            return
        # an answer from the connection earlier in this chunk armed the keep-alive timer, which
        # uvicorn cancels only when new data arrives: this request must not be cut off by it
        self._unset_keepalive_if_required()
        super().on_headers_complete()

    def _defaults(self) -> bytes:
        """uvicorn's default headers (date, server) as lines; uvicorn replaces the list each
        second (the date), and the lines are made again only then."""
        defaults = self.server_state.default_headers
        if defaults is not self._defaults_of:
            self._defaults_of = defaults
            self._defaults_head = b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
        return self._defaults_head

    def _answer_now(self) -> bool:
        """Send a cached page from here, without an ASGI cycle and its task, when the app has
        one for this request (``HotIndex.answer_now``); False leaves the request to uvicorn.

        Only a plain keep-alive HTTP/1.1 GET or HEAD with no body and no forwarding headers,
        not queued behind a response still being sent, while the client reads what it is sent
        (the transport's buffer below its high-water mark): anything else takes the usual path,
        where uvicorn handles it. The answer is the one the ASGI path would send (the same
        function makes it), headed by the same default headers (date, server) and logged with
        the same access line when requests are logged."""
        answer = self._answer
        if answer is None or self.expect_100_continue or self.root_path:
            return False
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return False  # pipelined behind a response still going out: uvicorn queues it
        if self.flow.write_paused:
            # the client is not reading what was sent: uvicorn's cycle waits for the buffer to
            # drain and stops reading meanwhile; answering here would buffer without bound
            return False
        parser = self.parser
        method = parser.get_method()
        if method not in (b"GET", b"HEAD") or parser.get_http_version() != "1.1" or not parser.should_keep_alive():
            return False
        for name, _ in self.headers:
            if name in UVICORN_OWNS:
                return False  # a body to read, a protocol switch, or a client address to rewrite
        url = httptools.parse_url(self.url)
        if b"%" in url.path:
            return False
        try:
            result = answer(method.decode(), url.path.decode("ascii"), self.headers)
        except UnicodeDecodeError:
            return False
        except Exception:  # noqa: BLE001 - raised inside the parser it would read as the client's 400
            log.exception("answering %s from the connection failed; handing it to the app", url.path[:200])
            return False  # the app meets the same fault and answers it (500, 503) through the error log
        if result is None:
            return False
        if self.access_log:  # before the bytes leave, as uvicorn logs at the response's start
            scope = {"client": self.client, "path": url.path.decode("ascii"), "query_string": url.query or b""}
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),  # type: ignore[arg-type]
                method.decode(),
                get_path_with_query_string(scope),  # type: ignore[arg-type]
                "1.1",
                result.status,
            )
        self.transport.write(
            b"".join((STATUS_LINE[result.status], self._defaults(), result.head, b"\r\n", result.body))
        )
        self.on_response_complete()  # what uvicorn does after a response: count, resume, keep-alive timer
        return True

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is not None:
            return
        self._in_body = False
        self._in_head = True
        self._disarm()
        if self._answered:  # answered from on_headers_complete: there is no cycle to tell
            self._answered = False
            return
        super().on_message_complete()


def guarded_protocol(
    *, max_header_bytes: int, max_headers: int, headers_timeout: float, body_timeout: float, body_min_rate: int
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with the server's settings."""
    return type(
        "PackyardHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_headers": max_headers,
            "headers_timeout": headers_timeout,
            "body_timeout": body_timeout,
            "body_min_rate": body_min_rate,
        },
    )
