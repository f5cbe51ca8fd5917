"""Push back: a namespace's files committed into a git branch, over file:// and smart HTTP."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import ok, put_file
from tests.sync.conftest import GitHttp, cli, failed, unique_ns

REPO = {"README.md": b"the repository's readme\n", "sub/old.txt": b"old\n", "keep/other.txt": b"other\n"}


def push(http: httpx.Client, server: LiveServer, ns: str, **body: object) -> httpx.Response:
    return http.post(f"/api/v1/namespaces/{ns}/push", json=body, headers=server.admin, timeout=120)


@pytest.mark.parametrize("transport", ["file", "http"])
def test_push_back(server: LiveServer, http: httpx.Client, git_http: GitHttp, transport: str) -> None:
    remote = git_http.new_repo("push")
    base = remote.commit(REPO)
    url = remote.url if transport == "file" else remote.http_url
    ns = unique_ns()
    files = {"flows/etl.py": b"print('from packyard')\n", "data/x.bin": os.urandom(100_000)}
    for path, data in files.items():
        put_file(http, server, ns, path, data)

    # the dry run reports the diff and pushes nothing
    response = push(http, server, ns, url=url, branch="main", path="sub", dry_run=True)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "namespace": ns,
        "url": url,
        "branch": "main",
        "dry_run": True,
        "changes": [{"status": "added", "path": "sub/data/x.bin"}, {"status": "added", "path": "sub/flows/etl.py"}],
        "commit": None,
        "pushed": False,
    }
    assert remote.ls_remote()["refs/heads/main"] == base

    result = push(http, server, ns, url=url, branch="main", path="sub", message="from packyard").json()
    head = remote.ls_remote()["refs/heads/main"]
    assert (result["pushed"], result["commit"]) == (True, head)
    assert remote.tree("main") == {**REPO, **{f"sub/{p}": d for p, d in files.items()}}  # nothing deleted
    subject, author, parent = remote.git("log", "-1", "--format=%s%n%an <%ae>%n%P", head).splitlines()
    assert (subject, author, parent) == ("from packyard", "packyard <packyard@localhost>", base)

    # again: nothing to push; then an edit and a deletion in the namespace
    again = push(http, server, ns, url=url, branch="main", path="sub").json()
    assert (again["changes"], again["pushed"]) == ([], False)
    put_file(http, server, ns, "flows/etl.py", b"print('edited')\n")
    http.delete(f"/api/v1/namespaces/{ns}/files/data/x.bin", headers=server.admin).raise_for_status()
    response = push(http, server, ns, url=url, branch="main", path="sub")
    assert response.status_code == 200, response.text
    assert response.json()["changes"] == [{"status": "updated", "path": "sub/flows/etl.py"}]
    assert set(remote.tree("main")) == {*REPO, "sub/flows/etl.py", "sub/data/x.bin"}  # deletions need --delete

    deletions = [{"status": "deleted", "path": "sub/data/x.bin"}, {"status": "deleted", "path": "sub/old.txt"}]
    head = remote.ls_remote()["refs/heads/main"]
    plan = push(http, server, ns, url=url, branch="main", path="sub", delete=True, dry_run=True).json()
    assert (plan["changes"], remote.ls_remote()["refs/heads/main"]) == (deletions, head)
    real = push(http, server, ns, url=url, branch="main", path="sub", delete=True).json()
    assert (real["changes"], real["pushed"]) == (deletions, True)
    # --delete reaches only under --path
    assert remote.tree("main") == {
        "README.md": REPO["README.md"],
        "keep/other.txt": REPO["keep/other.txt"],
        "sub/flows/etl.py": b"print('edited')\n",
    }

    # a branch the remote lacks is created, holding just the namespace's files
    response = push(http, server, ns, url=url, branch="packyard/export", message="export")
    assert response.status_code == 200, response.text
    assert remote.tree("refs/heads/packyard/export") == {"flows/etl.py": b"print('edited')\n"}
    assert remote.git("log", "--format=%s", "refs/heads/packyard/export").split() == ["export"]


def test_push_cli(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    remote = git_http.new_repo("push-cli")
    base = remote.commit(REPO)
    ns = unique_ns()
    put_file(http, server, ns, "flows/etl.py", b"print('cli')\n")
    env = server.client_env(server.admin_token)
    common = ["sync", "push", ns, remote.http_url, "--branch", "main", "--path", "sub"]

    # the dry run prints the diff and pushes nothing
    out = ok(cli(env, *common, "--delete", "--dry-run")).splitlines()
    assert out == ["+ sub/flows/etl.py", "- sub/old.txt", f"would push 2 changes to {remote.http_url} main"]
    assert remote.ls_remote()["refs/heads/main"] == base

    out = ok(cli(env, *common, "--message", "pushed by the cli")).splitlines()
    head = remote.ls_remote()["refs/heads/main"]
    assert out == ["+ sub/flows/etl.py", f"pushed {head[:12]} to {remote.http_url} main"]
    assert remote.git("log", "-1", "--format=%s", head).strip() == "pushed by the cli"
    assert remote.tree("main") == {**REPO, "sub/flows/etl.py": b"print('cli')\n"}

    again = ok(cli(env, *common))
    assert again.strip() == f"nothing to push: main already matches {ns}"


def test_push_refuses_git_paths_and_bad_branches(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    remote = git_http.new_repo("push-bad")
    remote.commit(REPO)
    before = remote.ls_remote()
    env = server.client_env(server.admin_token)
    for evil in ("x/.git/hooks/post-checkout", ".git/config", "y/.GIT/config"):
        ns = unique_ns()
        put_file(http, server, ns, "fine.txt", b"fine")
        put_file(http, server, ns, evil, b"#!/bin/sh\necho pwned\n")
        response = push(http, server, ns, url=remote.http_url, branch="main")
        assert response.status_code == 400, (evil, response.text)
        assert ".git" in response.json()["detail"]
    assert "'.git' segment" in failed(cli(env, "sync", "push", ns, remote.url, "--branch", "main"), 2)
    for branch in ("-x", "a..b", "has space", ""):
        response = push(http, server, ns, url=remote.url, branch=branch)
        assert response.status_code == 400, (branch, response.text)
    assert remote.ls_remote() == before


def test_push_refuses_refspecs_and_names_git_would_refuse(
    server: LiveServer, http: httpx.Client, git_http: GitHttp
) -> None:
    """``main:refs/heads/x`` is a refspec, not a branch: it used to reach git and end in a 500."""
    remote = git_http.new_repo("push-refspec")
    remote.commit(REPO)
    before = remote.ls_remote()
    ns = unique_ns()
    put_file(http, server, ns, "fine.txt", b"fine")
    for branch in ("main:refs/heads/x", "HEAD", "@", "x~1", "x^", "a.lock", "x/", "x//y", "x@{1}", "x\\y"):
        response = push(http, server, ns, url=remote.url, branch=branch)
        assert response.status_code == 400, (branch, response.text)
        assert "not a valid branch name" in response.json()["detail"], response.text
    env = server.client_env(server.admin_token)
    out = failed(cli(env, "sync", "push", ns, remote.url, "--branch", "main:refs/heads/x"), 2)
    assert "not a valid branch name" in out
    assert remote.ls_remote() == before


def test_push_names_and_empty_folders(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    remote = git_http.new_repo("push-names")
    remote.commit(REPO)
    ns = unique_ns()
    put_file(http, server, ns, "docs/café.md", b"caf\xc3\xa9\n")
    put_file(http, server, ns, 'docs/with space & quote".txt', b"odd name\n")
    response = push(http, server, ns, url=remote.url, branch="main", dry_run=True)
    assert response.status_code == 200, response.text
    assert response.json()["changes"] == [
        {"status": "added", "path": "docs/café.md"},
        {"status": "added", "path": 'docs/with space & quote".txt'},
    ]
    # a prefix that selects nothing, into a folder the branch lacks: nothing to push, not a crash
    response = push(http, server, ns, url=remote.url, branch="main", path="empty", prefix="nothing")
    assert response.status_code == 200, response.text
    assert (response.json()["changes"], response.json()["pushed"]) == ([], False)
    response = push(http, server, ns, url=remote.url, branch="main", prefix="docs", path="d")
    assert response.status_code == 200, response.text
    assert set(remote.tree("main")) == {*REPO, "d/café.md", 'd/with space & quote".txt'}
