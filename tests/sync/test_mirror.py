"""The mirror cache: one bare mirror per repository URL and credential, fetched incrementally, safe
under concurrency."""

from __future__ import annotations

import threading
import uuid

import httpx

from tests.conftest import LiveServer
from tests.sync.conftest import GitHttp, git, mirrors, ns_files, statuses, sync, synced, unique_ns


def test_one_bare_mirror_per_url(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    repo = git_http.new_repo("mirrored")
    salt = uuid.uuid4().hex.encode()
    first = repo.commit({"a.txt": b"a " + salt})
    repo.git("branch", "other", first)
    before = mirrors(server)

    synced(http, server, unique_ns(), repo.url)
    created = mirrors(server) - before
    assert len(created) == 1
    mirror = server.server.data / "mirrors" / created.pop()
    assert git("--git-dir", str(mirror), "rev-parse", "--is-bare-repository").strip() == "true"
    assert git("--git-dir", str(mirror), "rev-parse", "refs/heads/main").strip() == first
    assert "remote." not in git("--git-dir", str(mirror), "config", "--list")  # the URL is never saved

    # the same URL again (another namespace, another ref): the same mirror, fetched again
    second = repo.commit({"a.txt": b"a " + salt, "b.txt": b"b " + salt})
    result = synced(http, server, unique_ns(), repo.url, ref="main")
    assert result["commit"] == second
    synced(http, server, unique_ns(), repo.url, ref="other")
    assert git("--git-dir", str(mirror), "rev-parse", "refs/heads/main").strip() == second
    assert mirrors(server) - before == {mirror.name}

    # another URL of the same repository is another mirror; a password in the URL is a
    # credential, so it makes a third (a sync reads only what its own credential fetched),
    # and the same password again reuses it
    synced(http, server, unique_ns(), repo.http_url)
    assert len(mirrors(server) - before) == 2
    synced(http, server, unique_ns(), repo.http_url_with("someone", "whatever"))
    synced(http, server, unique_ns(), repo.http_url_with("someone", "whatever"))
    assert len(mirrors(server) - before) == 3

    # a branch deleted upstream is pruned from the mirror, so it is no longer a ref
    repo.git("branch", "-D", "other")
    response = sync(http, server, unique_ns(), repo.url, ref="other")
    assert response.status_code == 404, response.text


def test_concurrent_syncs_of_one_repository(server: LiveServer, git_http: GitHttp) -> None:
    repo = git_http.new_repo("concurrent")
    salt = uuid.uuid4().hex.encode()
    files = {f"dir{i % 4}/file{i}.txt": b"%d " % i + salt * 50 for i in range(60)}
    commit = repo.commit(files)
    before = mirrors(server)
    targets = [unique_ns(), unique_ns()]
    jobs = [targets[0], targets[0], targets[1], targets[1]]
    barrier = threading.Barrier(len(jobs))
    results: list[httpx.Response | BaseException] = [None] * len(jobs)  # type: ignore[list-item]

    def run(i: int, ns: str) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                barrier.wait()
                results[i] = sync(client, server, ns, repo.http_url)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, ns)) for i, ns in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for response in results:
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 200, response.text
        assert response.json()["commit"] == commit
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for ns in targets:
            assert ns_files(client, ns) == files
            assert server.count("file_revisions", ns) == len(files)  # no file written twice
            mine = [r.json() for r, target in zip(results, jobs, strict=True) if target == ns]  # type: ignore[union-attr]
            assert sorted(r["counts"]["added"] for r in mine) == [0, len(files)]
            assert {s for r in mine for s in statuses(r).values()} == {"added", "unchanged"}

    created = mirrors(server) - before
    assert len(created) == 1
    git("--git-dir", str(server.server.data / "mirrors" / created.pop()), "fsck", "--full", "--strict")
