"""Indirect paths between tenants through git remotes and server credentials (issue 12, review).

One server of this module's own, set up as an operator of two tenants ``ta`` and ``tc``
would: the git token ``A_TOKEN`` and the secrets file ``ta/a_secret`` are meant for ``ta``
(``PACKYARD_CREDENTIAL_ENVS=A_TOKEN:ta,...``), one loopback git server is allowed
(``PACKYARD_SYNC_ALLOW_HOSTS=127.0.0.1:PORT``) and one loopback upstream. A writer of ``tc``
then tries, through syncs, pushes, registered syncs and upstream settings:

- to make the server connect to internal hosts (other loopback ports, ``::1``, IPv4-mapped,
  link-local, private, an scp-like address) — refused before any connection, with the same
  403 and no word of how a connection went; also through a redirect of an allowed host;
- to register a ``file://`` sync outside ``PACKYARD_SYNC_LOCAL_ROOTS`` (refused when asked,
  not only when it runs);
- to name ``ta``'s credentials: its token for a sync of ``ta``'s private repository, its
  secrets file, its webhook secret, and its token as the ``upstream_auth_env`` of an upstream
  ``tc`` points at a host of its own — none reaches ``tc``, while ``ta`` and its child ``ta.x``
  use them as meant.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import create_ns, create_token
from tests.support.procs import free_port, running
from tests.sync.conftest import HTTP_TOKEN, GitHttp, GitRepo
from tests.upstream.conftest import Evil

TA, TC = f"ta{uuid.uuid4().hex[:8]}", f"tc{uuid.uuid4().hex[:8]}"
TAX = f"{TA}.x"


@pytest.fixture(scope="module")
def redirector() -> Iterator[Evil]:
    """An allowed git host that redirects to :func:`inside`."""
    evil = Evil()
    yield evil
    evil.stop()


@pytest.fixture(scope="module")
def inside() -> Iterator[Evil]:
    """A service on a loopback port the operator did not allow: it must never see a request."""
    evil = Evil()
    yield evil
    evil.stop()


@pytest.fixture(scope="module")
def outside() -> Iterator[Evil]:
    """An upstream host the tenant ``tc`` controls (allowed as an upstream by the operator)."""
    evil = Evil()
    yield evil
    evil.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def tenants(
    tmp_path_factory: pytest.TempPathFactory, git_http: GitHttp, redirector: Evil, outside: Evil
) -> Iterator[tuple[LiveServer, httpx.Client, dict[str, dict[str, str]]]]:
    root = tmp_path_factory.mktemp("tenancy-paths")
    secrets = root / "secrets"
    (secrets / TA).mkdir(parents=True)
    (secrets / TA / "a_secret").write_text(HTTP_TOKEN)
    env = {
        "A_TOKEN": HTTP_TOKEN,
        "WEBHOOK_A": "hook-" + uuid.uuid4().hex,
        "PACKYARD_CREDENTIAL_ENVS": f"A_TOKEN:{TA},WEBHOOK_A:{TA}",
        "PACKYARD_SECRETS_DIR": str(secrets),
        "PACKYARD_SYNC_ALLOW_HOSTS": f"127.0.0.1:{_port(git_http.base)},127.0.0.1:{_port(redirector.base)}",
        "PACKYARD_UPSTREAM_ALLOW_HOSTS": f"127.0.0.1:{_port(outside.base)}",
    }
    live = live_server(root / "srv", env)
    with running(live.server), httpx.Client(base_url=live.url, timeout=120) as http:
        create_ns(http, live, TA, TAX, TC)
        headers = {}
        for scope, role in ((TA, "admin"), (TAX, "admin"), (TC, "admin")):
            _, secret = create_token(http, live, scope, role)
            headers[scope] = {"Authorization": f"Bearer {secret}"}
        yield live, http, headers


@pytest.fixture(scope="module")
def private(git_http: GitHttp) -> GitRepo:
    repo = git_http.new_repo("a-private", private=True)
    repo.commit({"secret-plan.txt": b"ta's private plan\n"})
    return repo


def _sync(http: httpx.Client, headers: dict, ns: str, url: str, **options: object) -> httpx.Response:
    return http.post(f"/api/v1/namespaces/{ns}/sync", json={"url": url, **options}, headers=headers)


def _register(http: httpx.Client, headers: dict, ns: str, url: str, **options: object) -> httpx.Response:
    name = f"s{uuid.uuid4().hex[:10]}"
    return http.post("/api/v1/syncs", json={"name": name, "namespace": ns, "url": url, **options}, headers=headers)


def test_file_sync_outside_local_roots_is_refused_at_registration(tenants, tmp_path: Path) -> None:
    live, http, headers = tenants
    for url in ("file:///etc", (live.server.data / "mirrors").as_uri(), "file:///"):
        registered = _register(http, headers[TC], TC, url)
        assert registered.status_code == 403, (url, registered.text)
        assert registered.json()["error"] == "Forbidden"
    assert http.get("/api/v1/syncs", headers=headers[TC]).json() == []


def test_git_remotes_on_internal_hosts_are_refused_before_connecting(tenants, git_http: GitHttp) -> None:
    live, http, headers = tenants
    closed = free_port()
    connected = [  # loopback only: on a server without the rule these are really dialled
        f"http://127.0.0.1:{closed}/x.git",
        f"https://127.0.0.1:{closed}/x.git",
        f"git://127.0.0.1:{closed}/x.git",
        f"ssh://git@127.0.0.1:{closed}/x.git",
        "git@127.0.0.2:org/x.git",
        f"http://[::1]:{closed}/x.git",
        f"http://[::ffff:127.0.0.1]:{closed}/x.git",
        f"http://127.0.0.1:{_port(live.url)}/x.git",  # the server itself
    ]
    registered_only = ["http://169.254.169.254/latest/x.git", "ssh://10.0.0.1/x.git", "git://192.168.0.1/x.git"]
    for url in connected:
        for answer in (
            _sync(http, headers[TC], TC, url, dry_run=True),
            http.post(f"/api/v1/namespaces/{TC}/push", json={"url": url, "branch": "b"}, headers=headers[TC]),
        ):
            assert answer.status_code == 403, (url, answer.text)
            detail = answer.json()["detail"]
            assert "PACKYARD_SYNC_ALLOW_HOSTS" in detail and "no connection was made" in detail, detail
            assert not any(w in detail.lower() for w in ("refused", "failed to connect", "timed out")), detail
    for url in connected + registered_only:
        registered = _register(http, headers[TC], TC, url)
        assert registered.status_code == 403, (url, registered.text)
    assert http.get("/api/v1/syncs", headers=headers[TC]).json() == []
    # the allowed port of the same address still works: the rule is per host and port
    repo = git_http.new_repo("public")
    repo.commit({"a.txt": b"a\n"})
    assert _sync(http, headers[TC], TC, repo.http_url, dry_run=True).status_code == 200


def test_a_redirect_to_an_unlisted_host_is_not_followed(tenants, redirector: Evil, inside: Evil) -> None:
    _, http, headers = tenants
    target = f"{inside.base}/r.git/info/refs?service=git-upload-pack"
    redirector.routes["/r.git/info/refs?service=git-upload-pack"] = (302, {"Location": target}, b"")
    answer = _sync(http, headers[TC], TC, f"{redirector.base}/r.git", dry_run=True)
    assert answer.status_code >= 400, answer.text
    assert inside.seen == []
    assert str(_port(inside.base)) not in answer.text


def test_a_tenant_cannot_name_another_tenants_credentials(tenants, private: GitRepo) -> None:
    _, http, headers = tenants
    by_env, by_file = {"credential": {"env": "A_TOKEN"}}, {"credential": {"file": "a_secret"}}
    # tc names ta's token and ta's secrets file to read ta's private repository
    for options in (by_env, by_file):
        for answer in (
            _sync(http, headers[TC], TC, private.http_url, **options),
            _register(http, headers[TC], TC, private.http_url, **options),
            http.post(
                f"/api/v1/namespaces/{TC}/push",
                json={"url": private.http_url, "branch": "evil", **options},
                headers=headers[TC],
            ),
        ):
            assert answer.status_code in (400, 403), (options, answer.text)
            assert TA not in answer.json()["detail"], answer.text
    assert http.get(f"/api/v1/namespaces/{TC}/files", headers=headers[TC]).json() == []
    assert private.head("evil") is None
    # ... or ta's webhook secret for a sync of its own
    assert _register(http, headers[TC], TC, private.http_url, webhook_secret_env="WEBHOOK_A").status_code == 403
    # ta's subtree uses both, as the operator meant
    for options in (by_env, by_file):
        result = _sync(http, headers[TAX], TAX, private.http_url, **options)
        assert result.status_code == 200, result.text
    assert http.get(f"/api/v1/namespaces/{TAX}/files/secret-plan.txt", headers=headers[TAX]).content == (
        b"ta's private plan\n"
    )
    assert _register(http, headers[TA], TA, private.http_url, webhook_secret_env="WEBHOOK_A").status_code == 201


def test_an_upstream_never_carries_another_tenants_credential(tenants, outside: Evil) -> None:
    live, http, headers = tenants
    sent = "Basic " + base64.b64encode(f"__token__:{HTTP_TOKEN}".encode()).decode()
    # tc points its upstream at its own host, with ta's token as the credential
    hostile = http.patch(
        f"/api/v1/namespaces/{TC}/settings",
        json={"upstream": outside.url, "upstream_auth_env": "A_TOKEN"},
        headers=headers[TC],
    )
    assert hostile.status_code == 403, hostile.text
    http.patch(f"/api/v1/namespaces/{TC}/settings", json={"upstream": outside.url}, headers=headers[TC])
    http.get(f"/{TC}/simple/anything/", headers=headers[TC])
    # ta.x (inside ta) overrides ta's upstream with a host of its own: ta's credential stays with ta's upstream
    assert (
        http.patch(
            f"/api/v1/namespaces/{TA}/settings",
            json={"upstream": outside.url.replace("/simple/", "/ta/"), "upstream_auth_env": "A_TOKEN"},
            headers=headers[TA],
        ).status_code
        == 200
    )
    http.patch(
        f"/api/v1/namespaces/{TAX}/settings",
        json={"upstream": outside.url.replace("/simple/", "/tax/")},
        headers=headers[TAX],
    )
    http.get(f"/{TAX}/simple/other/", headers=headers[TAX])
    assert sent not in outside.authorizations
    http.get(f"/{TA}/simple/third/", headers=headers[TA])
    assert outside.authorizations[-1] == sent  # the owner's own upstream gets it


def test_scoped_admins_stay_in_their_subtree(tenants) -> None:
    """Checked and holding: a child's or another tenant's admin gains nothing through tokens,
    namespace creation or settings (listed in the issue's closing note)."""
    _, http, headers = tenants
    for scope in (TA, "*", TAX.split(".")[0], f"{TA}.other"):
        made = http.post("/api/v1/tokens", json={"scope": scope, "role": "admin"}, headers=headers[TAX])
        assert made.status_code == 403 or scope.startswith(TAX), (scope, made.text)
    listed = http.get("/api/v1/tokens", headers=headers[TC]).json()
    assert {t["scope"] for t in listed} <= {TC}, listed
    assert all("secret" not in t and "secret_hash" not in t for t in listed)
    # a child admin cannot change its parent's settings, nor a sibling's, nor create them
    for ns in (TA, f"{TA}.sibling"):
        assert (
            http.patch(f"/api/v1/namespaces/{ns}/settings", json={"inherit": False}, headers=headers[TAX]).status_code
            == 403
        )
        assert http.post("/api/v1/namespaces", json={"name": ns}, headers=headers[TAX]).status_code == 403
    # a registered sync's build may not publish into an ancestor the registering token cannot write
    build_up = _register(http, headers[TAX], TAX, "https://example.com/x.git", build=True, build_publish_to=TA)
    assert build_up.status_code == 403, build_up.text
