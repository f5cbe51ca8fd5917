"""Uploads through ``POST /{ns}/``: twine and uv publish as subprocesses, bad input by hand.

twine and uv publish speak the legacy upload form; both must work with a token as the Basic
password of ``__token__``. Files are immutable: the same bytes again are a no-op (so a
``uv publish`` re-run, with or without ``--check-url``, succeeds and changes nothing), other
bytes under the same name are a 409 that says to bump the version. Every bad upload gets a
clear 4xx and leaves nothing behind: no blob, no dists row, no namespace, no temp file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALL_SERVERS, LiveServer
from tests.e2e.conftest import links
from tests.support.clients import (
    TWINE,
    UV,
    create_token,
    output,
    post_upload,
    run,
    sha256,
    twine_env,
    upload_form,
    uv_env,
)
from tests.support.dists import make_sdist, make_wheel

SERVERS = ALL_SERVERS  # these run on the PostgreSQL catalog too (tests/conftest.py)

MANY_DEPS = [f"dep-{i:03d}>=1.{i}; extra == 'x{i % 7}'" for i in range(600)]


@dataclass(frozen=True)
class Files:
    wheel: Path
    sdist: Path
    wheel2: Path
    """Version 0.2.0, uploaded first by ``uv publish --check-url``."""
    other_bytes: Path
    """Same filename as ``wheel``, other contents."""
    many_deps: list[Path]
    """Two releases with 600 Requires-Dist each (transformers 4.57 has 457): one field per
    dependency in the form twine and uv publish send."""
    bad: dict[str, Path]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("upload-dists")
    bad = root / "bad"
    huge_metadata = "Metadata-Version: 2.1\nName: huge\nVersion: 1.0\n\n" + "x" * (2 * 1024 * 1024)
    not_zip = bad / "notzip-1.0-py3-none-any.whl"
    not_zip.parent.mkdir(parents=True)
    not_zip.write_bytes(b"this is not a zip archive, whatever its name says\n" * 20)
    too_big = bad / "big-1.0-py3-none-any.whl"
    too_big.write_bytes(os.urandom(9 * 1024 * 1024))  # the test server's limit is 8 MiB
    return Files(
        wheel=make_wheel(root / "v1", "uploadme", "0.1.0", module_body="ANSWER = 42\n"),
        sdist=make_sdist(root / "v1", "uploadme", "0.1.0"),
        wheel2=make_wheel(root / "v2", "uploadme", "0.2.0"),
        other_bytes=make_wheel(root / "other", "uploadme", "0.1.0", module_body="ANSWER = 43\n"),
        many_deps=[make_wheel(root / "many", "manydeps", v, requires=MANY_DEPS) for v in ("1.0", "2.0")],
        bad={
            "not_zip": not_zip,
            "too_big": too_big,
            "huge": make_wheel(bad / "huge", "huge", "1.0", metadata=huge_metadata),
            "no_pkg_info": make_sdist(bad / "nopkginfo", "nopkginfo", "1.0", pkg_info=False),
            "unsafe": make_sdist(bad / "unsafe", "unsafe", "1.0", members={"../evil": b"escaped\n"}),
            "meta_name": make_wheel(
                bad / "name", "alias", "1.0", metadata="Metadata-Version: 2.1\nName: other\nVersion: 1.0\n\n"
            ),
            "bad_requires_python": make_wheel(bad / "rp", "badrp", "1.0", requires_python="three point eight"),
            "no_name": make_wheel(bad / "noname", "noname", "1.0", metadata="Metadata-Version: 2.1\nVersion: 1.0\n\n"),
            "meta_version": make_wheel(
                bad / "version", "skew", "1.0", metadata="Metadata-Version: 2.1\nName: skew\nVersion: 2.0\n\n"
            ),
        },
    )


def dist_rows(server: LiveServer, ns: str) -> list[tuple]:
    return server.rows(
        "SELECT filename, sha256, upload_time, uploader FROM dists WHERE namespace = ? ORDER BY filename", (ns,)
    )


def page_hashes(http: httpx.Client, ns: str, project: str) -> dict[str, str]:
    page = http.get(f"/{ns}/simple/{project}/")
    assert page.status_code == 200, page.text
    return {name: link.attrs["href"].split("#sha256=")[1] for name, link in links(page.text).items()}


def uv_publish(
    server: LiveServer, ns: str, token: str, cache: Path, *paths: Path, check_url: bool = False, ok: bool = True
):
    cmd = [UV, "publish", "--publish-url", f"{server.url}/{ns}/", "--username", "__token__", "--password", token]
    if check_url:
        cmd += ["--check-url", f"{server.url}/{ns}/simple/"]
    return run([*cmd, *paths], uv_env(cache), check=ok)


def twine_upload(server: LiveServer, ns: str, token: str, *paths: Path, verbose: bool = False, ok: bool = True):
    cmd = [*TWINE, "upload", "--repository-url", f"{server.url}/{ns}/", "-u", "__token__", "-p", token]
    cmd += ["--non-interactive", "--disable-progress-bar", *(["--verbose"] if verbose else [])]
    return run([*cmd, *paths], twine_env(), check=ok)


# -- real clients ------------------------------------------------------------------------------


def test_twine_upload_with_a_write_token(server: LiveServer, http: httpx.Client, ns: str, files: Files) -> None:
    token_id, secret = create_token(http, server, ns, "write", name="ci")
    twine_upload(server, ns, secret, files.wheel, files.sdist)

    rows = dist_rows(server, ns)
    assert [(r[0], r[1]) for r in rows] == [
        (files.wheel.name, sha256(files.wheel.read_bytes())),
        (files.sdist.name, sha256(files.sdist.read_bytes())),
    ]
    assert all(r[3] == f"token:{token_id} (ci)" for r in rows)
    assert page_hashes(http, ns, "uploadme") == {
        files.wheel.name: sha256(files.wheel.read_bytes()),
        files.sdist.name: sha256(files.sdist.read_bytes()),
    }
    audit = server.rows("SELECT actor, detail FROM audit WHERE action = 'dist.upload' AND namespace = ?", (ns,))
    assert sorted(a for a, _ in audit) == [f"token:{token_id} (ci)"] * 2

    # the same bytes again: twine succeeds and nothing changes
    twine_upload(server, ns, secret, files.wheel, files.sdist)
    assert dist_rows(server, ns) == rows
    assert http.get(f"/{ns}/dists/{files.wheel.name}").content == files.wheel.read_bytes()


def test_uv_publish_reruns_are_idempotent_with_and_without_check_url(
    server: LiveServer, http: httpx.Client, ns: str, files: Files, tmp_path: Path
) -> None:
    _, secret = create_token(http, server, ns, "write")
    uv_publish(server, ns, secret, tmp_path, files.wheel, files.sdist)
    rows = dist_rows(server, ns)
    assert [r[0] for r in rows] == [files.wheel.name, files.sdist.name]
    blobs = server.blob_hashes()

    # a plain re-run uploads again and the server answers "already there" without change
    mark = len(server.log_lines())
    uv_publish(server, ns, secret, tmp_path, files.wheel, files.sdist)
    posts = [(m, s) for m, p, s in server.requests_since(mark) if p.rstrip("/") == f"/{ns}"]
    assert posts == [("POST", 200), ("POST", 200)]
    assert dist_rows(server, ns) == rows
    assert not server.new_references(blobs)

    # with --check-url, uv asks the index first: known files are skipped, a new one uploaded
    mark = len(server.log_lines())
    result = uv_publish(server, ns, secret, tmp_path, files.wheel, files.sdist, files.wheel2, check_url=True)
    requests = [(m, p, s) for m, p, s in server.requests_since(mark) if p.startswith(f"/{ns}/")]
    assert [(m, s) for m, p, s in requests if m == "POST"] == [("POST", 200)], requests
    assert any(f"/{ns}/simple/uploadme/" == p for _, p, _ in requests), requests
    assert "already exists" in output(result)
    assert [r[0] for r in dist_rows(server, ns)] == sorted([files.wheel.name, files.sdist.name, files.wheel2.name])

    # and a re-run of that is a no-op too
    uv_publish(server, ns, secret, tmp_path, files.wheel, files.sdist, files.wheel2, check_url=True)
    assert len(dist_rows(server, ns)) == 3
    assert server.temp_count() == 0


def test_a_wheel_with_600_dependencies_uploads_with_twine_and_uv_publish(
    server: LiveServer, http: httpx.Client, ns: str, files: Files, tmp_path: Path
) -> None:
    """Before: ``400 {"detail":"Too many fields. Maximum number of fields is 500."}``."""
    first, second = files.many_deps
    twine_upload(server, ns, server.admin_token, first)
    uv_publish(server, ns, server.admin_token, tmp_path, second)
    assert [r[0] for r in dist_rows(server, ns)] == [first.name, second.name]
    for path in (first, second):
        metadata = http.get(f"/{ns}/dists/{path.name}.metadata")
        assert metadata.status_code == 200
        assert metadata.text.count("Requires-Dist: ") == len(MANY_DEPS)


def test_reupload_with_other_bytes_is_409_and_says_bump_the_version(
    server: LiveServer, http: httpx.Client, ns: str, files: Files, tmp_path: Path
) -> None:
    uv_publish(server, ns, server.admin_token, tmp_path, files.wheel, check_url=True)  # a new namespace
    original = files.wheel.read_bytes()
    assert files.other_bytes.name == files.wheel.name and files.other_bytes.read_bytes() != original
    rows, blobs = dist_rows(server, ns), server.blob_hashes()

    failed = uv_publish(server, ns, server.admin_token, tmp_path, files.other_bytes, ok=False)
    assert failed.returncode != 0
    assert "409" in output(failed) and "bump the version" in output(failed), output(failed)

    failed = twine_upload(server, ns, server.admin_token, files.other_bytes, verbose=True, ok=False)
    assert failed.returncode != 0
    assert "409 Conflict" in output(failed) and "bump the version" in output(failed), output(failed)

    other = files.other_bytes.read_bytes()
    response = post_upload(http, ns, files.wheel.name, other, server.admin_token)
    assert response.status_code == 409
    assert response.json()["error"] == "Conflict"
    assert "immutable" in response.json()["detail"] and "bump the version" in response.json()["detail"]

    assert dist_rows(server, ns) == rows
    assert not server.new_references(blobs)
    assert server.temp_count() == 0
    assert page_hashes(http, ns, "uploadme") == {files.wheel.name: sha256(original)}
    assert http.get(f"/{ns}/dists/{files.wheel.name}").content == original


def test_upload_without_trailing_slash_and_with_bearer(server: LiveServer, http: httpx.Client, ns: str, files: Files):
    data = files.wheel2.read_bytes()
    response = http.post(
        f"/{ns}",
        data=upload_form(files.wheel2, data),
        files={"content": (files.wheel2.name, data)},
        headers=server.admin,
    )
    assert response.status_code == 200, response.text
    assert files.wheel2.name in response.text
    assert [r[0] for r in dist_rows(server, ns)] == [files.wheel2.name]


# -- bad input ---------------------------------------------------------------------------------


@dataclass
class Attempt:
    server: LiveServer
    http: httpx.Client
    ns: str
    files: Files

    def send(self, path: Path, token: str | None = "admin", data: bytes | None = None, **form: str | None):
        data = path.read_bytes() if data is None else data
        token = self.server.admin_token if token == "admin" else token
        return post_upload(self.http, self.ns, path.name, data, token, upload_form(path, data, **form))

    def token(self, scope: str, role: str) -> str:
        return create_token(self.http, self.server, scope, role)[1]


def _multipart_without_content(a: Attempt) -> httpx.Response:
    form = upload_form(a.files.wheel, a.files.wheel.read_bytes())
    fields = {key: (None, value) for key, value in form.items()}  # (None, value): a field part, multipart
    return a.http.post(f"/{a.ns}/", files=fields, auth=("__token__", a.server.admin_token))


def _content_as_text_field(a: Attempt) -> httpx.Response:
    form = upload_form(a.files.wheel, a.files.wheel.read_bytes())
    fields = {key: (None, value) for key, value in {**form, "content": "not a file"}.items()}
    return a.http.post(f"/{a.ns}/", files=fields, auth=("__token__", a.server.admin_token))


def _not_multipart(a: Attempt) -> httpx.Response:
    return a.http.post(
        f"/{a.ns}/",
        content=a.files.wheel.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
        auth=("__token__", a.server.admin_token),
    )


def _urlencoded(a: Attempt) -> httpx.Response:
    form = upload_form(a.files.wheel, a.files.wheel.read_bytes())
    return a.http.post(f"/{a.ns}/", data=form, auth=("__token__", a.server.admin_token))


def _raw(a: Attempt, body: bytes, content_type: str) -> httpx.Response:
    return a.http.post(
        f"/{a.ns}/", content=body, headers={"Content-Type": content_type}, auth=("__token__", a.server.admin_token)
    )


def _fields_over_the_budget(a: Attempt) -> httpx.Response:
    """Many fields of 512 KiB: each within the per-field limit, together over the form's bytes."""
    form = upload_form(a.files.wheel, a.files.wheel.read_bytes())
    fields = {key: (None, value) for key, value in form.items()}
    fields |= {f"description_{i}": (None, "x" * 512 * 1024) for i in range(9)}
    fields["content"] = (a.files.wheel.name, a.files.wheel.read_bytes())
    return a.http.post(f"/{a.ns}/", files=fields, auth=("__token__", a.server.admin_token))


def _two_files(a: Attempt) -> httpx.Response:
    data = a.files.wheel.read_bytes()
    return a.http.post(
        f"/{a.ns}/",
        data=upload_form(a.files.wheel, data),
        files=[("content", (a.files.wheel.name, data)), ("content", (a.files.sdist.name, data))],
        auth=("__token__", a.server.admin_token),
    )


def _renamed(a: Attempt, filename: str) -> httpx.Response:
    data = a.files.wheel.read_bytes()
    form = upload_form(a.files.wheel, data)
    return post_upload(a.http, a.ns, filename, data, a.server.admin_token, form)


BAD: dict[str, tuple[int, str, Callable[[Attempt], httpx.Response]]] = {
    "sha256 mismatch": (400, "sha256_digest does not match", lambda a: a.send(a.files.wheel, sha256_digest="0" * 64)),
    "md5 mismatch": (400, "md5_digest does not match", lambda a: a.send(a.files.wheel, md5_digest="0" * 32)),
    "blake2 mismatch": (
        400,
        "blake2_256_digest does not match",
        lambda a: a.send(a.files.sdist, blake2_256_digest="f" * 64),
    ),
    "digest of other bytes": (
        400,
        "sha256_digest does not match",
        lambda a: a.send(a.files.wheel, sha256_digest=hashlib.sha256(b"other").hexdigest()),
    ),
    "filename not a dist": (400, "neither a wheel", lambda a: _renamed(a, "uploadme-0.1.0.exe")),
    "wheel filename does not parse": (400, "not a valid distribution filename", lambda a: _renamed(a, "uploadme.whl")),
    "sdist filename does not parse": (400, "not a valid distribution filename", lambda a: _renamed(a, "up.tar.gz")),
    "path in filename": (
        400,
        "not a distribution filename",
        lambda a: _renamed(a, "../uploadme-0.1.0-py3-none-any.whl"),
    ),
    "form name disagrees": (400, "the form says name", lambda a: a.send(a.files.wheel, name="something-else")),
    "form version disagrees": (400, "the form says version", lambda a: a.send(a.files.wheel, version="9.9")),
    "form filetype disagrees": (400, "the form says filetype", lambda a: a.send(a.files.wheel, filetype="sdist")),
    "metadata name disagrees": (400, "metadata says Name: other", lambda a: a.send(a.files.bad["meta_name"])),
    "metadata version disagrees": (400, "metadata says Version: 2.0", lambda a: a.send(a.files.bad["meta_version"])),
    "invalid Requires-Python": (
        400,
        "invalid Requires-Python 'three point eight'",
        lambda a: a.send(a.files.bad["bad_requires_python"]),
    ),
    "metadata without Name": (400, "lacks a Name or Version", lambda a: a.send(a.files.bad["no_name"])),
    "form version invalid": (400, "'one' is not a valid version", lambda a: a.send(a.files.wheel, version="one")),
    "wheel is not a zip": (400, "not a zip archive", lambda a: a.send(a.files.bad["not_zip"])),
    "huge METADATA": (400, "the limit is 1048576", lambda a: a.send(a.files.bad["huge"])),
    "sdist without PKG-INFO": (400, "has no top-level PKG-INFO", lambda a: a.send(a.files.bad["no_pkg_info"])),
    "sdist with ../ member": (400, "unsafe member name '../evil'", lambda a: a.send(a.files.bad["unsafe"])),
    "body over the size limit": (413, "larger than the limit", lambda a: a.send(a.files.bad["too_big"])),
    "missing content field": (400, "no 'content' file field", _multipart_without_content),
    "content is not a file": (400, "no 'content' file field", _content_as_text_field),
    "body is not multipart": (400, "must be multipart/form-data", _not_multipart),
    "body is urlencoded": (400, "must be multipart/form-data", _urlencoded),
    "multipart without a boundary": (
        400,
        "not valid multipart/form-data: Missing boundary",
        lambda a: _raw(a, b"--x\r\n", "multipart/form-data"),
    ),
    "multipart that does not parse": (
        400,
        "not valid multipart/form-data: Invalid multipart data",
        lambda a: _raw(a, b"--b\r\nnot a header line\r\n\r\n", "multipart/form-data; boundary=b"),
    ),
    "part without a name": (
        400,
        'not valid multipart/form-data: The Content-Disposition header field "name" must be provided',
        lambda a: _raw(
            a, b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b"
        ),
    ),
    "two files": (400, "Too many files", _two_files),
    "form fields over their byte budget": (400, "fields and part headers exceed 4.0 MiB", _fields_over_the_budget),
    "unsupported action": (400, "unsupported :action", lambda a: a.send(a.files.wheel, **{":action": "submit"})),
    "no token": (401, "needs a token with the write role", lambda a: a.send(a.files.wheel, token=None)),
    "unknown token": (401, "unknown or revoked", lambda a: a.send(a.files.wheel, token="pky_nope_nope")),
    "read token": (403, "may not write", lambda a: a.send(a.files.wheel, token=a.token(a.ns, "read"))),
    "write token of a sibling": (
        403,
        "may not write",
        lambda a: a.send(a.files.wheel, token=a.token(a.ns.rsplit(".", 1)[0] + ".other", "write")),
    ),
    "write token of a child": (
        403,
        "may not write",
        lambda a: a.send(a.files.wheel, token=a.token(a.ns + ".child", "write")),
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_upload_is_a_clear_4xx_and_leaves_nothing(
    case: str, server: LiveServer, http: httpx.Client, ns: str, files: Files
) -> None:
    status, message, attempt = BAD[case]
    blobs = server.blob_hashes()
    response = attempt(Attempt(server, http, ns, files))
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert message in body["detail"], body
    assert body["error"] and "Traceback" not in response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")

    assert server.count("dists", ns) == 0
    assert server.count("namespaces", ns) == 0
    assert not server.new_references(blobs)
    assert server.temp_count() == 0
    assert http.get(f"/{ns}/simple/").status_code == 404


def test_bad_upload_into_an_existing_namespace_changes_nothing(
    server: LiveServer, http: httpx.Client, ns: str, files: Files
) -> None:
    """The same refusals where the namespace and an earlier upload already exist."""
    attempt = Attempt(server, http, ns, files)
    assert attempt.send(files.sdist).status_code == 200
    rows, blobs = dist_rows(server, ns), server.blob_hashes()
    page = http.get(f"/{ns}/simple/uploadme/")
    for case in ("sha256 mismatch", "wheel is not a zip", "sdist with ../ member", "read token"):
        status, message, send = BAD[case]
        response = send(attempt)
        assert (response.status_code, message in response.json()["detail"]) == (status, True), (case, response.text)
    assert dist_rows(server, ns) == rows
    assert not server.new_references(blobs)
    assert server.temp_count() == 0
    again = http.get(f"/{ns}/simple/uploadme/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304
