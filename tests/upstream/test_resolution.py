"""The resolution rule: a name any namespace in the chain has is never taken from upstream.

One tree per backend on the session server, its upstreams static PEP 503 directories:

- ``P`` holds the internal ``etl 0.1.0`` and sets upstream A, which offers ``etl 99.0`` (the
  dependency-confusion attack), ``extpkg 1.0`` (needing ``extdep``) and ``otherpkg``;
- ``P.team`` sets nothing: it inherits P's index and P's upstream;
- ``P.own`` sets upstream B (``extpkg 2.0``), ``P.none`` ``--no-upstream``, ``P.back`` sets B
  and then ``--inherit-upstream``; ``P.allow``/``P.deny`` set A with allow/deny globs;
  ``P.childdeny`` sets only a deny list under P's inherited upstream; ``P.lab`` does not
  inherit P's files (``--no-inherit``) but does inherit P's upstream.

Every setting goes through ``packyard ns set``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import JSON_V1, create_ns, output, upload
from tests.support.dists import make_wheel
from tests.upstream.conftest import INSTALLERS, StaticIndex, cli, error_of, in_parallel, installed, unique_ns


@dataclass(frozen=True)
class Upstreams:
    a: StaticIndex
    b: StaticIndex
    internal_etl: Path


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("resolution")
    a, b = StaticIndex(root / "a"), StaticIndex(root / "b")
    a.publish(make_wheel(root / "wheels-a", "etl", "99.0", module_body="HIJACKED = True\n"))
    a.publish(make_wheel(root / "wheels-a", "extpkg", "1.0", requires=["extdep>=1"]))
    a.publish(make_wheel(root / "wheels-a", "extdep", "1.0"))
    a.publish(make_wheel(root / "wheels-a", "otherpkg", "1.0"))
    b.publish(make_wheel(root / "wheels-b", "extpkg", "2.0"))
    internal = make_wheel(root / "internal", "etl", "0.1.0")
    in_parallel(a.start, b.start)
    try:
        yield Upstreams(a, b, internal)
    finally:
        a.stop()
        b.stop()


@dataclass(frozen=True)
class Tree:
    server: LiveServer
    parent: str

    def ns(self, child: str) -> str:
        return f"{self.parent}.{child}"

    def simple(self, child: str) -> str:
        return f"{self.server.url}/{self.ns(child)}/simple/"


@pytest.fixture(scope="module")
def tree(server: LiveServer, upstreams: Upstreams) -> Tree:
    parent = unique_ns()
    t = Tree(server, parent)
    children = ("team", "own", "none", "back", "allow", "deny", "childdeny", "lab")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        create_ns(http, server, parent, *(t.ns(c) for c in children))
        upload(http, server, parent, upstreams.internal_etl)
    a, b = upstreams.a.url, upstreams.b.url

    def back() -> None:
        cli(server, "ns", "set", t.ns("back"), "--upstream", b)
        cli(server, "ns", "set", t.ns("back"), "--inherit-upstream")

    in_parallel(
        lambda: cli(server, "ns", "set", parent, "--upstream", a),
        lambda: cli(server, "ns", "set", t.ns("own"), "--upstream", b),
        lambda: cli(server, "ns", "set", t.ns("none"), "--no-upstream"),
        back,
        lambda: cli(server, "ns", "set", t.ns("allow"), "--upstream", a, "--upstream-allow", "ext*"),
        lambda: cli(server, "ns", "set", t.ns("deny"), "--upstream", a, "--upstream-deny", "OtherPkg"),
        lambda: cli(server, "ns", "set", t.ns("childdeny"), "--upstream-deny", "otherpkg"),
        lambda: cli(server, "ns", "set", t.ns("lab"), "--no-inherit"),
    )
    return t


def page_files(http: httpx.Client, url: str) -> list[str]:
    response = http.get(url, headers={"Accept": JSON_V1})
    assert response.status_code == 200, response.text
    return [f["filename"] for f in response.json()["files"]]


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_internal_etl_wins_and_names_the_chain_lacks_fall_through(tree: Tree, installer: str, tmp_path: Path) -> None:
    """etl from P (not upstream's 99.0), extpkg and its dependency from upstream."""
    target = tmp_path / "target"
    INSTALLERS[installer](tree.simple("team"), target, "etl", "extpkg")
    assert installed(target) == {"etl": "0.1.0", "extpkg": "1.0", "extdep": "1.0"}
    assert "HIJACKED" not in (target / "etl" / "__init__.py").read_text()


def test_the_upstream_does_not_exist_for_an_internal_name(tree: Tree, upstreams: Upstreams) -> None:
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        for child in ("team", "own", "allow", "deny"):
            assert page_files(http, f"/{tree.ns(child)}/simple/etl/") == ["etl-0.1.0-py3-none-any.whl"]
            html = http.get(f"/{tree.ns(child)}/simple/etl/").text
            assert "99.0" not in html and "etl-0.1.0-py3-none-any.whl" in html
            hijack = http.get(f"/{tree.ns(child)}/dists/etl-99.0-py3-none-any.whl")
            assert hijack.status_code == 404, hijack.text
            assert http.get(f"/{tree.ns(child)}/dists/etl-99.0-py3-none-any.whl.metadata").status_code == 404
        assert http.get(f"/{tree.parent}/dists/etl-99.0-py3-none-any.whl").status_code == 404
    # not even asked: for an internal name the upstream does not exist
    assert upstreams.a.gets("/simple/etl/") == 0
    assert upstreams.a.gets("/files/etl-99.0-py3-none-any.whl") == 0


def test_the_namespace_root_lists_only_internal_names(tree: Tree) -> None:
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        response = http.get(f"/{tree.ns('team')}/simple/", headers={"Accept": JSON_V1})
    assert [p["name"] for p in response.json()["projects"]] == ["etl"]


def test_a_child_sets_its_own_upstream(tree: Tree, tmp_path: Path) -> None:
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        assert page_files(http, f"/{tree.ns('own')}/simple/extpkg/") == ["extpkg-2.0-py3-none-any.whl"]
    target = tmp_path / "target"
    INSTALLERS["uv"](tree.simple("own"), target, "extpkg")
    assert installed(target) == {"extpkg": "2.0"}


def test_no_upstream_turns_off_the_inherited_one(tree: Tree, tmp_path: Path) -> None:
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        missing = http.get(f"/{tree.ns('none')}/simple/extpkg/")
        assert missing.status_code == 404, missing.text
        assert "extpkg" in error_of(missing)
        assert http.get(f"/{tree.ns('none')}/dists/extpkg-1.0-py3-none-any.whl").status_code == 404
        assert page_files(http, f"/{tree.ns('none')}/simple/etl/") == ["etl-0.1.0-py3-none-any.whl"]
    failed = INSTALLERS["uv"](tree.simple("none"), tmp_path / "target", "extpkg", check=False)
    assert failed.returncode != 0
    assert "extpkg was not found in the package registry" in output(failed), output(failed)


def test_inherit_upstream_drops_the_own_setting(tree: Tree) -> None:
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        settings = http.get(f"/api/v1/namespaces/{tree.ns('back')}").json()["settings"]
        assert "upstream" not in settings, settings
        assert page_files(http, f"/{tree.ns('back')}/simple/extpkg/") == ["extpkg-1.0-py3-none-any.whl"]


def test_allow_list_admits_only_matching_names(tree: Tree, upstreams: Upstreams, tmp_path: Path) -> None:
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        assert page_files(http, f"/{tree.ns('allow')}/simple/extpkg/") == ["extpkg-1.0-py3-none-any.whl"]
        refused = http.get(f"/{tree.ns('allow')}/simple/otherpkg/")
        assert refused.status_code == 404, refused.text
        assert http.get(f"/{tree.ns('allow')}/dists/otherpkg-1.0-py3-none-any.whl").status_code == 404
    target = tmp_path / "target"
    INSTALLERS["uv"](tree.simple("allow"), target, "extpkg")  # extdep matches ext* too
    assert installed(target) == {"extpkg": "1.0", "extdep": "1.0"}
    assert upstreams.a.gets("/simple/otherpkg/") == 0


def test_deny_list_refuses_matching_names(tree: Tree, upstreams: Upstreams) -> None:
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        settings = http.get(f"/api/v1/namespaces/{tree.ns('deny')}").json()["settings"]
        assert settings["upstream_deny"] == ["otherpkg"]  # stored normalized
        refused = http.get(f"/{tree.ns('deny')}/simple/otherpkg/")
        assert refused.status_code == 404, refused.text
        assert http.get(f"/{tree.ns('deny')}/dists/otherpkg-1.0-py3-none-any.whl").status_code == 404
        assert page_files(http, f"/{tree.ns('deny')}/simple/extpkg/") == ["extpkg-1.0-py3-none-any.whl"]
    assert upstreams.a.gets("/simple/otherpkg/") == 0


def test_a_deny_list_applies_under_an_inherited_upstream(tree: Tree, upstreams: Upstreams) -> None:
    """``ns set P.x --upstream-deny NAME`` without ``--upstream``: P's upstream, minus NAME."""
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        assert page_files(http, f"/{tree.ns('childdeny')}/simple/extpkg/") == ["extpkg-1.0-py3-none-any.whl"]
        refused = http.get(f"/{tree.ns('childdeny')}/simple/otherpkg/")
        assert refused.status_code == 404, refused.text
    assert upstreams.a.gets("/simple/otherpkg/") == 0


def test_a_namespace_that_does_not_inherit_files_still_never_gets_an_ancestors_name_from_upstream(
    tree: Tree, upstreams: Upstreams
) -> None:
    """``--no-inherit`` hides P's etl from P.lab's index; it must not let upstream's etl in instead."""
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        page = http.get(f"/{tree.ns('lab')}/simple/etl/")
        assert page.status_code == 404, page.text
        assert http.get(f"/{tree.ns('lab')}/dists/etl-99.0-py3-none-any.whl").status_code == 404
        assert page_files(http, f"/{tree.ns('lab')}/simple/extpkg/") == ["extpkg-1.0-py3-none-any.whl"]
    assert upstreams.a.gets("/simple/etl/") == 0


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "file:///etc/passwd",
        "https://alice:secret@pypi.example.org/simple/",
        "https://__token__@pypi.example.org/simple/",
        "not a url",
    ],
)
def test_bad_upstream_urls_are_refused(tree: Tree, url: str) -> None:
    ns = tree.ns("team")
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        response = http.patch(f"/api/v1/namespaces/{ns}/settings", json={"upstream": url}, headers=tree.server.admin)
        assert response.status_code == 400, response.text
        message = error_of(response)
        assert "upstream" in message
        assert "secret" not in message
        assert "upstream" not in http.get(f"/api/v1/namespaces/{ns}").json()["settings"]


def test_the_cli_refuses_bad_upstream_urls(tree: Tree) -> None:
    ftp, creds = in_parallel(
        lambda: cli(tree.server, "ns", "set", tree.ns("team"), "--upstream", "ftp://x", check=False),
        lambda: cli(
            tree.server,
            "ns",
            "set",
            tree.ns("team"),
            "--upstream",
            "https://bob:hunter2@x.example/simple/",
            check=False,
        ),
    )
    assert ftp.returncode == 2, output(ftp)
    assert "http(s)" in output(ftp)
    assert creds.returncode == 2, output(creds)
    assert "upstream_auth_env" in output(creds)
    assert "hunter2" not in output(creds)
    with httpx.Client(base_url=tree.server.url, timeout=30) as http:
        settings = http.get(f"/api/v1/namespaces/{tree.ns('team')}").json()["settings"]
    assert "upstream" not in settings, json.dumps(settings)
