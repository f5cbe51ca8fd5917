"""The build's environment is made from nothing: no secret of the server reaches a backend.

A private server (local backend) runs with secrets in its environment — its admin token,
AWS keys, a GitHub token, a ``PACKYARD_*`` variable of no known meaning — and its embedded
worker builds a project whose in-tree backend prints its whole environment into the log.
None of those names or values may appear; what a build needs (SOURCE_DATE_EPOCH, a HOME of
its own, the index, this machine's CA settings) must.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packyard.builder.sandbox import NETWORK_VARIABLES, build_env

from tests.builder.conftest import (
    build_log,
    private_server,
    put_files,
    queued,
    tiny_project,
    unique_ns,
    wait_build,
)
from tests.conftest import LiveServer

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": f"leak-aws-{uuid.uuid4().hex}",
    "AWS_ACCESS_KEY_ID": f"leak-akid-{uuid.uuid4().hex}",
    "GITHUB_TOKEN": f"leak-gh-{uuid.uuid4().hex}",
    "PACKYARD_SECRETS_PROBE": f"leak-px-{uuid.uuid4().hex}",
    "TWINE_PASSWORD": f"leak-twine-{uuid.uuid4().hex}",
}


def env_dump(log: str) -> dict[str, str]:
    """The ``ENV NAME=value`` lines the tiny backend printed."""
    found = {}
    for line in log.splitlines():
        if line.startswith("ENV "):
            name, _, value = line[4:].partition("=")
            found[name] = value
    return found


def assert_no_leak(log: str, secrets: dict[str, str]) -> dict[str, str]:
    env = env_dump(log)
    assert "SOURCE_DATE_EPOCH" in env, "the backend printed no environment"
    assert not [name for name in env if name.startswith("PACKYARD_")], sorted(env)
    for name, value in secrets.items():
        assert name not in env, f"{name} reached the build"
        assert value not in log, f"the value of {name} is in the build log"
    return env


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with private_server(tmp_path_factory.mktemp("sandbox-server"), dict(SECRETS)) as server:
        yield server


def test_no_secret_of_the_server_reaches_the_build(secret_server: LiveServer, tmp_path: Path) -> None:
    server = secret_server
    with httpx.Client(base_url=server.url, timeout=60) as http:
        ns = unique_ns()
        put_files(http, server, ns, tiny_project("envdump", dump_env=True))
        build = wait_build(http, queued(http, server, ns)["id"])
        log = build_log(http, build["id"])
    assert build["state"] == "succeeded", log[-3000:]
    env = assert_no_leak(log, {**SECRETS, "PACKYARD_ADMIN_TOKEN": server.admin_token})
    assert server.admin_token not in log
    assert env["SOURCE_DATE_EPOCH"] == str(build["source_date_epoch"])
    assert f"/build-cache/work/build-{build['id']}-" in env["HOME"], env["HOME"]  # its own work folder
    assert env["UV_INDEX_URL"] == build["settings"]["index_url"] == env["PIP_INDEX_URL"]
    for name in NETWORK_VARIABLES:  # how this machine reaches an index passes through
        if os.environ.get(name):
            assert env.get(name) == os.environ[name], name
    # nothing else of the server's environment: every variable is one the sandbox sets, or
    # one that python -m build / pyproject-hooks / the venv add on their way to the backend
    own = set(build_env(tmp_path, tmp_path, index_url="-", source_date_epoch=0))
    inherited = {name for name in os.environ if name in env and env[name] == os.environ[name]}
    assert inherited <= own, sorted(inherited - own)
