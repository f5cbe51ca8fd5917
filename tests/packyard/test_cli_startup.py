"""The CLI starts on what a command needs: help and argument errors import no server, S3,
git or HTTP client library (they are most of the start-up time; ``entry.py`` explains why
start-up matters). Checked structurally, by the modules loaded, never by a clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "starlette", "uvicorn", "minio", "git", "httpx", "pydantic_settings", "psycopg", "psycopg_pool")

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


@pytest.mark.parametrize(
    "argv", [["--help"], ["files", "--help"], ["serve", "--help"], ["ns", "list", "--help"], ["no-such-command"]]
)
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, env=env, timeout=120
    )
    assert "Usage" in done.stdout + done.stderr, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == [], f"packyard {' '.join(argv)} imported {heavy}"
