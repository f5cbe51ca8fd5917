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
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


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
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is not None:
            return
        self._in_body = False
        self._in_head = True
        self._disarm()
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
