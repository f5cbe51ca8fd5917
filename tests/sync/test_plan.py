"""Plan, then apply: dry runs write nothing, re-syncs are no-ops, one change is one blob.

Every test builds its own repository with content no other test stores, so the blob
accounting (``blobs_written`` and the backend's own list of blobs) is exact.
"""

from __future__ import annotations

import json
import uuid

import httpx

from tests.conftest import LiveServer
from tests.support.clients import ok, put_file, sha256
from tests.sync.conftest import GitHttp, GitRepo, cli, listing, ns_files, revisions, statuses, synced, unique_ns


def salted(count: int = 5) -> dict[str, bytes]:
    salt = uuid.uuid4().hex.encode()
    files = {f"flows/f{i}.py": b"print(%d)  # " % i + salt for i in range(count - 1)}
    files["data/table.csv"] = b"a,b\n" + salt * 100
    return files


def fresh_repo(git_http: GitHttp, files: dict[str, bytes]) -> tuple[GitRepo, str]:
    repo = git_http.new_repo("plan")
    return repo, repo.commit(files)


def test_dry_run_writes_nothing_then_the_real_run_applies(
    server: LiveServer, http: httpx.Client, git_http: GitHttp
) -> None:
    files = salted()
    repo, commit = fresh_repo(git_http, files)
    ns = unique_ns()
    blobs = server.blob_hashes()

    plan = synced(http, server, ns, repo.http_url, dry_run=True)
    assert (plan["dry_run"], plan["commit"], plan["blobs_written"]) == (True, commit, 0)
    assert statuses(plan) == dict.fromkeys(files, "added")
    assert {e["path"]: e["size"] for e in plan["entries"]} == {p: len(d) for p, d in files.items()}
    assert listing(http, ns) is None  # not even the namespace was created
    assert server.count("file_revisions", ns) == 0
    assert server.blob_hashes() == blobs
    assert server.temp_count() == 0

    result = synced(http, server, ns, repo.http_url)
    assert statuses(result) == dict.fromkeys(files, "added")
    assert result["blobs_written"] == len(files)
    assert server.blob_hashes() - blobs == {sha256(d) for d in files.values()}
    assert ns_files(http, ns) == files
    rows = revisions(server, ns)
    assert [(path, rev, digest, deleted) for path, rev, digest, deleted, _ in rows] == [
        (p, 1, sha256(files[p]), 0) for p in sorted(files)
    ]
    assert {origin for *_, origin in rows} == {f"sync:{commit[:12]}"}

    # the CLI's dry run prints the plan and says "would"
    env = server.client_env(server.admin_token)
    changed = {**files, "flows/f0.py": b"changed " + uuid.uuid4().hex.encode(), "new.txt": b"new"}
    del changed["flows/f1.py"]
    second = repo.commit(changed)
    out = ok(cli(env, "sync", "run", ns, repo.url, "--dry-run", "--delete")).splitlines()
    assert out[:3] == ["~ flows/f0.py", "- flows/f1.py", "+ new.txt"]
    assert out[3] == (
        f"would sync {repo.url} main @ {second[:12]} into {ns}: 1 added, 1 updated, 1 deleted, 3 unchanged, 0 skipped"
    )
    assert revisions(server, ns) == rows
    assert ns_files(http, ns) == files


def test_noop_resync_and_one_change(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    files = salted(8)
    repo, _ = fresh_repo(git_http, files)
    ns = unique_ns()
    synced(http, server, ns, repo.url)
    rows, blobs = revisions(server, ns), server.blob_hashes()

    again = synced(http, server, ns, repo.url)
    assert statuses(again) == dict.fromkeys(files, "unchanged")
    assert (again["blobs_written"], again["counts"]["unchanged"]) == (0, len(files))
    assert revisions(server, ns) == rows
    assert server.blob_hashes() == blobs

    changed = {**files, "flows/f3.py": b"print('changed')  # " + uuid.uuid4().hex.encode()}
    commit = repo.commit(changed)
    result = synced(http, server, ns, repo.url)
    assert result["commit"] == commit
    assert [p for p, s in statuses(result).items() if s != "unchanged"] == ["flows/f3.py"]
    assert result["counts"] == {"added": 0, "updated": 1, "deleted": 0, "unchanged": 7, "skipped": 0}
    assert result["blobs_written"] == 1
    assert server.blob_hashes() - blobs == {sha256(changed["flows/f3.py"])}
    new_rows = revisions(server, ns)
    assert len(new_rows) == len(rows) + 1
    assert [r for r in new_rows if r not in rows] == [
        ("flows/f3.py", 2, sha256(changed["flows/f3.py"]), 0, f"sync:{commit[:12]}")
    ]
    assert ns_files(http, ns) == changed

    # going back to a content the store already has: one revision, no blob
    blobs = server.blob_hashes()
    result = synced(http, server, ns, repo.url, ref=list(repo.commits)[0])
    assert statuses(result)["flows/f3.py"] == "updated"
    assert result["blobs_written"] == 0
    assert server.blob_hashes() == blobs
    assert len(revisions(server, ns)) == len(new_rows) + 1


def test_put_with_the_same_bytes_counts_as_unchanged(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    files = salted(4)
    repo, _ = fresh_repo(git_http, files)
    ns = unique_ns()
    same, different = "flows/f0.py", "flows/f1.py"
    put_file(http, server, ns, same, files[same])
    put_file(http, server, ns, different, b"local edit " + uuid.uuid4().hex.encode())
    rows, blobs = revisions(server, ns), server.blob_hashes()

    plan = synced(http, server, ns, repo.url, dry_run=True)
    assert statuses(plan) == {
        same: "unchanged",
        different: "updated",
        "flows/f2.py": "added",
        "data/table.csv": "added",
    }

    result = synced(http, server, ns, repo.url)
    assert statuses(result) == statuses(plan)
    assert result["blobs_written"] == 3  # not the one whose bytes the store already had
    assert len(server.blob_hashes() - blobs) == 3
    after = revisions(server, ns)
    assert [r for r in after if r[0] == same] == [r for r in rows if r[0] == same]  # still revision 1, by PUT
    assert len(after) == len(rows) + 3
    assert ns_files(http, ns) == files

    # from now on the git blob id is known beside the head: still unchanged, nothing written
    again = synced(http, server, ns, repo.url)
    assert statuses(again) == dict.fromkeys(files, "unchanged")
    assert again["blobs_written"] == 0
    assert revisions(server, ns) == after

    # the JSON the CLI prints is the API's result
    env = server.client_env(server.admin_token)
    printed = json.loads(ok(cli(env, "sync", "run", ns, repo.url, "--json")))
    assert printed["counts"]["unchanged"] == len(files) and printed["run_id"] > again["run_id"]
