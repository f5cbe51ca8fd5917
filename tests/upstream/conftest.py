"""Upstream indexes against real local upstreams, with real pip and uv.

The upstreams are real processes or sockets on 127.0.0.1:

- :class:`StaticIndex`: a PEP 503 directory (``simple/<project>/index.html`` with
  ``#sha256=`` links) served by ``python -m http.server``; its stderr log says what it served,
  so a test can count how often packyard went to it. Stopping it is the outage.
- a second packyard server (``upstream_packyards``): one open, one that needs a read token.
- :class:`Evil`: an in-process HTTP server answering whatever a test puts in its routes
  (garbage pages, redirects to ``ftp://`` or ``file://``, oversized pages).
- :class:`Hanging`: a socket that accepts connections and never answers.
- :class:`RecordingProxy`: forwards to an upstream and records each request's ``Accept``.

Downstreams are the session ``server`` (both backends; default TTL) for tests that need no
special settings, and ``private`` servers (both backends, started in parallel once for the
package) with a 1 s TTL, a 1 s timeout, a small page cap and the upstream credentials.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import html
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from packaging.utils import canonicalize_name

from tests.conftest import LiveServer, live_server
from tests.support import clients
from tests.support.clients import UV, create_ns, create_token, packyard_cli, pip_env, run, sha256, uv_env
from tests.support.procs import SeaweedFS, free_port, stop_process, wait_until

PRIVATE_TTL = 1.0
PRIVATE_MAX_PAGE_BYTES = 16 * 1024
AUTH_ENV = "CORP_INDEX_CREDENTIALS"
"""The downstream's environment variable holding ``__token__:<read token>`` of the auth upstream."""


# -- small helpers -----------------------------------------------------------------------------


def unique_ns(suffix: str = "") -> str:
    """A top-level namespace no other test uses (``u`` for upstream), or a ``suffix`` child of one."""
    return clients.unique_ns(suffix, prefix="u")


def pip_install(index: str, target: Path, *reqs: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", index, "--target", target, *reqs]
    return run(cmd, pip_env(), check=check)


def uv_install(index: str, target: Path, *reqs: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``uv pip install --target`` with a cache of its own, so every file comes from ``index``."""
    cache = target.parent / f"{target.name}-uv-cache"
    cmd = [UV, "pip", "install", "--python", sys.executable, "--target", target, "--index-url", index, *reqs]
    env = uv_env(cache)
    if not check:  # an expected failure: no retries with backoff on the 502
        env["UV_HTTP_RETRIES"] = "0"
    return run(cmd, env, check=check)


INSTALLERS = {"pip": pip_install, "uv": uv_install}


def installed(target: Path) -> dict[str, str]:
    """Normalized name -> version of what an install put into ``target``."""
    found = {}
    for path in target.glob("*.dist-info"):
        match = re.fullmatch(r"(.+)-([^-]+)\.dist-info", path.name)
        assert match, path
        found[canonicalize_name(match[1])] = match[2]
    return found


def cli(server: LiveServer, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``packyard ...`` as the admin of ``server``."""
    return packyard_cli(server.client_env(server.admin_token), *args, check=check)


def in_parallel(*calls):  # noqa: ANN002, ANN201 - zero-argument callables -> their results
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def set_settings(http: httpx.Client, server: LiveServer, ns: str, **settings: object) -> dict:
    response = http.patch(f"/api/v1/namespaces/{ns}/settings", json=settings, headers=server.admin)
    assert response.status_code == 200, response.text
    return response.json()


def cached_pages(server: LiveServer, project: str) -> list[tuple]:
    return server.rows("SELECT upstream, project FROM upstream_pages WHERE project = ?", (project,))


def mirrored(server: LiveServer, filename: str) -> list[tuple]:
    return server.rows(
        "SELECT upstream, sha256, size, metadata_sha256 FROM upstream_files WHERE filename = ?", (filename,)
    )


def error_of(response: httpx.Response) -> str:
    """The message of a packyard error answer (``{"error": ..., "detail": ...}``)."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    return response.json()["detail"]


# -- a static PEP 503 directory behind ``python -m http.server`` --------------------------------


@dataclass
class StaticIndex:
    """``simple/<project>/index.html`` + ``files/``, served by a real ``http.server`` process."""

    root: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    projects: dict[str, list[str]] = field(default_factory=dict)
    """Project -> the anchor tags of its page."""

    def __post_init__(self) -> None:
        (self.root / "simple").mkdir(parents=True, exist_ok=True)
        (self.root / "files").mkdir(exist_ok=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/simple/"

    @property
    def log(self) -> Path:
        return self.root.parent / f"{self.root.name}-http.log"

    def publish(
        self,
        path: Path,
        *,
        requires_python: str | None = None,
        metadata: bytes | None = None,
        claimed_sha256: str | None = None,
    ) -> str:
        """Add ``path`` to its project's page (with ``claimed_sha256`` instead of its real hash)."""
        project = canonicalize_name(path.name.split("-")[0])
        shutil.copy(path, self.root / "files" / path.name)
        attrs = [f'href="../../files/{path.name}#sha256={claimed_sha256 or sha256(path)}"']
        if requires_python:
            attrs.append(f'data-requires-python="{html.escape(requires_python)}"')
        if metadata is not None:
            (self.root / "files" / f"{path.name}.metadata").write_bytes(metadata)
            attrs.append(f'data-core-metadata="sha256={sha256(metadata)}"')
        self.projects.setdefault(project, []).append(f"<a {' '.join(attrs)}>{path.name}</a><br>")
        page = self.root / "simple" / project / "index.html"
        page.parent.mkdir(exist_ok=True)
        body = "\n".join(["<!DOCTYPE html>", "<html><body>", *self.projects[project], "</body></html>", ""])
        page.write_text(body)
        return project

    def start(self) -> StaticIndex:
        self.port = free_port()
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", str(self.port), "--bind", "127.0.0.1"],
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        wait_until(lambda: httpx.get(self.url).status_code == 200, 30, "http.server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, 10)
        self.proc = None

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the server logged."""
        if not self.log.exists():
            return []
        found = re.findall(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})', self.log.read_text(errors="replace"))
        return [(method, path, int(status)) for method, path, status in found]

    def gets(self, path: str) -> int:
        """How many times ``path`` was requested."""
        return sum(1 for method, p, _ in self.requests() if method == "GET" and p == path)


@pytest.fixture
def static_index(tmp_path: Path) -> Iterator[StaticIndex]:
    """A private static upstream for one test (free to be stopped)."""
    index = StaticIndex(tmp_path / "static")
    try:
        yield index
    finally:
        index.stop()


# -- in-process upstreams ----------------------------------------------------------------------


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _HTTP(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.seen: list[tuple[str, str, str | None]] = []
        """(method, path, Accept) of every request."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _EvilHandler(_Quiet):
    def do_GET(self) -> None:  # noqa: N802
        self.server.seen.append((self.command, self.path, self.headers.get("Accept")))  # type: ignore[attr-defined]
        self.server.authorizations.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        route = self.server.routes.get(self.path)  # type: ignore[attr-defined]
        if route is None:
            self.answer(404, {"Content-Type": "text/plain"}, b"not here")
        else:
            self.answer(*route)

    do_HEAD = do_GET


class Evil(_HTTP):
    """Answers ``routes[path]`` = (status, headers, body); everything else is a 404."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.authorizations: list[str | None] = []
        """The Authorization header of every request (None when there was none)."""
        super().__init__(_EvilHandler)

    @property
    def url(self) -> str:
        return f"{self.base}/simple/"

    def gets(self, path: str) -> int:
        return sum(1 for method, p, _ in self.seen if method == "GET" and p == path)


class _ProxyHandler(_Quiet):
    def do_GET(self) -> None:  # noqa: N802
        server: RecordingProxy = self.server  # type: ignore[assignment]
        server.seen.append((self.command, self.path, self.headers.get("Accept")))
        headers = {k: v for k in ("Accept", "Authorization") if (v := self.headers.get(k))}
        upstream = httpx.request(self.command, server.target + self.path, headers=headers, timeout=30)
        keep = {k: upstream.headers[k] for k in ("content-type", "location", "etag") if k in upstream.headers}
        self.answer(upstream.status_code, keep, upstream.content)

    do_HEAD = do_GET


class RecordingProxy(_HTTP):
    """A pass-through in front of ``target`` that records what was asked (and with which Accept)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        super().__init__(_ProxyHandler)

    def accepts(self, path_part: str) -> list[str | None]:
        return [accept for method, path, accept in self.seen if method == "GET" and path_part in path]


class Hanging:
    """Accepts TCP connections and never answers a byte (until stopped)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.conns: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/simple/"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()
        self.sock.close()


# -- upstream packyards and private downstreams ------------------------------------------------


def _live(root: Path, env: dict[str, str], backend: str, weed: SeaweedFS | None) -> LiveServer:
    """A server (not started) logging requests, without the embedded worker; S3 blobs under a prefix of its own."""
    env = {
        "PACKYARD_LOG_REQUESTS": "true",
        "PACKYARD_EMBEDDED_WORKER": "false",
        "PACKYARD_UPSTREAM_ALLOW_HOSTS": "127.0.0.1",  # the upstreams here are all on loopback
        **env,
    }
    if backend == "local":
        return live_server(root, env)
    assert weed is not None
    return live_server(root, env, weed, f"up-{uuid.uuid4().hex[:8]}")


@dataclass
class UpstreamPackyards:
    open: LiveServer
    """Anonymous reads on: the mirroring tests' upstream."""
    closed: LiveServer
    """PACKYARD_ANONYMOUS_READ=false: reads need a token."""
    read_token: str = ""
    """A read token of ``closed`` for its ``corp`` namespace."""


@pytest.fixture(scope="package")
def upstream_packyards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamPackyards]:
    """Two upstream packyard servers (local backend), started together."""
    opened = _live(tmp_path_factory.mktemp("upstream-open"), {}, "local", None)
    closed = _live(tmp_path_factory.mktemp("upstream-closed"), {"PACKYARD_ANONYMOUS_READ": "false"}, "local", None)
    in_parallel(opened.server.start, closed.server.start)
    try:
        with httpx.Client(base_url=closed.url, timeout=30) as http:
            create_ns(http, closed, "corp")
            _, token = create_token(http, closed, "corp", "read", "upstream")
        yield UpstreamPackyards(opened, closed, token)
    finally:
        in_parallel(opened.server.stop, closed.server.stop)


@pytest.fixture(scope="package")
def private_servers(
    upstream_packyards: UpstreamPackyards, weed: SeaweedFS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, LiveServer]]:
    """One downstream per backend with a 1 s TTL and timeout, a small page cap and upstream credentials."""
    env = {
        "PACKYARD_UPSTREAM_TTL": str(PRIVATE_TTL),
        "PACKYARD_UPSTREAM_TIMEOUT": "1",
        "PACKYARD_UPSTREAM_MAX_PAGE_BYTES": str(PRIVATE_MAX_PAGE_BYTES),
        AUTH_ENV: f"__token__:{upstream_packyards.read_token}",
        "PACKYARD_CREDENTIAL_ENVS": f"{AUTH_ENV},NAMES_A_MISSING_VARIABLE",
    }
    servers = {
        backend: _live(tmp_path_factory.mktemp(f"private-{backend}"), env, backend, weed) for backend in ("local", "s3")
    }
    in_parallel(*(s.server.start for s in servers.values()))
    try:
        yield servers
    finally:
        in_parallel(*(s.server.stop for s in servers.values()))


@pytest.fixture(scope="module", params=["local", "s3"])
def private(request: pytest.FixtureRequest, private_servers: dict[str, LiveServer]) -> LiveServer:
    return private_servers[request.param]


def wait_past_ttl(since: float) -> None:
    """Sleep until the private servers' TTL has passed since ``since`` (a time.monotonic())."""
    left = since + PRIVATE_TTL + 0.2 - time.monotonic()
    if left > 0:
        time.sleep(left)
