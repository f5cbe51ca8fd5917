"""An upstream that needs credentials: a packyard with ``PACKYARD_ANONYMOUS_READ=false``.

The private downstreams run with ``CORP_INDEX_CREDENTIALS=__token__:<read token>`` in their
environment; a namespace names that variable with ``--upstream-auth-env``. The secret itself
is never in a setting, a page or an error.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import JSON_V1, create_ns, create_token, output, upload
from tests.support.dists import make_sdist, make_wheel
from tests.upstream.conftest import (
    AUTH_ENV,
    INSTALLERS,
    Evil,
    UpstreamPackyards,
    cached_pages,
    cli,
    error_of,
    in_parallel,
    installed,
    unique_ns,
)


@pytest.fixture(scope="module")
def corp(upstream_packyards: UpstreamPackyards, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The closed upstream's ``corp`` namespace URL, holding ``secretpkg`` (needing ``secretdep``)."""
    root = tmp_path_factory.mktemp("auth")
    closed = upstream_packyards.closed
    with httpx.Client(base_url=closed.url, timeout=30) as http:
        upload(
            http,
            closed,
            "corp",
            make_wheel(root, "secretpkg", "1.0", requires=["secretdep"]),
            make_wheel(root, "secretdep", "1.0"),
            make_sdist(root, "secretdep", "1.0"),
        )
        assert http.get("/corp/simple/secretpkg/").status_code == 401  # it really is closed
    yield f"{closed.url}/corp/simple/"


@dataclass(frozen=True)
class Namespaces:
    server: LiveServer
    ok: str
    """--upstream-auth-env CORP_INDEX_CREDENTIALS (set on the server)."""
    unset: str
    """--upstream-auth-env NAMES_A_MISSING_VARIABLE."""
    bare: str
    """No --upstream-auth-env at all."""


@pytest.fixture(scope="module")
def spaces(private: LiveServer, corp: str) -> Namespaces:
    ok, unset, bare = unique_ns("ok"), unique_ns("unset"), unique_ns("bare")
    with httpx.Client(base_url=private.url, timeout=30) as http:
        create_ns(http, private, ok, unset, bare)
    in_parallel(
        lambda: cli(private, "ns", "set", ok, "--upstream", corp, "--upstream-auth-env", AUTH_ENV),
        lambda: cli(private, "ns", "set", unset, "--upstream", corp, "--upstream-auth-env", "NAMES_A_MISSING_VARIABLE"),
        lambda: cli(private, "ns", "set", bare, "--upstream", corp),
    )
    return Namespaces(private, ok, unset, bare)


def test_installs_through_an_upstream_that_needs_a_token(
    spaces: Namespaces, upstream_packyards: UpstreamPackyards, tmp_path: Path
) -> None:
    server = spaces.server
    simple = f"{server.url}/{spaces.ok}/simple/"
    for installer in ("pip", "uv"):
        target = tmp_path / installer
        INSTALLERS[installer](simple, target, "secretpkg")
        assert installed(target) == {"secretpkg": "1.0", "secretdep": "1.0"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get(f"/{spaces.ok}/simple/secretdep/", headers={"Accept": JSON_V1})
        metadata = http.get(f"/{spaces.ok}/dists/secretpkg-1.0-py3-none-any.whl.metadata")
        settings = http.get(f"/api/v1/namespaces/{spaces.ok}").json()["settings"]
    assert sorted(f["filename"] for f in page.json()["files"]) == [
        "secretdep-1.0-py3-none-any.whl",
        "secretdep-1.0.tar.gz",
    ]
    assert metadata.status_code == 200 and b"Requires-Dist: secretdep" in metadata.content
    assert settings["upstream_auth_env"] == AUTH_ENV
    assert upstream_packyards.read_token not in str(settings) + page.text


@pytest.mark.parametrize("which", ["unset", "bare"])
def test_without_the_credentials_installs_fail_clearly(
    spaces: Namespaces, upstream_packyards: UpstreamPackyards, which: str, tmp_path: Path
) -> None:
    server, ns = spaces.server, getattr(spaces, which)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get(f"/{ns}/simple/secretpkg/")
    assert response.status_code == 502, response.text
    message = error_of(response)
    assert "401" in message and "credentials" in message, message
    if which == "unset":
        assert "NAMES_A_MISSING_VARIABLE" in message, message
    else:
        assert "upstream_auth_env" in message, message
    assert upstream_packyards.read_token not in message
    failed = INSTALLERS["uv"](f"{server.url}/{ns}/simple/", tmp_path / "t", "secretpkg", check=False)
    assert failed.returncode != 0 and "502" in output(failed), output(failed)
    # nothing cached for it: any cached page was fetched with the credentials (the ok namespace's)
    assert all(AUTH_ENV in upstream for upstream, _ in cached_pages(server, "secretpkg"))


def test_what_was_fetched_with_credentials_is_not_served_without_them(spaces: Namespaces) -> None:
    """A namespace without the credentials gets no page or file another one mirrored with them."""
    server, filename = spaces.server, "secretpkg-1.0-py3-none-any.whl"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(f"/{spaces.ok}/simple/secretpkg/").status_code == 200
        assert http.get(f"/{spaces.ok}/dists/{filename}").status_code == 200
        for ns in (spaces.bare, spaces.unset):
            page = http.get(f"/{ns}/simple/secretpkg/")
            assert page.status_code == 502, (page.status_code, page.headers, page.text)
            assert "x-packyard-upstream" not in page.headers
            assert http.get(f"/{ns}/dists/{filename}").status_code in (404, 502)


def test_a_namespace_admin_cannot_send_the_servers_own_secrets_upstream(private: LiveServer) -> None:
    """A token with the admin role on one namespace only must not get the server-wide admin token."""
    evil = Evil()
    evil.routes["/simple/anything/"] = (200, {"Content-Type": "text/html"}, b"<html><body></body></html>")
    ns = unique_ns("team")
    try:
        with httpx.Client(base_url=private.url, timeout=30) as http:
            create_ns(http, private, ns)
            _, team_admin = create_token(http, private, ns, "admin", "upstream")
            changed = http.patch(
                f"/api/v1/namespaces/{ns}/settings",
                json={"upstream": evil.url, "upstream_auth_env": "PACKYARD_ADMIN_TOKEN"},
                headers={"Authorization": f"Bearer {team_admin}"},
            )
            assert changed.status_code == 403, changed.text
            assert "PACKYARD_CREDENTIAL_ENVS" in changed.json()["detail"]
            http.get(f"/{ns}/simple/anything/")
        sent = [base64.b64decode(a.split(" ", 1)[1]).decode() for a in evil.authorizations if a]
        assert not any(private.admin_token in credentials for credentials in sent), sent
    finally:
        evil.stop()


def test_ns_show_withholds_settings_of_an_ancestor_the_caller_cannot_read(
    upstream_packyards: UpstreamPackyards,
) -> None:
    """Anonymous reads off: a token scoped to ``top.team`` learns that an upstream and a deny
    list apply to its index and that ``top`` sets them — not the internal URL or the names."""
    closed = upstream_packyards.closed
    top = unique_ns()
    url = "http://127.0.0.1:9/internal-index/simple/"
    with httpx.Client(base_url=closed.url, timeout=30) as http:
        create_ns(http, closed, f"{top}.team")
        settings = {"upstream": url, "upstream_deny": ["secret-*"]}
        assert http.patch(f"/api/v1/namespaces/{top}/settings", json=settings, headers=closed.admin).status_code == 200
        _, team = create_token(http, closed, f"{top}.team", "read", "team")
        seen = http.get(f"/api/v1/namespaces/{top}.team", headers={"Authorization": f"Bearer {team}"})
        admin = http.get(f"/api/v1/namespaces/{top}.team", headers=closed.admin)
    assert seen.status_code == 200, seen.text
    effective = seen.json()["effective"]
    assert effective["upstream"] == {"value": None, "from": top, "withheld": True}
    assert effective["upstream_deny"] == [{"patterns": [], "from": top, "withheld": True}]
    assert "internal-index" not in seen.text and "secret-" not in seen.text
    assert admin.json()["effective"]["upstream"] == {"value": url, "from": top}
    assert admin.json()["effective"]["upstream_deny"] == [{"patterns": ["secret-*"], "from": top}]
