"""Task runs against the real server: ``packyard pull``, ``fetch``, ``env`` and ``run`` as subprocesses.

Every CLI call gets the session server's admin token and a cache directory of the test's own
(``PACKYARD_CACHE_DIR``), so a "fresh worker" is just another cache directory. pip and uv
run with their configuration cut off from this machine (this machine's pip.conf points at a
local mirror): whatever a run installs can only have come from packyard.

Namespaces: the module-scoped :func:`tree` uploads the seed once per backend into a fresh
top-level namespace (``company``), with a child (``company.sales``), a grandchild
(``company.sales.emea``), a sibling (``company.hr``) holding a project of its own, and an
outsider (a separate top-level namespace) holding a *different* ``etl`` 0.1.0.

Tests marked ``local_only`` test client-side behaviour (the cache, locks, interrupted builds)
that does not depend on the storage backend; they run against the local backend only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from packyard.client import Client
from tests.conftest import LiveServer
from tests.support import clients
from tests.support.clients import clean_env, create_ns, packyard_cli, pip_env, run, upload
from tests.support.dists import WHEEL, _metadata, make_sdist, pack_wheel

COMPLETE = ".packyard-complete"

ETL_UTILS = '''\
def standardize_date_format(value):
    """12/24/2024 -> 2024-12-24"""
    month, day, year = value.split("/")
    return f"{year}-{int(month):02d}-{int(day):02d}"
'''
ETL_CALL = "import etl.utils; print(etl.utils.standardize_date_format('12/24/2024'))"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_only: client-side behaviour, tested against the local backend only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("server") if callspec else None
        (drop if item.get_closest_marker("local_only") and backend == "s3" else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- names, distributions, uploads -------------------------------------------------------------


def unique_ns(prefix: str = "r") -> str:
    """A top-level namespace no other test uses; here the argument is the prefix (``c``ompany, ``o``utsider)."""
    return clients.unique_ns(prefix=prefix)


def wheel(out: Path, name: str, version: str, files: dict[str, str], requires: list[str] | None = None) -> Path:
    """A pure-Python wheel holding ``files`` (module path -> source), e.g. ``etl/utils.py``."""
    dist_info = f"{name}-{version}.dist-info"
    members = {path: body.encode() for path, body in files.items()}
    members[f"{dist_info}/METADATA"] = _metadata(name, version, requires or [], None, f"{name} for task runs").encode()
    members[f"{dist_info}/WHEEL"] = WHEEL
    return pack_wheel(out, f"{name}-{version}-py3-none-any.whl", dist_info, members, (2024, 1, 1, 0, 0, 0))


def simple_wheel(out: Path, name: str, version: str, body: str = "", requires: list[str] | None = None) -> Path:
    """A one-module wheel whose module carries a unique marker (so its hash is new: a new environment)."""
    marker = f"MARKER = {uuid.uuid4().hex!r}\nVERSION = {version!r}\n"
    return wheel(out, name, version, {f"{name}/__init__.py": marker + body}, requires)


def etl_wheel(out: Path, version: str = "0.1.0", utils: str = ETL_UTILS) -> Path:
    """etl with ``etl.utils.standardize_date_format``; its bytes are new each time (a new lock hash)."""
    init = f"VERSION = {version!r}\nMARKER = {uuid.uuid4().hex!r}\n"
    return wheel(out, "etl", version, {"etl/__init__.py": init, "etl/utils.py": utils})


def etl_sdist(out: Path, version: str = "0.1.0") -> Path:
    return make_sdist(out, "etl", version, members={f"etl-{version}/etl/utils.py": ETL_UTILS.encode()})


# -- subprocesses ------------------------------------------------------------------------------


def cli_env(server: LiveServer, cache: Path, token: str | None = None) -> dict[str, str]:
    env = server.client_env(token or server.admin_token)
    env = {k: v for k, v in env.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PACKYARD_CACHE_DIR=str(cache), NO_COLOR="1", PIP_CONFIG_FILE=os.devnull)
    return env


def cli(
    server: LiveServer, cache: Path, *args: str | Path, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``packyard ...`` as the admin, with ``cache`` as PACKYARD_CACHE_DIR."""
    return packyard_cli(cli_env(server, cache), *args, check=check, cwd=cwd)


def env_json(server: LiveServer, cache: Path, ns: str, *args: str) -> dict:
    """``packyard env NS ARGS --json``."""
    return json.loads(cli(server, cache, "env", ns, *args, "--json").stdout)


def env_dirs(cache: Path) -> list[Path]:
    """Every folder in ``{cache}/envs`` (complete environments and leftovers alike)."""
    envs = cache / "envs"
    return sorted(p for p in envs.iterdir() if p.is_dir()) if envs.exists() else []


def assert_only_complete(cache: Path) -> None:
    """``{cache}/envs`` holds complete environments only: no temp folder, no unmarked env."""
    for path in env_dirs(cache):
        assert not path.name.startswith("."), f"a half-built environment was left: {path}"
        assert (path / COMPLETE).is_file(), f"an environment without its completion marker: {path}"


def bundle_requests(server: LiveServer, mark: int, key: str) -> list[tuple[str, int]]:
    """(method, status) of the requests for environment ``key``'s bundle, in any namespace."""
    return [(m, s) for m, p, s in server.requests_since(mark) if p.split("?")[0].endswith(f"/bundles/{key}")]


def resolution_requests(server: LiveServer, mark: int) -> list[tuple[str, int]]:
    return [(m, s) for m, p, s in server.requests_since(mark) if "/resolutions" in p]


def log_mark(server: LiveServer) -> int:
    return len(server.log_lines())


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class Tree:
    company: str
    sales: str
    emea: str
    hr: str
    outsider: str
    etl_wheel: Path
    etl_sdist: Path
    outsider_wheel: Path


@pytest.fixture(scope="module")
def tree(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """The seed: etl 0.1.0 (wheel and sdist) in ``company``; a different etl 0.1.0 outside."""
    company = unique_ns("c")
    t = Tree(
        company=company,
        sales=f"{company}.sales",
        emea=f"{company}.sales.emea",
        hr=f"{company}.hr",
        outsider=unique_ns("o"),
        etl_wheel=etl_wheel(tmp_path_factory.mktemp("etl")),
        etl_sdist=etl_sdist(tmp_path_factory.mktemp("etl-sdist")),
        outsider_wheel=etl_wheel(
            tmp_path_factory.mktemp("etl-outsider"),
            utils="def standardize_date_format(value):\n    return 'outsider'\n",
        ),
    )
    create_ns(module_http, server, t.company, t.sales, t.emea, t.hr, t.outsider)
    upload(module_http, server, t.company, t.etl_wheel, t.etl_sdist)
    upload(module_http, server, t.hr, simple_wheel(tmp_path_factory.mktemp("hr"), "hronly", "1.0"))
    upload(module_http, server, t.outsider, t.outsider_wheel)
    return t


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    c = Client(server.url, server.admin_token)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A worker's local cache (PACKYARD_CACHE_DIR); another ``tmp_path / ...`` is another worker."""
    return tmp_path / "cache"


def venv(path: Path) -> Path:
    """A fresh, empty virtual environment (no pip: install into it with ``pip --python``)."""
    run([sys.executable, "-m", "venv", "--without-pip", path], clean_env())
    return path / "bin" / "python"


def pip_install(python: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """This interpreter's pip installing into the venv of ``python``, seeing no index but what it is given."""
    return run([sys.executable, "-m", "pip", "--python", python, "install", "--no-cache-dir", *args], pip_env())
