"""Cached virtual environments for task runs, shared across flows and workers.

1. **Resolve** the requirement set against the namespace's index with ``uv pip compile``
   into a lock. The lock is reused while the requirement set and the index state are
   unchanged (and, when the namespace has an upstream, within a TTL).
2. **Key** the environment by the lock, the Python version and the platform; any flow in
   any namespace whose lock matches reuses it.
3. **Build** it once: under a lock file, into a temporary folder that is renamed into place
   only when complete, so a concurrent run waits and an interrupted build is never used.
   The wheels come from the environment's **bundle** in packyard when one exists (a fresh
   worker contacts no other index), else they are downloaded through the namespace's index
   and, with ``share``, uploaded as the bundle for the next worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packyard.client import Client, _ns
from packyard.runs.keys import COMPLETE, env_key, python_version, resolution_path, saved_lock
from store.errors import Forbidden, InvalidInput, NotFound, RemoteFailed, Unauthenticated
from store.names import validate_namespace


@dataclass
class Environment:
    path: Path
    key: str
    reused: bool
    resolved: bool
    """True when the lock was resolved now (False: a cached resolution was reused)."""
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
            "resolved": self.resolved,
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

    def index_url(self, ns: str, with_token: bool = False) -> str:
        url = f"{self.base_url}/{_ns(ns)}/simple/"
        if with_token and self.token:
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://__token__:{self.token}@{rest}"
        return url

    # -- resolution ---------------------------------------------------------------------

    def resolve(self, ns: str, requirements: list[str], python: str | None, refresh: bool) -> tuple[str, bool]:
        """(lock, resolved now?) for the requirement set against the namespace's index."""
        validate_namespace(ns)
        if not requirements:
            raise InvalidInput("no requirements: pass -r FILE or --with REQ")
        version = python_version(python)
        path = resolution_path(self.root, ns, requirements, version)
        state = self.client.json("GET", f"/api/v1/namespaces/{_ns(ns)}/index-state")
        if not refresh:
            lock = saved_lock(path, state)
            if lock is not None:
                return lock, False
        # with hashes, the lock (and so the environment's key) names the exact files: two
        # namespaces that each hold a different etl 0.1.0 never share an environment or a bundle
        command = [_uv(), "pip", "compile", "-", "--quiet", "--no-header", "--no-annotate", "--generate-hashes"]
        command += ["--python-version", version]
        # the index URL carries the token: through the environment, never the command line (ps)
        index = self.index_url(ns, with_token=True)
        result = _run(
            command,
            f"resolving {', '.join(requirements)} against {ns}",
            input="\n".join(requirements) + "\n",
            env={"UV_CACHE_DIR": str(self.root / "uv-cache"), "UV_INDEX_URL": index, "UV_DEFAULT_INDEX": index},
        )
        lock = "\n".join(line for line in result.stdout.splitlines() if line and not line.startswith("#")) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps({"state": state["state"], "lock": lock, "time": time.time()}))
        os.replace(tmp, path)
        return lock, True

    # -- environments -------------------------------------------------------------------

    def ensure(
        self, ns: str, requirements: list[str], *, python: str | None = None, refresh: bool = False, share: bool = True
    ) -> Environment:
        lock, resolved = self.resolve(ns, requirements, python, refresh)
        version = python_version(python)
        key_hex = env_key(lock, version)
        envs = self.root / "envs"
        env = envs / key_hex
        if (env / COMPLETE).exists():
            return Environment(env, key_hex, True, resolved, False, lock)
        envs.mkdir(parents=True, exist_ok=True)
        with open(envs / f"{key_hex}.lock", "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # concurrent runs for the same new environment wait here
            if (env / COMPLETE).exists():
                return Environment(env, key_hex, True, resolved, False, lock)
            for partial in envs.glob(f".{key_hex}.*"):  # left by an interrupted build
                shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(env, ignore_errors=True)
            from_bundle = self._build(ns, lock, version, key_hex, envs, share)
        return Environment(env, key_hex, False, resolved, from_bundle, lock)

    def _build(self, ns: str, lock: str, version: str, key: str, envs: Path, share: bool) -> bool:
        work = envs / f".{key}.{uuid.uuid4().hex}"
        wheels = work / "wheels"
        wheels.mkdir(parents=True)
        lockfile = work / "requirements.lock"
        lockfile.write_text(lock)
        target = work / "env"
        try:
            from_bundle = self._bundle_into(key, wheels)
            try:
                if not from_bundle:
                    self._download(ns, lockfile, wheels)
                self._install(version, lockfile, wheels, target)
            except InvalidInput:
                if not from_bundle:
                    raise
                # a bundle whose files do not match the lock's hashes (corrupt, or planted by
                # another namespace's writer) is only a missed optimisation: use the index
                from_bundle = False
                shutil.rmtree(wheels)
                shutil.rmtree(target, ignore_errors=True)
                wheels.mkdir()
                self._download(ns, lockfile, wheels)
                self._install(version, lockfile, wheels, target)
            (target / COMPLETE).write_text(lock)
            if share and not from_bundle:
                self._share(ns, key, wheels)
            os.rename(target, envs / key)
            return from_bundle
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, ns: str, lockfile: Path, wheels: Path) -> None:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-r", str(lockfile)]
        command += ["-d", str(wheels)]
        index = {"PIP_INDEX_URL": self.index_url(ns, with_token=True)}  # not on the command line (ps)
        _run(command, f"downloading the environment's files from {ns}", env=index)

    def _install(self, version: str, lockfile: Path, wheels: Path, target: Path) -> None:
        python = sys.executable if version == python_version(None) else version
        # relocatable: scripts find their interpreter relative to themselves, so the
        # finished environment can be renamed into place in one step
        venv = [_uv(), "venv", "--quiet", "--relocatable", "--python", python, str(target)]
        _run(venv, "creating the virtual environment")
        install = [_uv(), "pip", "install", "--quiet", "--python", str(target / "bin" / "python")]
        install += ["--no-index", "--find-links", str(wheels), "-r", str(lockfile)]
        _run(install, "installing the environment", env={"UV_CACHE_DIR": str(self.root / "uv-cache")})

    def _bundle_into(self, key: str, wheels: Path) -> bool:
        try:
            with self.client.http.stream("GET", f"/api/v1/bundles/{key}") as response:
                if response.status_code != 200:
                    return False
                with tempfile.TemporaryFile() as spool:
                    for chunk in response.iter_bytes(1024 * 1024):
                        spool.write(chunk)
                    spool.seek(0)
                    with zipfile.ZipFile(spool) as archive:
                        for member in archive.infolist():
                            name = Path(member.filename).name
                            if name.endswith((".whl", ".tar.gz", ".zip")) and "/" not in member.filename:
                                with archive.open(member) as src, (wheels / name).open("wb") as out:
                                    shutil.copyfileobj(src, out)
            return True
        except (OSError, zipfile.BadZipFile):
            return False

    def _share(self, ns: str, key: str, wheels: Path) -> None:
        with tempfile.TemporaryFile() as spool:
            with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
                for wheel in sorted(wheels.iterdir()):
                    archive.write(wheel, wheel.name)
            spool.seek(0)
            # sharing is an optimisation: a run whose token cannot write still gets its environment
            with contextlib.suppress(Unauthenticated, Forbidden, RemoteFailed, NotFound):
                self.client.request("PUT", f"/api/v1/bundles/{key}", params={"ns": ns}, content=spool)
