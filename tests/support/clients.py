"""Real clients for the tests: pip, uv, twine, git and the packyard CLI as subprocesses, and the admin API.

Every client runs with its configuration cut off from this machine: pip with
``PIP_CONFIG_FILE=/dev/null`` and no ``PIP_*`` variables (this machine's pip.conf points at a
local mirror and would silently install from there), uv with ``UV_NO_CONFIG`` and a cache of
its own, git without system or global config. Whatever a client installs, resolves or
fetches can only have come from what the test gave it.

A client that exits unexpectedly fails the test with its whole output (:func:`run`), so a
failure in CI says what the client said, not just its exit code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from packyard.store.artifacts import parse_filename

if TYPE_CHECKING:
    from tests.conftest import LiveServer

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
"""The Accept header pip sends for index pages."""
UV_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
"""The Accept header uv sends for index pages."""

PACKYARD = [sys.executable, "-m", "packyard"]
TWINE = [sys.executable, "-m", "twine"]


def uv_bin() -> str:
    """The uv of the ``uv`` package when installed (the version the project pins), else the one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except ImportError:
        found = shutil.which("uv")
        assert found, "uv is not installed"
        return found


UV = uv_bin()


# -- names and hashes --------------------------------------------------------------------------


def unique_ns(suffix: str = "", *, prefix: str = "t") -> str:
    """A top-level namespace no other test uses (``.suffix`` makes it a child of one).

    Tests share one server per session, so they keep apart by namespace; ``prefix`` tells
    in a server log which suite made it.
    """
    return f"{prefix}{uuid.uuid4().hex[:10]}" + (f".{suffix}" if suffix else "")


def sha256(data: bytes | Path) -> str:
    """Hex sha256 of bytes or of a file's content (what the index and the catalog name files by)."""
    if isinstance(data, Path):
        data = data.read_bytes()
    return hashlib.sha256(data).hexdigest()


# -- environments ------------------------------------------------------------------------------


def clean_env(*also_drop: str) -> dict[str, str]:
    """This process's environment without any variable that configures packyard, pip, uv or twine."""
    drop = ("PACKYARD_", "PIP_", "UV_", "TWINE_", *also_drop)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def pip_env(**extra: str) -> dict[str, str]:
    """pip that can only see the index it is given: no config file, no find-links, no mirror."""
    env = clean_env()
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", NO_COLOR="1")
    env.update(extra)
    return env


def uv_env(cache: Path, **extra: str) -> dict[str, str]:
    """uv that ignores config files, never downloads a Python, and caches in ``cache`` (nothing stale)."""
    env = clean_env()
    env.update(UV_NO_CONFIG="1", UV_CACHE_DIR=str(cache), UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
    env.update(extra)
    return env


def twine_env() -> dict[str, str]:
    """twine with no keyring (it would ask the desktop for a password) and wide, plain output."""
    env = clean_env()
    env.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", NO_COLOR="1", COLUMNS="200")
    return env


def git_env(name: str, email: str, **extra: str) -> dict[str, str]:
    """git without system or global config (no hooks, aliases or credential helpers of this machine)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        **extra,
    }


# -- subprocesses ------------------------------------------------------------------------------


def run(
    cmd: list[str | Path], env: dict[str, str], *, cwd: Path | None = None, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a client with no stdin; on an unexpected exit code fail with its whole output."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(str(c) for c in cmd)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def packyard_cli(
    env: dict[str, str],
    *args: str | Path,
    check: bool = True,
    timeout: float = 180,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``packyard ARGS`` as a user runs it: a new interpreter, configured only by ``env``."""
    return run([*PACKYARD, *args], env, check=check, timeout=timeout, cwd=cwd)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    """Everything a client printed (messages go to either stream)."""
    return proc.stdout + proc.stderr


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a :func:`packyard_cli` call succeeded; its stdout."""
    assert result.returncode == 0, (result.args[3:], result.returncode, result.stdout, result.stderr)
    return result.stdout


def make_venv(path: Path, cache: Path) -> Path:
    """A fresh, empty virtual environment (made by uv: fast); returns its python."""
    run([UV, "venv", "-q", "--python", sys.executable, path], uv_env(cache))
    return path / "bin" / "python"


# -- the server's API as the admin -------------------------------------------------------------


def create_ns(http: httpx.Client, server: LiveServer, *names: str) -> None:
    """Create namespaces (parents first): the admin API, so a test starts from a known tree."""
    for name in names:
        response = http.post("/api/v1/namespaces", json={"name": name}, headers=server.admin)
        assert response.status_code == 201, response.text


def create_token(http: httpx.Client, server: LiveServer, scope: str, role: str, name: str = "") -> tuple[str, str]:
    """A new token's (id, secret), made with the server's admin token."""
    response = http.post("/api/v1/tokens", json={"scope": scope, "role": role, "name": name}, headers=server.admin)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["token"]["id"], body["secret"]


def put_file(http: httpx.Client, server: LiveServer, ns: str, path: str, data: bytes) -> dict:
    """PUT one file into a namespace as the admin; the answer's JSON."""
    response = http.put(f"/api/v1/namespaces/{ns}/files/{path}", content=data, headers=server.admin)
    assert response.status_code in (200, 201), response.text
    return response.json()


def upload_form(path: Path | str, data: bytes, **overrides: str | None) -> dict[str, str]:
    """The legacy upload form twine sends for ``data`` named ``path``; None drops a field."""
    parsed = parse_filename(Path(path).name)
    form: dict[str, str | None] = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": parsed.project,
        "version": str(parsed.version),
        "filetype": parsed.filetype,
        "pyversion": "py3" if parsed.filetype == "bdist_wheel" else "source",
        "sha256_digest": sha256(data),
        "md5_digest": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def post_upload(
    http: httpx.Client,
    ns: str,
    filename: str,
    data: bytes,
    token: str | None,
    form: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /{ns}/ as twine does: multipart, the token as the Basic password of __token__."""
    return http.post(
        f"/{ns}/",
        data=form if form is not None else upload_form(filename, data),
        files={"content": (filename, data, "application/octet-stream")},
        auth=("__token__", token) if token else None,
    )


def upload(http: httpx.Client, server: LiveServer, ns: str, *paths: Path) -> None:
    """Upload files as the admin, as twine would (no twine start-up per file); each must be accepted."""
    for path in paths:
        response = post_upload(http, ns, path.name, path.read_bytes(), server.admin_token)
        assert response.status_code == 200, (path.name, response.status_code, response.text)
