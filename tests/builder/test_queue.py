"""The queue and standalone workers: a private server with no embedded worker, ``packyard worker``
processes against it over HTTP.

- Two workers drain a queue of builds: each build runs exactly once (one successful claim
  each, one header in each log), both workers take some, all succeed — and a worker's own
  environment (its admin token, cloud keys) does not reach the builds either.
- A queued build is cancelled at once; a running one is killed and ends cancelled, and its
  worker goes on to the next build.
- A worker killed mid-build takes its build process with it (bubblewrap's die-with-parent),
  and the build is failed by the stale-heartbeat reaper when another worker claims
  (``PACKYARD_BUILD_STALE_SECONDS``, shortened here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.builder.conftest import (
    all_gone,
    build_info,
    build_log,
    dists_rows,
    headers,
    marker,
    packyard,
    private_server,
    processes_with,
    put_files,
    queued,
    tiny_project,
    unique_ns,
    wait_build,
    wait_log,
)
from tests.builder.test_sandbox import assert_no_leak
from tests.conftest import LiveServer
from tests.support.clients import PACKYARD, ok
from tests.support.procs import stop_process

STALE_SECONDS = 8
WORKER_SECRETS = {
    "GITHUB_TOKEN": f"leak-gh-{uuid.uuid4().hex}",
    "AWS_SECRET_ACCESS_KEY": f"leak-aws-{uuid.uuid4().hex}",
}


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"PACKYARD_EMBEDDED_WORKER": "false", "PACKYARD_BUILD_STALE_SECONDS": str(STALE_SECONDS)}
    with private_server(tmp_path_factory.mktemp("queue-server"), env) as server:
        yield server


@pytest.fixture
def http(queue_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=queue_server.url, timeout=60) as client:
        yield client


class WorkerProcess:
    """One ``packyard worker`` subprocess, with secrets in its environment."""

    def __init__(self, server: LiveServer, name: str, root: Path) -> None:
        self.server, self.name = server, name
        self.cache = root / "worker-cache"
        self.log_path = root / f"worker-{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = {**self.server.client_env(self.server.admin_token), **WORKER_SECRETS}
        self.proc = subprocess.Popen(
            [*PACKYARD, "worker", "--name", self.name, "--poll", "0.2", "--cache", self.cache],
            env=env,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye to the server."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            stop_process(self.proc, 10)


@contextmanager
def workers(server: LiveServer, root: Path, *names: str) -> Iterator[list[WorkerProcess]]:
    started = [WorkerProcess(server, name, root).start() for name in names]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def claims(server: LiveServer, mark: int) -> int:
    """Successful claims (a job handed out) since log line ``mark``."""
    return sum(1 for m, p, s in server.requests_since(mark) if (m, p, s) == ("POST", "/api/v1/workers/claim", 200))


def test_two_workers_run_each_build_exactly_once(queue_server: LiveServer, http: httpx.Client, tmp_path: Path) -> None:
    server = queue_server
    mark = len(server.log_lines())
    ids = []
    for i in range(4):
        ns = unique_ns()
        put_files(http, server, ns, tiny_project(f"job{i}", sleep=1.5, dump_env=(i == 0)))
        ids.append(queued(http, server, ns)["id"])
    with workers(server, tmp_path, "w1", "w2") as running:
        done = [wait_build(http, build_id, timeout=120) for build_id in ids]
        assert all(w.alive for w in running)
    assert [b["state"] for b in done] == ["succeeded"] * 4, done
    assert {b["worker"] for b in done} == {"w1", "w2"}, "one worker did all the builds"
    for build in done:
        log = build_log(http, build["id"])
        assert headers(log) == [build["id"]], log  # run once, by one worker
        assert len(dists_rows(server, build["namespace"])) == 2
    assert claims(server, mark) == 4
    # the workers' own environment (admin token, cloud keys) stays out of the builds too
    assert_no_leak(build_log(http, ids[0]), {**WORKER_SECRETS, "PACKYARD_TOKEN": server.admin_token})


def test_cancelling_a_queued_build(queue_server: LiveServer, http: httpx.Client) -> None:
    server = queue_server
    ns = unique_ns()
    put_files(http, server, ns, tiny_project("waiting"))
    build_id = queued(http, server, ns)["id"]  # no worker runs: it stays queued
    out = ok(packyard(server, "build", "cancel", str(build_id)))
    assert f"build {build_id}: cancelled" in out
    build = build_info(http, build_id)
    assert build["state"] == "cancelled" and build["worker"] is None and build["started"] is None
    again = packyard(server, "build", "cancel", str(build_id))
    assert again.returncode == 4 and "already cancelled" in again.stderr, again.stderr
    assert http.post(f"/api/v1/builds/{build_id}/cancel", headers=server.admin).status_code == 409
    # a cancelled build is not the answer for its source: asking again queues it
    requeued = queued(http, server, ns)
    assert requeued["key"] == build["key"]
    assert http.post(f"/api/v1/builds/{requeued['id']}/cancel", headers=server.admin).json()["state"] == "cancelled"


def test_cancelling_a_running_build_kills_it_and_the_worker_goes_on(
    queue_server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    server = queue_server
    ns, target = unique_ns(), unique_ns("target")
    sleeper = marker()
    put_files(http, server, ns, tiny_project("forever", marker=sleeper))
    build_id = queued(http, server, ns, publish_to=target)["id"]
    with workers(server, tmp_path, "w3") as (worker,):
        wait_log(http, build_id, f"SLEEPING {sleeper}")
        assert len(processes_with(sleeper)) == 1
        assert build_info(http, build_id)["state"] == "running"
        out = ok(packyard(server, "build", "cancel", str(build_id)))
        assert f"build {build_id}: cancel requested" in out
        build = wait_build(http, build_id, timeout=30)
        assert build["state"] == "cancelled", build
        assert all_gone(sleeper), "the cancelled build still runs"
        assert "[packyard] cancelled" in build_log(http, build_id)
        assert dists_rows(server, target) == [] and build["log_sha256"]
        # the worker survived and takes the next job
        put_files(http, server, ns, {"tiny.json": tiny_project("forever", "0.2.0")["tiny.json"]})
        after = wait_build(http, queued(http, server, ns, publish_to=target)["id"], timeout=60)
        assert after["state"] == "succeeded" and after["worker"] == "w3"
        assert worker.alive


def test_a_worker_killed_mid_build_leaves_it_to_the_reaper(
    queue_server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    server = queue_server
    ns = unique_ns()
    sleeper = marker()
    put_files(http, server, ns, tiny_project("orphan", marker=sleeper))
    build_id = queued(http, server, ns)["id"]
    with workers(server, tmp_path, "doomed") as (doomed,):
        wait_log(http, build_id, f"SLEEPING {sleeper}")
        assert len(processes_with(sleeper)) == 1
        doomed.kill()
    killed_at = time.monotonic()
    assert all_gone(sleeper), "the build outlived its killed worker"
    assert build_info(http, build_id)["state"] == "running"  # nobody has noticed yet
    with workers(server, tmp_path, "rescuer") as (rescuer,):
        build = wait_build(http, build_id, timeout=STALE_SECONDS + 30)
        assert build["state"] == "failed", build
        assert "stopped sending heartbeats" in build["error"]
        assert time.monotonic() - killed_at >= STALE_SECONDS - 1
        assert f"SLEEPING {sleeper}" in build_log(http, build_id)  # the log so far is kept
        # the rescuer then builds normally
        other = unique_ns()
        put_files(http, server, other, tiny_project("fresh"))
        fresh = wait_build(http, queued(http, server, other)["id"], timeout=60)
        assert fresh["state"] == "succeeded" and fresh["worker"] == "rescuer"
        assert rescuer.alive
