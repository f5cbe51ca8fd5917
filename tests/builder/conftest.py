"""Builder test kit: projects to build, a git work tree, and helpers around the build API.

Real builds only: every build here is ``python -m build`` run by a packyard worker. Most
projects use :data:`TINY_BACKEND`, a PEP 517 backend that lives in the project itself
(``backend-path``) and needs nothing from an index, so a build takes about a second and can
be told to misbehave (print its environment or pid, sleep, print forever, write outside its
folder, name its wheel another version) through the project's ``tiny.json``. Like real
backends, it stamps archive members with ``SOURCE_DATE_EPOCH`` and can leave top-level
folders out of its sdist (``sdist_exclude``, as setuptools leaves out what is not package data). The seed
scenario and the hatchling project use the real setuptools and hatchling from PyPI.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import LiveServer, live_server
from tests.support import clients
from tests.support.clients import git_env, packyard_cli, put_file
from tests.support.procs import running

DONE = ("succeeded", "failed", "cancelled")
HEADER = re.compile(r"^\[packyard\] build (\d+): ", re.M)
"""The worker's header line, which starts every build log."""


def headers(log: str) -> list[int]:
    """The build ids of the header lines in a log (one, for a build run once)."""
    return [int(found) for found in HEADER.findall(log)]


TINY_BACKEND = r'''
"""A PEP 517 backend kept in the project (backend-path), configured by tiny.json."""
import base64
import gzip
import hashlib
import io
import json
import os
import re
import re
import subprocess
import sys
import tarfile
import time
import zipfile


WHEEL = b"Wheel-Version: 1.0\nGenerator: tiny_backend (1.0)\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _config():
    with open("tiny.json") as f:
        return json.load(f)


def _norm(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata(name, version):
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: tiny\n\n".encode()


def _misbehave(cfg):
    if cfg.get("dump_env"):
        for key, value in sorted(os.environ.items()):
            print(f"ENV {key}={value}", flush=True)
    refused = []
    for path in cfg.get("write_outside", []):
        try:
            with open(path, "w") as f:
                f.write("escaped")
            print(f"WROTE {path}", flush=True)
        except OSError as exc:
            print(f"REFUSED {path}: {exc}", flush=True)
            refused.append(path)
    if refused:
        raise SystemExit(f"could not write outside the build folder: {refused}")
    for i in range(cfg.get("ticks", 0)):  # stops early once the file named by "until" exists
        if cfg.get("until") and os.path.exists(cfg["until"]):
            break
        print(f"tick {i}", flush=True)
        time.sleep(cfg.get("tick_seconds", 0.3))
    if cfg.get("print_forever"):
        line = "x" * 1023 + "\n"
        while True:
            sys.stdout.write(line)
            sys.stdout.flush()
    if cfg.get("marker"):  # sleep in a child process marked on its command line, so tests can find it
        print(f"SLEEPING {cfg['marker']}", flush=True)
        code = "import sys, time; time.sleep(float(sys.argv[1]))"
        subprocess.run([sys.executable, "-c", code, str(cfg.get("sleep", 600)), cfg["marker"]], check=True)
    elif cfg.get("sleep"):
        time.sleep(cfg["sleep"])


def build_sdist(sdist_directory, config_settings=None):
    cfg = _config()
    _misbehave(cfg)
    base = f"{_norm(cfg['name'])}-{cfg['version']}"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    members = {"PKG-INFO": _metadata(cfg["name"], cfg["version"])}
    for root, dirs, files in os.walk("."):
        skip = ["__pycache__", *(cfg.get("sdist_exclude", []) if root == "." else [])]
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(files):
            path = os.path.relpath(os.path.join(root, name), ".")
            with open(path, "rb") as f:
                members[path] = f.read()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size, info.mtime, info.mode = len(data), epoch, 0o644
            tar.addfile(info, io.BytesIO(data))
    with open(os.path.join(sdist_directory, base + ".tar.gz"), "wb") as out:
        with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
            gz.write(raw.getvalue())
    return base + ".tar.gz"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    cfg = _config()
    name, version = cfg["name"], cfg.get("wheel_version", cfg["version"])
    module = _norm(name)
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": cfg.get("module", f"VERSION = {version!r}\n").encode(),
        f"{info}/METADATA": _metadata(name, version),
        f"{info}/WHEEL": WHEEL,
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    filename = f"{module}-{version}-py3-none-any.whl"
    stamp = time.gmtime(max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800))[:6]
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, stamp), data)
    return filename
'''

TINY_PYPROJECT = """[build-system]
requires = []
build-backend = "tiny_backend"
backend-path = ["."]
"""


def tiny_project(name: str, version: str = "0.1.0", **behaviour: object) -> dict[str, bytes]:
    """The files of a project built by :data:`TINY_BACKEND`; ``behaviour`` goes to tiny.json."""
    return {
        "pyproject.toml": TINY_PYPROJECT.encode(),
        "tiny_backend.py": TINY_BACKEND.encode(),
        "tiny.json": json.dumps({"name": name, "version": version, **behaviour}, sort_keys=True).encode(),
    }


ETL_UTILS = b'''"""Date helpers for the seed scenario."""


def standardize_date_format(value):
    """'12/24/2024' (month/day/year) -> '2024-12-24'."""
    month, day, year = value.split("/")
    return f"{year}-{int(month):02d}-{int(day):02d}"
'''


def setuptools_etl(version: str = "0.1.0") -> dict[str, bytes]:
    """The seed package: ``etl`` with ``etl.utils.standardize_date_format``, built by setuptools."""
    pyproject = f"""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "etl"
version = "{version}"
description = "ETL helpers"
requires-python = ">=3.9"

[tool.setuptools]
packages = ["etl"]
"""
    return {
        "pyproject.toml": pyproject.encode(),
        "etl/__init__.py": b'"""ETL helpers."""\n',
        "etl/utils.py": ETL_UTILS,
    }


def hatchling_project(name: str) -> dict[str, bytes]:
    pyproject = f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.2.0"
description = "a hatchling project"
"""
    return {"pyproject.toml": pyproject.encode(), f"{name}/__init__.py": b"ANSWER = 42\n"}


# -- git ---------------------------------------------------------------------------------------

GIT_ENV = git_env("Build Tester", "builder@example.com")


class WorkTree:
    """A git work tree driven by the git CLI: write files, commit at a chosen date."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", *args], cwd=self.root, env={**GIT_ENV, **(env or {})}, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
        return result.stdout

    def write(self, files: dict[str, bytes], prefix: str = "") -> None:
        for path, data in files.items():
            target = self.root / prefix / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def commit(self, message: str, date: str) -> str:
        """Commit everything with author and committer date ``date`` (ISO 8601); its sha."""
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message, env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
        return self.git("rev-parse", "HEAD").strip()

    def commit_time(self) -> int:
        return int(self.git("log", "-1", "--format=%ct").strip())


# -- the build API -----------------------------------------------------------------------------


def unique_ns(suffix: str = "team") -> str:
    """A namespace no other test uses (``b`` for builder); top level when ``suffix`` is empty."""
    return clients.unique_ns(suffix, prefix="b")


def put_files(http: httpx.Client, server: LiveServer, ns: str, files: dict[str, bytes], prefix: str = "") -> None:
    """A project's files into a namespace (under ``prefix``), ready to build."""
    for path, data in files.items():
        put_file(http, server, ns, f"{prefix}{path}", data)


def start_build(http: httpx.Client, server: LiveServer, ns: str, **options: object) -> httpx.Response:
    """``POST /api/v1/builds`` as the admin (options: path, publish_to, force, timeout)."""
    return http.post("/api/v1/builds", json={"namespace": ns, **options}, headers=server.admin)


def queued(http: httpx.Client, server: LiveServer, ns: str, **options: object) -> dict:
    """A build that must be newly queued."""
    response = start_build(http, server, ns, **options)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "queued" and body["cached"] is False, body
    return body


def build_info(http: httpx.Client, build_id: int) -> dict:
    response = http.get(f"/api/v1/builds/{build_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_build(http: httpx.Client, build_id: int, timeout: float = 180, states: tuple[str, ...] = DONE) -> dict:
    """Poll a build until it reaches one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        build = build_info(http, build_id)
        if build["state"] in states:
            return build
        assert time.monotonic() < deadline, f"build {build_id} still {build['state']} after {timeout}s"
        time.sleep(0.2)


def build_log(http: httpx.Client, build_id: int) -> str:
    response = http.get(f"/api/v1/builds/{build_id}/log")
    assert response.status_code == 200, response.text
    return response.content.decode("utf-8", "replace")


def wait_log(http: httpx.Client, build_id: int, needle: str, timeout: float = 60) -> str:
    """Poll a build's log until it holds ``needle``; the log."""
    deadline = time.monotonic() + timeout
    while True:
        text = build_log(http, build_id)
        if needle in text:
            return text
        assert time.monotonic() < deadline, f"build {build_id} log never showed {needle!r}:\n{text[-2000:]}"
        time.sleep(0.2)


def marker() -> str:
    """A unique word for a tiny build's sleeping child process (``tiny_project(marker=...)``)."""
    return f"packyard-test-sleeper-{uuid.uuid4().hex}"


def processes_with(word: str) -> list[int]:
    """Host pids of the live processes whose command line holds ``word``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if word.encode() in cmdline.split(b"\0") and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def all_gone(word: str, timeout: float = 10) -> bool:
    """True once no process marked with ``word`` runs."""
    deadline = time.monotonic() + timeout
    while processes_with(word):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def dists_rows(server: LiveServer, ns: str) -> list[tuple[str, str]]:
    """(filename, sha256) of every dist in ``ns``."""
    return server.rows("SELECT filename, sha256 FROM dists WHERE namespace = ? ORDER BY filename", (ns,))


def build_rows(server: LiveServer, ns: str) -> list[tuple]:
    return server.rows("SELECT id, state FROM builds WHERE namespace = ? ORDER BY id", (ns,))


def packyard(server: LiveServer, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The packyard CLI as the admin; the caller checks the exit code (:func:`ok` or its own)."""
    env = {**server.client_env(server.admin_token), "COLUMNS": "200", "NO_COLOR": "1"}
    return packyard_cli(env, *args, check=False, timeout=timeout)


@contextlib.contextmanager
def private_server(root: Path, env: dict[str, str]) -> Iterator[LiveServer]:
    """A packyard server of a test module's own (local backend), with ``env`` added."""
    live = live_server(root, {"PACKYARD_LOG_REQUESTS": "true", **env})
    with running(live.server):
        yield live
