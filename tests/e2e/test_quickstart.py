"""The README's quick start, literally, from a fresh working directory.

``PACKYARD_ADMIN_TOKEN=change-me python -m packyard serve`` with no ``PACKYARD_DATA`` keeps
its data in ``./packyard-data`` — a relative path. Every path setting is made absolute when
the settings are read, so the build worker, bubblewrap and git (which all run in other
folders) see the same folder: a repository synced with ``packyard sync run`` builds with
``packyard build ... --wait`` and installs with pip. (The package itself is installed
already — ``python -m pip install .`` —, the port is a free one instead of 8000, so the test
can run beside other servers, and ``PACKYARD_SYNC_LOCAL_ROOTS`` lets it sync a local
repository; nothing else differs from the README.)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.builder.conftest import WorkTree, setuptools_etl
from tests.support.clients import clean_env, make_venv, packyard_cli, pip_env, run
from tests.support.procs import free_port, stop_process, wait_until

CALL = "from etl.utils import standardize_date_format as f; print(f('12/24/2024'))"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """``PACKYARD_ADMIN_TOKEN=change-me python -m packyard serve`` run in an empty folder."""
    fresh = tmp_path_factory.mktemp("fresh")
    port = free_port()
    env = {**clean_env(), "PACKYARD_ADMIN_TOKEN": "change-me", "PACKYARD_PORT": str(port)}
    # the operator's allow list for file:// syncs: the tests' temporary folders (the repository is one)
    env["PACKYARD_SYNC_LOCAL_ROOTS"] = str(tmp_path_factory.getbasetemp())
    log = (fresh.parent / f"{fresh.name}-server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "packyard", "serve"], cwd=fresh, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 60, "packyard serve", proc)
        yield {"url": url, "cwd": fresh, "log": Path(log.name)}
    finally:
        stop_process(proc, 15)
        log.close()


def test_the_quick_start_syncs_builds_and_installs(quickstart: dict, tmp_path: Path) -> None:
    assert (quickstart["cwd"] / "packyard-data" / "catalog.db").is_file()  # the default, relative data folder
    repo = WorkTree(tmp_path / "repo")
    repo.write({**setuptools_etl(), "README.md": b"# etl\n", "flows/daily.yml": b"id: daily\n"})
    repo.commit("etl 0.1.0", "2024-12-24T10:00:00+00:00")

    # "Then, from another shell": export PACKYARD_URL=http://127.0.0.1:8000 PACKYARD_TOKEN=change-me
    env = {**clean_env(), "PACKYARD_URL": quickstart["url"], "PACKYARD_TOKEN": "change-me", "COLUMNS": "200"}
    shell = tmp_path / "shell"
    shell.mkdir()
    packyard_cli(env, "sync", "run", "company", repo.url, cwd=shell)
    built = packyard_cli(env, "build", "company", "--publish-to", "company.sales", "--wait", cwd=shell, check=False)
    assert built.returncode == 0, (built.stdout, built.stderr, packyard_cli(env, "build", "logs", "1").stdout[-3000:])
    assert "build 1 succeeded" in built.stdout, built.stdout

    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    index = f"{quickstart['url']}/company.sales/simple/"
    run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-cache-dir", "--index-url", index, "etl"],
        pip_env(),
    )
    assert run([python, "-c", CALL], pip_env()).stdout.strip() == "2024-12-24"
