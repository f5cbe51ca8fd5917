"""Scale-out (issue 14): three ``packyard serve`` processes — A, B, C — on one catalog and one
bucket (SeaweedFS), as real processes on loopback. The catalog is one SQLite file the three
share, which is a valid multi-process setup on one machine.

- Upload through A; pip and uv install through B and C, the file bytes coming by redirect
  from the bucket (``PACKYARD_S3_REDIRECT``), access checked before the redirect.
- Yank and delete through B and C, revoke a token on C, change settings on B: every other
  server follows within the documented bound (polled, never timed), and ``index_state`` is
  the same on all three.
- Two uploads of one filename with different bytes, to A and B at the same moment: one
  wins, the other is a 409, and every server serves the winner's bytes.
- One webhook delivery sent to A and B at once runs one sync; two new deliveries at once
  both sync, one after the other (a lease in the catalog).
- A build queued on A (which has no worker) runs once, on B's or C's embedded worker, and
  ``build logs --follow`` through the other server shows it as it runs.
- A SIGKILL mid-upload: B and C keep serving, the torn upload is nowhere, and after a restart
  A lists everything it listed before.
- ``serve --workers 2`` on SQLite and local disk: the same coherence on one port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.builder.conftest import HEADER, tiny_project, wait_build
from tests.conftest import LiveServer, live_server
from tests.support.clients import (
    JSON_V1,
    PACKYARD,
    UV,
    create_ns,
    create_token,
    git_env,
    make_venv,
    pip_env,
    post_upload,
    run,
    unique_ns,
    upload,
    uv_env,
)
from tests.support.dists import make_wheel
from tests.support.procs import SeaweedFS, stop_process

BOUND = 5.0
"""Polling limit for a change to reach another server: far above the documented bound
(milliseconds with SQLite, about a second with PostgreSQL), so a loaded machine does not
fail the test, and still finite, so a server that never learns fails it."""
SECRET = "scale-webhook-secret"


class Trio:
    """Three servers on one catalog and one bucket prefix: with SQLite, one data folder (its
    ``catalog.db``) on one machine; with PostgreSQL, one database and a data folder each, as
    on three machines."""

    def __init__(self, root: Path, weed: SeaweedFS, database_url: str | None) -> None:
        prefix = f"trio-{uuid.uuid4().hex[:8]}"
        common = {
            "PACKYARD_LOG_REQUESTS": "true",
            "PACKYARD_S3_REDIRECT": "true",
            "PACKYARD_CREDENTIAL_ENVS": "WEBHOOK_SECRET_TEST",
            "WEBHOOK_SECRET_TEST": SECRET,
            "PACKYARD_MAX_UPLOAD_BYTES": str(16 * 1024 * 1024),
        }
        self.nodes: dict[str, LiveServer] = {}
        if database_url:
            common["PACKYARD_DATABASE_URL"] = database_url
        for name, worker in (("a", False), ("b", True), ("c", True)):
            env = {**common, "PACKYARD_EMBEDDED_WORKER": str(worker).lower()}
            live = live_server(root / name if database_url else root, env, weed, prefix)
            live.server.name = name
            self.nodes[name] = live
        self.root = root

    def __getitem__(self, name: str) -> LiveServer:
        return self.nodes[name]

    def start(self) -> None:
        for live in self.nodes.values():
            live.server.start()

    def stop(self) -> None:
        for live in self.nodes.values():
            live.server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def trio(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, weed: SeaweedFS) -> Iterator[Trio]:
    url = request.getfixturevalue("postgres").create_database("trio") if request.param == "postgres" else None
    servers = Trio(tmp_path_factory.mktemp(f"trio-{request.param}"), weed, url)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def client(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url, timeout=60)


def within_bound(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` until it holds; fail if it still does not after :data:`BOUND` seconds."""
    deadline = time.monotonic() + BOUND
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {BOUND}s"
        time.sleep(0.02)


def page(live: LiveServer, ns: str, project: str, token: str | None = None) -> httpx.Response:
    headers = {"Accept": JSON_V1}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{live.url}/{ns}/simple/{project}/", headers=headers, timeout=30)


def files_of(live: LiveServer, ns: str, project: str) -> dict[str, dict]:
    response = page(live, ns, project)
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    return {f["filename"]: f for f in response.json()["files"]}


def index_state(live: LiveServer, ns: str) -> str:
    response = httpx.get(f"{live.url}/api/v1/namespaces/{ns}/index-state", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["state"]


# -- install, yank, delete, revoke, settings ---------------------------------------------------


def test_install_through_other_servers_by_redirect(trio: Trio, tmp_path: Path, weed: SeaweedFS) -> None:
    a, b, c = trio["a"], trio["b"], trio["c"]
    ns = unique_ns("install")
    one = make_wheel(tmp_path / "dist", "scalepkg", "1.0")
    with client(a) as http:
        create_ns(http, a, ns)
        upload(http, a, ns, one)
    # B and C have never seen the project; they list it at once (no per-server state)
    within_bound(lambda: one.name in files_of(b, ns, "scalepkg"), "B lists A's upload")
    within_bound(lambda: one.name in files_of(c, ns, "scalepkg"), "C lists A's upload")

    # downloads redirect to the bucket, after the access check
    url = f"/{ns}/dists/{one.name}"
    response = httpx.get(b.url + url, timeout=30)
    assert response.status_code == 302, response.text
    assert urlsplit(response.headers["location"]).netloc == urlsplit(weed.endpoint).netloc
    assert httpx.get(response.headers["location"], timeout=30).content == one.read_bytes()
    assert httpx.get(b.url + url, headers={"Authorization": "Bearer pky_forged"}).status_code == 401
    with client(a) as http:
        other = unique_ns("elsewhere")
        create_ns(http, a, other)
        _, outsider = create_token(http, a, other, "read")
    refused = httpx.get(c.url + url, headers={"Authorization": f"Bearer {outsider}"}, timeout=30)
    assert refused.status_code == 403, refused.text
    assert "location" not in refused.headers
    missing = httpx.get(f"{c.url}/{ns}/dists/scalepkg-9.9-py3-none-any.whl", timeout=30)
    assert missing.status_code == 404 and "location" not in missing.headers

    # pip through B, uv through C: both follow the redirect to the bucket
    target = tmp_path / "pip-target"
    run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", target,
         "--index-url", f"{b.url}/{ns}/simple/", "scalepkg==1.0"],
        pip_env(),
    )  # fmt: skip
    assert (target / "scalepkg" / "__init__.py").read_text().startswith("VERSION = '1.0'")
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    run(
        [UV, "pip", "install", "--python", python, "--index-url", f"{c.url}/{ns}/simple/", "scalepkg==1.0"],
        uv_env(tmp_path / "uv-cache"),
    )
    shown = run([python, "-c", "import scalepkg; print(scalepkg.VERSION)"], uv_env(tmp_path / "uv-cache"))
    assert shown.stdout.strip() == "1.0"


def test_changes_reach_every_server(trio: Trio, tmp_path: Path) -> None:
    a, b, c = trio["a"], trio["b"], trio["c"]
    ns = unique_ns("scale")
    one = make_wheel(tmp_path / "dist", "scalepkg", "1.0")
    two = make_wheel(tmp_path / "dist", "scalepkg", "2.0")
    url = f"/{ns}/dists/{one.name}"
    with client(a) as http:
        create_ns(http, a, ns)
        upload(http, a, ns, one)
    for live in (a, b, c):  # every server caches the page
        within_bound(lambda live=live: one.name in files_of(live, ns, "scalepkg"), "the upload is listed")

    # a new release through A reaches B and C, which had cached the page
    with client(a) as http:
        upload(http, a, ns, two)
    for live in (a, b, c):
        within_bound(lambda live=live: two.name in files_of(live, ns, "scalepkg"), "the new release is listed")
        assert files_of(live, ns, "scalepkg")[two.name]["yanked"] is False
    with client(b) as http:
        yanked = http.post(
            f"/api/v1/namespaces/{ns}/dists/scalepkg/2.0/yank", json={"reason": "broken"}, headers=b.admin
        )
        assert yanked.status_code == 200, yanked.text
    for live in (a, c):
        within_bound(lambda live=live: files_of(live, ns, "scalepkg")[two.name]["yanked"] == "broken", "yank")
    within_bound(lambda: len({index_state(live, ns) for live in (a, b, c)}) == 1, "one index_state")

    # a delete through C: A and B stop offering the file, and its download is a 404
    with client(c) as http:
        deleted = http.delete(f"/api/v1/namespaces/{ns}/dists/scalepkg/1.0", headers=c.admin)
        assert deleted.status_code == 200, deleted.text
    for live in (a, b):
        within_bound(lambda live=live: one.name not in files_of(live, ns, "scalepkg"), "delete")
        assert httpx.get(live.url + url, timeout=30).status_code == 404

    # a settings change through B: A's chain follows (the child stops inheriting)
    child = f"{ns}.child"
    with client(a) as http:
        create_ns(http, a, child)
    within_bound(lambda: two.name in files_of(a, child, "scalepkg"), "the child inherits")
    with client(b) as http:
        changed = http.patch(f"/api/v1/namespaces/{child}/settings", json={"inherit": False}, headers=b.admin)
        assert changed.status_code == 200, changed.text
    within_bound(lambda: files_of(a, child, "scalepkg") == {}, "inherit=false")

    # a token revoked on C is refused by A, on the hot path and on the routes
    with client(a) as http:
        token_id, secret = create_token(http, a, ns, "read")
    assert page(a, ns, "scalepkg", secret).status_code == 200
    with client(c) as http:
        assert http.delete(f"/api/v1/tokens/{token_id}", headers=c.admin).status_code == 200
    within_bound(lambda: page(a, ns, "scalepkg", secret).status_code == 401, "revocation")
    whoami = httpx.get(f"{a.url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert whoami.status_code == 401


# -- two uploads of one filename at one moment ---------------------------------------------------


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def go(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]


def test_same_filename_on_two_servers_at_once(trio: Trio, tmp_path: Path) -> None:
    a, b, c = trio["a"], trio["b"], trio["c"]
    ns = unique_ns("race")
    with client(a) as http:
        create_ns(http, a, ns)
    first = make_wheel(tmp_path / "first", "racer", "1.0", module_body="SIDE = 'first'\n").read_bytes()
    second = make_wheel(tmp_path / "second", "racer", "1.0", module_body="SIDE = 'second'\n").read_bytes()
    assert first != second
    name = "racer-1.0-py3-none-any.whl"
    with client(a) as http_a, client(b) as http_b:
        answers = at_once(
            lambda: post_upload(http_a, ns, name, first, a.admin_token),
            lambda: post_upload(http_b, ns, name, second, b.admin_token),
        )
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    winner = first if answers[0].status_code == 200 else second
    digest = hashlib.sha256(winner).hexdigest()
    for live in (a, b, c):
        listed = files_of(live, ns, "racer")
        assert list(listed) == [name] and listed[name]["hashes"]["sha256"] == digest
        got = httpx.get(f"{live.url}/{ns}/dists/{name}", follow_redirects=True, timeout=30)
        assert got.content == winner
    assert a.rows("SELECT count(*) FROM dists WHERE namespace = ?", (ns,)) == [(1,)]


# -- one webhook delivery on two servers -------------------------------------------------------


def git_repo(root: Path) -> str:
    work, bare = root / f"work-{uuid.uuid4().hex[:6]}", root / f"repo-{uuid.uuid4().hex[:6]}.git"
    env = git_env("Scale", "scale@example.com")
    run(["git", "init", "-q", "-b", "main", work], env)
    (work / "flow.py").write_text("print('hooked')\n")
    run(["git", "-C", work, "add", "."], env)
    run(["git", "-C", work, "commit", "-q", "-m", "first"], env)
    run(["git", "clone", "-q", "--bare", work, bare], env)
    return bare.as_uri()


def test_one_delivery_to_two_servers_runs_one_sync(trio: Trio) -> None:
    a, b = trio["a"], trio["b"]
    name, ns = f"s-{uuid.uuid4().hex[:10]}", unique_ns("hook")
    body = {"name": name, "namespace": ns, "url": git_repo(trio.root), "webhook_secret_env": "WEBHOOK_SECRET_TEST"}
    with client(a) as http:
        assert http.post("/api/v1/syncs", json=body, headers=a.admin).status_code == 201
    event = json.dumps({"ref": "refs/heads/main", "repository": {"default_branch": "main"}}).encode()
    signed = {"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), event, hashlib.sha256).hexdigest()}

    def deliver(live: LiveServer, delivery: str) -> Callable[[], httpx.Response]:
        headers = {**signed, "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
        return lambda: httpx.post(f"{live.url}/api/v1/syncs/{name}/webhook", content=event, headers=headers, timeout=60)

    delivery = str(uuid.uuid4())
    answers = at_once(deliver(a, delivery), deliver(b, delivery))
    statuses = sorted((r.status_code, r.json()["status"]) for r in answers)
    assert statuses[0] == (200, "ran") and statuses[1][1] in ("replay", "running"), [r.text for r in answers]
    assert a.rows("SELECT count(*) FROM sync_runs WHERE sync = ?", (name,)) == [(1,)]
    # the same delivery again (a forge's retry) is remembered
    assert deliver(b, delivery)().json()["status"] == "replay"

    # two new deliveries on two servers at once: both pushes are synced, never side by side
    # (the second waits for the lease holder, which runs once more)
    answers = at_once(deliver(a, str(uuid.uuid4())), deliver(trio["c"], str(uuid.uuid4())))
    assert sorted(r.json()["status"] for r in answers) in (["ran", "ran"], ["ran", "running"]), answers
    runs = a.rows("SELECT started, finished FROM sync_runs WHERE sync = ? ORDER BY started", (name,))
    assert len(runs) == 3
    assert all(earlier[1] <= later[0] for earlier, later in zip(runs, runs[1:], strict=False)), runs


# -- builds: claimed once across servers, logs followed anywhere ---------------------------------


def test_build_queued_on_a_runs_once_elsewhere(trio: Trio) -> None:
    a = trio["a"]
    workers = {f"embedded-{os.uname().nodename}-{trio[n].server.proc.pid}": n for n in ("b", "c")}
    ns = unique_ns("build")
    with client(a) as http:
        for path, data in tiny_project("scalebuild", sleep=3).items():
            assert http.put(f"/api/v1/namespaces/{ns}/files/{path}", content=data, headers=a.admin).status_code in (
                200,
                201,
            )
        queued = http.post("/api/v1/builds", json={"namespace": ns}, headers=a.admin)
        assert queued.status_code == 201, queued.text
        build_id = queued.json()["id"]
        running = wait_build(http, build_id, timeout=60, states=("running", "succeeded", "failed"))
    assert running["worker"] in workers, running
    ran_on = workers[running["worker"]]
    elsewhere = trio["c" if ran_on == "b" else "b"]
    follow = subprocess.run(
        [*PACKYARD, "build", "logs", str(build_id), "--follow"],
        env=elsewhere.client_env(elsewhere.admin_token),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert follow.returncode == 0, follow.stderr
    with client(elsewhere) as http:
        done = wait_build(http, build_id, timeout=60)
        stored = http.get(f"/api/v1/builds/{build_id}/log").text
    assert done["state"] == "succeeded", done
    assert [int(i) for i in HEADER.findall(follow.stdout)] == [build_id], follow.stdout
    assert follow.stdout.strip() == stored.strip()
    claims = sum(
        1
        for live in trio.nodes.values()
        for line in live.log_lines()
        if '"POST /api/v1/workers/claim HTTP/1.1" 200' in line
    )
    assert claims >= 1 and done["worker"] == running["worker"]
    assert a.rows("SELECT count(*) FROM build_log_chunks WHERE build_id = ?", (build_id,)) == [(0,)]


# -- a server killed mid-upload ----------------------------------------------------------------


def test_sigkill_mid_upload(trio: Trio, tmp_path: Path) -> None:
    a, b, c = trio["a"], trio["b"], trio["c"]
    ns = unique_ns("kill")
    kept = make_wheel(tmp_path / "kept", "killpkg", "1.0")
    big = make_wheel(tmp_path / "big", "killpkg", "2.0", module_body="DATA = " + repr(os.urandom(3 << 20).hex()))
    with client(a) as http:
        create_ns(http, a, ns)
        upload(http, a, ns, kept)
    data = big.read_bytes()
    sent = threading.Event()

    def slow_body() -> Iterator[bytes]:
        boundary = b"--scale-boundary"
        yield boundary + b'\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
        yield boundary + b'\r\nContent-Disposition: form-data; name="protocol_version"\r\n\r\n1\r\n'
        yield (
            boundary + b'\r\nContent-Disposition: form-data; name="content"; filename="' + big.name.encode() + b'"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]
            if i >= 1 << 20:
                sent.set()
            time.sleep(0.05)
        yield b"\r\n" + boundary + b"--\r\n"

    outcome: list[object] = []

    def push() -> None:
        try:
            outcome.append(
                httpx.post(
                    f"{a.url}/{ns}/",
                    content=slow_body(),
                    headers={"Content-Type": "multipart/form-data; boundary=scale-boundary"},
                    auth=("__token__", a.admin_token),
                    timeout=60,
                )
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=push)
    thread.start()
    assert sent.wait(60)
    os.kill(a.server.proc.pid, signal.SIGKILL)
    a.server.proc.wait(timeout=10)
    thread.join(timeout=60)
    assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome
    for live in (b, c):  # the others serve on, and the torn upload is nowhere
        assert set(files_of(live, ns, "killpkg")) == {kept.name}
        assert httpx.get(f"{live.url}/{ns}/dists/{big.name}", timeout=30).status_code == 404
    assert b.rows("SELECT filename FROM dists WHERE namespace = ?", (ns,)) == [(kept.name,)]
    a.server.proc = None
    a.server.start()  # nothing lost: A lists what it listed, and takes the upload again
    assert set(files_of(a, ns, "killpkg")) == {kept.name}
    with client(a) as http:
        upload(http, a, ns, big)
    for live in (a, b, c):
        within_bound(lambda live=live: big.name in files_of(live, ns, "killpkg"), "the upload after restart")


# -- serve --workers 2 on SQLite and local disk --------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("two-workers")
    live = live_server(root, {"PACKYARD_LOG_REQUESTS": "true"})
    live.server.args = ["--workers", "2"]
    live.server.start()
    try:
        yield live
    finally:
        if live.server.proc is not None:
            os.killpg(live.server.proc.pid, signal.SIGTERM)
            stop_process(live.server.proc, 15)


def serving_pids(live: LiveServer) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(live.server.proc.pid)], capture_output=True, text=True, check=False
    )
    return {int(p) for p in out.stdout.split()}


def every_process(live: LiveServer, check: Callable[[httpx.Response], bool], path: str, **kw: object) -> bool:
    """True when ``check`` holds for 12 answers on fresh connections (both processes answer some)."""
    return all(check(httpx.get(live.url + path, timeout=30, **kw)) for _ in range(12))


def test_serve_workers_two_processes_stay_coherent(two_workers: LiveServer, tmp_path: Path) -> None:
    live = two_workers
    assert len(serving_pids(live)) >= 2
    ns = unique_ns("workers")
    wheel = make_wheel(tmp_path, "twoproc", "1.0")
    with client(live) as http:
        create_ns(http, live, ns)
        upload(http, live, ns, wheel)
        token_id, secret = create_token(http, live, ns, "read")
    path = f"/{ns}/simple/twoproc/"
    listed = lambda r: r.status_code == 200 and r.json()["files"][0]["yanked"] is False  # noqa: E731
    within_bound(lambda: every_process(live, listed, path, headers={"Accept": JSON_V1}), "both list the upload")
    with client(live) as http:
        response = http.post(
            f"/api/v1/namespaces/{ns}/dists/twoproc/1.0/yank", json={"reason": "x"}, headers=live.admin
        )
        assert response.status_code == 200, response.text
    yanked = lambda r: r.status_code == 200 and r.json()["files"][0]["yanked"] == "x"  # noqa: E731
    within_bound(lambda: every_process(live, yanked, path, headers={"Accept": JSON_V1}), "both show the yank")
    state = lambda r: r.json()["state"]  # noqa: E731
    states = {state(httpx.get(f"{live.url}/api/v1/namespaces/{ns}/index-state", timeout=30)) for _ in range(12)}
    assert len(states) == 1
    auth = {"Accept": JSON_V1, "Authorization": f"Bearer {secret}"}
    assert every_process(live, lambda r: r.status_code == 200, path, headers=auth)
    with client(live) as http:
        assert http.delete(f"/api/v1/tokens/{token_id}", headers=live.admin).status_code == 200
    within_bound(lambda: every_process(live, lambda r: r.status_code == 401, path, headers=auth), "revocation")


def test_serve_workers_two_processes_run_builds(two_workers: LiveServer) -> None:
    """Each process's embedded worker claims builds; its calls land on either process."""
    live = two_workers
    with client(live) as http:
        ids = []
        for i in range(2):
            ns = unique_ns("twobuild")
            for path, data in tiny_project(f"twobuild{i}").items():
                put = http.put(f"/api/v1/namespaces/{ns}/files/{path}", content=data, headers=live.admin)
                assert put.status_code in (200, 201), put.text
            queued = http.post("/api/v1/builds", json={"namespace": ns}, headers=live.admin)
            assert queued.status_code == 201, queued.text
            ids.append(queued.json()["id"])
        done = [wait_build(http, build_id, timeout=120) for build_id in ids]
    assert [b["state"] for b in done] == ["succeeded", "succeeded"], done
    # no worker call was refused by the process that did not start that worker
    worker_calls = ("/api/v1/workers", "/api/v1/builds")
    refused = [r for r in live.requests_since(0) if r[2] == 401 and r[1].startswith(worker_calls)]
    assert not refused, refused
