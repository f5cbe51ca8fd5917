"""The ``packyard`` program: a start-up fast path for task runs, then the full CLI.

``packyard run NS --with REQ -- CMD`` (or ``packyard env``) is what a flow's task calls at
its start, every time. Importing the full CLI (click, every command) and resolving anything
costs more than the whole budget for starting the command. So the two common cases are
answered here with the client alone (``packyard.client.Client``, the standard library's HTTP):

- a warm run: the resolution is cached for the current index state and the environment is
  complete — one ``index-state`` request, then an exec;
- a fresh worker: the lock another worker shared is on the server and so is the finished
  environment's bundle — two more requests on the same connection, and one extract.

Anything else (nothing shared yet, ``--pull``, any other option, any error) goes to the
full CLI, which does the same steps again through ``Client.environment`` and explains
whatever is wrong. The steps themselves live in ``packyard/runs/keys.py`` and ``bundle.py``, shared
with the full client, so the two paths cannot disagree on what may be reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from packyard.client import Client

_OPTIONS = ("--with", "-r", "--requirement", "--python")


def _parse(argv: list[str]) -> tuple[str, str, list[str], list[Path], str | None, list[str], bool] | None:
    """``run NS [--with R]... [-r F]... [--python X.Y] -- CMD...`` or ``env NS [same] [--json]``:
    (verb, ns, extra, files, python, command, as_json), or None for anything else."""
    if len(argv) < 3 or argv[0] not in ("run", "env"):
        return None
    verb, ns = argv[0], argv[1]
    if verb == "run":
        if "--" not in argv:
            return None
        split = argv.index("--")
        options, command = argv[2:split], argv[split + 1 :]
        if not command:
            return None
    else:
        options, command = argv[2:], []
    if ns.startswith("-"):
        return None
    extra: list[str] = []
    files: list[Path] = []
    python = None
    as_json = False
    i = 0
    while i < len(options):
        option = options[i]
        if option in _OPTIONS and i + 1 < len(options):
            value = options[i + 1]
            if option == "--with":
                extra.append(value)
            elif option == "--python":
                python = value
            else:
                files.append(Path(value))
            i += 2
        elif option == "--json" and verb == "env":
            as_json = True
            i += 1
        else:
            return None  # --pull, --refresh, --no-share, --help, ...: the full CLI
    return (verb, ns, extra, files, python, command, as_json) if (extra or files) else None


def _environment(verb_args: tuple, server: Client) -> tuple[dict, Path] | None:
    """(what ``env --json`` prints, the environment) when no resolver or installer is needed."""
    from packyard.runs.bundle import base_interpreter, building, materialise
    from packyard.runs.keys import env_key, find_lock, python_version, read_requirements, usable_env

    _, ns, extra, files, python, _, _ = verb_args
    version = python_version(python)
    if version != python_version(None):
        return None  # another interpreter: the full CLI asks uv where it is
    requirements = read_requirements(files, extra)
    state = server.get_json(f"/api/v1/namespaces/{quote(ns)}/index-state")
    if state is None:
        return None
    root = server.cache_dir
    found = find_lock(root, ns, requirements, version, state, server.get_json)
    if found is None:
        return None
    lock, resolution = found
    key = env_key(lock, version)
    env = usable_env(root, key, state["chain"])
    reused, from_bundle = env is not None, False
    if env is None:
        with building(root, key) as envs:
            env = usable_env(root, key, state["chain"])
            reused = env is not None
            if env is None:
                with server.stream(f"/api/v1/namespaces/{quote(ns)}/bundles/{key}", missing_ok=True) as response:
                    opened = None if response is None else (response.headers, response.raw)
                    env = materialise(opened, envs, key, lock, state["chain"], base_interpreter())
                from_bundle = env is not None
    if env is None:
        return None
    info = {
        "path": str(env),
        "python": str(env / "bin" / "python"),
        "key": key,
        "reused": reused,
        "resolved": False,
        "resolution": resolution,
        "from_bundle": from_bundle,
        "lock": lock,
    }
    return info, env


def fast_path(argv: list[str]) -> int | None:
    """The exit status when the fast path answered, or None to take the full CLI."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    try:
        from packyard.client import Client

        with Client() as server:
            found = _environment(parsed, server)
    except Exception:  # noqa: BLE001 - any doubt: the full CLI explains it properly
        return None
    if found is None:
        return None
    info, env = found
    verb, command, as_json = parsed[0], parsed[5], parsed[6]
    if verb == "env":
        print(json.dumps(info, indent=2, sort_keys=True) if as_json else info["path"], flush=True)
        return 0
    from packyard.runs.keys import activated, describe, exit_status

    if sys.stderr.isatty():  # quiet in a flow's log, as the full CLI is
        print(describe(info["key"], info["reused"], info["from_bundle"]), file=sys.stderr, flush=True)
    try:
        code = subprocess.call(command, env=activated(env, dict(os.environ)))
    except FileNotFoundError:
        return None  # the full CLI reports "command not found"
    return exit_status(code)


def main() -> None:
    code = fast_path(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from packyard.cli import main as full

    full()


__all__ = ["main", "fast_path"]
