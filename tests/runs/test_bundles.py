"""Environments shared across workers: a worker that builds an environment shares its lock
(the resolution) and the finished environment (the bundle); a fresh worker (an empty cache
directory) then materialises it with one download and one extract — no resolver, no
installer, no index page or file, also when the upstream those files came from is gone.

A bundle is trusted as far as the namespace that stored it: only runs whose namespace's
index chain holds that namespace ever use it, on the server and in a worker's cache.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from packyard.runs.bundle import base_interpreter, pack
from packyard.runs.keys import env_dir_name
from tests.conftest import LiveServer
from tests.runs.conftest import (
    assert_only_complete,
    bundle_requests,
    cli,
    cli_env,
    env_json,
    log_mark,
    resolution_requests,
    simple_wheel,
    unique_ns,
    wheel,
)
from tests.support.clients import PACKYARD, create_ns, create_token, output, packyard_cli, upload

CODE = "import fresh; print(fresh.hello())"


@pytest.fixture
def fresh_dist(tmp_path: Path) -> Path:
    """``fresh`` 1.0 with new bytes (so nobody has its environment yet)."""
    return simple_wheel(tmp_path / "dists", "fresh", "1.0", "def hello():\n    return 'hi'\n")


@pytest.fixture
def fresh_ns(server: LiveServer, http: httpx.Client, fresh_dist: Path) -> str:
    ns = unique_ns("b")
    create_ns(http, server, ns)
    upload(http, server, ns, fresh_dist)
    return ns


def test_fresh_worker_materialises_the_environment_from_the_bundle(
    server: LiveServer, fresh_ns: str, tmp_path: Path
) -> None:
    mark = log_mark(server)
    first = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh")
    assert (first["from_bundle"], first["resolution"]) == (False, "resolved")
    key = first["key"]
    assert bundle_requests(server, mark, key) == [("GET", 404), ("PUT", 201)]
    assert resolution_requests(server, mark)[-1] == ("PUT", 201)
    (row,) = server.rows("SELECT namespace, size, sha256 FROM bundles WHERE key = ?", (key,))
    assert row[0] == fresh_ns
    assert row[2] in server.blob_hashes()
    assert server.rows("SELECT env_key FROM resolutions WHERE namespace = ?", (fresh_ns,)) == [(key,)]

    mark = log_mark(server)
    fresh = tmp_path / "worker-b"
    second = env_json(server, fresh, fresh_ns, "--with", "fresh")
    assert second["key"] == key and second["lock"] == first["lock"]
    assert (second["from_bundle"], second["reused"], second["resolution"]) == (True, False, "server")
    assert bundle_requests(server, mark, key) == [("GET", 200)]  # no second upload
    paths = [p.split("?")[0] for _, p, _ in server.requests_since(mark)]
    assert not [p for p in paths if "/simple/" in p or p.endswith((".whl", ".tar.gz", ".metadata"))], paths
    env = Path(second["path"])
    assert env.name.startswith(key + "-")  # a bundled environment, kept apart from locally built ones
    assert f"home = {base_interpreter().parent}" in (env / "pyvenv.cfg").read_text().splitlines()
    assert (env / "bin" / "python").resolve() == base_interpreter().resolve()
    assert cli(server, fresh, "run", fresh_ns, "--with", "fresh", "--", "python", "-c", CODE).stdout.strip() == "hi"
    again = env_json(server, fresh, fresh_ns, "--with", "fresh")
    assert (again["path"], again["reused"], again["resolution"]) == (second["path"], True, "cache")
    assert_only_complete(fresh)


def test_no_share_uploads_no_bundle_and_no_resolution(server: LiveServer, fresh_ns: str, tmp_path: Path) -> None:
    mark = log_mark(server)
    first = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh", "--no-share")
    assert bundle_requests(server, mark, first["key"]) == [("GET", 404)]
    assert [m for m, _ in resolution_requests(server, mark)] == ["GET"]
    assert server.rows("SELECT key FROM bundles WHERE key = ?", (first["key"],)) == []
    assert server.rows("SELECT key FROM resolutions WHERE namespace = ?", (fresh_ns,)) == []
    second = env_json(server, tmp_path / "worker-b", fresh_ns, "--with", "fresh")
    assert (second["key"], second["from_bundle"], second["resolution"]) == (first["key"], False, "resolved")
    assert server.rows("SELECT namespace FROM bundles WHERE key = ?", (first["key"],)) == [(fresh_ns,)]


def test_a_read_only_token_gets_its_environment_without_sharing(
    server: LiveServer, http: httpx.Client, fresh_ns: str, tmp_path: Path
) -> None:
    _, reader = create_token(http, server, fresh_ns, "read")
    mark = log_mark(server)
    worker = cli_env(server, tmp_path / "w", reader)
    proc = packyard_cli(worker, "run", fresh_ns, "--with", "fresh", "--", "python", "-c", CODE)
    assert proc.stdout.strip() == "hi", output(proc)
    info = json.loads(packyard_cli(worker, "env", fresh_ns, "--with", "fresh", "--json").stdout)
    assert info["reused"] is True
    # (a cold run asks twice: the start-up fast path, then the full CLI)
    assert set(resolution_requests(server, mark)) == {("GET", 404), ("PUT", 403)}
    assert set(bundle_requests(server, mark, info["key"])) == {("GET", 404), ("PUT", 403)}
    assert server.rows("SELECT count(*) FROM bundles WHERE namespace = ?", (fresh_ns,)) == [(0,)]


@pytest.mark.local_only
def test_an_environment_over_the_upload_limit_is_still_built_and_used(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    """The test server takes 8 MiB per upload; two 5 MiB wheels make a bundle it refuses (413):
    sharing is an optimisation, so the run still gets its environment."""
    ns = unique_ns("big")
    create_ns(http, server, ns)
    for name in ("bulky_a", "bulky_b"):
        data = base64.b64encode(os.urandom(5 * 1024 * 1024)).decode()
        files = {f"{name}/__init__.py": "", f"{name}/data.txt": data}
        upload(http, server, ns, wheel(tmp_path / "dists", name, "1.0", files))
    mark = log_mark(server)
    code = "import bulky_a, bulky_b; print('both')"
    proc = cli(server, tmp_path / "w", "run", ns, "--with", "bulky_a", "--with", "bulky_b", "--", "python", "-c", code)
    assert proc.stdout.strip() == "both", output(proc)
    assert ("PUT", 413) in [(m, s) for m, p, s in server.requests_since(mark) if "/bundles/" in p]
    assert server.rows("SELECT count(*) FROM bundles WHERE namespace = ?", (ns,)) == [(0,)]
    assert server.rows("SELECT count(*) FROM resolutions WHERE namespace = ?", (ns,)) == [(1,)]  # the lock is shared
    assert_only_complete(tmp_path / "w")


def test_a_child_uses_its_parents_bundle(server: LiveServer, http: httpx.Client, fresh_ns: str, tmp_path: Path) -> None:
    child = f"{fresh_ns}.flows"
    create_ns(http, server, child)
    built = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh")
    got = env_json(server, tmp_path / "worker-b", child, "--with", "fresh")
    assert (got["key"], got["from_bundle"]) == (built["key"], True)  # the child's index chain holds the parent


@pytest.mark.local_only
def test_concurrent_fresh_runs_unpack_once_and_clear_an_interrupted_unpack(
    server: LiveServer, fresh_ns: str, tmp_path: Path
) -> None:
    built = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh")
    key = built["key"]
    fresh = tmp_path / "worker-b"
    name = env_dir_name(key, fresh_ns)
    (fresh / "envs" / f".{name}.{'0' * 32}" / "lib").mkdir(parents=True)  # as a SIGKILLed unpack leaves it
    (fresh / "envs" / name / "lib").mkdir(parents=True)  # a folder at the place, without its marker

    mark = log_mark(server)
    command = [*PACKYARD, "env", fresh_ns, "--with", "fresh", "--json"]
    env = cli_env(server, fresh)
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert {r["path"] for r in results} == {str(fresh / "envs" / name)}
    assert sorted((r["from_bundle"], r["reused"]) for r in results) == [(False, True), (False, True), (True, False)]
    assert bundle_requests(server, mark, key) == [("GET", 200)]  # one download; the others waited, then reused
    assert_only_complete(fresh)
    assert cli(server, fresh, "run", fresh_ns, "--with", "fresh", "--", "python", "-c", CODE).stdout.strip() == "hi"


def _bundle_of(env: Path, out: Path, change: dict[str, str]) -> bytes:
    """A copy of ``env`` with files replaced, packed as a bundle."""
    copy = out / "env"
    shutil.copytree(env, copy, symlinks=True)
    for pattern, text in change.items():
        for path in copy.glob(pattern):
            path.write_text(text)
    spool = io.BytesIO()
    pack(copy, spool)
    return spool.getvalue()


@pytest.mark.local_only
def test_a_bundle_is_used_only_along_the_index_chain_of_its_namespace(
    server: LiveServer, http: httpx.Client, fresh_ns: str, fresh_dist: Path, tmp_path: Path
) -> None:
    """Anyone who may write *some* namespace can compute a key and store a bundle under it.
    Runs in namespaces whose chain does not hold that namespace never use it: not from the
    server, and not from a worker's cache where a run of that namespace unpacked it."""
    built = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh", "--no-share")
    key = built["key"]

    evil_ns = unique_ns("evil")  # an unrelated namespace holding the very same wheel: the same lock
    create_ns(http, server, evil_ns)
    upload(http, server, evil_ns, fresh_dist)
    body = _bundle_of(Path(built["path"]), tmp_path, {"lib/python*/site-packages/fresh/__init__.py": (
        "def hello():\n    return 'pwned'\n")})  # fmt: skip
    response = http.put(f"/api/v1/namespaces/{evil_ns}/bundles/{key}", content=body, headers=server.admin)
    assert response.status_code == 201, response.text
    assert http.get(f"/api/v1/namespaces/{fresh_ns}/bundles/{key}", headers=server.admin).status_code == 404

    worker = tmp_path / "worker-c"  # its own namespace's run gets the planted environment ...
    theirs = cli(server, worker, "run", evil_ns, "--with", "fresh", "--", "python", "-c", CODE)
    assert theirs.stdout.strip() == "pwned"
    assert env_json(server, worker, evil_ns, "--with", "fresh")["key"] == key
    # ... and on the same worker, with the same key, fresh_ns's run never reuses it
    ours = cli(server, worker, "run", fresh_ns, "--with", "fresh", "--", "python", "-c", CODE)
    assert ours.stdout.strip() == "hi", output(ours)
    info = env_json(server, worker, fresh_ns, "--with", "fresh")
    assert (info["key"], info["from_bundle"], Path(info["path"]).name) == (key, False, key)  # built here
    assert cli(server, worker, "run", evil_ns, "--with", "fresh", "--", "python", "-c", CODE).stdout.strip() in (
        "hi",
        "pwned",
    )  # the evil namespace may use either: the built one is trusted by every namespace
    assert_only_complete(worker)


@pytest.mark.local_only
def test_a_damaged_bundle_is_built_instead(server: LiveServer, fresh_ns: str, tmp_path: Path) -> None:
    """The stored bytes go bad after the upload: the fresh worker's digest check refuses them,
    leaves nothing behind, and builds the environment from the index."""
    first = env_json(server, tmp_path / "worker-a", fresh_ns, "--with", "fresh")
    ((sha256,),) = server.rows("SELECT sha256 FROM bundles WHERE key = ?", (first["key"],))
    path = server.blobs._path(sha256)  # type: ignore[attr-defined]
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data[:-64] + bytes(b ^ 0xFF for b in data[-64:]))

    fresh = tmp_path / "worker-b"
    proc = cli(server, fresh, "run", fresh_ns, "--with", "fresh", "--", "python", "-c", CODE)
    assert proc.stdout.strip() == "hi", output(proc)
    info = env_json(server, fresh, fresh_ns, "--with", "fresh")
    assert (Path(info["path"]).name, info["reused"]) == (first["key"], True)  # built, not unpacked
    assert_only_complete(fresh)


# -- bad input to the API -------------------------------------------------------------------------------


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    spool = io.BytesIO()
    with tarfile.open(fileobj=spool, mode="w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return spool.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


CFG = _file("pyvenv.cfg", b"home = /usr/bin\n")
BAD_BUNDLES = {
    "not gzip": (b"just some bytes", 400, "not a gzip'd tar"),
    "gzip, not tar": (gzip.compress(b"x" * 2000), 400, "not a gzip'd tar"),
    "no pyvenv.cfg": (_tar([_file("lib/x.py")]), 400, "no pyvenv.cfg"),
    "dot-dot member": (_tar([CFG, _file("../escape.py")]), 400, "unsafe bundle member '../escape.py'"),
    "absolute member": (_tar([CFG, _file("/etc/cron.d/x")]), 400, "unsafe bundle member"),
    "absolute symlink": (_tar([CFG, _link("bin/python", "/usr/bin/python3")]), 400, "member 'bin/python'"),
    "symlink leaving": (_tar([CFG, _link("lib/up", "../../..")]), 400, "unsafe bundle member 'lib/up'"),
    "device": (_tar([CFG, _link("dev", "", tarfile.CHRTYPE)]), 400, "unsafe bundle member 'dev'"),
    "truncated": (_tar([CFG, _file("lib/a.py", b"y" * 50_000)])[:-100], 400, "not a gzip'd tar"),
}


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_bad_bundles_are_refused_and_leave_nothing(server: LiveServer, http: httpx.Client, case: str) -> None:
    body, status, message = BAD_BUNDLES[case]
    ns = unique_ns("badb")
    create_ns(http, server, ns)
    key = hashlib.sha256(case.encode()).hexdigest()
    before = server.blob_hashes()
    response = http.put(f"/api/v1/namespaces/{ns}/bundles/{key}", content=body, headers=server.admin)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"], response.text
    assert server.rows("SELECT count(*) FROM bundles WHERE namespace = ?", (ns,)) == [(0,)]
    assert not server.new_references(before)
    assert http.get(f"/api/v1/namespaces/{ns}/bundles/{key}", headers=server.admin).status_code == 404


def test_bundle_and_resolution_requests_that_are_refused(
    server: LiveServer, http: httpx.Client, fresh_ns: str, tmp_path: Path
) -> None:
    good = _tar([CFG])
    key = "a" * 64
    bad_key = http.put(f"/api/v1/namespaces/{fresh_ns}/bundles/NOT-A-KEY", content=good, headers=server.admin)
    assert bad_key.status_code == 400 and "not an environment key" in bad_key.json()["detail"]
    # no namespace of that name nor above it (a child of an existing one would be created, as by any write)
    missing = http.put(f"/api/v1/namespaces/{fresh_ns}x.nope/bundles/{key}", content=good, headers=server.admin)
    assert missing.status_code == 404
    _, reader = create_token(http, server, fresh_ns, "read")
    denied = http.put(
        f"/api/v1/namespaces/{fresh_ns}/bundles/{key}", content=good, headers={"Authorization": f"Bearer {reader}"}
    )
    assert denied.status_code == 403
    assert server.rows("SELECT count(*) FROM bundles WHERE namespace = ?", (fresh_ns,)) == [(0,)]

    state = http.get(f"/api/v1/namespaces/{fresh_ns}/index-state", headers=server.admin).json()
    body = {"requirements": ["fresh"], "python": "3.11", "platform": "linux-x86_64", "implementation": "cpython",
            "state": state["state"], "lock": "fresh==1.0 --hash=sha256:" + "0" * 64 + "\n"}  # fmt: skip
    cases = [
        ({**body, "state": "0:stale"}, 409, "the index changed while this lock was resolved"),
        ({**body, "python": "3"}, 422, "python"),
        ({**body, "requirements": []}, 422, "requirements"),
        ({**body, "lock": "  \n"}, 400, "the lock is empty"),
        ({**body, "lock": "x" * (1024 * 1024 + 1)}, 400, "a lock is limited to"),
    ]
    for payload, status, message in cases:
        response = http.put(f"/api/v1/namespaces/{fresh_ns}/resolutions", json=payload, headers=server.admin)
        assert response.status_code == status, (payload["state"], response.text)
        assert message in response.text, response.text
    denied = http.put(
        f"/api/v1/namespaces/{fresh_ns}/resolutions", json=body, headers={"Authorization": f"Bearer {reader}"}
    )
    assert denied.status_code == 403
    assert server.rows("SELECT count(*) FROM resolutions WHERE namespace = ?", (fresh_ns,)) == [(0,)]

    stored = http.put(f"/api/v1/namespaces/{fresh_ns}/resolutions", json=body, headers=server.admin)
    assert stored.status_code == 201, stored.text
    rkey = stored.json()["key"]
    assert http.get(f"/api/v1/namespaces/{fresh_ns}/resolutions/{rkey}").json()["lock"] == body["lock"]
    # the index changes: the stored lock is no longer answered
    upload(http, server, fresh_ns, simple_wheel(tmp_path / "more", "other", "1.0"))
    assert http.get(f"/api/v1/namespaces/{fresh_ns}/resolutions/{rkey}").status_code == 404


# -- the upstream is gone ---------------------------------------------------------------------------------


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
    environment: the shared lock (within the upstream TTL) and the bundle come from packyard —
    no other index is contacted, and packyard is not asked for an index page either."""
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

    mark = log_mark(server)
    fresh = tmp_path / "worker-b"
    second = env_json(server, fresh, ns, "--with", "uponly")
    assert (second["key"], second["from_bundle"], second["resolution"]) == (first["key"], True, "server")
    assert not [p for _, p, _ in server.requests_since(mark) if "/simple/" in p]
    code = "import uponly; print(uponly.hello())"
    assert cli(server, fresh, "run", ns, "--with", "uponly", "--", "python", "-c", code).stdout.strip() == (
        "from upstream"
    )
    assert len(upstream.seen) == seen
