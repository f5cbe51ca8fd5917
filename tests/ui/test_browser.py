"""The web UI in a real headless Chromium against a real ``packyard serve`` (anonymous reads off).

One module-scoped seed: a namespace with a file of two revisions, a file named like a
script tag, a git repository registered as a sync with builds on (so a wheel leads to its
build and commit), uploaded wheels to yank (one with a script tag for a summary), a shared
resolution whose lock names one of them, and read and write tokens.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from tests.builder.conftest import WorkTree, put_files, tiny_project, wait_build
from tests.support.clients import create_ns, create_token, pip_env, put_file, unique_ns, upload
from tests.support.dists import make_wheel
from tests.ui.conftest import shoot

XSS_FILE = 'notes/<script>alert("file")</script>.txt'
XSS_SUMMARY = '<script>alert("summary")</script>'
XSS_REASON = '<script>alert("reason")</script>'
XSS_FOLDER = 'live<script>alert("log")</script>'


def png() -> bytes:
    """A 1x1 PNG, written out with zlib (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0\xff\0\0")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@dataclass
class Seed:
    ns: str
    repo: WorkTree
    commit: str
    build_id: int
    wheel: str
    read: str
    write: str
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def seed(ui_server, admin_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Seed:  # noqa: ANN001
    http, root = admin_http, tmp_path_factory.mktemp("ui-seed")
    ns = unique_ns("team", prefix="ui")
    create_ns(http, ui_server, ns)
    put_file(http, ui_server, ns, "flows/etl.py", b"def run():\n    return 1\n")
    put_file(http, ui_server, ns, "flows/etl.py", b"def run():\n    return 2  # faster\n")
    put_file(http, ui_server, ns, quote(XSS_FILE), b"hello\n")
    put_file(http, ui_server, ns, "docs/pixel.png", png())

    repo = WorkTree(root / "repo")
    repo.write(tiny_project("uiwidget", "1.0.0"), prefix="widget/")
    commit = repo.commit("the widget", "2024-05-01T12:00:00+00:00")
    name = ns.replace(".", "-")
    response = http.post(
        "/api/v1/syncs", json={"name": name, "namespace": ns, "url": repo.url, "build": True, "build_publish_to": ns}
    )
    assert response.status_code == 201, response.text
    response = http.post(f"/api/v1/syncs/{name}/trigger", json={}, timeout=120)
    assert response.status_code == 200, response.text
    (build_id,) = response.json()["builds"]
    assert wait_build(http, build_id)["state"] == "succeeded"

    wheels = root / "wheels"
    metadata = f"Metadata-Version: 2.1\nName: uixss\nVersion: 1.0\nSummary: {XSS_SUMMARY}\nRequires-Dist: idna>=3\n\n"
    upload(
        http,
        ui_server,
        ns,
        make_wheel(wheels, "uiyank", "1.0"),
        make_wheel(wheels, "uiyank", "1.1"),
        make_wheel(wheels, "uixss", "1.0", metadata=metadata),
    )
    state = http.get(f"/api/v1/namespaces/{ns}/index-state").json()["state"]
    yanked = http.get(f"/api/v1/namespaces/{ns}/dists", params={"project": "uiyank"}).json()
    sha = next(d["sha256"] for d in yanked if d["version"] == "1.1")
    lock = f"uiyank==1.1 \\\n    --hash=sha256:{sha}\n"  # as `uv pip compile --generate-hashes` writes it
    body = {"requirements": ["uiyank"], "python": "3.11", "platform": "linux-x86_64", "implementation": "cpython"}
    response = http.put(f"/api/v1/namespaces/{ns}/resolutions", json={**body, "state": state, "lock": lock})
    assert response.status_code == 201, response.text
    _, read = create_token(http, ui_server, ns, "read", "ui-reader")
    _, write = create_token(http, ui_server, ns, "write", "ui-writer")
    return Seed(ns, repo, commit, build_id, "uiwidget-1.0.0-py3-none-any.whl", read, write)


def open_page(browser, ui_server, seed: Seed):  # noqa: ANN001, ANN201
    context = browser.new_context(base_url=ui_server.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("dialog", lambda dialog: (seed.dialogs.append(dialog.message), dialog.dismiss()))
    return page


def sign_in(browser, ui_server, seed: Seed, secret: str):  # noqa: ANN001, ANN201
    page = open_page(browser, ui_server, seed)
    page.goto("/ui/login")
    page.fill("#token", secret)
    page.click("#sign-in-button")
    page.wait_for_url("**/ui/")
    return page


def csrf_of(page) -> str:  # noqa: ANN001
    return page.locator("header input[name=csrf]").get_attribute("value")


# -- anonymous ----------------------------------------------------------------------------------


def test_anonymous_visitor_sees_the_sign_in_page_and_nothing_else(browser, ui_server, seed: Seed) -> None:  # noqa: ANN001
    page = open_page(browser, ui_server, seed)
    page.goto("/")  # a browser at the root lands in the UI, which asks for a token
    assert re.search(r"/ui/login\?next=", page.url), page.url
    for path in (f"/ui/ns/{seed.ns}/files", f"/ui/builds/{seed.build_id}", f"/ui/ns/{seed.ns}/project/uiyank"):
        page.goto(path)
        assert "/ui/login" in page.url
        assert seed.ns not in page.locator("main").inner_text()
    shoot(page, "sign-in")
    response = page.request.get(f"/ui/builds/{seed.build_id}/log", max_redirects=0)
    assert response.status == 303 and "/ui/login" in response.headers["location"]
    page.context.close()

    # a form posted without a session is refused before its body is read, and changes nothing
    forged = httpx.post(f"{ui_server.url}/ui/ns/{seed.ns}/project/uiyank/yank", data={"version": "1.0"})
    assert forged.status_code == 401
    assert not ui_server.rows("SELECT count(*) FROM dists WHERE namespace = ? AND yanked = 1", (seed.ns,))[0][0]

    # pip and uv at the root get no redirect (their Accept headers ask for the simple API first)
    for accept in (
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
        "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01",
        "*/*",
    ):
        response = httpx.get(ui_server.url + "/", headers={"Accept": accept})
        assert response.status_code == 404 and "location" not in response.headers, accept


def test_a_bad_token_does_not_sign_in(browser, ui_server, seed: Seed) -> None:  # noqa: ANN001
    page = open_page(browser, ui_server, seed)
    page.goto("/ui/login")
    page.fill("#token", "pky_not-a-token")
    page.click("#sign-in-button")
    expect(page.locator("#login-error")).to_be_visible()
    page.goto("/ui/")
    assert "/ui/login" in page.url
    page.context.close()


# -- browsing and diffs ---------------------------------------------------------------------------


def test_sign_in_browse_to_a_file_diff_restore_and_sign_out(browser, ui_server, seed: Seed, admin_http) -> None:  # noqa: ANN001
    page = sign_in(browser, ui_server, seed, seed.write)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["packyard_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert seed.write not in page.content()
    page.click(f"#namespaces >> text={seed.ns.split('.')[-1]}")
    page.click("a.folder >> text=flows/")
    shoot(page, "files")
    page.click("text=etl.py")
    expect(page.locator(".preview")).to_contain_text("return 2")
    shoot(page, "file")
    page.select_option("#diff-a", "1")
    page.select_option("#diff-b", "2")
    page.click("#diff-button")
    expect(page.locator("#diff del")).to_contain_text("return 1")
    expect(page.locator("#diff ins")).to_contain_text("return 2  # faster")
    shoot(page, "diff")

    page.goto(f"/ui/ns/{seed.ns}/file/flows/etl.py")
    page.locator("#history tr", has_text="put").last.locator("button.restore").click()
    expect(page.locator("h2.path")).to_contain_text("revision 3")
    assert admin_http.get(f"/api/v1/namespaces/{seed.ns}/files/flows/etl.py").content == b"def run():\n    return 1\n"

    download = page.request.get(f"/ui/ns/{seed.ns}/raw/flows/etl.py?rev=2")
    assert download.body() == b"def run():\n    return 2  # faster\n"
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["x-content-type-options"] == "nosniff"
    page.goto(f"/ui/ns/{seed.ns}/file/docs/pixel.png")
    image = page.locator(".preview img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 1

    page.click("#sign-out")
    page.wait_for_url("**/ui/login")
    page.goto("/ui/")
    assert "/ui/login" in page.url
    # the old session id is dead on the server, not only forgotten by the browser
    stale = httpx.get(ui_server.url + "/ui/", cookies={"packyard_session": session["value"]})
    assert stale.status_code == 303 and "/ui/login" in stale.headers["location"]
    page.context.close()


def test_search_finds_paths_and_projects(browser, ui_server, seed: Seed) -> None:  # noqa: ANN001
    page = sign_in(browser, ui_server, seed, seed.read)
    page.fill("header input[name=q]", "etl")
    page.press("header input[name=q]", "Enter")
    expect(page.locator(".results")).to_contain_text("flows/etl.py")
    page.fill("header input[name=q]", "uiyank")
    page.press("header input[name=q]", "Enter")
    page.locator(".results a", has_text=": uiyank").click()
    expect(page.locator("main h2").first).to_contain_text("uiyank")
    page.goto(f"/ui/ns/{seed.ns}/settings")  # the API's effective settings, each with where it comes from
    expect(page.locator("#settings tr", has_text="inherit")).to_contain_text("default")
    page.context.close()


# -- provenance -----------------------------------------------------------------------------------


def test_a_wheel_leads_to_its_build_and_commit_and_back(browser, ui_server, seed: Seed) -> None:  # noqa: ANN001
    page = sign_in(browser, ui_server, seed, seed.read)
    page.goto(f"/ui/ns/{seed.ns}/packages")
    shoot(page, "packages")
    page.click("#projects >> text=uiwidget")
    shoot(page, "project")
    page.click(f"a.dist >> text={seed.wheel}")
    page.click("#built-by")
    expect(page.locator("#build-state")).to_have_text("succeeded")
    expect(page.locator("#artifacts")).to_contain_text(seed.wheel)
    expect(page.locator("#sources")).to_contain_text("tiny.json")
    expect(page.locator("dl.facts")).to_contain_text(seed.repo.url)
    shoot(page, "build")
    page.click(f"a.commit >> text={seed.commit[:12]}")
    expect(page.locator("#commit-sha")).to_have_text(seed.commit)
    expect(page.locator("code.repo").first).to_have_text(seed.repo.url)
    shoot(page, "commit")
    page.click(f"#commit-builds >> text={seed.wheel}")  # and back: commit -> build -> wheel
    expect(page.locator("h2")).to_contain_text(seed.wheel)
    page.context.close()


# -- builds ---------------------------------------------------------------------------------------


def test_a_running_builds_log_grows_on_the_page_and_cancel_stops_it(
    browser, ui_server, seed: Seed, admin_http: httpx.Client, tmp_path: Path
) -> None:  # noqa: ANN001
    put_files(admin_http, ui_server, seed.ns, tiny_project("uiticker", ticks=900, tick_seconds=0.2), f"{XSS_FOLDER}/")
    response = admin_http.post("/api/v1/builds", json={"namespace": seed.ns, "path": XSS_FOLDER, "force": True})
    assert response.status_code == 201, response.text
    build_id = response.json()["id"]
    page = sign_in(browser, ui_server, seed, seed.write)
    page.goto(f"/ui/builds/{build_id}")
    log = page.locator("#log")
    expect(log).to_contain_text("tick 2", timeout=60_000)
    seen = log.inner_text().count("tick ")
    expect(log).to_contain_text(f"tick {seen + 3}", timeout=30_000)  # grew without a reload
    assert page.locator("#log script").count() == 0
    assert XSS_FOLDER in log.inner_text()  # the path with a script tag is shown as text
    shoot(page, "build-live")
    page.click("#cancel-build")
    expect(page.locator("#build-state")).to_have_text("cancelled", timeout=60_000)
    page.context.close()


# -- yank -----------------------------------------------------------------------------------------


def test_yank_in_the_ui_and_pip_skips_the_release(browser, ui_server, seed: Seed, tmp_path: Path) -> None:  # noqa: ANN001
    page = sign_in(browser, ui_server, seed, seed.write)
    page.goto(f"/ui/ns/{seed.ns}/dist/uiyank-1.1-py3-none-any.whl")
    expect(page.locator("#used-by")).to_contain_text("uiyank")  # the flows a yank would break
    page.goto(f"/ui/ns/{seed.ns}/project/uiyank")
    version = page.locator("section.version", has=page.locator("#v-1\\.1"))
    version.locator("input[name=reason]").fill(XSS_REASON)
    version.locator("button.yank-button").click()
    expect(page.locator("section.version .yank-reason").first).to_have_text(XSS_REASON)
    shoot(page, "yanked")
    host = ui_server.url.split("://", 1)[1]
    index = f"http://__token__:{seed.read}@{host}/{seed.ns}/simple/"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path), "--index-url", index, "uiyank"],
        env=pip_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["uiyank-1.0-py3-none-any.whl"]
    page.locator("button.unyank").click()
    expect(page.locator("button.unyank")).to_have_count(0)
    page.context.close()


# -- roles, CSRF, escaping ------------------------------------------------------------------------


def test_a_read_token_sees_no_write_buttons_and_its_forged_posts_get_403(
    browser, ui_server, seed: Seed, admin_http: httpx.Client
) -> None:  # noqa: ANN001
    page = sign_in(browser, ui_server, seed, seed.read)
    for path, button in (
        ("/ui/ns/{ns}/file/flows/etl.py", "button.restore"),
        ("/ui/ns/{ns}/project/uiyank", "button.yank-button"),
        ("/ui/ns/{ns}/syncs", "#run-now"),
        ("/ui/tokens", "#create-token"),
    ):
        page.goto(path.format(ns=seed.ns))
        assert page.locator(button).count() == 0, path
    assert page.locator("header >> text=Tokens").count() == 0
    csrf = csrf_of(page)
    posts = {
        f"/ui/ns/{seed.ns}/project/uiyank/yank": {"version": "1.0", "reason": "forged"},
        f"/ui/ns/{seed.ns}/restore/flows/etl.py": {"revision": "1"},
        f"/ui/builds/{seed.build_id}/cancel": {},
        "/ui/tokens": {"scope": "*", "role": "admin"},
    }
    for url, form in posts.items():
        with_csrf = page.request.post(url, form={**form, "csrf": csrf}, max_redirects=0)
        assert with_csrf.status == 403, (url, with_csrf.status)
    page.context.close()

    writer = sign_in(browser, ui_server, seed, seed.write)
    no_csrf = writer.request.post(f"/ui/ns/{seed.ns}/project/uiyank/yank", form={"version": "1.0"}, max_redirects=0)
    wrong = writer.request.post(
        f"/ui/ns/{seed.ns}/project/uiyank/yank", form={"version": "1.0", "csrf": csrf}, max_redirects=0
    )
    assert no_csrf.status == 403 and wrong.status == 403
    writer.context.close()
    dists = admin_http.get(f"/api/v1/namespaces/{seed.ns}/dists", params={"project": "uiyank"}).json()
    assert not any(d["yanked"] for d in dists)
    assert ui_server.rows("SELECT count(*) FROM tokens WHERE scope = '*'")[0][0] == 0


def test_user_data_is_shown_escaped(browser, ui_server, seed: Seed) -> None:  # noqa: ANN001
    page = sign_in(browser, ui_server, seed, seed.write)
    page.goto(f"/ui/ns/{seed.ns}/files?prefix=notes/")
    page.locator("#files a", has_text="alert").first.click()  # a folder named '<script>alert("file")<'
    page.locator("#files a", has_text="script>.txt").click()
    expect(page.locator("h2.path")).to_contain_text(XSS_FILE)
    page.goto(f"/ui/ns/{seed.ns}/project/uixss")
    expect(page.locator("#summary")).to_have_text(XSS_SUMMARY)
    expect(page.locator("#requires")).to_contain_text("idna>=3")
    page.goto(f"/ui/ns/{seed.ns}/packages")
    expect(page.locator("#projects")).to_contain_text(XSS_SUMMARY)
    page.goto(f"/ui/?q={quote('alert')}")
    expect(page.locator(".results")).to_contain_text(XSS_FILE)
    assert page.locator("main script").count() == 0
    time.sleep(0.2)
    assert seed.dialogs == []  # no script tag from user data ever ran, on any page of this module
    page.context.close()


def test_tokens_page_creates_shows_once_and_revoking_ends_sessions(browser, ui_server, seed: Seed) -> None:  # noqa: ANN001
    admin = sign_in(browser, ui_server, seed, ui_server.admin_token)
    expect(admin.locator("#namespaces")).to_contain_text(seed.ns)
    shoot(admin, "home")
    admin.goto("/ui/tokens")
    admin.fill("#token-name", "from-the-ui")
    admin.fill("#token-scope", seed.ns)
    admin.select_option("#token-role", "read")
    admin.click("#create-token")
    secret = admin.locator("#new-secret pre").inner_text().strip()
    assert secret.startswith("pky_")
    shoot(admin, "tokens")
    admin.goto("/ui/tokens")
    assert secret not in admin.content()  # shown once

    reader = sign_in(browser, ui_server, seed, secret)
    reader.goto(f"/ui/ns/{seed.ns}/files")
    assert "/ui/login" not in reader.url
    admin.locator("#tokens tr", has_text="from-the-ui").locator("button.revoke").click()
    expect(admin.locator("#tokens tr", has_text="from-the-ui")).not_to_contain_text("Revoke")
    reader.goto(f"/ui/ns/{seed.ns}/files")
    assert "/ui/login" in reader.url  # the revoked token's session ended
    admin.context.close()
    reader.context.close()
