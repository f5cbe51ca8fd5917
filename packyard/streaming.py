"""Request bodies in, blobs out, without ever holding a whole file in memory.

The store's writers are synchronous (hashing, disk, the minio SDK), so a write runs in a
worker thread; :class:`RequestReader` lets that thread pull the request body chunk by chunk
from the event loop. Each chunk is awaited only when the writer asks for it, which is the
back-pressure that keeps a 1 GiB upload at a few megabytes of memory.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from packyard.http_errors import error_response
from packyard.store.blobs.base import BlobStore, too_large
from packyard.store.errors import InvalidInput, PackyardError, RangeNotSatisfiable

T = TypeVar("T")
CHUNK = 1024 * 1024


class RequestReader:
    """A file-like ``read(n)`` over ``request.stream()``, for use from a worker thread."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream().__aiter__()
        self._buffer = b""
        self._done = False

    async def _next(self) -> bytes:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return b""

    def read(self, n: int = -1) -> bytes:
        while not self._buffer and not self._done:
            chunk = anyio.from_thread.run(self._next)
            if chunk:
                self._buffer = chunk
            else:
                self._done = True
        if n is None or n < 0 or n >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def client_present(request: Request) -> Callable[[], None]:
    """For a worker thread's long check: raise ``ClientDisconnect`` once the client has gone,
    so nobody's CPU is spent on an answer nobody will read."""

    def checkpoint() -> None:
        if anyio.from_thread.run(request.is_disconnected):
            raise ClientDisconnect()

    return checkpoint


def check_length(request: Request, limit: int | None) -> None:
    """Refuse a declared body size over the limit before reading a byte of it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError as exc:
        raise InvalidInput("Content-Length is not a number") from exc
    if limit is not None and length > limit:
        raise too_large(limit)


async def with_body(request: Request, limit: int | None, work: Callable[[RequestReader], T]) -> T:
    """Run ``work(reader)`` in a worker thread, streaming the request body into it."""
    check_length(request, limit)
    reader = RequestReader(request)
    return await anyio.to_thread.run_sync(work, reader)


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk


class BlobStreamResponse(StreamingResponse):
    """Streams a blob from a remote backend, opened before the status line is sent.

    Opening (the S3 GET that returns headers) is what fails when the backend is down or the
    blob is missing; doing it first means such a failure is answered with its proper status
    and packyard's error body (503 for an outage), never a 200 whose body then breaks off.
    What can still fail after the status line is a connection dropped mid-body, and the
    client sees that as a short read against the Content-Length.
    """

    def __init__(
        self, blobs: BlobStore, sha256: str, offset: int, length: int | None, *, head: bool, **kwargs: Any
    ) -> None:
        super().__init__(iter(()), **kwargs)
        self._open = (blobs, sha256, offset, length, head)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        blobs, sha256, offset, length, head = self._open
        try:
            if head:
                await anyio.to_thread.run_sync(blobs.size, sha256)
            else:
                stream = await anyio.to_thread.run_sync(blobs.open, sha256, offset, length)
                self.body_iterator = iterate_in_threadpool(_chunks(stream))
        except PackyardError as exc:
            await error_response(exc)(scope, receive, send)
            return
        if head:
            await Response(status_code=self.status_code, headers=dict(self.headers))(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def content_type(path: str) -> str:
    if path.endswith(".whl"):
        return "application/zip"
    guessed, encoding = mimetypes.guess_type(path)
    if encoding == "gzip":
        return "application/gzip"
    return guessed or "application/octet-stream"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` range as (offset, length).

    None for a form served whole instead (malformed, several ranges: RFC 9110 lets a server
    ignore those); :class:`RangeNotSatisfiable` (416) for one that starts past the end.
    """
    if not header.startswith("bytes=") or "," in header:
        return None
    start, _, end = header[6:].strip().partition("-")
    try:
        if start:
            first = int(start)
            last = min(int(end), size - 1) if end else size - 1
            if int(end or first) < first or first < 0:
                return None
        else:
            suffix = int(end)
            if suffix <= 0:
                raise RangeNotSatisfiable(f"the range {header!r} asks for no bytes", size)
            first, last = max(size - suffix, 0), size - 1
    except ValueError:
        return None
    if first >= size:
        raise RangeNotSatisfiable(f"the range {header!r} starts past the end of the file ({size} bytes)", size)
    return first, last - first + 1


def blob_response(
    request: Request,
    blobs: BlobStore,
    sha256: str,
    size: int,
    *,
    filename: str,
    headers: dict | None = None,
    media_type: str | None = None,
) -> Response:
    """Serve a blob: ``ETag`` = its sha256, 304 on a match, HEAD, and single ``Range`` requests."""
    etag = f'"{sha256}"'
    all_headers = {"ETag": etag, "Cache-Control": "no-cache", "Accept-Ranges": "bytes", **(headers or {})}
    if request.headers.get("if-none-match") in (etag, sha256, "*"):
        return Response(status_code=304, headers=all_headers)
    media = media_type or content_type(filename)
    requested = request.headers.get("range")
    wanted = None if requested is None or request.method == "HEAD" else parse_range(requested, size)
    local = blobs.local_path(sha256)
    if local is not None:
        response = FileResponse(local, media_type=media, headers=all_headers)
        response.headers["etag"] = etag
        return response
    head = request.method == "HEAD"
    if wanted is not None:
        offset, length = wanted
        return BlobStreamResponse(
            blobs,
            sha256,
            offset,
            length,
            head=False,
            status_code=206,
            media_type=media,
            headers={
                **all_headers,
                "Content-Length": str(length),
                "Content-Range": f"bytes {offset}-{offset + length - 1}/{size}",
            },
        )
    return BlobStreamResponse(
        blobs, sha256, 0, None, head=head, media_type=media, headers={**all_headers, "Content-Length": str(size)}
    )


def dist_response(
    request: Request, blobs: BlobStore, sha256: str, size: int, *, filename: str, redirect_seconds: int = 0
) -> Response:
    """A distribution file: from here, or — with ``PACKYARD_S3_REDIRECT`` — a redirect to a
    presigned URL valid for ``redirect_seconds``, so the bytes flow from the bucket and API
    servers serve pages. The caller has checked access already; the URL names only this
    blob and expires."""
    if redirect_seconds > 0 and request.headers.get("if-none-match") not in (f'"{sha256}"', sha256, "*"):
        url = blobs.presigned_url(sha256, redirect_seconds, filename)
        if url is not None:
            return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    return blob_response(request, blobs, sha256, size, filename=filename)
