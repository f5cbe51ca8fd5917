"""Bad input fails the whole sync and leaves the namespace exactly as it was; readers never see half.

Bad paths and an over-limit file sit among good changes in one commit, so a sync that wrote
as it went would leave some of them behind. The test server's upload limit is 8 MiB.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import sha256
from tests.support.procs import free_port
from tests.sync.conftest import (
    GitHttp,
    GitRepo,
    MiB,
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
BASE = {"ok.txt": b"ok " + SALT, "other.txt": b"other " + SALT}
CHANGES = {"aaa.txt": b"first " + SALT, "other.txt": b"changed " + SALT, "zzz/last.txt": b"last " + SALT}


@dataclass
class Bad:
    repo: GitRepo
    huge: bytes


@pytest.fixture(scope="module")
def bad(git_http: GitHttp) -> Bad:
    """``main`` is fine; every other branch adds good changes around one bad entry."""
    repo = git_http.new_repo("bad")
    huge = bytes(9 * MiB)  # git measures it at 9 MiB; it packs to almost nothing
    repo.commit(BASE)
    bad_entries = {
        "control": {"bad\x01name": b"x"},
        "newline": {"dir/line\nbreak.txt": b"x"},
        "backslash": {"dir\\file.txt": b"x"},
        "not-utf8": {"caf\udce9.txt": b"x"},  # the byte 0xe9 alone: not UTF-8
        "big": {"m/huge.bin": huge},
    }
    for branch, entry in bad_entries.items():
        repo.git("branch", branch, "main")
        repo.commit({**BASE, **CHANGES, **entry}, branch=branch)
    return Bad(repo, huge)


def state(server: LiveServer, http: httpx.Client, ns: str) -> tuple:
    return listing(http, ns), revisions(server, ns), server.count("file_heads", ns)


def test_bad_paths_and_large_files_change_nothing(server: LiveServer, http: httpx.Client, bad: Bad) -> None:
    ns = unique_ns()
    synced(http, server, ns, bad.repo.url)
    before, blobs = state(server, http, ns), server.blob_hashes()

    cases = [
        ("control", 400, "'bad\\x01name' cannot be a namespace path"),
        ("newline", 400, "'dir/line\\nbreak.txt' cannot be a namespace path"),
        ("backslash", 400, "cannot be a namespace path"),
        ("not-utf8", 400, "cannot be a namespace path"),
        ("big", 413, f"m/huge.bin is {9 * MiB} bytes, over the limit of {8 * MiB}"),
    ]
    for ref, status, message in cases:
        for dry_run in (True, False):
            response = sync(http, server, ns, bad.repo.http_url, ref=ref, delete=True, dry_run=dry_run)
            assert response.status_code == status, (ref, response.text)
            body = response.json()
            assert set(body) == {"error", "detail"}, body
            assert message in body["detail"], (ref, body)
            assert state(server, http, ns) == before, ref
    assert server.blob_hashes() == blobs
    assert server.temp_count() == 0

    env = server.client_env(server.admin_token)
    big, control = cli_many(
        env,
        ["sync", "run", ns, bad.repo.url, "--ref", "big"],
        ["sync", "run", ns, bad.repo.url, "--ref", "control"],
    )
    assert "over the limit" in failed(big, 5)
    assert "cannot be a namespace path" in failed(control, 2)
    assert state(server, http, ns) == before

    # excluding the offending file makes the same commit sync fine
    result = synced(http, server, ns, bad.repo.url, ref="big", exclude=["m/"])
    assert result["counts"] == {"added": 2, "updated": 1, "deleted": 0, "unchanged": 1, "skipped": 0}
    assert ns_files(http, ns) == {**BASE, **CHANGES}


def test_unreachable_remote_and_unknown_ref(server: LiveServer, http: httpx.Client, bad: Bad) -> None:
    ns = unique_ns()
    synced(http, server, ns, bad.repo.url)
    before = state(server, http, ns)
    closed = free_port()
    listed = server.server.data.parent.parent.as_uri()  # PACKYARD_SYNC_LOCAL_ROOTS of the test servers

    cases = [
        (f"http://127.0.0.1:{closed}/nothing.git", None, 502, f"failed for http://127.0.0.1:{closed}/nothing.git"),
        (f"{listed}/nonexistent/repo.git", None, 502, f"failed for {listed}/nonexistent/repo.git"),
        ("file:///nonexistent/packyard/repo.git", None, 403, "not inside a folder this server allows syncs from"),
        (f"{bad.repo.http_url}-missing", None, 502, "failed for"),
        (bad.repo.http_url, "no-such-branch", 404, "ref 'no-such-branch' is not a branch, tag or commit"),
        (bad.repo.url, "f" * 40, 404, f"ref {'f' * 40!r} is not a branch, tag or commit"),
        (bad.repo.url, "v9.9", 404, "ref 'v9.9' is not a branch, tag or commit"),
        ("ftp://example.com/repo.git", None, 400, "is not a git URL"),
    ]
    for url, ref, status, message in cases:
        response = sync(http, server, ns, url, ref=ref, delete=True)
        assert response.status_code == status, (url, ref, response.text)
        assert message in response.json()["detail"], response.text
        assert "Traceback" not in response.text
    assert state(server, http, ns) == before

    env = server.client_env(server.admin_token)
    unreachable, unknown = cli_many(
        env,
        ["sync", "run", ns, f"http://127.0.0.1:{closed}/nothing.git"],
        ["sync", "run", ns, bad.repo.url, "--ref", "no-such-branch", "--delete"],
    )
    assert f"127.0.0.1:{closed}" in failed(unreachable, 9)
    assert "no-such-branch" in failed(unknown, 3)
    assert state(server, http, ns) == before


def test_readers_see_before_or_after(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    """While a sync that changes every file applies, every listing is all old or all new."""
    repo = git_http.new_repo("many")
    salt = uuid.uuid4().hex.encode()
    old = {f"d{i % 7}/f{i:03}.txt": b"old %d " % i + salt for i in range(120)}
    new = {path: b"new " + data for path, data in old.items()}
    del new["d0/f000.txt"]
    new["added.txt"] = b"added " + salt
    first = repo.commit(old)
    second = repo.commit(new)
    ns = unique_ns()
    synced(http, server, ns, repo.url, ref=first)
    states = {
        "old": {p: sha256(d) for p, d in old.items()},
        "new": {p: sha256(d) for p, d in new.items()},
    }

    seen: list[dict[str, str]] = []
    stop = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as reader:
            while not stop.is_set():
                response = reader.get(f"/api/v1/namespaces/{ns}/files")
                seen.append({row["path"]: row["sha256"] for row in response.json()})

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        result = synced(http, server, ns, repo.url, ref=second, delete=True)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert result["counts"] == {"added": 1, "updated": 119, "deleted": 1, "unchanged": 0, "skipped": 0}
    assert statuses(result)["d0/f000.txt"] == "deleted"
    assert seen
    for snapshot in seen:
        assert snapshot in (states["old"], states["new"]), "a reader saw a half-applied sync"
    assert {p: sha256(d) for p, d in ns_files(http, ns).items()} == states["new"]


def test_sync_killed_half_way(tmp_path: Path, git_http: GitHttp) -> None:
    """SIGKILL the server while a sync stores its blobs: after a restart the namespace is the old one."""
    repo = git_http.new_repo("killed")
    old = {f"d{i % 5}/f{i:03}.bin": os.urandom(4096) for i in range(150)}
    new = {path: os.urandom(4096) for path in old}
    first, second = repo.commit(old), repo.commit(new)
    live = live_server(tmp_path, {"PACKYARD_LOG_REQUESTS": "true"})
    srv = live.server.start()
    ns = unique_ns()
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            synced(http, live, ns, repo.url, ref=first)
            before = state(live, http, ns)
        stored = len(live.blob_hashes())
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                with httpx.Client(base_url=srv.url, timeout=120) as client:
                    outcome["response"] = sync(client, live, ns, repo.url, ref=second)
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while len(live.blob_hashes()) < stored + 10 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert srv.proc is not None
        os.killpg(srv.proc.pid, signal.SIGKILL)  # the server and any git it was running
        srv.proc.wait()
        srv.proc = None
        thread.join()
        assert "error" in outcome, "the sync finished before the kill; make the repository bigger"
        assert len(live.blob_hashes()) > stored  # it was killed half way: some new blobs are stored

        srv.start()  # the same data folder
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            assert state(live, http, ns) == before
            # the mirror and the namespace are usable: the same sync now completes
            result = synced(http, live, ns, repo.url, ref=second)
            assert result["counts"]["updated"] == len(new)
            assert ns_files(http, ns) == new
    finally:
        srv.stop()
