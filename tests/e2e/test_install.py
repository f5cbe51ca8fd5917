"""Installs from a namespace's index with real pip and uv, resolving across the namespace tree.

One tree per backend, uploaded once for the module:

- parent ``P`` (a team's ``company``): ``corelib`` 1.0.0 (wheel and sdist) and ``etl`` 0.1.0,
  whose ``standardize_date_format`` is the seed scenario; ``etl`` depends on ``corelib``;
- child ``P.x`` (``company.x``): ``etl`` 0.2.0, which needs Python >= 3.99 and must be skipped;
  ``flows`` 1.0.0, which depends on ``etl`` (so on the parent's files); ``yanky`` 1.0.0 and
  2.0.0, with 2.0.0 yanked through ``packyard yank``.

Every install reads only the child's index URL: what comes from the parent comes by inheritance.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALL_SERVERS, LiveServer
from tests.e2e.conftest import assert_metadata_only, fetched, installed
from tests.support.clients import (
    PACKYARD,
    TWINE,
    UV,
    create_token,
    make_venv,
    output,
    pip_env,
    run,
    twine_env,
    unique_ns,
    upload,
    uv_env,
)
from tests.support.dists import make_sdist, make_wheel

ETL_BODY = '''
def standardize_date_format(value):
    """'12/24/2024' (month/day/year) -> '2024-12-24'."""
    month, day, year = value.split("/")
    return f"{year}-{int(month):02d}-{int(day):02d}"
'''
FLOWS_BODY = """
from etl import standardize_date_format


def run(value):
    return standardize_date_format(value)
"""
YANK_REASON = "broken build: use 1.0.0"


@dataclass(frozen=True)
class Tree:
    server: LiveServer
    parent: str
    child: str
    dists: Path

    @property
    def simple(self) -> str:
        """The child's index URL: the only one the installers are given."""
        return f"{self.server.url}/{self.child}/simple/"

    def mark(self) -> int:
        return len(self.server.log_lines())

    def fetched(self, mark: int) -> list[str]:
        return fetched(self.server, mark, self.parent, self.child)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("install-dists")
    make_wheel(root / "parent", "corelib", "1.0.0")
    make_sdist(root / "parent", "corelib", "1.0.0")
    make_wheel(root / "parent", "etl", "0.1.0", requires=["corelib>=1"], module_body=ETL_BODY)
    make_wheel(root / "child", "etl", "0.2.0", requires=["corelib>=1"], requires_python=">=3.99")
    make_wheel(root / "child", "flows", "1.0.0", requires=["etl>=0.1"], module_body=FLOWS_BODY)
    make_wheel(root / "child", "yanky", "1.0.0")
    make_wheel(root / "child", "yanky", "2.0.0")
    make_wheel(root / "late", "late", "1.0.0")
    return root


@pytest.fixture(scope="module")
def tree(server: LiveServer, module_http: httpx.Client, built: Path, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    parent = unique_ns()
    child = f"{parent}.x"
    # the seed wheel goes up with twine, the rest through the upload API directly (faster)
    seed = built / "parent" / "etl-0.1.0-py3-none-any.whl"
    run(
        [
            *TWINE,
            "upload",
            "--repository-url",
            f"{server.url}/{parent}/",
            "-u",
            "__token__",
            "-p",
            server.admin_token,
            "--non-interactive",
            "--disable-progress-bar",
            seed,
        ],
        twine_env(),
    )
    upload(module_http, server, parent, *sorted((built / "parent").glob("corelib-*")))
    upload(module_http, server, child, *sorted((built / "child").iterdir()))
    yanked = run(
        [*PACKYARD, "yank", child, "yanky", "2.0.0", "--reason", YANK_REASON],
        server.client_env(server.admin_token),
    )
    assert "yanked" in yanked.stdout and "yanky-2.0.0-py3-none-any.whl" in yanked.stdout
    return Tree(server, parent, child, built)


def pip_install(pip: list[str], python: Path, index: str, *args: str, ok: bool = True):
    return run(
        [*pip, "--python", python, "install", "--no-cache-dir", "--index-url", index, *args], pip_env(), check=ok
    )


def pip_report(pip: list[str], python: Path, index: str, tmp: Path, *reqs: str) -> dict[str, str]:
    """``pip install --dry-run --report``: what pip would install, name -> version."""
    report = tmp / "report.json"
    pip_install(pip, python, index, "--dry-run", "--quiet", "--report", str(report), *reqs)
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


def uv_compile(tree: Tree, cache: Path, tmp: Path, *reqs: str) -> dict[str, str]:
    requirements = tmp / "requirements.in"
    requirements.write_text("\n".join(reqs) + "\n")
    result = run(
        [UV, "pip", "compile", "--no-header", "--index-url", tree.simple, "--python", sys.executable, requirements],
        uv_env(cache),
    )
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", result.stdout, flags=re.M))


def test_seed_etl_from_the_parent_installs_through_the_childs_index(tree: Tree, pip: list[str], tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    mark = tree.mark()
    result = pip_install(pip, python, tree.simple, "etl")

    # etl 0.2.0 (in the child, Requires-Python >= 3.99) is skipped for the parent's 0.1.0
    versions = installed(python)
    assert {k: versions.get(k) for k in ("etl", "corelib")} == {"etl": "0.1.0", "corelib": "1.0.0"}, output(result)
    call = run([python, "-c", "from etl import standardize_date_format as f; print(f('12/24/2024'))"], pip_env())
    assert call.stdout.strip() == "2024-12-24"

    paths = tree.fetched(mark)
    assert all(p.startswith(f"/{tree.child}/") for p in paths), paths  # only the child's URLs
    assert f"/{tree.child}/dists/etl-0.1.0-py3-none-any.whl" in paths
    assert f"/{tree.child}/dists/corelib-1.0.0-py3-none-any.whl" in paths


@pytest.mark.servers(*ALL_SERVERS)  # also on the PostgreSQL catalog
def test_uv_installs_internal_dependencies_across_parent_and_child(tree: Tree, tmp_path: Path) -> None:
    cache = tmp_path / "uv-cache"
    python = make_venv(tmp_path / "venv", cache)
    run([UV, "pip", "install", "--python", python, "--index-url", tree.simple, "flows"], uv_env(cache))
    versions = installed(python)
    assert {k: versions.get(k) for k in ("flows", "etl", "corelib")} == {
        "flows": "1.0.0",
        "etl": "0.1.0",
        "corelib": "1.0.0",
    }
    call = run([python, "-c", "import flows; print(flows.run('1/2/2025'))"], uv_env(cache))
    assert call.stdout.strip() == "2025-01-02"


def test_pip_download_fetches_the_stored_bytes(tree: Tree, pip: list[str], tmp_path: Path) -> None:
    out = tmp_path / "downloads"
    run(
        [*pip, "download", "--no-cache-dir", "--index-url", tree.simple, "--only-binary", ":all:", "-d", out, "flows"],
        pip_env(),
    )
    got = sorted(p.name for p in out.iterdir())
    assert got == ["corelib-1.0.0-py3-none-any.whl", "etl-0.1.0-py3-none-any.whl", "flows-1.0.0-py3-none-any.whl"]
    assert (out / "etl-0.1.0-py3-none-any.whl").read_bytes() == (
        tree.dists / "parent" / "etl-0.1.0-py3-none-any.whl"
    ).read_bytes()
    assert (out / "flows-1.0.0-py3-none-any.whl").read_bytes() == (
        tree.dists / "child" / "flows-1.0.0-py3-none-any.whl"
    ).read_bytes()


def test_uv_pip_compile_resolves_from_metadata_alone(tree: Tree, tmp_path: Path) -> None:
    mark = tree.mark()
    assert uv_compile(tree, tmp_path / "uv-cache", tmp_path, "flows") == {
        "corelib": "1.0.0",
        "etl": "0.1.0",
        "flows": "1.0.0",
    }
    paths = tree.fetched(mark)
    assert_metadata_only(paths)
    assert f"/{tree.child}/dists/flows-1.0.0-py3-none-any.whl.metadata" in paths


def test_pip_dry_run_resolves_from_metadata_alone(tree: Tree, pip: list[str], tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    mark = tree.mark()
    assert pip_report(pip, python, tree.simple, tmp_path, "flows") == {
        "flows": "1.0.0",
        "etl": "0.1.0",
        "corelib": "1.0.0",
    }
    paths = tree.fetched(mark)
    assert_metadata_only(paths)
    assert f"/{tree.child}/dists/etl-0.1.0-py3-none-any.whl.metadata" in paths
    assert installed(python).get("flows") is None  # a dry run installs nothing


def test_requires_python_is_honoured(tree: Tree, pip: list[str], tmp_path: Path) -> None:
    assert uv_compile(tree, tmp_path / "uv-cache", tmp_path, "etl") == {"corelib": "1.0.0", "etl": "0.1.0"}
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    refused = pip_install(pip, python, tree.simple, "--dry-run", "etl==0.2.0", ok=False)
    assert refused.returncode != 0
    assert "Requires-Python >=3.99" in output(refused), output(refused)
    refused = run(
        [UV, "pip", "install", "--python", python, "--index-url", tree.simple, "etl==0.2.0"],
        uv_env(tmp_path / "uv-cache"),
        check=False,
    )
    assert refused.returncode != 0 and "3.99" in output(refused), output(refused)


@pytest.mark.servers(*ALL_SERVERS)  # also on the PostgreSQL catalog
def test_pip_and_uv_skip_a_yanked_release_unless_pinned(tree: Tree, pip: list[str], tmp_path: Path) -> None:
    cache = tmp_path / "uv-cache"
    python = make_venv(tmp_path / "venv", cache)
    assert pip_report(pip, python, tree.simple, tmp_path, "yanky") == {"yanky": "1.0.0"}
    pinned = pip_install(pip, python, tree.simple, "yanky==2.0.0")
    assert installed(python)["yanky"] == "2.0.0"
    assert "yanked" in output(pinned) and YANK_REASON in output(pinned), output(pinned)

    python = make_venv(tmp_path / "venv2", cache)
    run([UV, "pip", "install", "--python", python, "--index-url", tree.simple, "yanky"], uv_env(cache))
    assert installed(python)["yanky"] == "1.0.0"
    pinned = run([UV, "pip", "install", "--python", python, "--index-url", tree.simple, "yanky==2.0.0"], uv_env(cache))
    assert installed(python)["yanky"] == "2.0.0"
    assert "yanked" in output(pinned) and YANK_REASON in output(pinned), output(pinned)
    assert uv_compile(tree, cache, tmp_path, "yanky") == {"yanky": "1.0.0"}


def _section(text: str, start: str, end: str) -> str:
    begin = text.index(start)
    return text[begin : text.index(end, begin + len(start))]


def test_index_config_prints_settings_that_work(
    tree: Tree, server: LiveServer, http: httpx.Client, pip: list[str], tmp_path: Path
) -> None:
    printed = run([*PACKYARD, "index-config", tree.child], server.client_env()).stdout
    simple, upload_url = f"{server.url}/{tree.child}/simple/", f"{server.url}/{tree.child}/"
    name = tree.child.replace(".", "-")

    pip_conf = _section(printed, "[global]", "\n\n")
    assert pip_conf.splitlines() == ["[global]", f"index-url = {simple}"]
    uv_block = _section(printed, "[[tool.uv.index]]", "\n\n")
    assert tomllib.loads(uv_block)["tool"]["uv"]["index"] == [
        {"name": name, "url": simple, "publish-url": upload_url, "default": True}
    ]
    pypirc = _section(printed, "[distutils]", "# uv publish")
    assert f"[{name}]\nrepository = {upload_url}\nusername = __token__\n" in pypirc
    publish_line = next(line for line in printed.splitlines() if line.startswith("UV_PUBLISH_URL="))
    assert publish_line.startswith(f"UV_PUBLISH_URL={upload_url} UV_PUBLISH_USERNAME=__token__ ")

    # pip with the printed pip.conf and nothing else installs from the child's index
    conf = tmp_path / "pip.conf"
    conf.write_text(pip_conf + "\n")
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    run([*pip, "--python", python, "install", "--no-cache-dir", "etl"], pip_env(PIP_CONFIG_FILE=str(conf)))
    assert installed(python)["etl"] == "0.1.0"

    # uv with the printed index (as uv.toml: the same table without the tool.uv prefix) resolves
    uv_toml = tmp_path / "uv.toml"
    uv_toml.write_text(uv_block.replace("[[tool.uv.index]]", "[[index]]"))
    requirements = tmp_path / "requirements.in"
    requirements.write_text("flows\n")
    compiled = run(
        [UV, "pip", "compile", "--no-header", "--config-file", uv_toml, "--python", sys.executable, requirements],
        uv_env(tmp_path / "uv-cache"),
    )
    assert "etl==0.1.0" in compiled.stdout and "flows==1.0.0" in compiled.stdout

    # twine with the printed .pypirc (the password filled in) uploads to the child
    _, secret = create_token(http, server, tree.child, "write")
    rc = tmp_path / "pypirc"
    rc.write_text(pypirc.replace(f"<a packyard token with the write role on {tree.child}>", secret))
    late = tree.dists / "late" / "late-1.0.0-py3-none-any.whl"
    run(
        [*TWINE, "upload", "--config-file", rc, "-r", name, "--non-interactive", "--disable-progress-bar", late],
        twine_env(),
    )
    assert http.get(f"/{tree.child}/simple/late/").status_code == 200
