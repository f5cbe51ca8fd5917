"""Environments shared across workers: the wheels an environment used go to packyard as a
bundle keyed by the lock, and a fresh worker (an empty cache directory) materialises the same
environment from it — also when the upstream index those wheels came from is gone.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.runs.conftest import assert_only_complete, bundle_requests, cli, env_json, log_mark, simple_wheel, unique_ns
from tests.support.clients import create_ns, output, upload

CODE = "import fresh; print(fresh.hello())"


@pytest.fixture
def fresh_ns(server: LiveServer, http: httpx.Client, tmp_path: Path) -> str:
    """A namespace holding ``fresh`` 1.0 with new bytes (so nobody has its environment yet)."""
    ns = unique_ns("b")
    create_ns(http, server, ns)
    upload(http, server, ns, simple_wheel(tmp_path / "dists", "fresh", "1.0", "def hello():\n    return 'hi'\n"))
    return ns


def test_fresh_worker_materialises_the_environment_from_the_bundle(
    server: LiveServer, fresh_ns: str, tmp_path: Path
) -> None:
    mark = log_mark(server)
    first = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh")
    assert first["from_bundle"] is False
    key = first["key"]
    assert bundle_requests(server, mark, key) == [("GET", 404), ("PUT", 201)]
    (row,) = server.rows("SELECT namespace, size, sha256 FROM bundles WHERE key = ?", (key,))
    assert row[0] == fresh_ns
    assert row[2] in server.blob_hashes()

    mark = log_mark(server)
    fresh = tmp_path / "worker-b"
    second = env_json(server, fresh, fresh_ns, "--with", "fresh")
    assert second["key"] == key and second["lock"] == first["lock"]
    assert (second["from_bundle"], second["reused"]) == (True, False)
    requests = server.requests_since(mark)
    assert bundle_requests(server, mark, key) == [("GET", 200)]  # no second upload
    downloads = [p for _, p, _ in requests if p.split("?")[0].endswith((".whl", ".tar.gz", ".zip"))]
    assert downloads == []  # no file came through the index: the bundle held them all
    assert cli(server, fresh, "run", fresh_ns, "--with", "fresh", "--", "python", "-c", CODE).stdout.strip() == "hi"
    assert_only_complete(fresh)


def test_no_share_uploads_no_bundle(server: LiveServer, fresh_ns: str, tmp_path: Path) -> None:
    mark = log_mark(server)
    first = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh", "--no-share")
    assert bundle_requests(server, mark, first["key"]) == [("GET", 404)]
    assert server.rows("SELECT key FROM bundles WHERE key = ?", (first["key"],)) == []
    second = env_json(server, tmp_path / "worker-b", fresh_ns, "--with", "fresh")
    assert (second["key"], second["from_bundle"]) == (first["key"], False)  # it built it (and shared it now)
    assert server.rows("SELECT namespace FROM bundles WHERE key = ?", (first["key"],)) == [(fresh_ns,)]


@pytest.mark.local_only
def test_a_planted_bundle_is_never_installed(
    server: LiveServer, http: httpx.Client, fresh_ns: str, tmp_path: Path
) -> None:
    """Bundles are first-come: a writer of *any* namespace can store one under a key it can
    compute. Its wheels must still match the lock's hashes; when they do not, the worker
    falls back to the index instead of installing them (or failing the run)."""
    first = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh", "--no-share")
    key = first["key"]

    evil_ns = unique_ns("evil")
    create_ns(http, server, evil_ns)
    evil = simple_wheel(tmp_path / "evil", "fresh", "1.0", "def hello():\n    return 'pwned'\n")
    spool = io.BytesIO()
    with zipfile.ZipFile(spool, "w") as archive:
        archive.write(evil, evil.name)
    body = spool.getvalue()
    response = http.put(f"/api/v1/bundles/{key}", params={"ns": evil_ns}, content=body, headers=server.admin)
    assert response.status_code == 201, response.text

    fresh = tmp_path / "worker-b"
    proc = cli(server, fresh, "run", fresh_ns, "--with", "fresh", "--", "python", "-c", CODE, check=False)
    assert proc.stdout.strip() == "hi", output(proc)
    info = env_json(server, fresh, fresh_ns, "--with", "fresh")
    assert (info["key"], info["reused"]) == (key, True)
    assert_only_complete(fresh)


class _Logged(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.server.seen.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def static_upstream(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path]]:
    """A PEP 503 directory index (``simple/<project>/`` + ``files/``) served in-process."""
    root = tmp_path / "upstream"
    (root / "simple").mkdir(parents=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Logged, directory=str(root)))
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, root
    finally:
        server.shutdown()
        server.server_close()


def test_fresh_worker_needs_no_upstream(
    server: LiveServer,
    http: httpx.Client,
    static_upstream: tuple[ThreadingHTTPServer, Path],
    tmp_path: Path,
) -> None:
    """Build once through an upstream, stop the upstream, and a fresh worker still gets the
    environment: the lock resolves from packyard's cached upstream page (within its TTL) and
    the files come from the bundle — no other index is contacted."""
    upstream, root = static_upstream
    dist = simple_wheel(root / "files", "uponly", "2.0", "def hello():\n    return 'from upstream'\n")
    page = root / "simple" / "uponly" / "index.html"
    page.parent.mkdir()
    digest = hashlib.sha256(dist.read_bytes()).hexdigest()
    page.write_text(f'<html><body><a href="../../files/{dist.name}#sha256={digest}">{dist.name}</a></body></html>')
    url = f"http://127.0.0.1:{upstream.server_address[1]}/simple/"

    ns = unique_ns("d")
    create_ns(http, server, ns)
    cli(server, tmp_path / "admin", "ns", "set", ns, "--upstream", url)

    first = env_json(server, tmp_path / "worker-a", ns, "--with", "uponly")
    assert first["from_bundle"] is False
    assert f"/files/{dist.name}" in upstream.seen  # it really came from the upstream

    upstream.shutdown()
    upstream.server_close()  # unreachable from now on: connections are refused
    seen = len(upstream.seen)

    fresh = tmp_path / "worker-b"
    second = env_json(server, fresh, ns, "--with", "uponly")
    assert (second["key"], second["from_bundle"], second["resolved"]) == (first["key"], True, True)
    code = "import uponly; print(uponly.hello())"
    assert cli(server, fresh, "run", ns, "--with", "uponly", "--", "python", "-c", code).stdout.strip() == (
        "from upstream"
    )
    assert len(upstream.seen) == seen
