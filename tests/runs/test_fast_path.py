"""The start-up fast path of ``packyard run`` and ``env``: a warm run, and a fresh worker whose
lock and environment another worker shared, never import the full CLI; anything the fast
path cannot vouch for (nothing shared, a changed index, an unknown option) takes the full path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from packyard.runs.envs import Environment
from tests.conftest import LiveServer
from tests.runs.conftest import cli, cli_env, env_json, simple_wheel, unique_ns
from tests.support.clients import create_ns, run, upload

pytestmark = pytest.mark.local_only

# runs fast_path in a fresh interpreter and reports whether the heavy CLI stack was imported
PROBE = """
import sys
from packyard.entry import fast_path
code = fast_path(sys.argv[1:])
heavy = sorted(m for m in ("typer", "rich", "pydantic", "httpx") if m in sys.modules)
print("FAST" if code is not None else "FULL", code, ",".join(heavy) or "-")
"""


def probe(server: LiveServer, cache: Path, *args: str) -> list[str]:
    proc = run([sys.executable, "-c", PROBE, *args], cli_env(server, cache))
    return proc.stdout.strip().splitlines()[-1].split()


@pytest.fixture
def flow(server: LiveServer, http: httpx.Client, tmp_path: Path) -> str:
    ns = unique_ns("fast")
    create_ns(http, server, ns)
    upload(http, server, ns, simple_wheel(tmp_path / "d", "quick", "1.0", "def answer():\n    return 42\n"))
    return ns


def test_a_warm_run_takes_the_fast_path_without_the_full_cli(
    server: LiveServer, http: httpx.Client, flow: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    command = ["run", flow, "--with", "quick", "--", "python", "-c", "import quick, sys; sys.exit(quick.answer())"]

    assert probe(server, cache, *command) == ["FULL", "None", "-"]  # cold: nothing to vouch for
    cold = cli(server, cache, *command, check=False)
    assert cold.returncode == 42, cold.stderr

    kind, code, heavy = probe(server, cache, *command)
    assert (kind, code, heavy) == ("FAST", "42", "-")  # the command ran; no typer, rich, pydantic or httpx

    # a new upload changes the index state: the fast path steps aside, the full CLI resolves again
    upload(http, server, flow, simple_wheel(tmp_path / "d2", "quick", "1.1", "def answer():\n    return 43\n"))
    assert probe(server, cache, *command)[0] == "FULL"
    assert cli(server, cache, *command, check=False).returncode == 43
    assert probe(server, cache, *command)[:2] == ["FAST", "43"]


def test_options_the_fast_path_does_not_know_take_the_full_path(server: LiveServer, flow: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env_json(server, cache, flow, "--with", "quick")  # warm
    for extra in (["--pull"], ["--refresh"], ["--no-share"]):
        assert probe(server, cache, "run", flow, "--with", "quick", *extra, "--", "true")[0] == "FULL"
    assert probe(server, cache, "run", flow, "--with", "quick", "--", "true")[:2] == ["FAST", "0"]
    assert probe(server, cache, "env", flow, "--with", "quick")[:2] == ["FAST", "0"]
    assert probe(server, cache, "env", flow, "--with", "quick", "--refresh")[0] == "FULL"


def test_a_fresh_worker_takes_the_fast_path_when_lock_and_bundle_are_shared(
    server: LiveServer, flow: str, tmp_path: Path
) -> None:
    command = ["run", flow, "--with", "quick", "--", "python", "-c", "import quick, sys; sys.exit(quick.answer())"]
    assert probe(server, tmp_path / "a", *command) == ["FULL", "None", "-"]  # nothing shared yet
    built = env_json(server, tmp_path / "a", flow, "--with", "quick")  # shares the lock and the bundle

    assert probe(server, tmp_path / "b", *command) == ["FAST", "42", "-"]  # unpacked and ran, stdlib only
    fresh = json.loads(run([sys.executable, "-m", "packyard", "env", flow, "--with", "quick", "--json"],
                           cli_env(server, tmp_path / "c")).stdout)  # fmt: skip
    assert (fresh["key"], fresh["from_bundle"], fresh["resolution"], fresh["reused"]) == (
        built["key"], True, "server", False,
    )  # fmt: skip
    full = Environment(Path("/e"), "k", False, "server", True, "lock").to_dict()
    assert sorted(fresh) == sorted(full)  # what the full CLI prints, field for field
    again = env_json(server, tmp_path / "c", flow, "--with", "quick")
    assert (again["path"], again["reused"], again["resolution"]) == (fresh["path"], True, "cache")


def test_a_fresh_worker_without_a_shared_bundle_takes_the_full_path(
    server: LiveServer, flow: str, tmp_path: Path
) -> None:
    env_json(server, tmp_path / "a", flow, "--with", "quick", "--no-share")
    assert probe(server, tmp_path / "b", "env", flow, "--with", "quick")[0] == "FULL"
    assert probe(server, tmp_path / "b", "env", flow, "--with", "quick", "--python", "3.0")[0] == "FULL"
