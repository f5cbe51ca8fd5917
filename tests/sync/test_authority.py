"""Whose authority syncs, webhooks and builds run under — and what they show to whom (issue 12).

- A sync, one-off or registered, and a build write only where the token that asked may
  write: checked when asked and again when the work runs (trigger, webhook delivery, the
  worker handing in a build), against the token recorded when it was asked for. A revoked
  token stops its registered syncs and its queued builds, with the reason recorded.
- Syncs and builds are shown like private repositories: to a token that may not read the
  namespace they do not exist (the same 404 as a missing one); a reader who may not write
  gets the 403. A webhook delivery that is not signed with the sync's secret gets the 404
  a missing sync gets.
- Builds of another tenant's files that publish into a namespace stay out of its listing.
- A credential in a sync URL's query string (``?access_token=``...) is never shown.
- An index page answers a presented token the same whether or not the page is cached.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx
import pytest
from packyard.store import catalog as catalog_module
from packyard.store.catalog import MIGRATIONS, Catalog

from tests.builder.conftest import build_log, tiny_project, wait_build
from tests.conftest import LiveServer
from tests.support.clients import create_ns, create_token, put_file, upload
from tests.support.dists import make_wheel
from tests.sync.conftest import GitHttp, GitRepo, hub_signature, listing, push_event, unique_ns


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def new_name() -> str:
    return f"auth-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def project_repo(git_http: GitHttp) -> GitRepo:
    """A repository holding a tiny buildable project at its root."""
    repo = git_http.new_repo("authority")
    repo.commit(tiny_project(f"auth{uuid.uuid4().hex[:8]}"))
    return repo


def runs_of(server: LiveServer, name: str) -> list[tuple]:
    return server.rows("SELECT actor, error FROM sync_runs WHERE sync = ? ORDER BY id", (name,))


def builds_into(server: LiveServer, ns: str) -> int:
    return server.rows("SELECT count(*) FROM builds WHERE publish_to = ?", (ns,))[0][0]


# -- item 1: writes only where the asking token may write, now and later -------------------------


def test_a_scoped_writer_cannot_make_a_sync_publish_outside_its_scope(
    private_server: LiveServer, private_http: httpx.Client, project_repo: GitRepo
) -> None:
    server, http = private_server, private_http
    victim, mine = unique_ns(), unique_ns()
    create_ns(http, server, victim, mine)
    _, writer = create_token(http, server, mine.split(".")[0], "write", "tenant c")
    name = new_name()
    body = {"name": name, "namespace": mine, "url": project_repo.http_url, "build": True}

    refused = http.post("/api/v1/syncs", json={**body, "build_publish_to": victim}, headers=bearer(writer))
    assert refused.status_code == 403, refused.text
    assert victim in refused.json()["detail"]
    assert server.rows("SELECT count(*) FROM syncs WHERE name = ?", (name,))[0][0] == 0
    # the one-off sync and the build API refuse it too, even without build (the target is named)
    one_off = http.post(
        f"/api/v1/namespaces/{mine}/sync",
        json={"url": project_repo.http_url, "build_publish_to": victim},
        headers=bearer(writer),
    )
    assert one_off.status_code == 403, one_off.text
    direct = http.post("/api/v1/builds", json={"namespace": mine, "publish_to": victim}, headers=bearer(writer))
    assert direct.status_code == 403, direct.text
    assert not listing(http, mine) and builds_into(server, victim) == 0

    # a sync the admin registered to publish into the victim: a writer of the source may not trigger it
    admin_sync = new_name()
    registered = http.post(
        "/api/v1/syncs", json={**body, "name": admin_sync, "build_publish_to": victim}, headers=server.admin
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["token_id"] == "env-admin"
    triggered = http.post(f"/api/v1/syncs/{admin_sync}/trigger", json={}, headers=bearer(writer))
    assert triggered.status_code == 403, triggered.text
    assert not listing(http, mine) and builds_into(server, victim) == 0

    # within its scope the writer registers and triggers as before, and the sync records whose it is
    ok = http.post("/api/v1/syncs", json=body, headers=bearer(writer))
    assert ok.status_code == 201, ok.text
    assert ok.json()["token_id"] == writer.split("_")[1]
    ran = http.post(f"/api/v1/syncs/{name}/trigger", json={"dry_run": True}, headers=bearer(writer))
    assert ran.status_code == 200, ran.text


def test_a_registered_sync_stops_when_its_token_is_revoked(
    private_server: LiveServer, private_http: httpx.Client, project_repo: GitRepo
) -> None:
    server, http = private_server, private_http
    ns = unique_ns()
    create_ns(http, server, ns)
    token_id, writer = create_token(http, server, ns, "write", "ci")
    name = new_name()
    body = {
        "name": name,
        "namespace": ns,
        "url": project_repo.http_url,
        "ref": "main",
        "build": True,
        "webhook_secret_env": "WEBHOOK_SECRET_TEST",
    }
    assert http.post("/api/v1/syncs", json=body, headers=bearer(writer)).status_code == 201
    assert http.delete(f"/api/v1/tokens/{token_id}", headers=server.admin).status_code == 200

    event = push_event("main")
    delivery = http.post(
        f"/api/v1/syncs/{name}/webhook", content=event, headers={"X-Hub-Signature-256": hub_signature(event)}
    )
    assert delivery.status_code == 403, delivery.text
    assert delivery.json()["error"] == "Forbidden"
    assert f"runs under token {token_id}, which was revoked" in delivery.json()["detail"]
    # an admin's trigger does not revive it: the sync runs under its own recorded authority
    triggered = http.post(f"/api/v1/syncs/{name}/trigger", json={}, headers=server.admin)
    assert triggered.status_code == 403, triggered.text

    recorded = runs_of(server, name)
    assert [actor for actor, _ in recorded] == [f"webhook:{name}", "token:env-admin (PACKYARD_ADMIN_TOKEN)"]
    assert all(error and "revoked" in error for _, error in recorded), recorded
    assert not listing(http, ns) and builds_into(server, ns) == 0


def test_a_build_neither_starts_nor_publishes_once_its_token_is_revoked(
    private_server: LiveServer, private_http: httpx.Client
) -> None:
    server, http = private_server, private_http
    running_ns, waiting_ns = unique_ns(), unique_ns()
    create_ns(http, server, running_ns, waiting_ns)
    builds = {}
    for ns in (running_ns, waiting_ns):
        for path, data in tiny_project(f"late{uuid.uuid4().hex[:8]}", sleep=3).items():
            put_file(http, server, ns, path, data)
        token_id, writer = create_token(http, server, ns, "write")
        queued = http.post("/api/v1/builds", json={"namespace": ns}, headers=bearer(writer))
        assert queued.status_code == 201, queued.text
        assert queued.json()["token_id"] == token_id
        builds[ns] = (queued.json()["id"], token_id)
        if ns == running_ns:  # the one worker is busy with it while the second waits in the queue
            wait_build(http, queued.json()["id"], states=("running",))
    for _, token_id in builds.values():
        assert http.delete(f"/api/v1/tokens/{token_id}", headers=server.admin).status_code == 200

    for ns, note in ((running_ns, "not published"), (waiting_ns, "not started")):
        build_id, token_id = builds[ns]
        build = wait_build(http, build_id)
        assert build["state"] == "failed", build
        assert f"runs under token {token_id}, which was revoked" in build["error"]
        assert f"[packyard] {note}: build {build_id} runs under token {token_id}" in build_log(http, build_id)
        assert server.rows("SELECT count(*) FROM dists WHERE namespace = ?", (ns,))[0][0] == 0
    assert "tiny_backend" not in build_log(http, builds[waiting_ns][0])  # no code of it ever ran


def test_rows_from_before_the_authority_column_get_the_token_their_creator_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(catalog_module, "MIGRATIONS", MIGRATIONS[:7])
        old = Catalog(tmp_path / "catalog.db")
        assert old.schema_version == 7
        with old.write() as tx:
            for name, creator in (
                ("tok", "token:abc123 (ci)"),
                ("env", "token:env-admin (PACKYARD_ADMIN_TOKEN)"),
                ("x", "x"),
            ):
                tx.insert(
                    "syncs", {"name": name, "namespace": "a", "spec": "{}", "created": "now", "created_by": creator}
                )
        old.close()
    catalog = Catalog(tmp_path / "catalog.db")
    assert catalog.query("SELECT name, token_id FROM syncs ORDER BY name") == [
        {"name": "env", "token_id": "env-admin"},
        {"name": "tok", "token_id": "abc123"},
        {"name": "x", "token_id": None},
    ]


# -- item 5: what syncs and builds show, and to whom ---------------------------------------------


def hidden(response: httpx.Response, name: str, missing: httpx.Response, missing_name: str) -> None:
    """``response`` is the very 404 a missing thing gets (with its name in place)."""
    assert response.status_code == 404, response.text
    assert response.json() == {
        **missing.json(),
        "detail": missing.json()["detail"].replace(missing_name, name),
    }


def test_syncs_answer_like_private_repositories(
    private_server: LiveServer, private_http: httpx.Client, project_repo: GitRepo
) -> None:
    server, http = private_server, private_http
    theirs, mine = unique_ns(), unique_ns()
    create_ns(http, server, theirs, mine)
    name, ghost = new_name(), new_name()
    body = {"name": name, "namespace": theirs, "url": project_repo.http_url, "ref": "main"}
    body["webhook_secret_env"] = "WEBHOOK_SECRET_TEST"
    assert http.post("/api/v1/syncs", json=body, headers=server.admin).status_code == 201
    _, outsider = create_token(http, server, mine, "write")
    _, reader = create_token(http, server, theirs, "read")

    for method, suffix in (("GET", ""), ("GET", "/runs"), ("POST", "/trigger"), ("DELETE", "")):
        missing = http.request(method, f"/api/v1/syncs/{ghost}{suffix}", json={}, headers=bearer(outsider))
        assert missing.status_code == 404, missing.text
        hidden(
            http.request(method, f"/api/v1/syncs/{name}{suffix}", json={}, headers=bearer(outsider)),
            name,
            missing,
            ghost,
        )
    assert http.get(f"/api/v1/syncs/{name}", headers=bearer(reader)).status_code == 200
    for method, suffix in (("POST", "/trigger"), ("DELETE", "")):
        response = http.request(method, f"/api/v1/syncs/{name}{suffix}", json={}, headers=bearer(reader))
        assert response.status_code == 403, (method, suffix, response.text)
    listed = http.get("/api/v1/syncs", headers=bearer(outsider))
    assert listed.status_code == 200 and name not in {s["name"] for s in listed.json()}
    assert name in {s["name"] for s in http.get("/api/v1/syncs", headers=bearer(reader)).json()}
    assert http.get(f"/api/v1/syncs/{name}", headers=bearer("pky_nope_nope")).status_code == 401
    assert http.get(f"/api/v1/syncs/{ghost}", headers=bearer("pky_nope_nope")).status_code == 401

    # a webhook delivery without the secret learns nothing: the 404 of a sync that does not exist
    event = push_event("main")
    missing = http.post(f"/api/v1/syncs/{ghost}/webhook", content=event)
    for headers in ({}, {"X-Hub-Signature-256": hub_signature(event, secret="wrong")}, {"X-Gitlab-Token": "no"}):
        hidden(http.post(f"/api/v1/syncs/{name}/webhook", content=event, headers=headers), name, missing, ghost)
    assert runs_of(server, name) == []


def test_builds_answer_like_private_repositories_and_hide_other_tenants_sources(
    private_server: LiveServer, private_http: httpx.Client
) -> None:
    server, http = private_server, private_http
    theirs, mine = unique_ns(), unique_ns()
    create_ns(http, server, theirs, mine)
    for path, data in tiny_project(f"into{uuid.uuid4().hex[:8]}").items():
        put_file(http, server, theirs, path, data)
    queued = http.post("/api/v1/builds", json={"namespace": theirs, "publish_to": mine}, headers=server.admin)
    assert queued.status_code == 201, queued.text
    build_id = queued.json()["id"]
    _, mine_reader = create_token(http, server, mine, "read")
    _, their_reader = create_token(http, server, theirs, "read")

    for query in ({"namespace": mine}, {}):
        listed = http.get("/api/v1/builds", params=query, headers=bearer(mine_reader))
        assert listed.status_code == 200, listed.text
        assert build_id not in {b["id"] for b in listed.json()}, query
    assert build_id in {b["id"] for b in http.get("/api/v1/builds", headers=bearer(their_reader)).json()}

    ghost = 10**9
    for method, suffix in (("GET", ""), ("GET", "/log"), ("POST", "/cancel")):
        missing = http.request(method, f"/api/v1/builds/{ghost}{suffix}", headers=bearer(mine_reader))
        hidden(
            http.request(method, f"/api/v1/builds/{build_id}{suffix}", headers=bearer(mine_reader)),
            str(build_id),
            missing,
            str(ghost),
        )
    assert http.get(f"/api/v1/builds/{build_id}", headers=bearer(their_reader)).status_code == 200
    assert http.post(f"/api/v1/builds/{build_id}/cancel", headers=bearer(their_reader)).status_code == 403
    wait_build(http, build_id)


def test_credentials_in_a_query_string_are_never_shown(
    private_server: LiveServer, private_http: httpx.Client, git_http: GitHttp
) -> None:
    server, http = private_server, private_http
    ns = unique_ns()
    create_ns(http, server, ns)
    secrets = {param: f"qs{uuid.uuid4().hex}" for param in ("access_token", "private_token", "token")}
    gone = f"{git_http.base}/missing-{uuid.uuid4().hex[:8]}.git"
    answers = []
    for param, secret in secrets.items():
        url = f"{gone}?{param}={secret}"
        response = http.post(f"/api/v1/namespaces/{ns}/sync", json={"url": url, "dry_run": True}, headers=server.admin)
        assert response.status_code == 502, response.text
        assert f"{param}=***" in response.json()["detail"], response.text
        answers.append(response.text)

    name = new_name()
    url = f"{gone}?ref=x&private_token={secrets['private_token']}"
    registered = http.post("/api/v1/syncs", json={"name": name, "namespace": ns, "url": url}, headers=server.admin)
    assert registered.status_code == 201, registered.text
    assert registered.json()["spec"]["url"] == f"{gone}?ref=x&private_token=***"
    answers += [
        registered.text,
        http.get(f"/api/v1/syncs/{name}").text,
        http.get("/api/v1/syncs").text,
        http.post(f"/api/v1/syncs/{name}/trigger", json={}, headers=server.admin).text,
        http.get(f"/api/v1/syncs/{name}/runs").text,
    ]
    stored = repr(server.rows("SELECT * FROM sync_runs WHERE namespace = ?", (ns,)))
    logged = "\n".join(server.log_lines())
    for secret in secrets.values():
        for text in [*answers, stored, logged]:
            assert secret not in text, text


def test_an_index_page_answers_a_token_the_same_cached_or_not(
    private_server: LiveServer, private_http: httpx.Client, tmp_path: Path
) -> None:
    server, http = private_server, private_http
    theirs, mine = unique_ns(), unique_ns()
    create_ns(http, server, theirs, mine)
    wheel = make_wheel(tmp_path, f"cached{uuid.uuid4().hex[:8]}", "1.0")
    upload(http, server, theirs, wheel)
    project = wheel.name.split("-")[0]
    _, outsider = create_token(http, server, mine, "read")
    _, reader = create_token(http, server, theirs, "read")
    urls = [f"/{theirs}/simple/", f"/{theirs}/simple/{project}/", f"/{theirs}/dists/{wheel.name}"]
    expected = {"outsider": 403, "invalid": 401, "reader": 200, "anonymous": 200}
    callers = {
        "outsider": bearer(outsider),
        "invalid": bearer("pky_nope_nope"),
        "reader": {"Authorization": "Basic " + base64.b64encode(f"__token__:{reader}".encode()).decode()},
        "anonymous": {},
    }
    for url in urls:
        seen = []
        for _ in range(3):  # the first anonymous answer fills the cache the later ones may come from
            for who, headers in callers.items():
                seen.append((who, http.get(url, headers=headers).status_code))
        assert seen == [(who, expected[who]) for _ in range(3) for who in callers], (url, seen)


def test_a_token_never_outlives_or_exceeds_the_token_that_made_it(
    private_server: LiveServer, private_http: httpx.Client
) -> None:
    server, http = private_server, private_http
    team, other = unique_ns(), unique_ns()
    create_ns(http, server, team, other)
    admin_id, team_admin = create_token(http, server, team, "admin", "team admin")
    _, other_admin = create_token(http, server, other, "admin")

    def mint(secret: str, scope: str, role: str) -> httpx.Response:
        return http.post("/api/v1/tokens", json={"scope": scope, "role": role}, headers=bearer(secret))

    for scope in (team.split(".")[0], other, "*"):  # nothing broader, nothing beside
        assert mint(team_admin, scope, "read").status_code == 403, scope
    minted = mint(team_admin, team, "admin")
    assert minted.status_code == 201, minted.text
    grandchild = mint(minted.json()["secret"], team, "write")
    assert grandchild.status_code == 201, grandchild.text

    # another tenant's admin cannot revoke it, nor learn that the id exists
    ghost = http.delete("/api/v1/tokens/000000000000", headers=bearer(other_admin))
    foreign = http.delete(f"/api/v1/tokens/{grandchild.json()['token']['id']}", headers=bearer(other_admin))
    assert (ghost.status_code, foreign.status_code) == (404, 404), foreign.text
    assert foreign.json()["detail"] == ghost.json()["detail"].replace("000000000000", grandchild.json()["token"]["id"])

    # revoking the team admin revokes what it minted, and what that minted
    assert http.delete(f"/api/v1/tokens/{admin_id}", headers=server.admin).status_code == 200
    for secret in (team_admin, minted.json()["secret"], grandchild.json()["secret"]):
        assert http.get(f"/api/v1/namespaces/{team}", headers=bearer(secret)).status_code == 401
