"""The environment cache on one worker: reuse, re-resolution, one build under concurrency,
and never a half-built environment (a build killed mid-way is rebuilt cleanly).

These test the client's cache, not the storage backend: they run against the local one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.runs.conftest import (
    COMPLETE,
    assert_only_complete,
    bundle_requests,
    cli,
    cli_env,
    env_dirs,
    env_json,
    log_mark,
    simple_wheel,
    unique_ns,
)
from tests.support.clients import PACKYARD, create_ns, output, upload

pytestmark = pytest.mark.local_only


@pytest.fixture
def family(server: LiveServer, http: httpx.Client, tmp_path: Path) -> tuple[str, str]:
    """(parent, child): a fresh ``fresh`` 1.0 (new bytes: a new environment) in the parent."""
    parent = unique_ns("e")
    child = f"{parent}.flows"
    create_ns(http, server, parent, child)
    upload(http, server, parent, simple_wheel(tmp_path / "dists", "fresh", "1.0", "def hello():\n    return 'hi'\n"))
    return parent, child


def test_second_env_reuses_environment_and_resolution(
    server: LiveServer, family: tuple[str, str], cache: Path, tmp_path: Path
) -> None:
    parent, child = family
    first = env_json(server, cache, child, "--with", "fresh")
    assert (first["reused"], first["resolved"], first["from_bundle"]) == (False, True, False)
    assert Path(first["path"]).parent == cache / "envs"
    assert (Path(first["path"]) / COMPLETE).is_file()

    second = env_json(server, cache, child, "--with", "fresh")
    assert second["path"] == first["path"]
    assert (second["reused"], second["resolved"]) == (True, False)

    # without --json: the path alone on stdout, nothing on stderr (not a terminal)
    plain = cli(server, cache, "env", child, "--with", "fresh")
    assert plain.stdout == first["path"] + "\n"
    assert plain.stderr == ""

    # another flow in another namespace with the same lock: the same environment
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# the flow's requirements\nfresh  # inline comment\n\n")
    other = env_json(server, cache, parent, "-r", str(reqs))
    assert other["path"] == first["path"]
    assert (other["reused"], other["resolved"]) == (True, True)  # its own resolution, the same lock
    assert len(env_dirs(cache)) == 1


def test_index_change_resolves_again_and_refresh_forces_it(
    server: LiveServer, http: httpx.Client, family: tuple[str, str], cache: Path, tmp_path: Path
) -> None:
    parent, child = family
    first = env_json(server, cache, child, "--with", "fresh")
    assert env_json(server, cache, child, "--with", "fresh")["resolved"] is False

    # an unrelated upload to the *parent* changes the child's index state: resolve again, same lock
    upload(http, server, parent, simple_wheel(tmp_path / "other", "unrelated", "1.0"))
    after = env_json(server, cache, child, "--with", "fresh")
    assert (after["resolved"], after["reused"], after["path"]) == (True, True, first["path"])
    assert env_json(server, cache, child, "--with", "fresh")["resolved"] is False

    # --refresh resolves even though nothing changed
    refreshed = env_json(server, cache, child, "--with", "fresh", "--refresh")
    assert (refreshed["resolved"], refreshed["reused"], refreshed["path"]) == (True, True, first["path"])

    # a new release: a new lock, a new environment holding it
    upload(http, server, child, simple_wheel(tmp_path / "v2", "fresh", "2.0"))
    newer = env_json(server, cache, child, "--with", "fresh")
    assert (newer["resolved"], newer["reused"]) == (True, False)
    assert newer["path"] != first["path"]
    assert newer["lock"].startswith("fresh==2.0")
    code = "import fresh; print(fresh.VERSION)"
    assert cli(server, cache, "run", child, "--with", "fresh", "--", "python", "-c", code).stdout.strip() == "2.0"
    # the parent still resolves 1.0: the child's release is not the parent's
    assert cli(server, cache, "run", parent, "--with", "fresh", "--", "python", "-c", code).stdout.strip() == "1.0"
    assert_only_complete(cache)


def test_concurrent_runs_build_a_new_environment_once(server: LiveServer, family: tuple[str, str], cache: Path) -> None:
    _, child = family
    mark = log_mark(server)
    env = cli_env(server, cache)
    procs = [
        subprocess.Popen(
            [*PACKYARD, "env", child, "--with", "fresh", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert len({r["path"] for r in results}) == 1
    assert sorted(r["reused"] for r in results) == [False, True, True]  # one built, the others waited
    key = results[0]["key"]
    requests = bundle_requests(server, mark, key)
    assert requests.count(("PUT", 201)) == 1 and len([r for r in requests if r[0] == "PUT"]) == 1, requests
    assert [r for r in requests if r[0] == "GET"] == [("GET", 404)], requests  # only the builder looked
    assert_only_complete(cache)


def _start_env(server: LiveServer, cache: Path, ns: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*PACKYARD, "env", ns, "--with", "fresh"],
        env=cli_env(server, cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes pip and uv with it, as a dying worker would
    )


def test_a_build_killed_midway_is_never_used_and_is_rebuilt(
    server: LiveServer, family: tuple[str, str], cache: Path
) -> None:
    _, child = family
    proc = _start_env(server, cache, child)
    envs = cache / "envs"
    deadline = time.monotonic() + 60
    partial: list[Path] = []
    while not partial:
        assert time.monotonic() < deadline, "the build never started"
        assert proc.poll() is None, "the build finished before it could be interrupted"
        partial = [p for p in envs.glob(".*") if p.is_dir()] if envs.exists() else []
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    key = partial[0].name.split(".")[1]
    assert not (envs / key).exists(), "the kill came too late: the environment was complete"
    assert [p.name for p in env_dirs(cache) if not p.name.startswith(".")] == []

    again = env_json(server, cache, child, "--with", "fresh")
    assert again["key"] == key
    assert (again["reused"], again["from_bundle"]) == (False, False)  # rebuilt, the killed build shared nothing
    assert_only_complete(cache)  # the killed build's leftovers are gone
    code = "import fresh; print(fresh.hello())"
    assert cli(server, cache, "run", child, "--with", "fresh", "--", "python", "-c", code).stdout.strip() == "hi"


def test_an_environment_without_its_marker_is_rebuilt(server: LiveServer, family: tuple[str, str], cache: Path) -> None:
    """A folder at the environment's place but not marked complete is never used as it is."""
    _, child = family
    first = env_json(server, cache, child, "--with", "fresh")
    path = Path(first["path"])
    (path / COMPLETE).unlink()
    for site in path.glob("lib/python*/site-packages/fresh"):  # and damage it
        (site / "__init__.py").write_text("raise ImportError('half-built')\n")

    again = env_json(server, cache, child, "--with", "fresh")
    assert again["reused"] is False
    assert again["from_bundle"] is True  # the first build shared the finished environment
    assert Path(again["path"]).name.startswith(first["key"] + "-")  # where bundled environments go
    assert not path.exists()  # the unmarked folder was removed, never used
    code = "import fresh; print(fresh.hello())"
    proc = cli(server, cache, "run", child, "--with", "fresh", "--", "python", "-c", code, check=False)
    assert proc.stdout.strip() == "hi", output(proc)
    assert_only_complete(cache)
