"""The CLI starts on what a command needs: help, argument errors and the client's commands
import no server, S3, git, HTTP client, settings or terminal library (they are most of the
start-up time; ``entry.py`` explains why start-up matters, and issue #18 asks for 0.15 s).
Checked structurally, by the modules loaded, never by a clock. The same commands run from
an install without the server's dependencies in ``tests/packaging/test_client.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import free_port

HEAVY = (
    "fastapi", "starlette", "uvicorn", "minio", "git", "httpx", "pydantic", "pydantic_settings", "psycopg",
    "psycopg_pool", "typer", "rich", "jinja2", "build", "pygments",
)  # fmt: skip
HELP = ("pull", "fetch", "env", "run", "files", "dists", "build", "builds", "sync", "token", "ns", "mirror")

PROBE = """
import json, sys
sys.argv = ["packyard", *json.loads(sys.argv[1])]
from packyard.entry import main
try:
    main()
except SystemExit:
    pass
print("\\n" + json.dumps(sorted(sys.modules)))
"""


def loaded(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd()), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, env=env, timeout=120
    )
    return done, set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["serve", "--help"], ["ns", "list", "--help"], ["no-such-command"]] + [[c, "--help"] for c in HELP],
)
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    done, modules = loaded(argv)
    assert "Usage" in done.stdout + done.stderr, done.stderr
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"packyard {' '.join(argv)} imported {heavy}"


@pytest.mark.parametrize(
    "argv",
    [
        ["files", "ls", "company"],
        ["pull", "company", "--dest", "{tmp}"],
        ["fetch", "company", "etl", "--dest", "{tmp}"],
        ["env", "company", "--with", "etl"],
        ["run", "company", "--with", "etl", "--", "true"],
        ["build", "company", "--path", "etl"],
        ["sync", "list"],
        ["token", "list"],
        ["dists", "ls", "company"],
    ],
)
def test_client_commands_import_no_heavy_module(argv: list[str], tmp_path: Path) -> None:
    """Run for real (against a port nobody listens on: each fails with exit 8 after its request)."""
    env = {"PACKYARD_URL": f"http://127.0.0.1:{free_port()}", "PACKYARD_CACHE_DIR": str(tmp_path / "cache")}
    done, modules = loaded([a.format(tmp=tmp_path) for a in argv], env)
    assert "error: cannot reach the packyard server" in done.stderr, done.stderr
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"packyard {' '.join(argv)} imported {heavy}"
