"""One-off syncs: the CLI and the HTTP API against real repositories (file:// and smart HTTP).

Refs (branch, tag, commit, default branch), ``--path``, ``--prefix``, include/exclude globs,
``.packyardignore``, ``--delete``, symbolic links and submodules, on both backends.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import ok, put_file
from tests.sync.conftest import (
    GitHttp,
    Gitlink,
    GitRepo,
    Link,
    cli,
    cli_many,
    failed,
    listing,
    ns_files,
    revisions,
    statuses,
    sync,
    synced,
    unique_ns,
)

SALT = uuid.uuid4().hex.encode()

V1: dict[str, bytes] = {
    "README.md": b"# project " + SALT + b"\n",
    ".packyardignore": b"# build output\n*.pyc\nscratch/\n!keep.pyc\n",
    "flows/etl.py": b"print('etl v1')  # " + SALT + b"\n",
    "flows/lib/util.py": b"def util():\n    return 1  # " + SALT + b"\n",
    "flows/cache.pyc": b"\x00compiled" + SALT,
    "flows/keep.pyc": b"\x00kept" + SALT,
    "flows/.packyardignore": b"lib/\n",
    "scratch/notes.txt": b"scratch " + SALT,
    "docs/guide.md": b"# guide " + SALT,
    "docs/api.md": b"# api " + SALT,
}
V2 = {**V1, "flows/etl.py": b"print('etl v2')  # " + SALT + b"\n"}
FEATURE = {**V2, "flows/feature.py": b"print('feature')  # " + SALT + b"\n"}
IGNORED_AT_ROOT = {".packyardignore", "flows/cache.pyc", "scratch/notes.txt"}


def expected(files: dict[str, bytes]) -> dict[str, bytes]:
    """What a root sync of ``files`` stores: the root .packyardignore applied (and not synced)."""
    return {p: d for p, d in files.items() if p not in IGNORED_AT_ROOT}


@dataclass
class Project:
    repo: GitRepo
    c1: str
    c2: str
    feature: str

    def url(self, transport: str) -> str:
        return self.repo.url if transport == "file" else self.repo.http_url


@pytest.fixture(scope="module")
def project(git_http: GitHttp) -> Project:
    """Default branch ``trunk`` (c1 -> c2), branch ``feature``, tags ``v1`` (annotated, c1) and ``light`` (c2)."""
    repo = git_http.new_repo("project")
    c1 = repo.commit(V1, branch="trunk", message="v1")
    c2 = repo.commit(V2, branch="trunk", message="v2")
    repo.git("branch", "feature", c2)
    feature = repo.commit(FEATURE, branch="feature", message="feature")
    repo.tag("v1", c1, annotated=True)
    repo.tag("light", c2)
    repo.set_default_branch("trunk")
    return Project(repo, c1, c2, feature)


def test_cli_run_default_branch(server: LiveServer, http: httpx.Client, project: Project, git_http: GitHttp) -> None:
    """``sync run NS URL`` with no ref takes the remote's default branch, over file:// and HTTP."""
    env = server.client_env(server.admin_token)
    targets = {"file": unique_ns(), "http": unique_ns()}
    seen = len(git_http.seen)
    runs = cli_many(env, *[["sync", "run", ns, project.url(t), "--json"] for t, ns in targets.items()])
    for (transport, ns), run in zip(targets.items(), runs, strict=True):
        result = json.loads(ok(run))
        assert (result["ref"], result["commit"], result["dry_run"]) == ("trunk", project.c2, False)
        assert (result["namespace"], result["url"]) == (ns, project.url(transport))
        assert result["counts"] == {"added": 7, "updated": 0, "deleted": 0, "unchanged": 0, "skipped": 0}
        assert statuses(result) == dict.fromkeys(expected(V2), "added")
        assert ns_files(http, ns) == expected(V2)
    # the http:// sync really went through the smart-HTTP remote
    assert any(project.repo.bare.name in path for _, path, _ in git_http.seen[seen:])


def test_refs(server: LiveServer, http: httpx.Client, project: Project) -> None:
    cases = [
        ("feature", project.feature, FEATURE, "http"),
        ("v1", project.c1, V1, "file"),  # annotated tag: peeled to its commit
        ("light", project.c2, V2, "http"),
        (project.c1, project.c1, V1, "http"),
        (project.c2[:10], project.c2, V2, "file"),
        ("trunk", project.c2, V2, "file"),
    ]
    for ref, commit, files, transport in cases:
        ns = unique_ns()
        result = synced(http, server, ns, project.url(transport), ref=ref)
        assert (result["ref"], result["commit"]) == (ref, commit), ref
        assert ns_files(http, ns) == expected(files), ref


def test_path_and_prefix(server: LiveServer, http: httpx.Client, project: Project) -> None:
    ns = unique_ns()
    env = server.client_env(server.admin_token)
    out = ok(cli(env, "sync", "run", ns, project.repo.http_url, "--path", "flows", "--prefix", "imported/flows"))
    assert out.splitlines()[-1].endswith("3 added, 0 updated, 0 deleted, 0 unchanged, 0 skipped")
    # flows/.packyardignore ("lib/") applies and is not synced; the root one does not apply
    assert ns_files(http, ns) == {
        "imported/flows/etl.py": V2["flows/etl.py"],
        "imported/flows/cache.pyc": V2["flows/cache.pyc"],
        "imported/flows/keep.pyc": V2["flows/keep.pyc"],
    }
    before, history = listing(http, ns), revisions(server, ns)

    # a missing folder (or one that is a file) is a clear 404 and changes nothing
    for path in ("nope", "README.md", "flows/missing"):
        response = sync(http, server, ns, project.repo.url, path=path, prefix="imported/flows", delete=True)
        assert response.status_code == 404, response.text
        assert response.json()["detail"].startswith(f"the repository has no folder {path!r}")
    line = failed(cli(env, "sync", "run", ns, project.repo.url, "--path", "nope", "--delete"), 3)
    assert "no folder 'nope'" in line
    assert (listing(http, ns), revisions(server, ns)) == (before, history)

    # a trailing slash is the same folder; the prefix may be given with slashes too
    result = synced(http, server, ns, project.repo.url, path="flows/", prefix="/imported/flows/")
    assert set(statuses(result).values()) == {"unchanged"}


def test_include_exclude(server: LiveServer, http: httpx.Client, project: Project) -> None:
    ns = unique_ns()
    result = synced(http, server, ns, project.repo.url, include=["flows/*"], exclude=["*.pyc"])
    assert sorted(statuses(result)) == ["flows/.packyardignore", "flows/etl.py", "flows/lib/util.py"]
    assert set(ns_files(http, ns)) == {"flows/.packyardignore", "flows/etl.py", "flows/lib/util.py"}

    ns = unique_ns()
    env = server.client_env(server.admin_token)
    ok(cli(env, "sync", "run", ns, project.repo.url, "--exclude", "docs/", "--exclude", "flows/lib/*"))
    assert set(ns_files(http, ns)) == {"README.md", "flows/etl.py", "flows/keep.pyc", "flows/.packyardignore"}

    response = sync(http, server, unique_ns(), project.repo.url, include=[" flows/*"])
    assert response.status_code == 400, response.text


def test_delete_off_and_on(server: LiveServer, http: httpx.Client, project: Project) -> None:
    ns = unique_ns()
    extra = {"mirror/stale.txt": b"stale", "mirror/docs/old.md": b"old", "elsewhere.txt": b"outside the prefix"}
    for path, data in extra.items():
        put_file(http, server, ns, path, data)

    result = synced(http, server, ns, project.repo.url, path="docs", prefix="mirror")
    assert statuses(result) == {"mirror/guide.md": "added", "mirror/api.md": "added"}
    assert set(ns_files(http, ns)) == {*extra, "mirror/guide.md", "mirror/api.md"}  # --delete is off by default

    before, history = listing(http, ns), revisions(server, ns)
    plan = synced(http, server, ns, project.repo.url, path="docs", prefix="mirror", delete=True, dry_run=True)
    assert statuses(plan) == {
        "mirror/guide.md": "unchanged",
        "mirror/api.md": "unchanged",
        "mirror/stale.txt": "deleted",
        "mirror/docs/old.md": "deleted",
    }
    assert (listing(http, ns), revisions(server, ns)) == (before, history)

    env = server.client_env(server.admin_token)
    out = ok(cli(env, "sync", "run", ns, project.repo.url, "--path", "docs", "--prefix", "mirror", "--delete"))
    assert "- mirror/stale.txt" in out.splitlines() and "- mirror/docs/old.md" in out.splitlines()
    assert ns_files(http, ns) == {
        "elsewhere.txt": extra["elsewhere.txt"],
        "mirror/guide.md": V1["docs/guide.md"],
        "mirror/api.md": V1["docs/api.md"],
    }
    tombstones = [row for row in revisions(server, ns) if row[3]]
    assert [(row[0], row[4][:5]) for row in tombstones] == [
        ("mirror/docs/old.md", "sync:"),
        ("mirror/stale.txt", "sync:"),
    ]


def test_delete_spares_excluded_files(server: LiveServer, http: httpx.Client, project: Project) -> None:
    """Files the sync does not select (exclude globs, .packyardignore) are not its to delete."""
    ns = unique_ns()
    kept = {"notes.md": b"my notes", "flows/build.pyc": b"local build", "gone.txt": b"not in the repo"}
    for path, data in kept.items():
        put_file(http, server, ns, path, data)
    result = synced(http, server, ns, project.repo.url, exclude=["*.md"], delete=True)
    assert statuses(result)["gone.txt"] == "deleted"
    assert "notes.md" not in statuses(result)  # excluded by a glob: left alone
    # matched by the synced folder's .packyardignore ("*.pyc"): just as excluded, left alone too
    assert "flows/build.pyc" not in statuses(result), statuses(result)
    assert {"notes.md", "flows/build.pyc"} <= set(ns_files(http, ns))


@pytest.fixture(scope="module")
def odd(git_http: GitHttp) -> GitRepo:
    repo = git_http.new_repo("odd")
    repo.commit(
        {
            "ok.txt": b"fine",
            "dir/real.txt": b"real file",
            "passwd": Link("/etc/passwd"),
            "dir/up": Link("../../../../etc/hostname"),
            "alias.txt": Link("ok.txt"),
            "folder-link": Link("dir"),
            "vendor/lib": Gitlink("2" * 40),
        }
    )
    return repo


def test_symlinks_and_submodules_are_skipped(server: LiveServer, http: httpx.Client, odd: GitRepo) -> None:
    ns = unique_ns()
    result = synced(http, server, ns, odd.http_url)
    skipped = {e["path"]: e.get("reason") for e in result["entries"] if e["status"] == "skipped"}
    links = ["passwd", "dir/up", "alias.txt", "folder-link"]
    assert skipped == {**dict.fromkeys(links, "symbolic link"), "vendor/lib": "submodule"}
    assert result["counts"] == {"added": 2, "updated": 0, "deleted": 0, "unchanged": 0, "skipped": 5}
    assert sorted(result["warnings"]) == sorted(
        [f"skipped symbolic link {p} (links are never followed)" for p in links] + ["skipped submodule vendor/lib"]
    )
    assert ns_files(http, ns) == {"ok.txt": b"fine", "dir/real.txt": b"real file"}

    # the CLI shows them and warns; with a prefix the skipped entries carry the namespace path
    env = server.client_env(server.admin_token)
    out = ok(cli(env, "sync", "run", unique_ns(), odd.url, "--prefix", "p")).splitlines()
    assert "! p/passwd  (symbolic link)" in out
    assert "! p/vendor/lib  (submodule)" in out
    assert "warning: skipped symbolic link dir/up (links are never followed)" in out
    assert "warning: skipped submodule vendor/lib" in out

    # --delete never deletes a namespace file that sits where the repository has a link
    put_file(http, server, ns, "passwd", b"namespace's own")
    result = synced(http, server, ns, odd.url, delete=True)
    assert result["counts"]["deleted"] == 0
    assert ns_files(http, ns)["passwd"] == b"namespace's own"
