"""Registered syncs (CLI and HTTP: add, list, show, trigger, runs, rm) and their webhooks."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import ok
from tests.sync.conftest import (
    WEBHOOK_SECRET,
    GitHttp,
    GitRepo,
    cli,
    cli_many,
    failed,
    hub_signature,
    listing,
    ns_files,
    push_event,
    revisions,
    unique_ns,
)


def new_name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def salted(repo: GitRepo, branch: str = "main") -> tuple[str, dict[str, bytes]]:
    salt = uuid.uuid4().hex.encode()
    files = {"flows/etl.py": b"print('etl') # " + salt, "notes.tmp": b"scratch", "README.md": b"readme " + salt}
    return repo.commit(files, branch=branch), files


def test_registered_sync_cli(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    repo = git_http.new_repo("registered")
    commit, files = salted(repo, branch="release")
    name, ns = new_name(), unique_ns()
    env = server.client_env(server.admin_token)
    http.put(f"/api/v1/namespaces/{ns}/files/imported/stale.txt", content=b"stale", headers=server.admin)

    options = f"--namespace {ns} --url {repo.http_url} --ref release --prefix imported --exclude *.tmp --delete"
    out = ok(cli(env, "sync", "add", name, *options.split(), "--webhook-secret-env", "WEBHOOK_SECRET_TEST"))
    assert out.strip() == f"registered sync {name} -> {ns}"
    listed, shown = cli_many(env, ["sync", "list", "--json"], ["sync", "show", name, "--json"])
    mine = [row for row in json.loads(ok(listed)) if row["name"] == name]
    assert len(mine) == 1
    shown = json.loads(ok(shown))
    assert shown == mine[0]
    assert (shown["namespace"], shown["webhook_secret_env"]) == (ns, "WEBHOOK_SECRET_TEST")
    assert {k: shown["spec"][k] for k in ("url", "ref", "path", "prefix", "include", "exclude", "delete")} == {
        "url": repo.http_url,
        "ref": "release",
        "path": "",
        "prefix": "imported",
        "include": [],
        "exclude": ["*.tmp"],
        "delete": True,
    }

    result = json.loads(ok(cli(env, "sync", "trigger", name, "--json")))
    assert (result["commit"], result["counts"]["added"], result["counts"]["deleted"]) == (commit, 2, 1)
    assert ns_files(http, ns) == {
        "imported/flows/etl.py": files["flows/etl.py"],
        "imported/README.md": files["README.md"],
    }

    # the branch disappears upstream: the next run fails, and the history says so
    repo.git("update-ref", "-d", "refs/heads/release")
    before = (listing(http, ns), revisions(server, ns))
    assert "'release' is not a branch, tag or commit" in failed(cli(env, "sync", "trigger", name), 3)
    assert (listing(http, ns), revisions(server, ns)) == before

    runs = cli(env, "sync", "runs", name, "--json")
    failed_run, good_run = json.loads(ok(runs))
    assert failed_run["id"] > good_run["id"]
    assert (good_run["sync"], good_run["namespace"], good_run["commit_sha"], good_run["error"]) == (
        name,
        ns,
        commit,
        None,
    )
    assert (good_run["added"], good_run["updated"], good_run["deleted"], good_run["unchanged"]) == (2, 0, 1, 0)
    assert good_run["duration"] >= 0 and good_run["url"] == repo.http_url and good_run["dry_run"] == 0
    assert failed_run["commit_sha"] is None
    assert "'release' is not a branch, tag or commit" in failed_run["error"]

    assert ok(cli(env, "sync", "rm", name)).strip() == f"removed sync {name}"
    assert http.get(f"/api/v1/syncs/{name}").status_code == 404
    assert set(ns_files(http, ns)) == {"imported/flows/etl.py", "imported/README.md"}  # the files stay


def test_registered_sync_http(server: LiveServer, http: httpx.Client, git_http: GitHttp) -> None:
    repo = git_http.new_repo("registered-http")
    commit, files = salted(repo)
    name, ns = new_name(), unique_ns()
    body = {"name": name, "namespace": ns, "url": repo.url, "include": ["flows/*", "README.md"]}

    response = http.post("/api/v1/syncs", json=body, headers=server.admin)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["include"] == ["flows/*", "README.md"]
    assert http.post("/api/v1/syncs", json=body, headers=server.admin).status_code == 409
    assert http.post("/api/v1/syncs", json=body).status_code == 401  # writes need a token
    for bad in ({"name": "Bad Name"}, {"webhook_secret_env": "not-a-var"}, {"url": "ftp://x/y"}, {"namespace": "Bad"}):
        response = http.post("/api/v1/syncs", json={**body, "name": new_name(), **bad}, headers=server.admin)
        assert response.status_code == 400, (bad, response.text)

    assert name in [s["name"] for s in http.get("/api/v1/syncs").json()]
    shown = http.get(f"/api/v1/syncs/{name}").json()
    assert (shown["namespace"], shown["spec"]["url"], shown["spec"]["ref"]) == (ns, repo.url, None)

    plan = http.post(f"/api/v1/syncs/{name}/trigger", json={"dry_run": True}, headers=server.admin).json()
    assert (plan["dry_run"], plan["counts"]["added"]) == (True, 2)
    assert listing(http, ns) is None
    result = http.post(f"/api/v1/syncs/{name}/trigger", json={}, headers=server.admin).json()
    assert (result["dry_run"], result["commit"], result["counts"]["added"]) == (False, commit, 2)
    assert ns_files(http, ns) == {"flows/etl.py": files["flows/etl.py"], "README.md": files["README.md"]}

    changed, _ = salted(repo)
    result = http.post(f"/api/v1/syncs/{name}/trigger", json={}, headers=server.admin).json()
    assert (result["commit"], result["counts"]["updated"]) == (changed, 2)

    runs = http.get(f"/api/v1/syncs/{name}/runs").json()
    assert [(r["commit_sha"], r["dry_run"], r["added"], r["updated"], r["error"]) for r in runs] == [
        (changed, 0, 0, 2, None),
        (commit, 0, 2, 0, None),
        (commit, 1, 2, 0, None),
    ]

    assert http.delete(f"/api/v1/syncs/{name}").status_code == 401
    assert http.delete(f"/api/v1/syncs/{name}", headers=server.admin).status_code == 200
    for method, path in (("GET", ""), ("GET", "/runs"), ("POST", "/trigger"), ("DELETE", "")):
        response = http.request(method, f"/api/v1/syncs/{name}{path}", headers=server.admin, json={})
        assert response.status_code == 404, (method, path, response.text)
    assert set(ns_files(http, ns)) == {"flows/etl.py", "README.md"}


# -- webhooks (the secret is an environment variable of the private server) ---------------------


@pytest.fixture(scope="module")
def hooked(git_http: GitHttp) -> GitRepo:
    repo = git_http.new_repo("hooked")
    repo.commit({"flow.py": b"print('hooked')\n"})
    repo.git("branch", "other", "main")
    return repo


def register(http: httpx.Client, server: LiveServer, repo: GitRepo, **options: object) -> tuple[str, str]:
    name, ns = new_name(), unique_ns()
    body = {"name": name, "namespace": ns, "url": repo.url, **options}
    response = http.post("/api/v1/syncs", json=body, headers=server.admin)
    assert response.status_code == 201, response.text
    return name, ns


def run_count(server: LiveServer, name: str) -> int:
    return server.rows("SELECT count(*) FROM sync_runs WHERE sync = ?", (name,))[0][0]


def test_webhooks(private_server: LiveServer, private_http: httpx.Client, hooked: GitRepo) -> None:
    server, http = private_server, private_http
    name, ns = register(http, server, hooked, ref="main", webhook_secret_env="WEBHOOK_SECRET_TEST")
    url = f"/api/v1/syncs/{name}/webhook"
    body = push_event("main")

    refused = [
        {},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": hub_signature(b"another body")},
        {"X-Hub-Signature-256": hub_signature(body, secret="wrong secret")},
        {"X-Hub-Signature-256": hub_signature(body).removeprefix("sha256=")},
        {"X-Gitlab-Token": "wrong token"},
    ]
    for headers in refused:  # the 404 of a missing sync: an unsigned caller learns nothing
        response = http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
        assert response.status_code == 404, (headers, response.text)
    assert run_count(server, name) == 0
    assert listing(http, ns) is None

    # a push to another branch is acknowledged and ignored, even when authentic
    other = push_event("other")
    response = http.post(url, content=other, headers={"X-Hub-Signature-256": hub_signature(other)})
    assert (response.status_code, response.json()["status"]) == (202, "ignored")
    tag = json.dumps({"ref": "refs/tags/v1"}).encode()
    response = http.post(url, content=tag, headers={"X-Hub-Signature-256": hub_signature(tag)})
    assert response.status_code == 202
    assert run_count(server, name) == 0

    # GitHub's signature runs it
    response = http.post(url, content=body, headers={"X-Hub-Signature-256": hub_signature(body)})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ran"
    assert response.json()["result"]["counts"]["added"] == 1
    assert ns_files(http, ns) == {"flow.py": b"print('hooked')\n"}
    runs = http.get(f"/api/v1/syncs/{name}/runs").json()
    assert [(r["actor"], r["error"]) for r in runs] == [(f"webhook:{name}", None)]

    # so does GitLab's token
    gitlab = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "project": {"default_branch": "main"}})
    response = http.post(url, content=gitlab, headers={"X-Gitlab-Token": "WRONG"})
    assert response.status_code == 404
    response = http.post(url, content=gitlab, headers={"X-Gitlab-Token": WEBHOOK_SECRET})
    assert (response.status_code, response.json()["status"]) == (200, "ran"), response.text
    assert response.json()["result"]["counts"]["unchanged"] == 1
    assert run_count(server, name) == 2


def test_webhook_edge_cases(private_server: LiveServer, private_http: httpx.Client, hooked: GitRepo) -> None:
    server, http = private_server, private_http
    # a sync without a ref follows the default branch the payload names
    name, ns = register(http, server, hooked, webhook_secret_env="WEBHOOK_SECRET_TEST")
    for branch, status in (("other", 202), ("main", 200)):
        body = push_event(branch, default="main")
        response = http.post(
            f"/api/v1/syncs/{name}/webhook", content=body, headers={"X-Hub-Signature-256": hub_signature(body)}
        )
        assert response.status_code == status, (branch, response.text)
    assert run_count(server, name) == 1

    # no webhook secret registered, or one the server does not have: every call is the missing sync's 404
    body = push_event("main")
    for options in ({}, {"webhook_secret_env": "NOT_SET_ON_THE_SERVER"}):
        name, ns = register(http, server, hooked, ref="main", **options)
        response = http.post(
            f"/api/v1/syncs/{name}/webhook", content=body, headers={"X-Hub-Signature-256": hub_signature(body)}
        )
        assert response.status_code == 404, response.text
        assert run_count(server, name) == 0

    response = http.post(
        f"/api/v1/syncs/{new_name()}/webhook", content=body, headers={"X-Hub-Signature-256": hub_signature(body)}
    )
    assert response.status_code == 404


def test_webhook_replays_do_not_run_again(
    private_server: LiveServer, private_http: httpx.Client, hooked: GitRepo
) -> None:
    """A delivery id seen before is answered without running the sync, by GitHub's or GitLab's header;
    the ids live in the catalog, so every server process (and a restarted one) knows them."""
    server, http = private_server, private_http
    name, ns = register(http, server, hooked, ref="main", webhook_secret_env="WEBHOOK_SECRET_TEST")
    url = f"/api/v1/syncs/{name}/webhook"
    body = push_event("main")
    github = {"X-Hub-Signature-256": hub_signature(body), "X-GitHub-Delivery": str(uuid.uuid4())}
    first = http.post(url, content=body, headers=github)
    assert (first.status_code, first.json()["status"]) == (200, "ran"), first.text
    for _ in range(2):
        replay = http.post(url, content=body, headers=github)
        assert (replay.status_code, replay.json()["status"]) == (200, "replay"), replay.text
        assert github["X-GitHub-Delivery"] in replay.json()["detail"]
    assert run_count(server, name) == 1
    rows = server.rows("SELECT delivery, state FROM webhook_deliveries WHERE sync = ?", (name,))
    assert rows == [(github["X-GitHub-Delivery"], "ran")]

    # a forged replay (wrong signature) is refused as any forged delivery is, not told "replay"
    forged = http.post(url, content=body, headers={**github, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert forged.status_code == 404

    # a new delivery runs; GitLab names its deliveries with X-Gitlab-Event-UUID or Idempotency-Key
    gitlab = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "project": {"default_branch": "main"}})
    for header in ("X-Gitlab-Event-UUID", "Idempotency-Key"):
        headers = {"X-Gitlab-Token": WEBHOOK_SECRET, header: str(uuid.uuid4())}
        assert http.post(url, content=gitlab, headers=headers).json()["status"] == "ran"
        assert http.post(url, content=gitlab, headers=headers).json()["status"] == "replay"
    assert run_count(server, name) == 3
    # without a delivery id there is nothing to recognise: each call runs
    assert http.post(url, content=gitlab, headers={"X-Gitlab-Token": WEBHOOK_SECRET}).json()["status"] == "ran"
    assert run_count(server, name) == 4
