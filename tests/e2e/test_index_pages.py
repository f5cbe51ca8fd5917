"""The simple index as served: PEP 503 HTML and PEP 691 JSON, dists, and inheritance.

One namespace tree per backend, uploaded once for the module:

- ``a``: ``shared`` 1.0, ``clash`` 1.0 (bytes A), ``My_Pkg`` 0.9 (yanked, a reason with
  HTML specials) and 1.0 (wheel and sdist, ``Requires-Python: >=3.8``);
- ``a.b``: ``shared`` 1.1;
- ``a.b.c``: ``shared`` 1.2, ``clash`` 1.0 again with other bytes (B), ``childonly`` 1.0.

Every page is read twice where it matters: the first read goes through the FastAPI routes
(and fills the cache), the second is answered by the hot path; both must say the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.conftest import LiveServer
from tests.e2e.conftest import links
from tests.support.clients import JSON_V1, PACKYARD, PIP_ACCEPT, UV_ACCEPT, create_token, run, sha256, unique_ns, upload
from tests.support.dists import make_sdist, make_wheel

YANK_REASON = 'use 1.0: <"0.9"> & co'
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Tree:
    a: str
    b: str
    c: str
    files: dict[str, Path]
    """Key: ``namespace:filename`` as uploaded."""

    def data(self, ns: str, filename: str) -> bytes:
        return self.files[f"{ns}:{filename}"].read_bytes()


@pytest.fixture(scope="module")
def tree(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    root = tmp_path_factory.mktemp("index-pages")
    a = unique_ns()
    b, c = f"{a}.b", f"{a}.b.c"
    plan = {
        a: [
            make_wheel(root / "a", "shared", "1.0"),
            make_wheel(root / "a", "clash", "1.0", module_body="WHERE = 'parent'\n"),
            make_wheel(root / "a", "My_Pkg", "0.9", requires_python=">=3.8"),
            make_wheel(root / "a", "My_Pkg", "1.0", requires_python=">=3.8"),
            make_sdist(root / "a", "My_Pkg", "1.0", requires_python=">=3.8"),
        ],
        b: [make_wheel(root / "b", "shared", "1.1")],
        c: [
            make_wheel(root / "c", "shared", "1.2"),
            make_wheel(root / "c", "clash", "1.0", module_body="WHERE = 'child'\n"),
            make_wheel(root / "c", "childonly", "1.0"),
        ],
    }
    for ns, paths in plan.items():
        upload(module_http, server, ns, *paths)
    yanked = module_http.post(
        f"/api/v1/namespaces/{a}/dists/my-pkg/0.9/yank", json={"reason": YANK_REASON}, headers=server.admin
    )
    assert yanked.status_code == 200, yanked.text
    files = {f"{ns}:{p.name}": p for ns, paths in plan.items() for p in paths}
    return Tree(a, b, c, files)


def get_twice(http: httpx.Client, url: str, **headers: str) -> httpx.Response:
    """GET twice (routes, then the hot path once cached); both answers must be the same."""
    first = http.get(url, headers=headers)
    second = http.get(url, headers=headers)
    assert (second.status_code, second.content) == (first.status_code, first.content), url
    for name in ("content-type", "etag", "vary", "location"):
        assert second.headers.get(name) == first.headers.get(name), (url, name)
    return second


def html_links(http: httpx.Client, url: str) -> dict:
    page = get_twice(http, url)
    assert page.status_code == 200, (url, page.status_code, page.text)
    assert page.headers["content-type"] == TEXT_HTML
    return links(page.text)


def json_page(http: httpx.Client, url: str) -> dict:
    page = get_twice(http, url, accept=JSON_V1)
    assert page.status_code == 200, (url, page.status_code, page.text)
    assert page.headers["content-type"] == JSON_V1
    return page.json()


def filenames(http: httpx.Client, ns: str, project: str) -> list[str]:
    return sorted(f["filename"] for f in json_page(http, f"/{ns}/simple/{project}/")["files"])


# -- content negotiation -----------------------------------------------------------------------

NEGOTIATION = {
    "no Accept": (None, 200, TEXT_HTML),
    "pip": (PIP_ACCEPT, 200, JSON_V1),
    "uv": (UV_ACCEPT, 200, JSON_V1),
    "browser": ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200, TEXT_HTML),
    "text/html": ("text/html", 200, TEXT_HTML),
    "v1 html": (HTML_V1, 200, HTML_V1),
    "latest json": ("application/vnd.pypi.simple.latest+json", 200, JSON_V1),
    "json q lower than html": (f"{JSON_V1};q=0.2, {HTML_V1}", 200, HTML_V1),
    "html before json, json lower": (f"text/html, {JSON_V1}; q=0.5", 200, TEXT_HTML),
    "wildcard": ("*/*", 200, TEXT_HTML),
    "application/json only": ("application/json", 406, None),
    "json refused with q=0": (f"{JSON_V1};q=0", 406, None),
    "text/plain": ("text/plain", 406, None),
}


@pytest.mark.parametrize("case", list(NEGOTIATION))
@pytest.mark.parametrize("page", ["root", "project"])
def test_accept_negotiation(case: str, page: str, tree: Tree, http: httpx.Client) -> None:
    accept, status, content_type = NEGOTIATION[case]
    url = f"/{tree.c}/simple/" if page == "root" else f"/{tree.c}/simple/shared/"
    headers = {"accept": accept} if accept is not None else {}
    response = get_twice(http, url, **headers)
    assert response.status_code == status, response.text
    if status == 406:
        assert "application/vnd.pypi.simple.v1+json" in response.json()["detail"]
        return
    assert response.headers["content-type"] == content_type
    assert response.headers["vary"] == "Accept"
    assert response.headers["etag"]
    if content_type == JSON_V1:
        assert response.json()["meta"]["api-version"] == "1.1"
    else:
        assert '<meta name="pypi:repository-version" content="1.1">' in response.text
    head = http.head(url, headers=headers)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == response.headers["etag"]
    assert head.headers["content-type"] == content_type


# -- page contents -----------------------------------------------------------------------------


def test_html_project_page_carries_hashes_requires_python_metadata_and_yank(tree: Tree, http: httpx.Client) -> None:
    page_url = f"{http.base_url}/{tree.a}/simple/my-pkg/"
    found = html_links(http, page_url)
    expected = ["my_pkg-0.9-py3-none-any.whl", "my_pkg-1.0-py3-none-any.whl", "my_pkg-1.0.tar.gz"]
    assert sorted(found) == expected
    for filename, link in found.items():
        href, _, digest = link.attrs["href"].partition("#sha256=")
        assert href == f"../../dists/{filename}"
        url = urljoin(page_url, href)
        assert url == f"{http.base_url}/{tree.a}/dists/{filename}"
        body = http.get(url).content
        assert body == tree.data(tree.a, filename)
        assert digest == sha256(body)

        assert link.attrs["data-requires-python"] == ">=3.8"
        assert 'data-requires-python="&gt;=3.8"' in link.raw

        metadata = http.get(url + ".metadata")
        if filename.endswith(".tar.gz"):
            # PKG-INFO 2.1 does not bind the sdist's build (PEP 643): no PEP 658 metadata
            assert metadata.status_code == 404
            assert "data-core-metadata" not in link.attrs and "data-dist-info-metadata" not in link.attrs
        else:
            assert metadata.status_code == 200
            assert link.attrs["data-core-metadata"] == f"sha256={sha256(metadata.content)}"
            assert link.attrs["data-dist-info-metadata"] == link.attrs["data-core-metadata"]
            version = "0.9" if "0.9" in filename else "1.0"
            assert f"Name: My_Pkg\nVersion: {version}\n".encode() in metadata.content

        if "0.9" in filename:
            assert link.attrs["data-yanked"] == YANK_REASON
            assert 'data-yanked="use 1.0: &lt;&quot;0.9&quot;&gt; &amp; co"' in link.raw
        else:
            assert "data-yanked" not in link.attrs


def test_json_project_page_pep_691_700(tree: Tree, http: httpx.Client) -> None:
    page_url = f"{http.base_url}/{tree.a}/simple/my-pkg/"
    page = json_page(http, page_url)
    assert tuple(int(x) for x in page["meta"]["api-version"].split(".")) >= (1, 1)
    assert page["versions"] == ["0.9", "1.0"]
    by_name = {f["filename"]: f for f in page["files"]}
    assert sorted(by_name) == ["my_pkg-0.9-py3-none-any.whl", "my_pkg-1.0-py3-none-any.whl", "my_pkg-1.0.tar.gz"]
    for filename, entry in by_name.items():
        data = tree.data(tree.a, filename)
        body = http.get(urljoin(page_url, entry["url"]))
        assert body.content == data
        assert entry["hashes"] == {"sha256": sha256(data)}
        assert entry["size"] == len(data)
        assert datetime.fromisoformat(entry["upload-time"].replace("Z", "+00:00")).tzinfo is not None
        assert entry["upload-time"].endswith("Z")
        assert entry["requires-python"] == ">=3.8"
        metadata = http.get(urljoin(page_url, entry["url"]) + ".metadata")
        if filename.endswith(".tar.gz"):  # PKG-INFO 2.1: not advertised (PEP 643, 658)
            assert metadata.status_code == 404
            assert "core-metadata" not in entry and "dist-info-metadata" not in entry
        else:
            assert entry["core-metadata"] == {"sha256": sha256(metadata.content)}
            assert entry["dist-info-metadata"] == entry["core-metadata"]
        assert entry["yanked"] == (YANK_REASON if "0.9" in filename else False)


def test_json_project_page_name_is_the_normalized_name(tree: Tree, http: httpx.Client) -> None:
    """PEP 691: a project detail's ``name`` is the normalized name (``My_Pkg`` -> ``my-pkg``)."""
    assert json_page(http, f"/{tree.a}/simple/my-pkg/")["name"] == "my-pkg"
    assert json_page(http, f"/{tree.c}/simple/my-pkg/")["name"] == "my-pkg"


def test_root_pages_list_the_chains_projects(tree: Tree, http: httpx.Client) -> None:
    root = html_links(http, f"/{tree.c}/simple/")
    assert {"shared", "clash", "My_Pkg", "childonly"} <= set(root)
    assert root["My_Pkg"].attrs["href"] == "my-pkg/"
    assert root["shared"].attrs["href"] == "shared/"
    body = json_page(http, f"/{tree.c}/simple/")
    assert body["meta"]["api-version"] == "1.1"
    assert {"shared", "clash", "My_Pkg", "childonly"} <= {p["name"] for p in body["projects"]}
    # ancestors do not see their descendants' projects
    for ns in (tree.a, tree.b):
        assert {"shared", "clash", "My_Pkg"} <= set(html_links(http, f"/{ns}/simple/"))
        assert "childonly" not in html_links(http, f"/{ns}/simple/")
        assert "childonly" not in {p["name"] for p in json_page(http, f"/{ns}/simple/")["projects"]}
        assert get_twice(http, f"/{ns}/simple/childonly/").status_code == 404
    assert filenames(http, tree.a, "shared") == ["shared-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("spelling", ["My_Pkg", "my_pkg", "MY-PKG", "My.Pkg", "my--pkg"])
def test_non_normalized_project_url_redirects(spelling: str, tree: Tree, http: httpx.Client) -> None:
    for accept in (None, PIP_ACCEPT):
        headers = {"accept": accept} if accept else {}
        response = get_twice(http, f"/{tree.c}/simple/{spelling}/", **headers)
        assert response.status_code == 301
        assert response.headers["location"] == "../my-pkg/"
        followed = http.get(f"/{tree.c}/simple/{spelling}/", headers=headers, follow_redirects=True)
        assert followed.status_code == 200
        assert str(followed.url).endswith(f"/{tree.c}/simple/my-pkg/")


def test_urls_without_a_trailing_slash_redirect_to_it(tree: Tree, http: httpx.Client) -> None:
    """PEP 503: page URLs end with a slash, and the repository redirects those without."""
    for path in (f"/{tree.c}/simple", f"/{tree.c}/simple/shared"):
        response = http.get(path)
        assert response.status_code in (301, 302, 307, 308)
        assert response.headers["location"].endswith(f"{path}/")
        assert http.get(path, follow_redirects=True).status_code == 200


def test_unknown_project_namespace_and_file_are_404(tree: Tree, http: httpx.Client) -> None:
    for url in (
        f"/{tree.c}/simple/nope/",
        f"/{tree.c}/simple/No_Pe/",  # redirected, then not found
        f"/{unique_ns()}/simple/",
        f"/{unique_ns()}/simple/shared/",
        f"/{tree.c}/dists/nope-1.0-py3-none-any.whl",
        f"/{tree.c}/dists/nope-1.0-py3-none-any.whl.metadata",
        f"/{unique_ns()}/dists/shared-1.0-py3-none-any.whl",
    ):
        response = http.get(url, follow_redirects=True)
        assert response.status_code == 404, (url, response.status_code)
        assert response.json()["detail"], url
        assert get_twice(http, url).status_code in (301, 404)


def test_etag_and_304_on_pages_and_invalidation(
    tree: Tree, server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    url = f"/{tree.c}/simple/fresh/"
    upload(http, server, tree.a, make_wheel(tmp_path, "fresh", "1.0"))
    html = get_twice(http, url)
    as_json = get_twice(http, url, accept=PIP_ACCEPT)
    assert html.headers["etag"] != as_json.headers["etag"]

    def not_modified(response: httpx.Response, accept: str) -> None:
        again = http.get(url, headers={"accept": accept, "if-none-match": response.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == response.headers["etag"]
        assert again.headers["vary"] == "Accept"

    for response, accept in ((html, "text/html"), (as_json, PIP_ACCEPT)):
        not_modified(response, accept)  # cached: answered by the hot path
    root = get_twice(http, f"/{tree.c}/simple/")
    assert http.get(f"/{tree.c}/simple/", headers={"if-none-match": root.headers["etag"]}).status_code == 304

    # an unrelated upload in the chain drops the cached page: the route re-renders the same
    # bytes, so the ETag holds and the answer is still 304
    upload(http, server, tree.b, make_wheel(tmp_path, "unrelated", "1.0"))
    not_modified(html, "text/html")
    upload(http, server, tree.a, make_wheel(tmp_path, "unrelated", "1.1"))
    not_modified(as_json, PIP_ACCEPT)

    # a new file in a middle namespace changes the grandchild's page at once
    upload(http, server, tree.b, make_wheel(tmp_path, "fresh", "1.1"))
    changed = http.get(url, headers={"if-none-match": html.headers["etag"]})
    assert changed.status_code == 200
    assert changed.headers["etag"] != html.headers["etag"]
    assert sorted(links(changed.text)) == ["fresh-1.0-py3-none-any.whl", "fresh-1.1-py3-none-any.whl"]
    assert json_page(http, url)["versions"] == ["1.0", "1.1"]

    # and so does a yank in the top namespace
    yank = http.post(f"/api/v1/namespaces/{tree.a}/dists/fresh/1.0/yank", json={"reason": "r"}, headers=server.admin)
    assert yank.status_code == 200
    after = http.get(url, headers={"if-none-match": changed.headers["etag"]})
    assert after.status_code == 200
    assert links(after.text)["fresh-1.0-py3-none-any.whl"].attrs["data-yanked"] == "r"
    assert "data-yanked" not in links(after.text)["fresh-1.1-py3-none-any.whl"].attrs


# -- dists -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("my_pkg-1.0-py3-none-any.whl", "application/zip"), ("my_pkg-1.0.tar.gz", "application/gzip")],
)
def test_dist_download_head_range_etag(filename: str, content_type: str, tree: Tree, http: httpx.Client) -> None:
    data = tree.data(tree.a, filename)
    for ns in (tree.a, tree.c):  # its own namespace, and inherited by the grandchild
        url = f"/{ns}/dists/{filename}"
        for _ in range(2):  # routes, then the hot path
            got = http.get(url)
            assert got.status_code == 200
            assert got.content == data
            assert got.headers["content-type"] == content_type
            assert got.headers["content-length"] == str(len(data))
            assert got.headers["etag"] == f'"{sha256(data)}"'
            assert got.headers["accept-ranges"] == "bytes"

            assert http.get(url, headers={"if-none-match": got.headers["etag"]}).status_code == 304

            head = http.head(url)
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["content-length"] == str(len(data))
            assert head.headers["etag"] == got.headers["etag"]
            assert head.headers["content-type"] == content_type

            part = http.get(url, headers={"range": "bytes=10-29"})
            assert part.status_code == 206
            assert part.content == data[10:30]
            assert part.headers["content-range"] == f"bytes 10-29/{len(data)}"
            assert part.headers["content-length"] == "20"
            tail = http.get(url, headers={"range": "bytes=-7"})
            assert (tail.status_code, tail.content) == (206, data[-7:])
            assert tail.headers["content-range"] == f"bytes {len(data) - 7}-{len(data) - 1}/{len(data)}"


def test_core_metadata_file_is_served(tree: Tree, http: httpx.Client) -> None:
    """A wheel's METADATA is served; an sdist's PKG-INFO 2.1 is not (it does not bind the build)."""
    sdist = http.get(f"/{tree.c}/dists/my_pkg-1.0.tar.gz.metadata")
    assert sdist.status_code == 404 and sdist.json()["error"] == "NotFound"
    assert "PKG-INFO may not match" in sdist.json()["detail"]
    for filename in ("my_pkg-1.0-py3-none-any.whl",):
        got = http.get(f"/{tree.c}/dists/{filename}.metadata")
        assert got.status_code == 200
        assert got.headers["content-type"].startswith("text/plain")
        assert got.content.startswith(b"Metadata-Version: 2.1\nName: My_Pkg\nVersion: 1.0\n")
        assert b"Requires-Python: >=3.8" in got.content
        assert got.headers["etag"] == f'"{sha256(got.content)}"'
        assert http.head(f"/{tree.c}/dists/{filename}.metadata").headers["content-length"] == str(len(got.content))


# -- inheritance -------------------------------------------------------------------------------


def test_a_namespace_lists_its_own_and_its_ancestors_files(tree: Tree, http: httpx.Client) -> None:
    assert filenames(http, tree.c, "shared") == [f"shared-{v}-py3-none-any.whl" for v in ("1.0", "1.1", "1.2")]
    assert filenames(http, tree.b, "shared") == [f"shared-{v}-py3-none-any.whl" for v in ("1.0", "1.1")]
    assert filenames(http, tree.a, "shared") == ["shared-1.0-py3-none-any.whl"]
    assert json_page(http, f"/{tree.c}/simple/shared/")["versions"] == ["1.0", "1.1", "1.2"]
    assert sorted(html_links(http, f"/{tree.c}/simple/shared/")) == filenames(http, tree.c, "shared")
    # a file of the grandparent, downloaded through the grandchild
    assert http.get(f"/{tree.c}/dists/shared-1.0-py3-none-any.whl").content == tree.data(
        tree.a, "shared-1.0-py3-none-any.whl"
    )
    assert http.get(f"/{tree.a}/dists/shared-1.2-py3-none-any.whl").status_code == 404


def test_the_nearest_namespace_wins_a_clashing_filename(tree: Tree, http: httpx.Client) -> None:
    name = "clash-1.0-py3-none-any.whl"
    parent, child = tree.data(tree.a, name), tree.data(tree.c, name)
    assert parent != child
    for ns, expected in ((tree.c, child), (tree.b, parent), (tree.a, parent)):
        found = html_links(http, f"/{ns}/simple/clash/")
        assert list(found) == [name], ns
        assert found[name].attrs["href"].endswith(f"#sha256={sha256(expected)}"), ns
        entry = json_page(http, f"/{ns}/simple/clash/")["files"]
        assert [(f["filename"], f["hashes"]["sha256"], f["size"]) for f in entry] == [
            (name, sha256(expected), len(expected))
        ]
        download = get_twice(http, f"/{ns}/dists/{name}")
        assert download.content == expected, ns
        assert download.headers["etag"] == f'"{sha256(expected)}"'


def test_inheritance_can_be_turned_off_and_on(tree: Tree, server: LiveServer, http: httpx.Client) -> None:
    own = ["shared-1.2-py3-none-any.whl"]
    everything = [f"shared-{v}-py3-none-any.whl" for v in ("1.0", "1.1", "1.2")]
    assert filenames(http, tree.c, "shared") == everything

    # the CLI turns it off on the grandchild: only its own files are listed and served
    env = server.client_env(server.admin_token)
    run([*PACKYARD, "ns", "set", tree.c, "--no-inherit"], env)
    assert http.get(f"/api/v1/namespaces/{tree.c}").json()["settings"] == {"inherit": False}
    assert filenames(http, tree.c, "shared") == own
    assert sorted(html_links(http, f"/{tree.c}/simple/shared/")) == own
    assert json_page(http, f"/{tree.c}/simple/shared/")["versions"] == ["1.2"]
    assert get_twice(http, f"/{tree.c}/simple/my-pkg/").status_code == 404
    assert get_twice(http, f"/{tree.c}/dists/shared-1.0-py3-none-any.whl").status_code == 404
    assert set(html_links(http, f"/{tree.c}/simple/")) == {"shared", "clash", "childonly"}
    assert filenames(http, tree.b, "shared") == everything[:2]  # the others are unchanged

    # PATCH turns it back on: the parent's files come back
    _, writer = create_token(http, server, tree.c, "write")
    refused = http.patch(
        f"/api/v1/namespaces/{tree.c}/settings", json={"inherit": True}, headers={"authorization": f"Bearer {writer}"}
    )
    assert refused.status_code == 403
    on = http.patch(f"/api/v1/namespaces/{tree.c}/settings", json={"inherit": True}, headers=server.admin)
    assert on.status_code == 200 and on.json()["settings"] == {"inherit": True}
    assert filenames(http, tree.c, "shared") == everything
    assert get_twice(http, f"/{tree.c}/simple/my-pkg/").status_code == 200

    # off on the middle namespace (through the API): the grandchild's chain stops there
    settings = f"/api/v1/namespaces/{tree.b}/settings"
    assert http.patch(settings, json={"inherit": False}, headers=server.admin).status_code == 200
    assert filenames(http, tree.c, "shared") == everything[1:]
    assert filenames(http, tree.b, "shared") == everything[1:2]
    assert http.patch(settings, json={"inherit": True}, headers=server.admin).status_code == 200
    assert filenames(http, tree.c, "shared") == everything
    assert http.get(f"/api/v1/namespaces/{tree.b}").json()["settings"] == {"inherit": True}
