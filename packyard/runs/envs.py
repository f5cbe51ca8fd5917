"""Cached virtual environments for task runs, shared across flows and workers.

1. **Resolve** the requirement set against the namespace's index with ``uv pip compile``
   into a lock — unless this worker saved one for the current index state, or another
   worker shared one on the server (and, when the namespace has an upstream, within a TTL).
2. **Key** the environment by the lock, the Python version and the platform; any flow in
   any namespace whose lock matches reuses it (``keys.env_dir_name`` says which may use an
   environment that came from a bundle).
3. **Materialise** it once, under a lock file, into a temporary folder renamed into place
   only when complete, so a concurrent run waits and an interrupted build is never used:
   from the namespace's **bundle** when one exists (one download, one extract: a fresh
   worker contacts no other index and runs no installer), else by installing the lock's
   files downloaded through the namespace's index — and, with ``share``, uploading the
   finished environment as the bundle and the lock as the shared resolution.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from packyard.client import Client, qns
from packyard.runs.bundle import base_interpreter, building, materialise, pack
from packyard.runs.keys import (
    COMPLETE,
    env_key,
    find_lock,
    python_version,
    resolution_path,
    save_lock,
    usable_env,
)
from packyard.store.errors import InvalidInput, PackyardError
from packyard.store.names import validate_namespace
from packyard.transport import BodyReader

SHARE_FAILURES = (PackyardError, OSError)
"""Sharing is an optimisation: a run whose token cannot write, or whose environment is over
the server's upload limit, still gets its environment."""


@dataclass
class Environment:
    path: Path
    key: str
    reused: bool
    resolution: str
    """Where the lock came from: "cache" (this worker), "server" (shared) or "resolved" (now)."""
    from_bundle: bool
    lock: str

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "python": str(self.python),
            "key": self.key,
            "reused": self.reused,
            "resolved": self.resolution == "resolved",
            "resolution": self.resolution,
            "from_bundle": self.from_bundle,
            "lock": self.lock,
        }


def _uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    from uv import find_uv_bin

    return find_uv_bin()


def _run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PACKYARD_"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env.update(kwargs.pop("env", {}))
    result = subprocess.run(command, env=env, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        detail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
        detail = re.sub(r"(://)[^/@\s]+:[^/@\s]+@", r"\1***@", detail)  # never echo an index token
        raise InvalidInput(f"{what} failed:\n{detail}")
    return result


class EnvCache:
    def __init__(self, client: Client, base_url: str, root: Path, token: str | None = None) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.root = Path(root)
        self.token = token
        self.cwd: Path | None = None
        """Where relative requirement paths point (``ensure(cwd=...)``)."""

    def index_url(self, ns: str, with_token: bool = False) -> str:
        url = f"{self.base_url}/{qns(ns)}/simple/"
        if with_token and self.token:
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://__token__:{self.token}@{rest}"
        return url

    # -- the server, as the shared steps in keys.py and bundle.py see it ------------------------

    def _get_json(self, path: str) -> dict | None:
        return self.client.get_json(path)

    @contextlib.contextmanager
    def _open_bundle(self, ns: str, key: str) -> Iterator[tuple[dict[str, str], BinaryIO] | None]:
        with self.client.stream(f"/api/v1/namespaces/{qns(ns)}/bundles/{key}", missing_ok=True) as response:
            if response is None or response.status_code != 200:
                yield None
                return
            yield response.headers, io.BufferedReader(BodyReader(response), 1024 * 1024)

    # -- resolution ---------------------------------------------------------------------

    def resolve(self, ns: str, requirements: list[str], version: str, state: dict, share: bool) -> str:
        """Resolve now with uv; keep the lock here and, with ``share``, on the server."""
        # with hashes, the lock (and so the environment's key) names the exact files: two
        # namespaces that each hold a different etl 0.1.0 never share an environment
        command = [_uv(), "pip", "compile", "-", "--quiet", "--no-header", "--no-annotate", "--generate-hashes"]
        command += ["--python-version", version]
        # the index URL carries the token: through the environment, never the command line (ps)
        index = self.index_url(ns, with_token=True)
        result = _run(
            command,
            f"resolving {', '.join(requirements)} against {ns}",
            input="\n".join(requirements) + "\n",
            env={"UV_CACHE_DIR": str(self.root / "uv-cache"), "UV_INDEX_URL": index, "UV_DEFAULT_INDEX": index},
            cwd=self.cwd,
        )
        lock = "\n".join(line for line in result.stdout.splitlines() if line and not line.startswith("#")) + "\n"
        save_lock(resolution_path(self.root, ns, requirements, version), state["state"], lock, time.time())
        if share:
            body = {
                "requirements": requirements,
                "python": version,
                "platform": sysconfig.get_platform(),
                "implementation": sys.implementation.name,
                "state": state["state"],
                "lock": lock,
            }
            with contextlib.suppress(*SHARE_FAILURES):
                self.client.request("PUT", f"/api/v1/namespaces/{qns(ns)}/resolutions", json=body)
        return lock

    # -- environments -------------------------------------------------------------------

    def ensure(
        self,
        ns: str,
        requirements: list[str],
        *,
        python: str | None = None,
        refresh: bool = False,
        share: bool = True,
        cwd: Path | None = None,
    ) -> Environment:
        """A ready environment for ``requirements``; relative paths among them (``.``,
        ``./etl-0.1.0.tar.gz``) mean paths under ``cwd`` (default: this process's directory)."""
        validate_namespace(ns)
        self.cwd = cwd
        if not requirements:
            raise InvalidInput("no requirements: pass -r FILE or --with REQ")
        version = python_version(python)
        state = self.client.json("GET", f"/api/v1/namespaces/{qns(ns)}/index-state")
        found = None if refresh else find_lock(self.root, ns, requirements, version, state, self._get_json)
        lock, resolution = found if found else (self.resolve(ns, requirements, version, state, share), "resolved")
        key = env_key(lock, version)
        env = usable_env(self.root, key, state["chain"])
        if env is not None:
            return Environment(env, key, True, resolution, False, lock)
        with building(self.root, key) as envs:
            env = usable_env(self.root, key, state["chain"])
            if env is not None:  # built by a concurrent run while this one waited
                return Environment(env, key, True, resolution, False, lock)
            with self._open_bundle(ns, key) as opened:
                env = materialise(opened, envs, key, lock, state["chain"], _base(version))
            if env is not None:
                return Environment(env, key, False, resolution, True, lock)
            return Environment(self._build(ns, lock, version, key, envs, share), key, False, resolution, False, lock)

    def _build(self, ns: str, lock: str, version: str, key: str, envs: Path, share: bool) -> Path:
        work = envs / f".{key}.{uuid.uuid4().hex}"
        wheels = work / "wheels"
        wheels.mkdir(parents=True)
        lockfile = work / "requirements.lock"
        lockfile.write_text(lock)
        target = work / "env"
        try:
            self._download(ns, lockfile, wheels)
            self._install(version, lockfile, wheels, target)
            if share:
                self._share(ns, key, target)
            (target / COMPLETE).write_text(lock)
            os.rename(target, envs / key)
            return envs / key
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, ns: str, lockfile: Path, wheels: Path) -> None:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-r", str(lockfile)]
        command += ["-d", str(wheels)]
        index = {"PIP_INDEX_URL": self.index_url(ns, with_token=True)}  # not on the command line (ps)
        _run(command, f"downloading the environment's files from {ns}", env=index, cwd=self.cwd)

    def _install(self, version: str, lockfile: Path, wheels: Path, target: Path) -> None:
        # relocatable: scripts find their interpreter relative to themselves, so the finished
        # environment can be renamed into place, and unpacked from a bundle on another worker
        venv = [_uv(), "venv", "--quiet", "--relocatable", "--python", str(_base(version)), str(target)]
        _run(venv, "creating the virtual environment")
        # compiled once here and shipped in the bundle: a task run (often with
        # PYTHONDONTWRITEBYTECODE=1, as in many containers) never compiles on import
        install = [_uv(), "pip", "install", "--quiet", "--compile-bytecode", "--python", str(target / "bin" / "python")]
        install += ["--no-index", "--find-links", str(wheels), "-r", str(lockfile)]
        _run(install, "installing the environment", env={"UV_CACHE_DIR": str(self.root / "uv-cache")}, cwd=self.cwd)

    def _share(self, ns: str, key: str, env: Path) -> None:
        with contextlib.suppress(*SHARE_FAILURES), tempfile.TemporaryFile() as spool:
            pack(env, spool)
            spool.seek(0)
            self.client.request("PUT", f"/api/v1/namespaces/{qns(ns)}/bundles/{key}", content=spool)


def _base(version: str) -> Path:
    """The base interpreter for Python ``version``: this one, else the one uv finds."""
    if version == python_version(None):
        return base_interpreter()
    found = _run([_uv(), "python", "find", version], f"finding Python {version}").stdout.strip()
    probe = [found, "-c", "import sys; print(getattr(sys, '_base_executable', None) or sys.executable)"]
    return Path(_run(probe, f"asking Python {version} for its base interpreter").stdout.strip())
