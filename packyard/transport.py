"""HTTP for the client side, on the standard library (``http.client``).

The task-side install must stay small and start fast (issue #15: ``pip install packyard`` is
the client, the server is ``packyard[server]``); httpx alone brings seven packages and most
of a command's start-up time. What the client needs is narrow — keep-alive connections,
streamed bodies both ways, a JSON error body turned into packyard's exception family — and
``http.client`` does all of it.

A connection belongs to one thread (``pull`` downloads in parallel, each worker thread gets
its own). A request on a kept-alive connection that the server closed meanwhile (its
keep-alive timeout) is sent again once on a new connection, when its body can be replayed
and its method is idempotent.
``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` are honoured as ``urllib`` reads them.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json as jsonlib
import os
import select
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

from packyard.store import errors

CHUNK = 1024 * 1024
DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
IDEMPOTENT = frozenset(("GET", "HEAD", "PUT", "DELETE", "OPTIONS"))
"""Methods sent again after a reused connection fails: a POST may have been acted on."""
_RETRY = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    http.client.BadStatusLine,
    http.client.ImproperConnectionState,  # the previous response was left unread: a new connection
)


class Response:
    """A response whose body is read (``content``) or still streaming (``iter_bytes``, ``read``)."""

    def __init__(self, raw: http.client.HTTPResponse, url: str) -> None:
        self.raw = raw
        self.url = url
        self.status_code = raw.status
        self.reason_phrase = raw.reason
        self.headers = {k.lower(): v for k, v in raw.getheaders()}
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = self._read(None)
        return self._content

    def _read(self, n: int | None) -> bytes:
        """The next bytes of the body; a body that breaks off, or ends short of its
        Content-Length, is ``BackendUnavailable`` (never a truncated file taken as whole)."""
        try:
            data = self.raw.read(n)
        except (OSError, http.client.HTTPException) as exc:
            raise errors.BackendUnavailable(f"the answer from {self.url} broke off: {exc!r}") from exc
        if not data and n != 0 and self.raw.length:
            raise errors.BackendUnavailable(f"the answer from {self.url} ended {self.raw.length} bytes short")
        return data

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def read(self, n: int = -1) -> bytes:
        """Read the streamed body (a file-like object, as ``tarfile`` wants)."""
        return self._read(n if n is not None and n >= 0 else None)

    def iter_bytes(self, chunk: int = CHUNK) -> Iterator[bytes]:
        while data := self._read(chunk):
            yield data


def raise_for(response: Response) -> None:
    """Raise the server's ``{"error": Class, "detail": message}`` as that class of
    ``packyard.store.errors`` (by status when the body is not packyard's)."""
    if response.status_code < 300:
        return
    if response.status_code < 400:  # never followed: the token must not go to another host
        where = urlsplit(response.headers.get("location", "")).netloc or "elsewhere"
        raise errors.RemoteFailed(f"{response.url} answered {response.status_code}, a redirect to {where}")
    try:
        body = response.json()
        name, detail = body.get("error"), body.get("detail")
    except (ValueError, AttributeError):
        name, detail = None, None
    if not isinstance(detail, str):
        detail = f"{response.status_code} {response.reason_phrase}: {response.text[:200] or detail}"
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, errors.PackyardError)):
        cls = {
            400: errors.InvalidInput,
            401: errors.Unauthenticated,
            403: errors.Forbidden,
            404: errors.NotFound,
            409: errors.Conflict,
            413: errors.TooLarge,
            422: errors.InvalidInput,
            502: errors.RemoteFailed,
        }.get(response.status_code, errors.PackyardError)
    raise cls(detail)


def multipart(data: dict[str, str], files: list[tuple[str, tuple[str, IO[bytes]]]]) -> tuple[IO[bytes], str]:
    """A ``multipart/form-data`` body spooled to a temporary file, and its content type."""
    boundary = uuid.uuid4().hex
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - returned open: the request reads it, then closes it
    for name, value in data.items():
        spool.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, (filename, stream) in files:
        quoted = filename.replace('"', "%22")
        spool.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        while chunk := stream.read(CHUNK):
            spool.write(chunk)
        spool.write(b"\r\n")
    spool.write(f"--{boundary}--\r\n".encode())
    spool.seek(0)
    return spool, f"multipart/form-data; boundary={boundary}"


class Transport:
    """Keep-alive connections to one base URL, one per thread."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float | None = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.InvalidInput(f"{base_url!r} is not an http(s) URL: set PACKYARD_URL to the server's address")
        self.base_url = base_url.rstrip("/")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.base_path = parts.path.rstrip("/")
        self.headers = headers
        self.timeout = timeout
        self._local = threading.local()
        self._all: dict[int, http.client.HTTPConnection] = {}
        """Every thread's connection, by thread id (closed when its thread has ended)."""
        self._lock = threading.Lock()
        self._proxy = self._find_proxy()

    def _find_proxy(self) -> tuple[str, int] | None:
        if not any(name.lower().endswith("_proxy") for name in os.environ):
            return None  # urllib.request is slow to import, and most tasks have no proxy
        from urllib.request import getproxies, proxy_bypass

        proxy = getproxies().get(self.scheme)
        if not proxy or proxy_bypass(self.host):
            return None
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return (parts.hostname or "", parts.port or 80) if parts.hostname else None

    def _connect(self) -> http.client.HTTPConnection:
        if self._proxy is not None:
            host, port = self._proxy
        else:
            host, port = self.host, self.port or (443 if self.scheme == "https" else 80)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context()
            )
            if self._proxy is not None:
                conn.set_tunnel(self.host, self.port or 443)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
        with self._lock:
            alive = {t.ident for t in threading.enumerate()}
            for ident in [i for i in self._all if i not in alive]:  # pull's worker threads, done
                self._all.pop(ident).close()
            self._all[threading.get_ident()] = conn
        return conn

    def discard(self) -> None:
        """Close this thread's connection (a response left half-read must not be reused)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def _target(self, url: str, params: dict | None) -> str:
        path = self.base_path + url
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            path += "?" + urlencode(query, doseq=True)
        if self._proxy is not None and self.scheme == "http":
            netloc = self.host + (f":{self.port}" if self.port else "")
            return f"http://{netloc}{path}"
        return path

    def send(
        self,
        method: str,
        url: str,
        *,
        params: dict | None = None,
        json: Any = None,
        content: bytes | IO[bytes] | Iterable[bytes] | None = None,
        data: dict[str, str] | None = None,
        files: list[tuple[str, tuple[str, IO[bytes]]]] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None | str = "default",
    ) -> Response:
        """Send a request and return the response with its body unread (the caller reads
        or streams it). A transport failure is ``BackendUnavailable``, with what to check."""
        head = {**self.headers, **(headers or {})}
        body: Any = content
        with contextlib.ExitStack() as stack:
            if json is not None:
                body = jsonlib.dumps(json).encode()
                head["Content-Type"] = "application/json"
            elif files is not None or data is not None:
                body, head["Content-Type"] = multipart(data or {}, files or [])
                stack.callback(body.close)
                body.seek(0, os.SEEK_END)
                head["Content-Length"] = str(body.tell())
                body.seek(0)
            elif content is not None and not isinstance(content, bytes | bytearray) and not hasattr(content, "read"):
                body = iter(content)  # an iterator of chunks: sent chunked
            replayable = body is None or isinstance(body, bytes | bytearray) or hasattr(body, "seek")
            start = body.tell() if hasattr(body, "seek") else 0
            target = self._target(url, params)
            wait = self.timeout if timeout == "default" else timeout
            for attempt in (0, 1):
                conn = getattr(self._local, "conn", None)
                reused = conn is not None
                if conn is None:
                    conn = self._local.conn = self._connect()
                try:
                    if conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
                        conn.close()  # readable while idle: the server closed it (keep-alive timeout)
                        reused = False
                    if conn.sock is None:
                        conn.connect()
                    conn.sock.settimeout(wait)  # type: ignore[union-attr]
                    if body is None and method in ("POST", "PUT", "PATCH"):
                        head.setdefault("Content-Length", "0")
                    conn.request(method, target, body=body, headers=head)
                    raw = conn.getresponse()
                except _RETRY as exc:
                    conn.close()
                    if attempt == 0 and reused and replayable and method in IDEMPOTENT:
                        if hasattr(body, "seek"):
                            body.seek(start)
                        continue
                    raise self._unavailable(exc) from exc
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    self._local.conn = None
                    raise self._unavailable(exc) from exc
                return Response(raw, url)
        raise AssertionError("unreachable")

    def _unavailable(self, exc: BaseException) -> errors.BackendUnavailable:
        self._local.conn = None
        return errors.BackendUnavailable(
            f"cannot reach the packyard server at {self.base_url}: {exc or type(exc).__name__}; "
            "check PACKYARD_URL and that 'packyard serve' is running"
        )

    def close(self) -> None:
        with self._lock:
            for conn in self._all.values():
                conn.close()
            self._all.clear()
        self._local = threading.local()


class BodyReader(io.RawIOBase):
    """A streamed response as a readable binary stream (what ``tarfile`` reads from)."""

    def __init__(self, response: Response) -> None:
        self.response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            return self.response.raw.readinto(buffer)
        except (OSError, http.client.HTTPException) as exc:
            raise OSError(f"download failed: {exc}") from exc
