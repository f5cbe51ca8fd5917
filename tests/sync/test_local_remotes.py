"""Server-local repositories are not tenant resources: no sync or push reaches them unless listed.

A writer of a namespace must not read the mirror another namespace fetched with its
credential (``file://{data}/mirrors/…``), nor any repository on the server's disk, nor
push branches into one. The test servers list the session's temporary folder in
``PACKYARD_SYNC_LOCAL_ROOTS`` (tests/conftest.py), so repositories made here with
``tempfile.mkdtemp()`` — outside it — are unlisted, and the data folder inside it stays
refused. And a mirror is per credential: a namespace without the token of a private
repository gets what the remote gives it, whatever another namespace's mirror holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import put_file
from tests.sync.conftest import GitHttp, GitRepo, git, mirrors, ns_files, sync, synced, unique_ns


@pytest.fixture(scope="module")
def outside() -> Iterator[GitRepo]:
    """A repository in a folder no test server lists (``/tmp/...``, outside pytest's folder)."""
    root = Path(tempfile.mkdtemp(prefix="packyard-unlisted-"))
    bare = root / "secret.git"
    git("init", "-q", "--bare", str(bare))
    repo = GitRepo(bare, "-")
    repo.commit({"secret.txt": b"server-side secret " + uuid.uuid4().hex.encode()})
    try:
        yield repo
    finally:
        shutil.rmtree(root, ignore_errors=True)


def refused(response: httpx.Response, status: int = 403) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    return body["detail"]


def test_a_mirror_of_another_namespace_is_not_readable(
    private_server: LiveServer, private_http: httpx.Client, git_http: GitHttp
) -> None:
    server, http = private_server, private_http
    repo = git_http.new_repo("tenant-a", private=True)
    secret = b"tenant a's private code " + uuid.uuid4().hex.encode()
    commit = repo.commit({"private.py": secret})
    before = mirrors(server)
    owner = unique_ns()
    synced(http, server, owner, repo.http_url, credential={"env": "GIT_TOKEN_TEST"})
    (mirror,) = mirrors(server) - before
    data = server.server.data
    thief = unique_ns()
    put_file(http, server, thief, "keep.txt", b"the thief's own file")

    for url in (
        (data / "mirrors" / mirror).as_uri(),
        f"file://{data}/mirrors/../mirrors/{mirror}",  # ".." resolved before the check
        data.as_uri(),
        data.parent.as_uri(),  # a folder that holds the data folder
    ):
        for dry_run in (True, False):
            detail = refused(sync(http, server, thief, url, ref="main", dry_run=dry_run))
            assert "not inside a folder this server allows" in detail, detail
    # a symlink inside the listed folder that points into the data folder resolves into it
    link = data.parent.parent / f"link-{uuid.uuid4().hex[:8]}.git"
    link.symlink_to(data / "mirrors" / mirror)
    try:
        refused(sync(http, server, thief, link.as_uri(), ref="main"))
    finally:
        link.unlink()

    # the same URL without the credential: the remote's answer (401), not the owner's mirror
    for options in ({}, {"ref": commit}, {"dry_run": True}):
        detail = refused(sync(http, server, thief, repo.http_url, **options), 502)
        assert "401" in detail or "Authentication failed" in detail or "could not read" in detail, detail
    detail = refused(sync(http, server, thief, repo.http_url_with("x", "wrong-token"), ref=commit), 502)
    assert secret.decode() not in detail
    assert ns_files(http, thief) == {"keep.txt": b"the thief's own file"}
    # the credential-less attempts fetched into mirrors of their own, which hold nothing
    for name in mirrors(server) - before - {mirror}:
        objects = git("--git-dir", str(data / "mirrors" / name), "count-objects", "-v")
        assert "count: 0" in objects and "in-pack: 0" in objects, objects


def test_unlisted_repositories_are_refused(
    private_server: LiveServer, private_http: httpx.Client, outside: GitRepo, tmp_path: Path
) -> None:
    server, http = private_server, private_http
    ns = unique_ns()
    put_file(http, server, ns, "sub/hello.txt", b"hello")
    url = outside.bare.as_uri()
    heads = outside.ls_remote()
    listed = Path(os.path.commonpath([tmp_path, server.server.data]))  # what the server lists
    escape = listed / f"escape-{uuid.uuid4().hex[:8]}.git"
    escape.symlink_to(outside.bare)  # inside the listed folder, pointing out of it
    dotdot = "file://" + str(listed) + "/.." * (len(listed.parts) - 1) + str(outside.bare)
    try:
        for target in (url, dotdot, escape.as_uri()):
            for dry_run in (True, False):
                detail = refused(sync(http, server, ns, target, dry_run=dry_run))
                assert "not inside a folder this server allows" in detail
                assert str(outside.bare) in target or str(outside.bare) not in detail  # nothing resolved is shown
                detail = refused(
                    http.post(
                        f"/api/v1/namespaces/{ns}/push",
                        json={"url": target, "branch": "planted", "path": "sub", "dry_run": dry_run},
                        headers=server.admin,
                    )
                )
    finally:
        escape.unlink()
    assert outside.ls_remote() == heads  # no branch was planted
    assert ns_files(http, ns) == {"sub/hello.txt": b"hello"}
    # git's other local forms are no URLs at all
    for bad in (outside.bare.as_posix(), "./x.git", "ext::sh -c touch% /tmp/pwned", "fd::0", "http::/srv/x.git"):
        refused(sync(http, server, ns, bad, dry_run=True), 400)
    # and the listed folder itself still works (the rest of tests/sync relies on it)
    ok = GitRepo(tmp_path / "ok.git", "-")
    git("init", "-q", "--bare", str(ok.bare))
    ok.commit({"fine.txt": b"fine"})
    assert synced(http, server, ns, ok.url, dry_run=True)["counts"]["added"] == 1


def test_no_local_repository_without_the_setting(tmp_path: Path) -> None:
    """The default: no folder listed, so no server-local URL at all (before any git runs)."""
    from tests.conftest import live_server
    from tests.support.procs import running

    repo = GitRepo(tmp_path / "r.git", "-")
    git("init", "-q", "--bare", str(repo.bare))
    repo.commit({"a.txt": b"a"})
    live = live_server(tmp_path / "srv", {"PACKYARD_SYNC_LOCAL_ROOTS": ""})
    with running(live.server), httpx.Client(base_url=live.url, timeout=60) as http:
        detail = refused(sync(http, live, unique_ns(), repo.url, dry_run=True))
        assert "PACKYARD_SYNC_LOCAL_ROOTS" in detail
        assert not (live.server.data / "mirrors").exists() or not mirrors(live)
