"""Credentials never leak, and credential references work.

A token inside a one-off URL is used but must appear in no output: not the HTTP response,
not the CLI's stdout or stderr, not the server log, not the catalog, not the mirror folder.
Syncs that name a credential (``--token-env VAR``) run against a private server of ours whose
environment holds the token; the http remote's ``private/`` repositories want it.
"""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import ok
from tests.support.procs import free_port
from tests.sync.conftest import (
    HTTP_TOKEN,
    GitHttp,
    GitRepo,
    catalog_text,
    cli,
    cli_many,
    failed,
    leaks,
    listing,
    ns_files,
    revisions,
    sync,
    synced,
    unique_ns,
)

FILES = {"flows/secret_flow.py": b"print('private')\n", "README.md": b"private repo\n"}


@pytest.fixture(scope="module")
def private_repo(git_http: GitHttp) -> GitRepo:
    repo = git_http.new_repo("secret", private=True)
    repo.commit(FILES)
    return repo


def forms(secret: str) -> list[str]:
    """The secret and the ways it could be encoded on the way to git."""
    return [secret, base64.b64encode(secret.encode()).decode()] + [
        base64.b64encode(f"{user}:{secret}".encode()).decode() for user in ("user", "x-access-token")
    ]


def assert_clean(texts: list[str], secret: str) -> None:
    for text in texts:
        for form in forms(secret):
            assert form not in text, f"the secret leaked: {text[:500]!r}"


def test_token_in_url_never_leaks(
    server: LiveServer, http: httpx.Client, private_repo: GitRepo, git_http: GitHttp
) -> None:
    secret = f"SECRET123{uuid.uuid4().hex}"
    closed = free_port()
    ns = unique_ns()
    http.put(f"/api/v1/namespaces/{ns}/files/keep.txt", content=b"keep", headers=server.admin).raise_for_status()
    before = (listing(http, ns), revisions(server, ns))
    urls = {
        "closed port": f"http://user:{secret}@127.0.0.1:{closed}/x.git",
        "wrong token": private_repo.http_url_with("user", secret),
        "ssh": f"ssh://git:{secret}@127.0.0.1:{closed}/x.git",
        "git": f"git://user:{secret}@127.0.0.1:{closed}/x.git",
        "not a git url": f"ftp://user:{secret}@127.0.0.1/x.git",
    }
    outputs: list[str] = []
    for what, url in urls.items():
        for dry_run in (False, True):
            response = sync(http, server, ns, url, dry_run=dry_run, delete=True)
            assert response.status_code in (400, 502), (what, response.text)
            outputs.append(response.text)
        response = http.post(f"/api/v1/namespaces/{ns}/push", json={"url": url, "branch": "main"}, headers=server.admin)
        assert response.status_code in (400, 502), (what, response.text)
        outputs.append(response.text)
        response = http.post(
            "/api/v1/syncs",
            json={"name": f"leak-{uuid.uuid4().hex[:8]}", "namespace": ns, "url": url},
            headers=server.admin,
        )
        assert response.status_code == 400, (what, response.text)
        outputs.append(response.text)

    # the errors still say what went wrong, where
    closed_port = sync(http, server, ns, urls["closed port"]).json()["detail"]
    assert f"http://127.0.0.1:{closed}/x.git" in closed_port
    wrong = sync(http, server, ns, urls["wrong token"]).json()["detail"]
    assert private_repo.http_url.removeprefix("http://") in wrong

    env = server.client_env(server.admin_token)
    runs = cli_many(
        env,
        ["sync", "run", ns, urls["wrong token"], "--dry-run", "--json"],
        ["sync", "push", ns, urls["closed port"], "--branch", "main"],
        ["sync", "add", "leaky", "--namespace", ns, "--url", urls["wrong token"]],
    )
    for run, code in zip(runs, (9, 9, 2), strict=True):
        failed(run, code)
        outputs += [run.stdout, run.stderr]
    # a sync that works with the token in its URL leaks it no more than a failing one
    result = synced(http, server, unique_ns(), private_repo.http_url_with("user", HTTP_TOKEN))
    assert result["url"] == private_repo.http_url
    outputs.append(json.dumps(result))

    assert_clean(outputs, secret)
    assert_clean(outputs, HTTP_TOKEN)
    assert_clean([catalog_text(server)], secret)
    assert_clean([catalog_text(server)], HTTP_TOKEN)
    assert leaks(server, secret) == []
    assert leaks(server, HTTP_TOKEN) == []
    assert server.rows("SELECT count(*) FROM syncs WHERE namespace = ?", (ns,)) == [(0,)]
    assert (listing(http, ns), revisions(server, ns)) == before
    # the failures were recorded, redacted
    urls_recorded = [row[0] for row in server.rows("SELECT url FROM sync_runs WHERE namespace = ?", (ns,))]
    assert f"http://127.0.0.1:{closed}/x.git" in urls_recorded


def test_credential_reference(
    private_server: LiveServer, private_http: httpx.Client, private_repo: GitRepo, git_http: GitHttp
) -> None:
    server, http = private_server, private_http
    ns = unique_ns()
    env = server.client_env(server.admin_token)

    # without the credential the private repository is a clear 502; a missing variable a 400
    response = sync(http, server, ns, private_repo.http_url)
    assert response.status_code == 502, response.text
    response = sync(http, server, ns, private_repo.http_url, credential={"env": "NO_SUCH_VAR_FOR_TEST"})
    assert response.status_code == 400, response.text
    assert "NO_SUCH_VAR_FOR_TEST" in response.json()["detail"]
    assert listing(http, ns) is None

    seen = len(git_http.seen)
    run, dry = cli_many(
        env,
        ["sync", "run", ns, private_repo.http_url, "--token-env", "GIT_TOKEN_TEST", "--json"],
        ["sync", "run", unique_ns(), private_repo.http_url, "--token-env", "GIT_TOKEN_TEST", "--dry-run"],
    )
    result = json.loads(ok(run))
    assert result["counts"]["added"] == len(FILES)
    assert ns_files(http, ns) == FILES
    assert ok(dry).splitlines()[-1].startswith("would sync")
    sent = {auth for _, path, auth in git_http.seen[seen:] if private_repo.bare.name in path}
    assert f"Basic {base64.b64encode(f'x-access-token:{HTTP_TOKEN}'.encode()).decode()}" in sent

    # a registered sync stores the reference, never the token
    name = f"cred-{uuid.uuid4().hex[:8]}"
    target = unique_ns()
    ok(
        cli(
            env,
            "sync",
            "add",
            name,
            "--namespace",
            target,
            "--url",
            private_repo.http_url,
            "--token-env",
            "GIT_TOKEN_TEST",
        )
    )
    shown = json.loads(ok(cli(env, "sync", "show", name, "--json")))
    assert shown["spec"]["credential"] == {
        "kind": "token",
        "env": "GIT_TOKEN_TEST",
        "file": None,
        "username": "x-access-token",
    }
    response = http.post(f"/api/v1/syncs/{name}/trigger", json={}, headers=server.admin)
    assert response.status_code == 200, response.text
    assert ns_files(http, target) == FILES

    # push back through the same credential
    response = http.post(
        f"/api/v1/namespaces/{ns}/push",
        json={"url": private_repo.http_url, "branch": "from-packyard", "credential": {"env": "GIT_TOKEN_TEST"}},
        headers=server.admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["pushed"] is True
    assert private_repo.tree("refs/heads/from-packyard") == FILES

    outputs = [run.stdout, run.stderr, dry.stdout, dry.stderr, json.dumps(shown), response.text]
    assert_clean(outputs + [catalog_text(server)], HTTP_TOKEN)
    assert leaks(server, HTTP_TOKEN) == []
    stored = server.rows("SELECT spec FROM syncs WHERE name = ?", (name,))[0][0]
    assert "GIT_TOKEN_TEST" in stored
