"""The hot read path: a bare ASGI layer in front of FastAPI for index pages and dists
(``packyard.app.create_asgi`` wraps the whole app in it).

Measured on this machine (DESIGN.md, "Hot paths"), a FastAPI route tops out near a third
of what a bare ASGI callable serves. pip and uv hit ``/{ns}/simple/...`` and
``/{ns}/dists/...`` on every run, so when anonymous reads are on and the answer is already
cached, it is sent from here: no routing, no dependency injection, no catalog query.
Everything else — a miss, a redirect, an error — falls through to the FastAPI routes,
which fill the cache.

A request that presents a token is checked here exactly as the routes check it, so the
answer never depends on whether the page is cached: an invalid token, or one whose scope
does not cover the namespace, falls through to the routes (401, 403); only a token that
may read the namespace gets the cached page. The anonymous hit stays query-free.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from packyard.auth import credentials
from packyard.blob_send import BlobCache, send_blob, send_metadata
from packyard.index.cache import IndexCache
from packyard.index.negotiate import negotiate
from packyard.index.routes import METADATA_SUFFIX
from packyard.store.errors import PackyardError
from packyard.streaming import dist_response

Headers = list[tuple[bytes, bytes]]


class Answer(NamedTuple):
    """A whole response the hot path sends."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    head: bytes
    """The same headers as HTTP/1.1 lines, for the connection to write as they are."""
    body: bytes


@lru_cache(maxsize=4096)
def _page_headers(etag: str, content_type: str | None, length: int) -> tuple[tuple[tuple[bytes, bytes], ...], bytes]:
    """A page's headers, encoded once per page and format (``content_type`` None: a 304's)."""
    headers: tuple[tuple[bytes, bytes], ...] = (
        (b"etag", etag.encode()),
        (b"vary", b"Accept"),
        (b"cache-control", b"max-age=0, must-revalidate"),
    )
    if content_type is not None:
        headers += ((b"content-type", content_type.encode()), (b"content-length", str(length).encode()))
    return headers, b"".join(name + b": " + value + b"\r\n" for name, value in headers)


def _header(headers: Headers, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class HotIndex:
    def __init__(
        self, app: ASGIApp, cache: IndexCache, blobs: BlobCache, *, enabled: bool, redirect_seconds: int = 0
    ) -> None:
        self.app = app
        self.cache = cache
        self.blobs = blobs
        self.enabled = enabled
        self.redirect_seconds = redirect_seconds

    def _may_read(self, headers: Headers, namespace: str) -> bool:
        """True for an anonymous request (reads are open when this layer is on) and for a
        valid token that may read ``namespace``; anything else is the routes' to answer."""
        if _header(headers, b"authorization") is None:
            return True
        try:
            secret = credentials(Request({"type": "http", "headers": headers}))
            if secret is None:
                return False
            return self.cache.store.tokens.authenticate(secret).allows(namespace, "read")
        except PackyardError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            parts = scope["path"].split("/")
            # ['', ns, 'simple', ''] | ['', ns, 'simple', project, ''] | ['', ns, 'dists', filename]
            dist = len(parts) == 4 and parts[2] == "dists" and parts[3]
            if dist:
                if self._may_read(scope["headers"], parts[1]) and await self._dist(
                    scope, receive, send, parts[1], parts[3]
                ):
                    return
            else:
                answer = self._page(scope["method"], parts, scope["headers"])
                if answer is not None:
                    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
                    await send({"type": "http.response.body", "body": answer.body})
                    return
        await self.app(scope, receive, send)

    def answer_now(self, method: str, path: str, headers: Headers) -> Answer | None:
        """A cached index page's whole answer, or None for anything else: what the connection
        itself sends for a page hit (``packyard/protocol.py``), with no ASGI cycle or task.

        The same function answers through ASGI (``__call__``), so both paths answer alike."""
        if not self.enabled:
            return None
        return self._page(method, path.split("/"), headers)

    def _page(self, method: str, parts: list[str], headers: Headers) -> Answer | None:
        # ['', ns, 'simple', ''] | ['', ns, 'simple', project, '']
        if not (len(parts) in (4, 5) and parts[2] == "simple" and parts[-1] == ""):
            return None
        namespace = parts[1]
        chosen = negotiate(_header(headers, b"accept"))
        if chosen is None:
            return None
        fmt, content_type = chosen
        try:
            page = self.cache.lookup_page(namespace, parts[3] if len(parts) == 5 else None, fmt)
        except PackyardError:  # the catalog is away: the routes answer (503)
            return None
        # the token last, on a hit only: a miss goes to the routes, which check it anyway
        if page is None or not self._may_read(headers, namespace):
            return None
        if _header(headers, b"if-none-match") == page.etag:
            return Answer(304, *_page_headers(page.etag, None, 0), b"")
        return Answer(
            200, *_page_headers(page.etag, content_type, len(page.body)), b"" if method == "HEAD" else page.body
        )

    async def _dist(self, scope: Scope, receive: Receive, send: Send, namespace: str, filename: str) -> bool:
        metadata = filename.endswith(METADATA_SUFFIX)
        try:
            found = self.cache.lookup_download(namespace, filename[: -len(METADATA_SUFFIX)] if metadata else filename)
        except PackyardError:  # the catalog is away: the routes answer (503)
            return False
        if found is None:
            return False
        file, sha256, size = found
        if metadata:
            if file.upstream_url is not None or not file.metadata_sha256:
                return False  # none to serve, or the upstream's (fetched on first request): the routes
            return await send_metadata(scope, send, self.cache.store.blobs, self.blobs, file.metadata_sha256)
        if file.upstream_url is not None:
            self.cache.store.touches.mirrored(sha256)  # in memory; written in batches (store/touches.py)
        if self.redirect_seconds > 0:  # PACKYARD_S3_REDIRECT: the bucket sends the bytes
            response = dist_response(
                Request(scope),
                self.cache.store.blobs,
                sha256,
                size,
                filename=filename,
                redirect_seconds=self.redirect_seconds,
            )
            await response(scope, receive, send)
            return True
        return await send_blob(scope, receive, send, self.cache.store.blobs, self.blobs, sha256, size, filename)
