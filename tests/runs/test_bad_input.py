"""Bad input: clear one-line errors, the right exit codes, and nothing half-done left behind
(no environment in ``{cache}/envs`` that is not complete, no file whose hash did not match).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import httpx
import pytest
from packyard.store.errors import NotFound, RemoteFailed

from packyard.client import Client
from packyard.runs.transfer import download
from tests.conftest import LiveServer
from tests.runs.conftest import Tree, assert_only_complete, cli, env_dirs, simple_wheel, unique_ns
from tests.support.clients import create_ns, output, upload


def assert_error(proc, code: int, *fragments: str) -> None:  # noqa: ANN001
    assert proc.returncode == code, output(proc)
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "__token__:" not in proc.stderr  # the index URL's credentials never reach a flow's log
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


def assert_nothing_built(cache: Path) -> None:
    assert [p.name for p in env_dirs(cache)] == []
    resolutions = cache / "resolutions"
    assert not resolutions.exists() or list(resolutions.iterdir()) == []  # no lock saved for a failure


@pytest.mark.local_only
def test_unresolvable_requirements(server: LiveServer, tree: Tree, cache: Path) -> None:
    proc = cli(server, cache, "env", tree.sales, "--with", "nosuchpkg-xyz", check=False)
    assert_error(proc, 2, f"resolving nosuchpkg-xyz against {tree.sales} failed", "nosuchpkg-xyz was not found")
    # one bad requirement fails the whole set: no partial environment with etl alone
    proc = cli(server, cache, "run", tree.sales, "--with", "etl", "--with", "nosuchpkg-xyz", "--", "true", check=False)
    assert_error(proc, 2, "nosuchpkg-xyz")
    proc = cli(server, cache, "env", tree.sales, "--with", "etl>=9", check=False)
    assert_error(proc, 2, "etl")
    proc = cli(server, cache, "env", tree.sales, "--with", "etl===", check=False)
    assert_error(proc, 2, "resolving etl=== against")
    assert_nothing_built(cache)


@pytest.mark.local_only
def test_project_only_a_sibling_namespace_holds(server: LiveServer, tree: Tree, cache: Path) -> None:
    proc = cli(server, cache, "env", tree.sales, "--with", "hronly", check=False)
    assert_error(proc, 2, f"resolving hronly against {tree.sales} failed", "hronly was not found")
    proc = cli(server, cache, "fetch", tree.sales, "hronly-1.0-py3-none-any.whl", "--dest", cache / "dl", check=False)
    assert_error(proc, 3, f"no project 'hronly' in the index of {tree.sales}")
    assert not (cache / "dl" / "hronly-1.0-py3-none-any.whl").exists()
    assert_nothing_built(cache)
    # the sibling itself sees it
    code = "import hronly; print(hronly.VERSION)"
    assert cli(server, cache, "run", tree.hr, "--with", "hronly", "--", "python", "-c", code).stdout == "1.0\n"


@pytest.mark.local_only
def test_usage_errors(server: LiveServer, tree: Tree, cache: Path, tmp_path: Path) -> None:
    assert_error(cli(server, cache, "env", tree.sales, check=False), 2, "no requirements")
    missing = tmp_path / "missing.txt"
    proc = cli(server, cache, "env", tree.sales, "-r", missing, check=False)
    assert_error(proc, 2, f"{missing} is not a readable requirements file")
    proc = cli(server, cache, "env", f"{unique_ns('nope')}.sales", "--with", "etl", check=False)
    assert_error(proc, 3, "does not exist")  # no such namespace, nor any above it (a child of one reads as its chain)
    proc = cli(server, cache, "env", "Not A Namespace", "--with", "etl", check=False)
    assert proc.returncode == 2, output(proc)
    proc = cli(server, cache, "run", tree.sales, "--", "no-such-command-xyz", check=False)
    assert_error(proc, 2, "command not found: no-such-command-xyz")
    proc = cli(server, cache, "pull", f"{unique_ns('nope')}.sales", "--dest", tmp_path / "d", check=False)
    assert_error(proc, 3)
    for bad in ("etl$.py", "etl-0.1.0-py3-none-any.whl/../../x.whl"):  # neither a filename nor a project name
        proc = cli(server, cache, "fetch", tree.sales, bad, "--dest", tmp_path / "d", check=False)
        assert_error(proc, 2)
    assert not (tmp_path / "x.whl").exists()
    assert_nothing_built(cache)


def test_download_refuses_a_hash_mismatch(server: LiveServer, http: httpx.Client, ns: str, tmp_path: Path) -> None:
    """``transfer.download`` against the real server: wrong hash -> error, no file, no temp file."""
    data = f"payload {uuid.uuid4()}\n".encode()
    client = Client(server.url, server.admin_token)
    try:
        client.create_namespace(ns)
        client.put_file(ns, "flows/x.py", data)
        url = f"/api/v1/namespaces/{ns}/files/flows/x.py"
        dest = tmp_path / "dest"
        target = dest / "flows" / "x.py"

        with pytest.raises(RemoteFailed, match="does not match its sha256"):
            download(client, url, target, "0" * 64)
        assert list((dest / "flows").iterdir()) == []  # refused and deleted, no .x.py.* temp left

        target.write_bytes(b"the previous good copy\n")
        with pytest.raises(RemoteFailed):
            download(client, url, target, "0" * 64)
        assert target.read_bytes() == b"the previous good copy\n"  # a refused download changes nothing
        assert sorted(p.name for p in target.parent.iterdir()) == ["x.py"]

        with pytest.raises(NotFound):
            download(client, f"/api/v1/namespaces/{ns}/files/nothing.py", dest / "nothing.py", "0" * 64)
        assert sorted(p.name for p in dest.iterdir()) == ["flows"]

        assert download(client, url, target, hashlib.sha256(data).hexdigest()) == len(data)
        assert target.read_bytes() == data
        assert sorted(p.name for p in target.parent.iterdir()) == ["x.py"]
    finally:
        client.close()


def _tamper(server: LiveServer, data: bytes) -> None:
    """Flip the stored bytes of ``data``'s blob (same size), as a disk or a store fault would."""
    path = server.blobs._path(hashlib.sha256(data).hexdigest())  # type: ignore[attr-defined]
    path.chmod(0o644)
    path.write_bytes(bytes(b ^ 0x01 for b in data))


@pytest.mark.local_only
def test_corrupted_files_are_refused_end_to_end(
    server: LiveServer, http: httpx.Client, tmp_path: Path, cache: Path
) -> None:
    """The store serves bytes that are not what the index and the listing say: pull, fetch and
    env all refuse them, keep no such file, and leave no half-built environment."""
    ns = unique_ns("bad")
    create_ns(http, server, ns)
    good = f"print('good {uuid.uuid4()}')\n".encode()
    bad = f"print('bad {uuid.uuid4()}')\n".encode()
    client = Client(server.url, server.admin_token)
    try:
        client.put_file(ns, "flows/good.py", good)
        client.put_file(ns, "flows/bad.py", bad)
    finally:
        client.close()
    # larger than the server's in-memory blob cache takes (1 MiB a file), so the tampered bytes on
    # disk are what it serves; os.urandom so compression cannot shrink it under that
    padding = f"PADDING = {os.urandom(768 * 1024).hex()!r}\n"
    dist = simple_wheel(tmp_path / "dists", "corrupt", "1.0", body=padding)
    upload(http, server, ns, dist)
    _tamper(server, bad)

    dest = tmp_path / "work"
    proc = cli(server, cache, "pull", ns, "--dest", dest, check=False)
    assert_error(proc, 9, "bad.py does not match its sha256", "deleted")
    assert sorted(p.name for p in (dest / "flows").iterdir()) == ["good.py"]  # no bad.py, no temp file

    # resolve first (the lock holds the wheel's true hash), then the wheel's bytes go bad
    resolved = cli(server, cache, "env", ns, "--with", "corrupt", "--no-share", "--json")
    assert resolved.returncode == 0
    _tamper(server, dist.read_bytes())

    proc = cli(server, cache, "fetch", ns, dist.name, "--dest", tmp_path / "dl", check=False)
    assert_error(proc, 9, f"{dist.name} does not match its sha256")
    assert list((tmp_path / "dl").iterdir()) == []

    worker = tmp_path / "worker-b"  # a fresh worker must download the wheel: it refuses it
    proc = cli(server, worker, "env", ns, "--with", "corrupt", check=False)
    assert_error(proc, 2, "downloading the environment's files from", ns)
    assert [p.name for p in env_dirs(worker)] == []
    assert_only_complete(cache)
