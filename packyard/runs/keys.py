"""How task-run resolutions and environments are found, on disk and shared on the server:
the keys, the checks, and which cached environment a namespace may use.

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
import uuid
from collections.abc import Callable
from pathlib import Path

from packyard.store.errors import InvalidInput

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


def resolution_key(
    ns: str, requirements: list[str], version: str, platform: str | None = None, implementation: str | None = None
) -> str:
    """What a resolution is stored under, here and on the server (which recomputes it): the
    lock depends on the markers of the platform and implementation it was resolved on."""
    platform = platform or sysconfig.get_platform()
    implementation = implementation or sys.implementation.name
    return hashlib.sha256(
        json.dumps([ns, sorted(requirements), version, platform, implementation]).encode()
    ).hexdigest()


def resolution_path(root: Path, ns: str, requirements: list[str], version: str) -> Path:
    return Path(root) / "resolutions" / f"{resolution_key(ns, requirements, version)}.json"


def saved_lock(path: Path, state: dict) -> str | None:
    """The saved lock when the index state is unchanged (and, with an upstream, within the TTL)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    fresh = not state["upstream"] or time.time() - saved["time"] < UPSTREAM_TTL
    return saved["lock"] if saved["state"] == state["state"] and fresh else None


def save_lock(path: Path, state: str, lock: str, when: float) -> None:
    """Keep a lock for this index state, atomically (a concurrent reader sees old or new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"state": state, "lock": lock, "time": when}))
    os.replace(tmp, path)


def find_lock(
    root: Path, ns: str, requirements: list[str], version: str, state: dict, get_json: Callable[[str], dict | None]
) -> tuple[str, str] | None:
    """(lock, "cache" or "server") without resolving: this worker's saved lock for the index
    state, else the one another worker shared on the server (``get_json`` answers None for a
    404), kept here for the next run. None: resolve."""
    path = resolution_path(root, ns, requirements, version)
    lock = saved_lock(path, state)
    if lock is not None:
        return lock, "cache"
    shared = get_json(f"/api/v1/namespaces/{ns}/resolutions/{resolution_key(ns, requirements, version)}")
    if not shared or shared.get("state") != state["state"] or shared.get("env_key") != env_key(shared["lock"], version):
        return None
    save_lock(path, shared["state"], shared["lock"], shared["created"])
    return shared["lock"], "server"


def env_key(lock: str, version: str, platform: str | None = None, implementation: str | None = None) -> str:
    platform = platform or sysconfig.get_platform()
    implementation = implementation or sys.implementation.name
    return hashlib.sha256(f"{lock}\0{version}\0{platform}\0{implementation}".encode()).hexdigest()


def env_dir_name(key: str, bundle_namespace: str | None = None) -> str:
    """Where an environment lives in the cache, by where it came from.

    Built here from hash-checked files: ``KEY``, which any namespace whose lock matches may
    use. Unpacked from a bundle: ``KEY-<digest of the namespace that stored it>``, which only
    runs in namespaces whose index chain holds that namespace may use (``store/bundles.py``).
    """
    if bundle_namespace is None:
        return key
    return f"{key}-{hashlib.sha256(bundle_namespace.encode()).hexdigest()[:16]}"


def usable_env(root: Path, key: str, chain: list[str]) -> Path | None:
    """A complete environment for ``key`` that a run in the chain's first namespace may use."""
    envs = Path(root) / "envs"
    for name in [env_dir_name(key)] + [env_dir_name(key, ns) for ns in chain]:
        if (envs / name / COMPLETE).exists():
            return envs / name
    return None


def activated(env: Path, environ: dict[str, str]) -> dict[str, str]:
    """The environment a command runs with inside ``env``."""
    out = dict(environ)
    out["VIRTUAL_ENV"] = str(env)
    out["PATH"] = f"{env / 'bin'}{os.pathsep}{out.get('PATH', '')}"
    out.pop("PYTHONHOME", None)
    return out


def describe(key: str, reused: bool, from_bundle: bool) -> str:
    """What a run on a terminal says about its environment (both paths say it alike)."""
    how = "reused" if reused else "unpacked from the shared bundle" if from_bundle else "built"
    return f"environment {key[:12]} ({how})"


def exit_status(code: int) -> int:
    """A child killed by signal N exits 128+N, as a shell reports it."""
    return 128 - code if code < 0 else code
