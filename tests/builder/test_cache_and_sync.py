"""The build cache, sync-triggered builds and log streaming, on both backends.

- The same source (same files, settings, target and Python) is answered by its earlier
  build — no new row, no build run — quickly; ``--force`` builds again, and a reproducible
  rebuild publishes nothing new and succeeds; a changed file is a new key.
- A sync with ``build: true`` queues builds only for the project folders whose files changed.
- ``packyard build logs ID --follow`` streams a running build's log and stops when it ends.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.builder.conftest import (
    WorkTree,
    build_info,
    build_log,
    build_rows,
    dists_rows,
    headers,
    put_files,
    queued,
    start_build,
    tiny_project,
    unique_ns,
    wait_build,
)
from tests.conftest import LiveServer

# -- cache -------------------------------------------------------------------------------------


def test_unchanged_source_is_answered_from_cache_and_force_rebuilds(server: LiveServer, http: httpx.Client) -> None:
    ns, target = unique_ns(), unique_ns("target")
    put_files(http, server, ns, tiny_project("cachey"))
    first = wait_build(http, queued(http, server, ns, publish_to=target)["id"])
    assert first["state"] == "succeeded", build_log(http, first["id"])
    published = dists_rows(server, target)
    assert [name for name, _ in published] == ["cachey-0.1.0-py3-none-any.whl", "cachey-0.1.0.tar.gz"]

    started = time.perf_counter()
    again = start_build(http, server, ns, publish_to=target)
    elapsed = time.perf_counter() - started
    assert again.status_code == 200, again.text
    assert again.json()["cached"] is True and again.json()["id"] == first["id"]
    assert again.json()["state"] == "succeeded"
    assert elapsed < 0.5, f"a cached answer took {elapsed:.3f}s"
    assert len(build_rows(server, ns)) == 1

    # another target is another key: built again (it publishes somewhere else)
    elsewhere = queued(http, server, ns, publish_to=unique_ns("other"))
    assert elsewhere["key"] != first["key"]

    forced = queued(http, server, ns, publish_to=target, force=True)
    assert forced["key"] == first["key"] and forced["id"] != first["id"]
    forced = wait_build(http, forced["id"])
    log = build_log(http, forced["id"])
    assert forced["state"] == "succeeded", log
    assert "identical bytes: nothing to do" in log
    assert dists_rows(server, target) == published  # the same files, published once
    # the latest successful build of the key answers now
    assert start_build(http, server, ns, publish_to=target).json()["id"] == forced["id"]

    put_files(http, server, ns, {"tiny.json": tiny_project("cachey", "0.2.0")["tiny.json"]})
    changed = queued(http, server, ns, publish_to=target)
    assert changed["key"] not in (first["key"], elsewhere["key"])
    assert wait_build(http, changed["id"])["state"] == "succeeded"
    assert len(dists_rows(server, target)) == 4
    wait_build(http, elsewhere["id"])


def test_a_queued_build_of_the_same_source_is_not_queued_twice(server: LiveServer, http: httpx.Client) -> None:
    ns = unique_ns()
    put_files(http, server, ns, tiny_project("twice", ticks=3))
    first = queued(http, server, ns)
    second = start_build(http, server, ns)
    assert second.status_code == 200 and second.json()["id"] == first["id"] and second.json()["cached"] is True
    assert wait_build(http, first["id"])["state"] == "succeeded"
    assert len(build_rows(server, ns)) == 1


def test_a_failed_build_is_not_a_cache_answer(server: LiveServer, http: httpx.Client) -> None:
    ns = unique_ns()
    put_files(http, server, ns, tiny_project("flaky", "0.1.0", wheel_version="0.1.1"))
    first = wait_build(http, queued(http, server, ns)["id"])
    assert first["state"] == "failed"
    second = queued(http, server, ns)  # the same key again: built, not answered by the failure
    assert second["key"] == first["key"] and second["id"] != first["id"]
    assert wait_build(http, second["id"])["state"] == "failed"


# -- sync-triggered builds -----------------------------------------------------------------------


def _sync(http: httpx.Client, server: LiveServer, ns: str, repo: WorkTree, **options: object) -> dict:
    response = http.post(
        f"/api/v1/namespaces/{ns}/sync", json={"url": repo.url, **options}, headers=server.admin, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_sync_with_build_queues_only_the_changed_project_folders(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    repo = WorkTree(tmp_path / "monorepo")
    repo.write({"README.md": b"# two packages\n"})
    repo.write(tiny_project("alpha"), prefix="pkgs/alpha/")
    repo.write(tiny_project("beta"), prefix="pkgs/beta/")
    repo.commit("alpha and beta", "2024-03-01T12:00:00+00:00")
    ns, target = unique_ns(), unique_ns("index")
    options = {"build": True, "build_publish_to": target}

    result = _sync(http, server, ns, repo, **options)
    assert len(result["builds"]) == 2
    first = {b["path"]: b for b in (wait_build(http, i) for i in result["builds"])}
    assert sorted(first) == ["pkgs/alpha", "pkgs/beta"]
    assert all(b["state"] == "succeeded" and b["publish_to"] == target for b in first.values()), first
    assert {b["source_date_epoch"] for b in first.values()} == {repo.commit_time()}

    repo.write({"tiny.json": tiny_project("beta", "0.2.0")["tiny.json"]}, prefix="pkgs/beta/")
    repo.commit("beta 0.2.0", "2024-03-02T12:00:00+00:00")
    result = _sync(http, server, ns, repo, **options)
    assert len(result["builds"]) == 1, result
    rebuilt = wait_build(http, result["builds"][0])
    assert rebuilt["path"] == "pkgs/beta" and rebuilt["state"] == "succeeded"
    assert rebuilt["key"] != first["pkgs/beta"]["key"]
    assert rebuilt["source_date_epoch"] == repo.commit_time()

    repo.write({"README.md": b"# two packages, documented\n"})  # outside every project
    repo.commit("docs", "2024-03-03T12:00:00+00:00")
    assert _sync(http, server, ns, repo, **options)["builds"] == []
    assert _sync(http, server, ns, repo, **options)["builds"] == []  # nothing changed at all

    assert [name for name, _ in dists_rows(server, target)] == [
        "alpha-0.1.0-py3-none-any.whl",
        "alpha-0.1.0.tar.gz",
        "beta-0.1.0-py3-none-any.whl",
        "beta-0.1.0.tar.gz",
        "beta-0.2.0-py3-none-any.whl",
        "beta-0.2.0.tar.gz",
    ]
    assert len(build_rows(server, ns)) == 3


def test_sync_without_build_queues_nothing(server: LiveServer, http: httpx.Client, tmp_path: Path) -> None:
    repo = WorkTree(tmp_path / "repo")
    repo.write(tiny_project("quiet"))
    repo.commit("quiet", "2024-03-01T12:00:00+00:00")
    ns = unique_ns()
    assert _sync(http, server, ns, repo).get("builds", []) == []
    assert build_rows(server, ns) == []


# -- following a log ------------------------------------------------------------------------------


def test_logs_follow_streams_a_running_build_until_it_ends(server: LiveServer, http: httpx.Client) -> None:
    """The build ticks until the test has seen a tick through ``--follow``, then it is released.

    The sandbox shows the build nothing of the server's disk but its own folders, so the
    release file goes into the build's own temporary folder (relative to its source)."""
    ns = unique_ns()
    put_files(http, server, ns, tiny_project("talker", ticks=600, tick_seconds=0.2, until="../tmp/release"))
    build_id = queued(http, server, ns)["id"]
    work = server.server.data / "build-cache" / "work"

    def release() -> None:
        for folder in work.glob(f"build-{build_id}-*"):
            (folder / "tmp" / "release").touch()

    proc = subprocess.Popen(
        [sys.executable, "-m", "packyard", "build", "logs", str(build_id), "--follow"],
        env=server.client_env(server.admin_token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue[bytes] = queue.Queue()
    streamed: list[bytes] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            line = lines.get(timeout=90)
            streamed.append(line)
            if line.startswith(b"tick "):
                break
        assert build_info(http, build_id)["state"] == "running"  # streamed while it runs
        release()
        proc.wait(timeout=90)
    finally:
        release()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    reader.join(timeout=10)
    while not lines.empty():
        streamed.append(lines.get())
    assert build_info(http, build_id)["state"] == "succeeded"  # --follow ended with the build
    text = b"".join(streamed).decode()
    assert text == build_log(http, build_id), "--follow lost or repeated bytes"
    assert headers(text) == [build_id]
    assert "tick 0\n" in text and "[packyard] built talker-0.1.0.tar.gz" in text
