"""Mirroring: upstream pages re-served in packyard's format, files fetched once, checked and stored.

Two real upstreams, shared by both backends' downstream (the session server):

- an upstream packyard (behind a recording proxy, to see what packyard asks it for) whose
  ``pub`` namespace holds ``mirpkg`` 1.0 (needs ``mirdep``), 2.0 (yanked there) and 3.0
  (Requires-Python >= 3.99), and ``mirdep`` 1.0 as wheel and sdist;
- a static PEP 503 directory whose files are counted in ``http.server``'s log.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from packaging.utils import canonicalize_name

from tests.conftest import LiveServer
from tests.support.clients import JSON_V1, PIP_ACCEPT, create_ns, pip_env, run, sha256, upload
from tests.support.dists import make_legacy_sdist, make_sdist, make_wheel
from tests.upstream.conftest import (
    INSTALLERS,
    RecordingProxy,
    StaticIndex,
    UpstreamPackyards,
    installed,
    mirrored,
    set_settings,
    unique_ns,
)

YANK_REASON = "broken build"


@dataclass(frozen=True)
class Upstream:
    packyard: LiveServer
    proxy: RecordingProxy
    ns: str
    static: StaticIndex
    wheels: Path

    @property
    def url(self) -> str:
        """The upstream as the downstream sees it: the proxy in front of the packyard namespace."""
        return f"{self.proxy.base}/{self.ns}/simple/"


@pytest.fixture(scope="module")
def upstream(upstream_packyards: UpstreamPackyards, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("mirroring")
    wheels = root / "wheels"
    packyard = upstream_packyards.open
    ns = unique_ns("pub")
    files = [
        make_wheel(wheels, "mirpkg", "1.0", requires=["mirdep>=1"], requires_python=">=3.8"),
        make_wheel(wheels, "mirpkg", "2.0", requires=["mirdep>=1"]),
        make_wheel(wheels, "mirpkg", "3.0", requires_python=">=3.99"),
        make_wheel(wheels, "mirdep", "1.0"),
        make_sdist(wheels, "mirdep", "1.0"),
    ]
    with httpx.Client(base_url=packyard.url, timeout=30) as http:
        create_ns(http, packyard, ns)
        upload(http, packyard, ns, *files)
        yanked = http.post(
            f"/api/v1/namespaces/{ns}/dists/mirpkg/2.0/yank", json={"reason": YANK_REASON}, headers=packyard.admin
        )
        assert yanked.status_code == 200, yanked.text
    static = StaticIndex(root / "static").start()
    proxy = RecordingProxy(packyard.url)
    try:
        yield Upstream(packyard, proxy, ns, static, wheels)
    finally:
        proxy.stop()
        static.stop()


@dataclass(frozen=True)
class Mirror:
    server: LiveServer
    ns: str
    """Falls through to the upstream packyard (through the proxy)."""
    static_ns: str
    """Falls through to the static directory."""
    static_wheel: Path
    """A wheel only the static directory has, one per backend (so its fetches can be counted)."""

    @property
    def simple(self) -> str:
        return f"{self.server.url}/{self.ns}/simple/"


@pytest.fixture(scope="module")
def mirror(server: LiveServer, upstream: Upstream) -> Mirror:
    ns, static_ns = unique_ns("mirror"), unique_ns("static")
    wheel = make_wheel(upstream.wheels / server.backend, f"stat-{server.backend}", "1.0")
    upstream.static.publish(wheel, metadata=b"Metadata-Version: 2.1\nName: stat\nVersion: 1.0\n\n")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        create_ns(http, server, ns, static_ns)
        set_settings(http, server, ns, upstream=upstream.url)
        set_settings(http, server, static_ns, upstream=upstream.static.url)
    return Mirror(server, ns, static_ns, wheel)


def project_of(path: Path) -> str:
    return canonicalize_name(path.name.split("-")[0])


def upstream_json(upstream: Upstream, project: str) -> dict:
    response = httpx.get(f"{upstream.packyard.url}/{upstream.ns}/simple/{project}/", headers={"Accept": JSON_V1})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_page_is_re_served_with_links_into_packyard(mirror: Mirror, upstream: Upstream) -> None:
    theirs = {f["filename"]: f for f in upstream_json(upstream, "mirpkg")["files"]}
    with httpx.Client(base_url=mirror.server.url, timeout=30) as http:
        page = http.get(f"/{mirror.ns}/simple/mirpkg/", headers={"Accept": JSON_V1})
        html = http.get(f"/{mirror.ns}/simple/mirpkg/", headers={"Accept": "text/html"}).text
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith(JSON_V1)
    assert "x-packyard-upstream" not in page.headers
    ours = page.json()
    assert ours["versions"] == ["1.0", "2.0", "3.0"]
    assert sorted(f["filename"] for f in ours["files"]) == sorted(theirs)
    for f in ours["files"]:
        assert f["url"] == f"../../dists/{f['filename']}"
        assert f["hashes"]["sha256"] == theirs[f["filename"]]["hashes"]["sha256"]
        href = f'href="../../dists/{f["filename"]}#sha256={f["hashes"]["sha256"]}"'
        assert href in html
    assert upstream.proxy.base not in html and upstream.packyard.url not in html


def test_json_is_asked_for_and_its_fields_pass_through(mirror: Mirror, upstream: Upstream) -> None:
    """requires-python, yanked, upload-time, size and core-metadata as the upstream has them."""
    with httpx.Client(base_url=mirror.server.url, timeout=30) as http:
        ours = {
            f["filename"]: f
            for f in http.get(f"/{mirror.ns}/simple/mirdep/", headers={"Accept": JSON_V1}).json()["files"]
        }
        ours |= {
            f["filename"]: f
            for f in http.get(f"/{mirror.ns}/simple/mirpkg/", headers={"Accept": JSON_V1}).json()["files"]
        }
        html = http.get(f"/{mirror.ns}/simple/mirpkg/", headers={"Accept": "text/html"}).text
    theirs = {f["filename"]: f for p in ("mirpkg", "mirdep") for f in upstream_json(upstream, p)["files"]}
    assert set(ours) == set(theirs)
    for name, f in theirs.items():
        for key in ("requires-python", "yanked", "upload-time", "size", "core-metadata"):
            assert ours[name].get(key) == f.get(key), (name, key)
    assert ours["mirpkg-2.0-py3-none-any.whl"]["yanked"] == YANK_REASON
    assert ours["mirpkg-3.0-py3-none-any.whl"]["requires-python"] == ">=3.99"
    assert all(f["upload-time"] for f in ours.values())  # only the JSON form carries it
    assert f'data-yanked="{YANK_REASON}"' in html
    assert 'data-requires-python="&gt;=3.99"' in html
    # packyard asked the upstream for PEP 691 JSON first
    accepts = upstream.proxy.accepts(f"/{upstream.ns}/simple/mirpkg/")
    assert accepts, upstream.proxy.seen
    assert all(a and a.split(",")[0].strip() == JSON_V1 for a in accepts), accepts


def test_pep658_metadata_is_served_through_packyard(mirror: Mirror, upstream: Upstream) -> None:
    filename = "mirpkg-1.0-py3-none-any.whl"
    listed = {f["filename"]: f for f in upstream_json(upstream, "mirpkg")["files"]}[filename]["core-metadata"]
    theirs = httpx.get(f"{upstream.packyard.url}/{upstream.ns}/dists/{filename}.metadata").content
    ours = httpx.get(f"{mirror.server.url}/{mirror.ns}/dists/{filename}.metadata")
    assert ours.status_code == 200, ours.text
    assert ours.content == theirs
    assert sha256(ours.content) == listed["sha256"]
    assert b"Requires-Dist: mirdep>=1" in ours.content
    assert mirrored(mirror.server, filename)[0][3] == listed["sha256"]


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_installs_through_the_mirror_skip_yanked_and_incompatible(
    mirror: Mirror, installer: str, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    INSTALLERS[installer](mirror.simple, target, "mirpkg")
    assert installed(target) == {"mirpkg": "1.0", "mirdep": "1.0"}


def test_a_file_is_fetched_once_checked_and_stored_as_a_blob(mirror: Mirror, upstream: Upstream) -> None:
    wheel = mirror.static_wheel
    data = wheel.read_bytes()
    before = mirror.server.blob_hashes()
    assert sha256(data) not in before
    url = f"{mirror.server.url}/{mirror.static_ns}/dists/{wheel.name}"
    with httpx.Client(timeout=30) as http:
        page = http.get(
            f"{mirror.server.url}/{mirror.static_ns}/simple/{project_of(wheel)}/", headers={"Accept": PIP_ACCEPT}
        )
        assert page.status_code == 200, page.text
        assert upstream.static.gets(f"/files/{wheel.name}") == 0  # a page is not a download
        first = http.get(url)
        second = http.get(url)
        head = http.head(url)
        metadata = [http.get(url + ".metadata") for _ in range(2)]
    assert first.status_code == second.status_code == head.status_code == 200, first.text
    assert first.content == second.content == data
    assert upstream.static.gets(f"/files/{wheel.name}") == 1
    assert mirror.server.blob_hashes() - before >= {sha256(data)}
    [(_, stored, size, _)] = mirrored(mirror.server, wheel.name)
    assert (stored, size) == (sha256(data), len(data))
    assert metadata[0].status_code == 200 and metadata[0].content == metadata[1].content
    assert metadata[0].content.startswith(b"Metadata-Version: 2.1\nName: stat")
    assert upstream.static.gets(f"/files/{wheel.name}.metadata") == 1


def test_the_static_upstreams_html_page_is_re_served_as_json(mirror: Mirror, upstream: Upstream) -> None:
    wheel = mirror.static_wheel
    response = httpx.get(
        f"{mirror.server.url}/{mirror.static_ns}/simple/{project_of(wheel)}/", headers={"Accept": JSON_V1}
    )
    [entry] = response.json()["files"]
    assert entry["url"] == f"../../dists/{wheel.name}"
    assert entry["hashes"] == {"sha256": sha256(wheel)}
    assert entry["core-metadata"] == {"sha256": sha256(b"Metadata-Version: 2.1\nName: stat\nVersion: 1.0\n\n")}
    assert json.dumps(entry).count("127.0.0.1") == 0


def test_sdists_in_every_format_pip_and_uv_install_pass_through(
    mirror: Mirror, upstream: Upstream, tmp_path: Path
) -> None:
    """``.tar.bz2``, ``.zip``, ``.tar.xz`` sdists on an upstream page are listed and install;
    eggs and Windows installers (which neither pip nor uv uses) are left out. pip installs
    every archive format; uv 0.13 itself refuses sdists not named as PEP 625 says
    (``.tar.bz2``, ``.tar.xz``), so it is given the ``.zip``.

    Before: only ``.tar.gz`` and ``.zip`` (what ``packaging`` parses) passed, and an sdist's
    metadata passed through wherever the upstream advertised it.
    """
    project = f"arc{mirror.server.backend}"
    out = upstream.wheels / project
    bz2 = make_legacy_sdist(out, project, "1.0", install_requires=[], suffix=".tar.bz2")
    xz = make_legacy_sdist(out, project, "0.9", install_requires=[], suffix=".tar.xz")
    zipped = make_legacy_sdist(out, project, "0.8", install_requires=[], suffix=".zip")
    old = make_legacy_sdist(out, project, "0.7", install_requires=["nothing-of-the-sort"])
    for path in (bz2, xz, zipped):
        upstream.static.publish(path)
    # an old sdist the upstream advertises PEP 658 metadata for: not passed on (its PKG-INFO
    # lists no dependency, its setup.py does)
    upstream.static.publish(old, metadata=b"Metadata-Version: 2.1\nName: x\nVersion: 0.7\n\n")
    for junk in (f"{project}-0.6-py3.11.egg", f"{project}-0.6.win32.exe", f"{project}-0.6.msi"):
        (out / junk).write_bytes(b"not for pip\n")
        upstream.static.publish(out / junk)

    with httpx.Client(base_url=mirror.server.url, timeout=30) as http:
        page = http.get(f"/{mirror.static_ns}/simple/{project}/", headers={"Accept": JSON_V1})
        assert page.status_code == 200, page.text
        files = {f["filename"]: f for f in page.json()["files"]}
        assert sorted(files) == sorted(p.name for p in (bz2, xz, zipped, old))
        assert page.json()["versions"] == ["0.7", "0.8", "0.9", "1.0"]
        assert "core-metadata" not in files[old.name]
        metadata = http.get(f"/{mirror.static_ns}/dists/{old.name}.metadata")
        assert metadata.status_code == 404 and metadata.json()["error"] == "NotFound"
        for path in (bz2, xz, zipped):
            assert http.get(f"/{mirror.static_ns}/dists/{path.name}").content == path.read_bytes()

    static = f"{mirror.server.url}/{mirror.static_ns}/simple/"
    downloads = tmp_path / "downloads"
    cmd = [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps", "--index-url", static]
    run([*cmd, "-d", downloads, f"{project}==1.0"], pip_env())
    assert (downloads / bz2.name).read_bytes() == bz2.read_bytes()
    INSTALLERS["pip"](static, tmp_path / "pip", f"{project}==0.9")
    assert installed(tmp_path / "pip") == {project: "0.9"}
    INSTALLERS["uv"](static, tmp_path / "uv", f"{project}==0.8")
    assert installed(tmp_path / "uv") == {project: "0.8"}


def test_a_stored_upstream_file_is_served_by_the_hot_path(mirror: Mirror, upstream: Upstream) -> None:
    """Once stored, a mirrored file is answered in front of the routes, as an internal one is:
    with its blob gone from the store, the hot path still has the bytes in memory, where the
    routes would have fetched the file from the upstream again."""
    wheel = make_wheel(upstream.wheels / f"hot-{mirror.server.backend}", f"hot-{mirror.server.backend}", "1.0")
    upstream.static.publish(wheel)
    data = wheel.read_bytes()
    url = f"{mirror.server.url}/{mirror.static_ns}/dists/{wheel.name}"
    with httpx.Client(timeout=30) as http:
        page = http.get(
            f"{mirror.server.url}/{mirror.static_ns}/simple/{project_of(wheel)}/", headers={"Accept": PIP_ACCEPT}
        )
        assert page.status_code == 200, page.text
        assert [http.get(url).content for _ in range(2)] == [data, data]  # fetched and stored; then the hot path
        mirror.server.blobs.delete(sha256(data))
        again = http.get(url)
        head = http.head(url)
    assert (again.status_code, again.content) == (200, data)
    assert head.headers["content-length"] == str(len(data))
    assert upstream.static.gets(f"/files/{wheel.name}") == 1
