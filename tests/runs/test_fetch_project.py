"""``packyard fetch NS PROJECT``: the newest file of a project this interpreter can install,
chosen from the namespace's index page (with inheritance) as pip would choose it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.runs.conftest import cli, unique_ns
from tests.support.clients import create_ns, output, upload
from tests.support.dists import WHEEL, _metadata, make_sdist, pack_wheel

pytestmark = pytest.mark.local_only  # which file is chosen does not depend on the storage backend


def crate_wheel(out: Path, version: str, tag: str = "py3-none-any", requires_python: str | None = None) -> Path:
    dist_info = f"crate-{version}.dist-info"
    files = {
        "crate/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": _metadata("crate", version, [], requires_python, "crate").encode(),
        f"{dist_info}/WHEEL": WHEEL.replace(b"py3-none-any", tag.encode()),
    }
    return pack_wheel(out, f"crate-{version}-{tag}.whl", dist_info, files)


@pytest.fixture(scope="module")
def crates(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``crate`` in a parent namespace, fetched through its child:

    1.0 wheel and sdist (the newest this interpreter can install), 1.1 yanked, 1.2 only for
    Windows CPython 2.7, 1.3 for Python >= 4, 2.0rc1 a pre-release, 0.9 an older sdist."""
    out = tmp_path_factory.mktemp("crates")
    parent = unique_ns("fetch")
    create_ns(module_http, server, parent, f"{parent}.child")
    upload(
        module_http,
        server,
        parent,
        crate_wheel(out, "1.0"),
        make_sdist(out, "crate", "1.0"),
        make_sdist(out, "crate", "0.9"),
        crate_wheel(out, "1.1"),
        crate_wheel(out, "1.2", tag="cp27-cp27m-win32"),
        crate_wheel(out, "1.3", requires_python=">=4"),
        crate_wheel(out, "2.0rc1"),
    )
    yank = module_http.post(
        f"{server.url}/api/v1/namespaces/{parent}/dists/crate/1.1/yank",
        json={"reason": "broken"},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert yank.status_code == 200, yank.text
    return f"{parent}.child"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "crate-1.0-py3-none-any.whl"),
        (["--sdist"], "crate-1.0.tar.gz"),
        (["--version", "0.9"], "crate-0.9.tar.gz"),
    ],
)
def test_fetch_a_project_by_name(
    server: LiveServer, crates: str, tmp_path: Path, args: list[str], expected: str
) -> None:
    proc = cli(server, tmp_path / "cache", "fetch", crates, "crate", *args, "--dest", tmp_path / "d")
    assert proc.stdout.strip() == str(tmp_path / "d" / expected)
    assert [p.name for p in (tmp_path / "d").iterdir()] == [expected]


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["crate", "--version", "1.2"], "no installable sdist or wheel of crate 1.2", 3),
        (["../simple"], "neither a distribution filename nor a project name", 2),
        (["crate-1.0.tar.gz", "--wheel"], "choose among a project's files", 2),
    ],
)
def test_fetch_refuses_what_cannot_be_installed(
    server: LiveServer, crates: str, tmp_path: Path, args: list[str], message: str, code: int
) -> None:
    proc = cli(server, tmp_path / "cache", "fetch", crates, *args, "--dest", tmp_path / "d", check=False)
    assert proc.returncode == code, output(proc)
    assert message in output(proc)
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())
