"""The seed scenarios end to end: etl published in ``company``, used by runs in its children.

- ``install_from_zip``: a run in ``company.sales`` fetches etl, pip installs it into a fresh
  environment and calls ``etl.utils.standardize_date_format("12/24/2024")``;
- sharing between flows: ``packyard run company.sales.emea --with etl -- python -c ...``;
- a namespace outside ``company`` cannot see it, and one holding its *own* etl 0.1.0 gets
  its own, never ``company``'s from the shared environment cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from packyard.client import Client
from tests.conftest import LiveServer
from tests.runs.conftest import ETL_CALL, Tree, cli, env_dirs, env_json, pip_install, venv
from tests.support.clients import clean_env, output, pip_env, run

EXPECTED = "2024-12-24"


def test_fetch_wheel_in_child_and_pip_install(server: LiveServer, tree: Tree, tmp_path: Path, cache: Path) -> None:
    """``packyard fetch company.sales etl-0.1.0-py3-none-any.whl && pip install etl-0.1.0-...whl``."""
    work = tmp_path / "work"
    work.mkdir()
    filename = tree.etl_wheel.name
    proc = cli(server, cache, "fetch", tree.sales, filename, cwd=work)
    assert proc.stdout.strip() == str(work / filename)
    assert (work / filename).read_bytes() == tree.etl_wheel.read_bytes()  # through the child's index, inherited
    assert sorted(p.name for p in work.iterdir()) == [filename]  # no temp file left

    python = venv(tmp_path / "venv")
    pip_install(python, "--no-index", work / filename)
    assert run([python, "-c", ETL_CALL], clean_env()).stdout.strip() == EXPECTED

    again = cli(server, cache, "fetch", tree.sales, filename, "--dest", work)  # already there: kept
    assert again.stdout.strip() == str(work / filename)


@pytest.mark.local_only
def test_fetch_sdist_in_child_and_install(server: LiveServer, tree: Tree, tmp_path: Path, cache: Path) -> None:
    """The literal seed: fetch ``etl-0.1.0.tar.gz`` in the child, install it, call etl.utils.

    pip builds it with this interpreter's setuptools (``--no-build-isolation``: no PyPI here)
    when that can build wheels; otherwise the fetched sources are unpacked and run as they are.
    """
    dest = tmp_path / "dest"
    proc = cli(server, cache, "fetch", tree.sales, tree.etl_sdist.name, "--dest", dest)
    fetched = dest / tree.etl_sdist.name
    assert proc.stdout.strip() == str(fetched)
    assert fetched.read_bytes() == tree.etl_sdist.read_bytes()

    target = tmp_path / "site"
    if importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel"):
        cmd = ["install", "--no-cache-dir", "--no-index", "--no-build-isolation", "--no-deps", "--target", target]
        run([sys.executable, "-m", "pip", *cmd, fetched], pip_env(), timeout=180)
    else:
        with tarfile.open(fetched) as archive:
            archive.extractall(tmp_path / "src", filter="data")
        shutil.copytree(tmp_path / "src" / "etl-0.1.0" / "etl", target / "etl")
    env = clean_env() | {"PYTHONPATH": str(target)}
    assert run([sys.executable, "-c", ETL_CALL], env, cwd=tmp_path).stdout.strip() == EXPECTED


def test_plain_pip_install_from_the_dists_url(server: LiveServer, tree: Tree, tmp_path: Path) -> None:
    """``pip install http://HOST/company.sales/dists/etl-0.1.0-...whl``: the child serves the parent's file."""
    python = venv(tmp_path / "venv")
    pip_install(python, f"{server.url}/{tree.sales}/dists/{tree.etl_wheel.name}")
    assert run([python, "-c", ETL_CALL], clean_env()).stdout.strip() == EXPECTED


def test_run_in_grandchild_shares_etl(server: LiveServer, tree: Tree, cache: Path) -> None:
    """``packyard run company.sales.emea --with etl -- python -c ...`` in a fresh environment."""
    proc = cli(server, cache, "run", tree.emea, "--with", "etl", "--", "python", "-c", ETL_CALL)
    assert proc.stdout.strip() == EXPECTED
    assert proc.stderr == ""  # quiet when not on a terminal: the flow's log holds the command's output only

    # the command ran inside the environment `packyard env` names
    info = env_json(server, cache, tree.emea, "--with", "etl")
    assert info["reused"] is True
    code = "import sys, etl; print(sys.prefix); print(etl.__file__)"
    prefix, module = cli(server, cache, "run", tree.emea, "--with", "etl", "--", "python", "-c", code).stdout.split()
    assert Path(prefix) == Path(info["path"])
    assert Path(module).is_relative_to(info["path"])


def test_namespace_outside_the_tree_cannot_see_etl(server: LiveServer, tree: Tree, client: Client, cache: Path) -> None:
    lonely = f"x{tree.company}"  # a top-level namespace next to company, with nothing in it
    client.create_namespace(lonely)
    proc = cli(server, cache, "run", lonely, "--with", "etl", "--", "python", "-c", ETL_CALL, check=False)
    assert proc.returncode == 2, output(proc)
    assert proc.stdout == ""
    message = proc.stderr
    assert message.startswith("error: resolving etl against " + lonely), message
    assert "etl was not found" in message, message
    assert "Traceback" not in message
    assert env_dirs(cache) == []  # nothing built


@pytest.mark.local_only
def test_outsider_with_its_own_etl_never_gets_companys(server: LiveServer, tree: Tree, cache: Path) -> None:
    """Two namespaces each hold an ``etl`` 0.1.0 with different bytes; one cache serves both.

    The environment's key must name the files (the lock's hashes), not just ``etl==0.1.0``:
    otherwise the outsider's run imports ``company``'s code from the shared cache (and a fresh
    worker would get ``company``'s bundle).
    """
    ours = cli(server, cache, "run", tree.emea, "--with", "etl", "--", "python", "-c", ETL_CALL)
    assert ours.stdout.strip() == EXPECTED
    theirs = cli(server, cache, "run", tree.outsider, "--with", "etl", "--", "python", "-c", ETL_CALL)
    assert theirs.stdout.strip() == "outsider"
    a = env_json(server, cache, tree.emea, "--with", "etl")
    b = env_json(server, cache, tree.outsider, "--with", "etl")
    assert a["key"] != b["key"] and a["path"] != b["path"]
    assert hashlib.sha256(tree.etl_wheel.read_bytes()).hexdigest() in a["lock"]
    assert hashlib.sha256(tree.outsider_wheel.read_bytes()).hexdigest() in b["lock"]

    fresh = cache.parent / "fresh-worker"  # a fresh worker gets the outsider's bundle, not company's
    theirs = cli(server, fresh, "run", tree.outsider, "--with", "etl", "--", "python", "-c", ETL_CALL)
    assert theirs.stdout.strip() == "outsider"


def test_run_pull_with_etl_runs_the_flow_among_its_files(
    server: LiveServer, tree: Tree, client: Client, cache: Path
) -> None:
    """A Kestra-style task: the flow's script lives in the namespace, its library in the index."""
    script = "import etl.utils, os, sys\nprint(etl.utils.standardize_date_format(sys.argv[1]), os.listdir('.'))\n"
    client.put_file(tree.sales, "flows/daily.py", script.encode())
    proc = cli(
        server, cache, "run", tree.sales, "--with", "etl", "--pull", "--", "python", "flows/daily.py", "1/2/2025"
    )
    date, listing = proc.stdout.strip().split(" ", 1)
    assert date == "2025-01-02"
    assert json.loads(listing.replace("'", '"')) == ["flows"]


@pytest.mark.local_only
def test_run_exits_with_the_commands_status(server: LiveServer, tree: Tree, cache: Path) -> None:
    seven = cli(
        server, cache, "run", tree.sales, "--", "python", "-c", "import sys; print('out'); sys.exit(7)", check=False
    )
    assert seven.returncode == 7
    assert seven.stdout == "out\n"
    killed = cli(server, cache, "run", tree.sales, "--", "sh", "-c", "kill -9 $$", check=False)
    assert killed.returncode == 128 + 9, output(killed)  # as a shell reports a SIGKILLed command
    ok = cli(server, cache, "run", tree.sales, "--with", "etl", "--", "python", "-c", "import etl", check=False)
    assert ok.returncode == 0, output(ok)
    failing = cli(
        server, cache, "run", tree.sales, "--with", "etl", "--", "python", "-c", "import etl; raise SystemExit(3)",
        check=False,
    )  # fmt: skip
    assert failing.returncode == 3
