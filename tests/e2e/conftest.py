"""Real clients against a real server: twine, uv, pip and the packyard CLI as subprocesses.

Every client runs with its configuration cut off from this machine: pip with
``PIP_CONFIG_FILE=/dev/null`` and no ``PIP_*`` variables (this machine's pip.conf points at a
local mirror and would silently install from there), uv with ``UV_NO_CONFIG`` and a cache of
its own, so whatever a client installs or resolves can only have come from packyard.

The ``server`` fixture is session scoped and parametrized over both backends; fixtures here
that upload are module scoped, so each module uploads its set once per backend.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from packaging.version import Version

from store.artifacts import parse_filename
from tests.conftest import LiveServer

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
"""The Accept header pip sends for index pages."""
UV_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
"""The Accept header uv sends for index pages."""
JSON_V1 = "application/vnd.pypi.simple.v1+json"
PIP_MIN = Version("24")
"""From here on ``pip install --dry-run`` reads PEP 658 metadata without downloading files."""


# -- names, tokens, uploads ------------------------------------------------------------------


def unique_ns(suffix: str = "") -> str:
    """A top-level namespace no other test uses (the ``ns`` fixture's scheme, for module scope)."""
    return f"t{uuid.uuid4().hex[:10]}" + (f".{suffix}" if suffix else "")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create_token(http: httpx.Client, server: LiveServer, scope: str, role: str, name: str = "") -> tuple[str, str]:
    """A new token's (id, secret), made with the server's admin token."""
    response = http.post("/api/v1/tokens", json={"scope": scope, "role": role, "name": name}, headers=server.admin)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["token"]["id"], body["secret"]


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
    for path in paths:
        response = post_upload(http, ns, path.name, path.read_bytes(), server.admin_token)
        assert response.status_code == 200, (path.name, response.status_code, response.text)


# -- subprocesses ------------------------------------------------------------------------------


def run(
    cmd: list[str | Path], env: dict[str, str], *, cwd: Path | None = None, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a client; on an unexpected exit code fail with its whole output."""
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


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def _base_env(*prefixes: str) -> dict[str, str]:
    drop = ("PACKYARD_", "PIP_", "UV_", "TWINE_", *prefixes)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def pip_env(**extra: str) -> dict[str, str]:
    """pip that can only see packyard: no config file, no find-links, no mirror."""
    env = _base_env()
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", NO_COLOR="1")
    env.update(extra)
    return env


def uv_env(cache: Path, **extra: str) -> dict[str, str]:
    """uv that ignores config files, never downloads a Python, and caches in ``cache``."""
    env = _base_env()
    env.update(UV_NO_CONFIG="1", UV_CACHE_DIR=str(cache), UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
    env.update(extra)
    return env


def twine_env() -> dict[str, str]:
    env = _base_env()
    env.update(PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring", NO_COLOR="1", COLUMNS="200")
    return env


def uv_bin() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except ImportError:
        found = shutil.which("uv")
        assert found, "uv is not installed"
        return found


UV = uv_bin()
TWINE = [sys.executable, "-m", "twine"]
PACKYARD = [sys.executable, "-m", "packyard"]


def make_venv(path: Path, cache: Path) -> Path:
    """A fresh, empty virtual environment (made by uv: fast); returns its python."""
    run([UV, "venv", "-q", "--python", sys.executable, path], uv_env(cache))
    return path / "bin" / "python"


def installed(python: Path) -> dict[str, str]:
    """Distribution name -> version installed in the venv of ``python``."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    return json.loads(run([python, "-c", code], _base_env()).stdout)


@pytest.fixture(scope="session")
def pip(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``python -m pip`` of a pip recent enough to resolve from PEP 658 metadata alone.

    The interpreter's own pip when it is recent; otherwise a pip installed once per session
    into a fresh venv through this machine's ordinary pip configuration (the only pip call
    that may use it). Point it at a target environment with ``--python VENV/bin/python``.
    """
    if Version(importlib.metadata.version("pip")) >= PIP_MIN:
        return [sys.executable, "-m", "pip"]
    root = tmp_path_factory.mktemp("modern-pip")
    python = make_venv(root / "venv", root / "uv-cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", f"pip>={PIP_MIN}"], env)
    return [str(python), "-m", "pip"]


@pytest.fixture(scope="module")
def module_http(server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client for module-scoped fixtures (``http`` is per test)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


# -- request log and pages -------------------------------------------------------------------


def fetched(server: LiveServer, mark: int, *namespaces: str) -> list[str]:
    """Paths of the GETs logged since ``mark`` under any of ``namespaces``."""
    prefixes = tuple(f"/{ns}/" for ns in namespaces)
    return [path for method, path, _ in server.requests_since(mark) if method == "GET" and path.startswith(prefixes)]


def assert_metadata_only(paths: list[str]) -> None:
    """Only index pages and PEP 658 metadata were read: no wheel or sdist was downloaded."""
    assert paths, "the client made no request to the index"
    downloads = [p for p in paths if not (re.search(r"/simple/", p) or p.endswith(".metadata"))]
    assert downloads == [], f"files were downloaded: {downloads}"
    assert any(p.endswith(".metadata") for p in paths), paths
    assert not any(p.endswith((".whl", ".tar.gz", ".zip")) for p in paths), paths


@dataclass
class Link:
    text: str
    attrs: dict[str, str | None]
    raw: str
    """The start tag as served (to check escaping)."""


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[Link] = []
        self._open: Link | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = Link("", dict(attrs), self.get_starttag_text() or "")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.links.append(self._open)
            self._open = None


def links(html: str) -> dict[str, Link]:
    """The anchors of a simple page by their text (the filename or project name)."""
    parser = _Links()
    parser.feed(html)
    return {link.text: link for link in parser.links}
