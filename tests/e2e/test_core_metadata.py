"""PEP 658 metadata is advertised only where it binds what installing the file produces.

A wheel's METADATA is what gets installed. An sdist's PKG-INFO binds its build only from
Metadata-Version 2.2 on (PEP 643), for fields not marked ``Dynamic``; an older one (most of
PyPI until 2023, Flask 2.0.3 among them) often lists no dependency while ``setup.py``
declares them. Advertised anyway, pip and uv resolve from it and install such a project
without its dependencies. Here, in one namespace per backend:

- ``oldpkg`` 2.0.3: only an old-style sdist (PKG-INFO 2.1 without Requires-Dist,
  ``setup.py`` with ``install_requires=["olddep>=1"]``);
- ``olddep`` 1.0: a wheel;
- ``newpkg`` 1.0: an sdist with Metadata-Version 2.2 and static Requires-Dist (advertised);
- ``dynpkg`` 1.0: an sdist with Metadata-Version 2.4 and ``Dynamic: Requires-Dist`` (not).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.e2e.conftest import links
from tests.support.clients import JSON_V1, UV, output, pip_env, run, unique_ns, upload, uv_env
from tests.support.dists import make_legacy_sdist, make_sdist, make_wheel


@dataclass(frozen=True)
class Index:
    server: LiveServer
    ns: str

    @property
    def simple(self) -> str:
        return f"{self.server.url}/{self.ns}/simple/"


@pytest.fixture(scope="module")
def index(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Index:
    root = tmp_path_factory.mktemp("core-metadata")
    ns = unique_ns()
    upload(
        module_http,
        server,
        ns,
        make_legacy_sdist(root, "oldpkg", "2.0.3", install_requires=["olddep>=1"]),
        make_wheel(root, "olddep", "1.0"),
        make_sdist(root, "newpkg", "1.0", requires=["olddep>=1"], metadata_version="2.2"),
        make_sdist(root, "dynpkg", "1.0", metadata_version="2.4", dynamic=["Requires-Dist"]),
    )
    return Index(server, ns)


ADVERTISED = {
    "oldpkg-2.0.3.tar.gz": False,
    "olddep-1.0-py3-none-any.whl": True,
    "newpkg-1.0.tar.gz": True,
    "dynpkg-1.0.tar.gz": False,
}


@pytest.mark.parametrize("filename", list(ADVERTISED))
def test_metadata_is_advertised_and_served_only_where_it_binds_the_install(
    index: Index, http: httpx.Client, filename: str
) -> None:
    project = filename.split("-")[0]
    for _ in range(2):  # the routes, then the hot path's cached bytes
        html = http.get(f"/{index.ns}/simple/{project}/")
        link = links(html.text)[filename]
        entry = {f["filename"]: f for f in http.get(html.url, headers={"Accept": JSON_V1}).json()["files"]}[filename]
        assert ("data-core-metadata" in link.attrs) is ADVERTISED[filename], link.raw
        assert ("data-dist-info-metadata" in link.attrs) is ADVERTISED[filename], link.raw
        assert ("core-metadata" in entry) is ADVERTISED[filename], entry
        assert ("dist-info-metadata" in entry) is ADVERTISED[filename], entry
    metadata = http.get(f"/{index.ns}/dists/{filename}.metadata")
    if ADVERTISED[filename]:
        assert metadata.status_code == 200, metadata.text
        assert link.attrs["data-core-metadata"].endswith(entry["core-metadata"]["sha256"])
    else:
        assert metadata.status_code == 404, metadata.text
        assert metadata.json()["error"] == "NotFound"
        assert "PKG-INFO may not match" in metadata.json()["detail"]


def test_pip_installs_an_old_sdist_with_its_dependencies(index: Index, tmp_path: Path) -> None:
    """Before: pip trusted the advertised PKG-INFO and installed ``oldpkg`` alone."""
    target = tmp_path / "target"
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", index.simple]
    result = run([*cmd, "--target", target, "oldpkg"], pip_env())
    found = sorted(p.name for p in target.glob("*.dist-info"))
    assert found == ["olddep-1.0.dist-info", "oldpkg-2.0.3.dist-info"], output(result)


def test_a_lock_of_an_old_sdist_holds_its_dependencies(index: Index, tmp_path: Path) -> None:
    """What pip-compile does (pip's resolver, ``--dry-run --report``), and ``uv pip compile``.

    Before: pip resolved ``oldpkg`` from the advertised PKG-INFO alone, without ``olddep``.
    """
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-cache-dir"]
    run([*cmd, "--index-url", index.simple, "--report", report, "oldpkg"], pip_env())
    resolved = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert resolved == {"oldpkg": "2.0.3", "olddep": "1.0"}

    requirements = tmp_path / "requirements.in"
    requirements.write_text("oldpkg\n")
    cmd = [UV, "pip", "compile", "--no-header", "--index-url", index.simple, "--python", sys.executable]
    locked = run([*cmd, requirements], uv_env(tmp_path / "uv-cache")).stdout
    assert "olddep==1.0" in locked and "oldpkg==2.0.3" in locked, locked
