"""Blobs sent straight over ASGI: what the hot path (``index/hot.py``) answers downloads with.

A download through ``FileResponse`` costs a stat in a worker thread and one more thread hop
per 64 KiB read, on top of FastAPI's routing; pip and uv fetch one file per package, so for
an install the files are most of the requests. Here:

- a small blob (up to ``max_item`` bytes) is answered from memory: a :class:`BlobCache`, an
  LRU bounded in bytes, keyed by sha256 (a blob never changes, so an entry never goes
  stale). A miss on the local backend is one synchronous read on the event loop (a few
  tens of microseconds from the page cache); on S3 it is one read in a worker thread.
- a larger one on the local backend is handed to the server with the ASGI
  ``http.response.pathsend`` extension where the server offers it (packyard's uvicorn
  protocol does, with ``os.sendfile`` from the event loop: ``protocol.py``; so does
  granian; the kernel copies it), and otherwise streamed in 1 MiB reads, one thread hop
  each; on S3 it is opened in a worker thread, then streamed the same way.
- a wheel's core metadata (PEP 658, ``{file}.metadata``, which uv and pip fetch for every
  package they resolve) is a small blob too, answered the same way as the routes answer it
  (:func:`send_metadata`), its hash checked when it is read.

Everything that may fail (the file is gone, S3 is down) happens before the status line;
:func:`send_blob` then returns False without having sent anything and the caller lets the
FastAPI routes answer, with packyard's error shape and the error log. The status codes sent
from here are 200, 206 and 304 only.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import BinaryIO

import anyio
import anyio.to_thread
from starlette.types import Receive, Scope, Send

from packyard.store.blobs.base import BlobStore
from packyard.store.errors import PackyardError, RangeNotSatisfiable
from packyard.streaming import CHUNK, content_type, parse_range


class BlobCache:
    """Small blobs by sha256, least recently used first out, never more than ``max_bytes``.

    ``max_item`` is the size up to which a download is answered in one piece; with
    ``max_bytes`` 0 nothing is kept and each such download is one read.

    Only the event loop touches it (the hot path), so it needs no lock.
    """

    def __init__(self, max_bytes: int, max_item: int) -> None:
        self.max_bytes = max_bytes
        self.max_item = max_item
        self.used = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sha256: str) -> bytes | None:
        data = self._entries.get(sha256)
        if data is not None:
            self._entries.move_to_end(sha256)
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` unless it is bigger than one entry may be; evict the oldest to fit."""
        if len(data) > min(self.max_item, self.max_bytes) or sha256 in self._entries:
            return
        while self._entries and self.used + len(data) > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.used -= len(evicted)
        self._entries[sha256] = data
        self.used += len(data)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _read_all(blobs: BlobStore, sha256: str) -> bytes:
    with blobs.open(sha256) as stream:
        return stream.read()


def _read_local(path: str) -> bytes | None:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError:
        return None


async def _small(blobs: BlobStore, cache: BlobCache, sha256: str, size: int) -> bytes | None:
    data = cache.get(sha256)
    if data is not None:
        return data
    local = blobs.local_path(sha256)
    if local is not None:
        data = _read_local(str(local))  # page-cache cheap: cheaper than a thread hop
    else:
        try:
            data = await anyio.to_thread.run_sync(_read_all, blobs, sha256)
        except (PackyardError, OSError):
            return None
    if data is None or len(data) != size:
        return None  # gone, or not what the catalog says: the routes explain it
    cache.put(sha256, data)
    return data


async def send_metadata(scope: Scope, send: Send, blobs: BlobStore, cache: BlobCache, sha256: str) -> bool:
    """Answer a GET or HEAD for core metadata as the route does (``text/plain``, its hash as the
    ETag, 304, no ranges); False (nothing sent) when it is not at hand and intact: the route
    then re-derives it from the file, or explains what is wrong."""
    etag = f'"{sha256}"'.encode()
    if _header(scope, b"range") is not None:
        return False  # the route answers the whole of it, whatever was asked
    if _header(scope, b"if-none-match") == etag.decode():
        await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag)]})
        await send({"type": "http.response.body", "body": b""})
        return True
    data = cache.get(sha256)
    if data is None:
        local = blobs.local_path(sha256)
        if local is not None:
            data = _read_local(str(local))
        else:
            try:
                data = await anyio.to_thread.run_sync(_read_all, blobs, sha256)
            except (PackyardError, OSError):
                return False
        if data is None or hashlib.sha256(data).hexdigest() != sha256:
            return False
        cache.put(sha256, data)
    headers = [
        (b"content-length", str(len(data)).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"etag", etag),
        (b"cache-control", b"no-cache"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else data})
    return True


async def _stream(stream: BinaryIO, length: int, receive: Receive, send: Send) -> None:
    """Send ``length`` bytes of ``stream`` in 1 MiB reads, stopping if the client leaves."""
    gone = anyio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            left = length
            while left > 0 and not gone.is_set():
                chunk = await anyio.to_thread.run_sync(stream.read, min(CHUNK, left))
                if not chunk:
                    break  # shorter than the catalog says: the client sees a short read
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            group.cancel_scope.cancel()
    except OSError:
        pass  # the client went away mid-body (ASGI 2.4 servers raise on send)
    finally:
        stream.close()


async def send_blob(
    scope: Scope,
    receive: Receive,
    send: Send,
    blobs: BlobStore,
    cache: BlobCache,
    sha256: str,
    size: int,
    filename: str,
) -> bool:
    """Answer a GET or HEAD for a blob; False (nothing sent) for what the routes must answer:
    a missing or unreadable blob, an unsatisfiable, multiple or conditional (If-Range) range."""
    etag = f'"{sha256}"'
    headers = [
        (b"etag", etag.encode()),
        (b"cache-control", b"no-cache"),
        (b"accept-ranges", b"bytes"),
    ]
    if _header(scope, b"if-none-match") in (etag, sha256, "*"):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return True
    status, offset, length = 200, 0, size
    requested = _header(scope, b"range")
    if requested is not None:
        if _header(scope, b"if-range") is not None:
            return False
        try:
            wanted = parse_range(requested, size)
        except RangeNotSatisfiable:
            return False
        if wanted is None:
            return False  # malformed, several ranges, or unsatisfiable (416): the routes' call
        offset, length = wanted
        status = 206
        headers.append((b"content-range", f"bytes {offset}-{offset + length - 1}/{size}".encode()))
    headers += [(b"content-type", content_type(filename).encode()), (b"content-length", str(length).encode())]
    head = scope["method"] == "HEAD"

    if size <= cache.max_item:
        data = await _small(blobs, cache, sha256, size)
        if data is None:
            return False
        await send({"type": "http.response.start", "status": status, "headers": headers})
        body = b"" if head else data if length == size else data[offset : offset + length]
        await send({"type": "http.response.body", "body": body})
        return True

    local = blobs.local_path(sha256)
    if local is not None:
        try:
            stream: BinaryIO = open(local, "rb")  # noqa: SIM115 - closed by _stream
        except OSError:
            return False
        if os.fstat(stream.fileno()).st_size != size:
            stream.close()
            return False
        if head:
            stream.close()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return True
        if status == 200 and "http.response.pathsend" in scope.get("extensions", {}):
            stream.close()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.pathsend", "path": str(local)})
            return True
        if offset:
            stream.seek(offset)
    else:
        try:
            if head:
                await anyio.to_thread.run_sync(blobs.size, sha256)
                stream = None  # type: ignore[assignment]
            else:
                stream = await anyio.to_thread.run_sync(blobs.open, sha256, offset, length)
        except (PackyardError, OSError):
            return False
        if head:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return True
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await _stream(stream, length, receive, send)
    return True
