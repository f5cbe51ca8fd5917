"""The ``packyard`` program: a start-up fast path for warm task runs, then the full CLI.

``packyard run NS --with REQ -- CMD`` is what a flow's task calls at its start, every
time. Importing the full CLI (typer, rich, pydantic, httpx) costs several tenths of a
second, more than the whole budget for starting the command. So a warm run — the
resolution is cached and the index has not changed, the environment is complete — is
answered here with the standard library only: one ``index-state`` request and an exec.
Anything else (a cold environment, ``--pull``, any other option, any error) goes to the full
CLI, which does the same checks again and explains whatever is wrong.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

from packyard import defaults


def _parse(argv: list[str]) -> tuple[str, list[str], list[Path], str | None, list[str]] | None:
    """``run NS [--with R]... [-r F]... [--python X.Y] -- CMD...``, or None for anything else."""
    if len(argv) < 4 or argv[0] != "run" or "--" not in argv:
        return None
    split = argv.index("--")
    ns, options, command = argv[1], argv[2:split], argv[split + 1 :]
    if not command or ns.startswith("-"):
        return None
    extra: list[str] = []
    files: list[Path] = []
    python = None
    i = 0
    while i < len(options):
        option = options[i]
        if option in ("--with", "-r", "--requirement", "--python") and i + 1 < len(options):
            value = options[i + 1]
            if option == "--with":
                extra.append(value)
            elif option == "--python":
                python = value
            else:
                files.append(Path(value))
            i += 2
        else:
            return None  # --pull, --refresh, --no-share, --help, ...: the full CLI
    return (ns, extra, files, python, command) if (extra or files) else None


def _index_state(url: str, token: str | None, ns: str) -> dict | None:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None  # https: let the full client handle TLS
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", f"{parts.path.rstrip('/')}/api/v1/namespaces/{quote(ns)}/index-state", headers=headers)
        response = conn.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    finally:
        conn.close()


def fast_run(argv: list[str]) -> int | None:
    """The command's exit status for a warm run, or None to take the full path."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    from packyard.runs.keys import (
        COMPLETE,
        activated,
        env_key,
        exit_status,
        python_version,
        read_requirements,
        resolution_path,
        saved_lock,
    )

    ns, extra, files, python, command = parsed
    try:
        requirements = read_requirements(files, extra)
        state = _index_state(os.environ.get("PACKYARD_URL", defaults.URL), os.environ.get("PACKYARD_TOKEN") or None, ns)
    except Exception:  # noqa: BLE001 - any doubt: the full CLI explains it properly
        return None
    if state is None:
        return None
    root = Path(os.environ.get("PACKYARD_CACHE_DIR") or defaults.CACHE_DIR)
    version = python_version(python)
    lock = saved_lock(resolution_path(root, ns, requirements, version), state)
    if lock is None:
        return None
    env = root / "envs" / env_key(lock, version)
    if not (env / COMPLETE).exists():
        return None
    try:
        code = subprocess.call(command, env=activated(env, dict(os.environ)))
    except FileNotFoundError:
        return None  # the full CLI reports "command not found"
    return exit_status(code)


def main() -> None:
    code = fast_run(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from packyard.cli import main as full

    full()


__all__ = ["main", "fast_run"]
