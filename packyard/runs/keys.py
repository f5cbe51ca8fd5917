"""How task-run resolutions and environments are found on disk: the keys and the checks.

Standard library only: the full client (``envs.py``) and the start-up fast path
(``packyard/entry.py``) both use these, so the two can never disagree on what a cached
resolution or a complete environment is.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

from store.errors import InvalidInput

UPSTREAM_TTL = 600.0
COMPLETE = ".packyard-complete"


def python_version(python: str | None) -> str:
    return python or f"{sys.version_info.major}.{sys.version_info.minor}"


def read_requirements(files: list[Path] | None, extra: list[str] | None) -> list[str]:
    lines: list[str] = []
    for file in files or []:
        if not file.is_file():
            raise InvalidInput(f"{file} is not a readable requirements file")
        for line in file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines + list(extra or [])


def resolution_path(root: Path, ns: str, requirements: list[str], version: str) -> Path:
    key = hashlib.sha256(json.dumps([ns, sorted(requirements), version, sysconfig.get_platform()]).encode())
    return Path(root) / "resolutions" / f"{key.hexdigest()}.json"


def saved_lock(path: Path, state: dict) -> str | None:
    """The saved lock when the index state is unchanged (and, with an upstream, within the TTL)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    fresh = not state["upstream"] or time.time() - saved["time"] < UPSTREAM_TTL
    return saved["lock"] if saved["state"] == state["state"] and fresh else None


def env_key(lock: str, version: str) -> str:
    return hashlib.sha256(
        f"{lock}\0{version}\0{sysconfig.get_platform()}\0{sys.implementation.name}".encode()
    ).hexdigest()


def activated(env: Path, environ: dict[str, str]) -> dict[str, str]:
    """The environment a command runs with inside ``env``."""
    out = dict(environ)
    out["VIRTUAL_ENV"] = str(env)
    out["PATH"] = f"{env / 'bin'}{os.pathsep}{out.get('PATH', '')}"
    out.pop("PYTHONHOME", None)
    return out


def exit_status(code: int) -> int:
    """A child killed by signal N exits 128+N, as a shell reports it."""
    return 128 - code if code < 0 else code
