"""Git fixtures for the sync tests: real repositories, a real smart-HTTP remote, a private server.

* :class:`GitRepo` is a bare repository built with git plumbing (``hash-object``,
  ``update-index``, ``commit-tree``): each commit is a whole snapshot given as a dict, so a
  test can commit anything git allows — symlinks, gitlinks, names with control characters
  or backslashes — without a work tree.
* :class:`GitHttp` serves every bare repository under one root over HTTP on 127.0.0.1 by
  running ``git http-backend`` as a CGI program (fetch and push). Repositories under
  ``private/`` answer 401 unless the request carries ``Authorization: Basic`` whose password
  is :data:`HTTP_TOKEN`.
* ``private_server`` is a packyard server of our own (local backend) whose environment holds
  the git token and the webhook secret that credential and webhook tests refer to by name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support import clients
from tests.support.clients import PACKYARD, git_env, packyard_cli
from tests.support.procs import running

GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
HTTP_TOKEN = f"tok{uuid.uuid4().hex}"
"""The password the private repositories of :class:`GitHttp` want (and the private server holds)."""
WEBHOOK_SECRET = f"hook{uuid.uuid4().hex}"
MiB = 1024 * 1024

GIT_ENV = git_env("Sync Tester", "tester@example.com", GIT_TERMINAL_PROMPT="0")


def git(*args: str, cwd: Path | None = None, input: bytes | None = None, env: dict | None = None, raw: bool = False):  # noqa: ANN201 - str, or bytes with raw
    """Run git (machine config cut off); its stdout, or AssertionError with its stderr."""
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        input=input,
        env={**GIT_ENV, **(env or {})},
        capture_output=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout if raw else result.stdout.decode(errors="surrogateescape")


# -- repositories --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A symbolic link in a commit (mode 120000) pointing at ``target``."""

    target: str


@dataclass(frozen=True)
class Gitlink:
    """A submodule entry in a commit (mode 160000) at commit ``sha``."""

    sha: str = "1" * 40


Entry = bytes | Link | Gitlink


@dataclass
class GitRepo:
    """A bare repository under a :class:`GitHttp` root; commits are whole snapshots."""

    bare: Path
    http_base: str
    """``http://127.0.0.1:PORT/<path below the served root>``."""
    commits: dict[str, dict[str, Entry]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    @property
    def http_url(self) -> str:
        return self.http_base

    def http_url_with(self, user: str, password: str) -> str:
        return self.http_base.replace("http://", f"http://{user}:{password}@", 1)

    def git(self, *args: str, **kwargs) -> str:  # noqa: ANN003
        return git("--git-dir", str(self.bare), *args, **kwargs)

    def commit(self, files: dict[str, Entry], branch: str = "main", message: str = "snapshot") -> str:
        """Make ``files`` (path -> bytes, Link or Gitlink) the tree of a new commit on ``branch``.

        One ``git fast-import`` per commit: paths are C-quoted, so any name git allows works.
        """
        parent = self.head(branch)
        out = bytearray()
        out += b"commit refs/heads/%s\nmark :1\n" % branch.encode()
        out += b"committer Sync Tester <tester@example.com> %d +0000\n" % (1_700_000_000 + len(self.commits))
        out += _data(message.encode())
        if parent:
            out += b"from %s\n" % parent.encode()
        out += b"deleteall\n"
        for path, entry in files.items():
            quoted = _quote(path)
            if isinstance(entry, Gitlink):
                out += b"M 160000 %s %s\n" % (entry.sha.encode(), quoted)
            elif isinstance(entry, Link):
                out += b"M 120000 inline %s\n" % quoted + _data(entry.target.encode())
            else:
                out += b"M 100644 inline %s\n" % quoted + _data(entry)
        marks = self.bare / f"marks-{uuid.uuid4().hex}"
        try:
            self.git("fast-import", "--quiet", f"--export-marks={marks}", input=bytes(out))
            sha = marks.read_text().split()[1]
        finally:
            marks.unlink(missing_ok=True)
        self.commits[sha] = dict(files)
        return sha

    def head(self, branch: str) -> str | None:
        out = subprocess.run(
            ["git", "--git-dir", str(self.bare), "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}"],
            env=GIT_ENV,
            capture_output=True,
            check=False,
        )
        return out.stdout.decode().strip() or None

    def tag(self, name: str, target: str, annotated: bool = False) -> None:
        if annotated:
            self.git("tag", "-a", name, target, "-m", f"tag {name}")
        else:
            self.git("tag", name, target)

    def set_default_branch(self, branch: str) -> None:
        self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def ls_remote(self) -> dict[str, str]:
        """ref -> sha, as a client sees the repository."""
        out = git("ls-remote", self.url)
        return {line.split("\t")[1]: line.split("\t")[0] for line in out.splitlines() if line}

    def tree(self, ref: str, under: str = "") -> dict[str, bytes]:
        """Every file (path -> bytes) at ``ref``, below ``under`` if given."""
        treeish = f"{ref}:{under}" if under else f"{ref}^{{tree}}"
        listed = []
        for record in self.git("ls-tree", "-r", "-z", treeish).split("\0"):
            if record:
                meta, _, path = record.partition("\t")
                _, kind, sha = meta.split()
                if kind == "blob":
                    listed.append((path, sha))
        batch = self.git("cat-file", "--batch", input="".join(f"{sha}\n" for _, sha in listed).encode(), raw=True)
        found, offset = {}, 0
        for path, _ in listed:
            header_end = batch.index(b"\n", offset)
            size = int(batch[offset:header_end].split()[2])
            found[path] = batch[header_end + 1 : header_end + 1 + size]
            offset = header_end + 1 + size + 1
        return found


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def _quote(path: str) -> bytes:
    """A path as a C-style quoted string, the form git fast-import reads any name in."""
    out = bytearray(b'"')
    for byte in path.encode(errors="surrogateescape"):
        if byte in b'"\\':
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte >= 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


# -- the smart-HTTP remote -----------------------------------------------------------------------


class _CGIHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        self._cgi()

    def do_POST(self) -> None:  # noqa: N802
        self._cgi()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi(self) -> None:
        owner = self.server.owner
        path, _, query = self.path.partition("?")
        authorization = self.headers.get("Authorization")
        owner.seen.append((self.command, path, authorization))
        body = self._body()
        if path.startswith("/private/") and not owner.authorized(authorization):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "tester",
            "REMOTE_ADDR": self.client_address[0],
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run([GIT_HTTP_BACKEND], input=body, env=env, capture_output=True, check=False)
        raw = proc.stdout
        split = raw.find(b"\r\n\r\n")
        head, payload = (raw[:split], raw[split + 4 :]) if split >= 0 else raw.partition(b"\n\n")[::2]
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: GitHttp


class GitHttp:
    """``git http-backend`` behind a threaded HTTP server on a free port of 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "private").mkdir(exist_ok=True)
        self.seen: list[tuple[str, str, str | None]] = []
        self.httpd = _Server(("127.0.0.1", 0), _CGIHandler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @staticmethod
    def authorized(header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(password, HTTP_TOKEN)

    def new_repo(self, name: str, private: bool = False) -> GitRepo:
        relative = f"{'private/' if private else ''}{name}-{uuid.uuid4().hex[:8]}.git"
        bare = self.root / relative
        git("init", "-q", "--bare", str(bare))
        git("--git-dir", str(bare), "config", "http.receivepack", "true")
        return GitRepo(bare, f"{self.base}/{relative}")


@pytest.fixture(scope="session")
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttp]:
    served = GitHttp(tmp_path_factory.mktemp("git-remote"))
    served.thread.start()
    try:
        yield served
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()


# -- the packyard side ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of our own whose environment holds GIT_TOKEN_TEST and WEBHOOK_SECRET_TEST."""
    root = tmp_path_factory.mktemp("sync-private-server")
    env = {
        "GIT_TOKEN_TEST": HTTP_TOKEN,
        "WEBHOOK_SECRET_TEST": WEBHOOK_SECRET,
        "PACKYARD_CREDENTIAL_ENVS": "GIT_TOKEN_TEST,WEBHOOK_SECRET_TEST,NOT_SET_ON_THE_SERVER,NO_SUCH_VAR_FOR_TEST",
        "PACKYARD_LOG_REQUESTS": "true",
        "PACKYARD_MAX_UPLOAD_BYTES": str(8 * MiB),
    }
    live = live_server(root, env)
    with running(live.server):
        yield live


@pytest.fixture
def private_http(private_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=private_server.url, timeout=120) as client:
        yield client


def unique_ns(suffix: str = "team") -> str:
    """A namespace no other test uses: a ``suffix`` child of a fresh top-level one."""
    return clients.unique_ns(suffix)


def sync(http: httpx.Client, server: LiveServer, ns: str, url: str, **options: object) -> httpx.Response:
    """``POST /api/v1/namespaces/{ns}/sync`` as the admin."""
    return http.post(f"/api/v1/namespaces/{ns}/sync", json={"url": url, **options}, headers=server.admin, timeout=120)


def synced(http: httpx.Client, server: LiveServer, ns: str, url: str, **options: object) -> dict:
    """A sync that must succeed; its result."""
    response = sync(http, server, ns, url, **options)
    assert response.status_code == 200, response.text
    return response.json()


def statuses(result: dict) -> dict[str, str]:
    """path -> status of a sync result's plan."""
    return {entry["path"]: entry["status"] for entry in result["entries"]}


def listing(http: httpx.Client, ns: str) -> list[dict] | None:
    """``GET /files`` of a namespace (None when it does not exist)."""
    response = http.get(f"/api/v1/namespaces/{ns}/files")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def ns_files(http: httpx.Client, ns: str) -> dict[str, bytes]:
    """path -> bytes of every current file of a namespace."""
    found = {}
    for row in listing(http, ns) or []:
        response = http.get(f"/api/v1/namespaces/{ns}/files/{row['path']}")
        assert response.status_code == 200, response.text
        found[row["path"]] = response.content
    return found


def revisions(server: LiveServer, ns: str) -> list[tuple]:
    """Every revision row of a namespace, in a stable order."""
    return server.rows(
        "SELECT path, revision, sha256, deleted, origin FROM file_revisions WHERE namespace = ? "
        "ORDER BY path, revision",
        (ns,),
    )


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``packyard ARGS`` with ``env``; the caller checks the exit code (:func:`ok`, :func:`failed`)."""
    return packyard_cli(env, *args, check=False, timeout=timeout)


def cli_many(env: dict[str, str], *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Independent CLI calls side by side (each one is mostly interpreter start-up)."""
    procs = [
        subprocess.Popen(
            [*PACKYARD, *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in commands
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert exit ``code`` with one 'error: ...' line and no traceback; return that line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.args[3:], result.returncode, result.stderr, result.stdout)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def hub_signature(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push_event(branch: str, default: str = "main") -> bytes:
    return json.dumps({"ref": f"refs/heads/{branch}", "repository": {"default_branch": default}}).encode()


def mirrors(server: LiveServer) -> set[str]:
    """The bare mirrors under ``{data}/mirrors``."""
    root = server.server.data / "mirrors"
    return {p.name for p in root.glob("*.git")} if root.exists() else set()


def leaks(server: LiveServer, secret: str) -> list[str]:
    """Every place on disk (data folder, catalog, mirrors, server log) that holds ``secret``."""
    needles = [secret.encode(), base64.b64encode(secret.encode())]
    needles += [base64.b64encode(f"{user}:{secret}".encode()) for user in ("user", "x-access-token", "u")]
    found = []
    for path in [server.server.log_path, *sorted(server.server.data.rglob("*"))]:
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {needle!r}" for needle in needles if needle in data]
    return found


def catalog_text(server: LiveServer) -> str:
    """Every row of the tables a sync touches, as text."""
    parts = []
    for table in ("sync_runs", "audit", "syncs", "file_revisions", "file_heads"):
        parts += [repr(row) for row in server.rows(f"SELECT * FROM {table}")]
    return "\n".join(parts)


def scrub(text: str) -> str:
    """Timing noise out of a result, to compare two runs' plans."""
    return re.sub(r'"duration": [0-9.]+', "", text)
