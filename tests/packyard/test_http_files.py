"""The files API through a real ``packyard serve`` process, on both backends."""

from __future__ import annotations

import hashlib
import http.client
import io
import zipfile
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ALL_SERVERS, LiveServer

SERVERS = ALL_SERVERS  # these run on the PostgreSQL catalog too (tests/conftest.py)


def raw(server: LiveServer, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """Send a request with the path exactly as given (httpx would normalise '..' away)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={**server.admin, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def files_url(ns: str, path: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/files/{path}"


def put(http: httpx.Client, server: LiveServer, ns: str, path: str, body: bytes) -> httpx.Response:
    return http.put(files_url(ns, path), content=body, headers=server.admin)


def nothing_left(server: LiveServer, ns: str, blobs_before: set[str]) -> None:
    """No namespace, revision or head row for ``ns``, no new blob, no temporary upload."""
    assert server.count("namespaces", ns) == 0
    assert server.count("file_revisions", ns) == 0
    assert server.count("file_heads", ns) == 0
    assert server.blob_hashes() == blobs_before
    assert server.temp_count() == 0


def test_put_get_shapes_and_status_codes(http: httpx.Client, server: LiveServer, ns: str) -> None:
    body = b"print('hello')\n"
    first = put(http, server, ns, "flows/etl.py", body)
    assert first.status_code == 201
    assert first.json() == {
        "path": "flows/etl.py",
        "revision": 1,
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "updated": first.json()["updated"],
    }
    again = put(http, server, ns, "flows/etl.py", body)
    assert again.status_code == 200
    assert again.json()["revision"] == 1

    v2 = b"print('v2')\n"
    changed = put(http, server, ns, "flows/etl.py", v2)
    assert (changed.status_code, changed.json()["revision"]) == (201, 2)

    got = http.get(files_url(ns, "flows/etl.py"))
    assert got.content == v2
    assert got.headers["etag"] == f'"{hashlib.sha256(v2).hexdigest()}"'
    assert http.get(files_url(ns, "flows/etl.py"), params={"revision": 1}).content == body
    not_modified = http.get(files_url(ns, "flows/etl.py"), headers={"If-None-Match": got.headers["etag"]})
    assert not_modified.status_code == 304
    head = http.head(files_url(ns, "flows/etl.py"))
    assert head.status_code == 200 and head.headers["etag"] == got.headers["etag"]

    listing = http.get(f"/api/v1/namespaces/{ns}/files", params={"prefix": "flows/"}).json()
    assert [(f["path"], f["revision"], f["size"]) for f in listing] == [("flows/etl.py", 2, 12)]
    assert set(listing[0]) == {"path", "revision", "sha256", "size", "updated"}


def test_delete_history_restore_move(http: httpx.Client, server: LiveServer, ns: str) -> None:
    put(http, server, ns, "a.txt", b"one")
    put(http, server, ns, "a.txt", b"two")
    assert http.delete(files_url(ns, "a.txt"), headers=server.admin).status_code == 200
    assert http.get(files_url(ns, "a.txt")).status_code == 404
    assert http.get(f"/api/v1/namespaces/{ns}/files").json() == []
    assert http.delete(files_url(ns, "a.txt"), headers=server.admin).status_code == 404

    history = http.get(f"/api/v1/namespaces/{ns}/revisions/a.txt").json()
    assert [(r["revision"], r["deleted"]) for r in history] == [(1, False), (2, False), (3, True)]
    assert http.get(files_url(ns, "a.txt"), params={"revision": 3}).status_code == 404

    restored = http.post(f"/api/v1/namespaces/{ns}/restore/a.txt", params={"revision": 1}, headers=server.admin)
    assert (restored.status_code, restored.json()["revision"]) == (201, 4)
    assert http.get(files_url(ns, "a.txt")).content == b"one"

    moved = http.post(
        f"/api/v1/namespaces/{ns}/move", json={"source": "a.txt", "target": "b/a.txt"}, headers=server.admin
    )
    assert moved.status_code == 201
    assert http.get(files_url(ns, "b/a.txt")).content == b"one"
    assert http.get(files_url(ns, "a.txt")).status_code == 404

    put(http, server, ns, "c.txt", b"c")
    clash = http.post(
        f"/api/v1/namespaces/{ns}/move", json={"source": "c.txt", "target": "b/a.txt"}, headers=server.admin
    )
    assert clash.status_code == 409
    assert http.get(files_url(ns, "b/a.txt")).content == b"one"


def test_unknown_things_are_404(http: httpx.Client, server: LiveServer, ns: str) -> None:
    put(http, server, ns, "x.txt", b"x")
    assert http.get(files_url(ns, "missing.txt")).status_code == 404
    unknown = http.get(files_url(ns, "x.txt"), params={"revision": 9})
    assert unknown.status_code == 404
    assert "no revision 9" in unknown.json()["detail"]
    assert http.get("/api/v1/namespaces/nosuch.namespace").status_code == 404
    assert http.get("/api/v1/namespaces/nosuch.namespace/files").status_code == 404


def test_namespaces_create_list_show(http: httpx.Client, server: LiveServer, ns: str) -> None:
    created = http.post("/api/v1/namespaces", json={"name": ns}, headers=server.admin)
    assert created.status_code == 201
    assert http.post("/api/v1/namespaces", json={"name": ns}, headers=server.admin).status_code == 409
    parent = ns.split(".")[0]
    names = [n["name"] for n in http.get("/api/v1/namespaces", params={"under": parent}).json()]
    assert names == [parent, ns]
    put(http, server, ns, "f", b"12345")
    shown = http.get(f"/api/v1/namespaces/{ns}").json()
    assert (shown["name"], shown["files"], shown["bytes"]) == (ns, 1, 5)


def test_export_and_import_zip(http: httpx.Client, server: LiveServer, ns: str) -> None:
    put(http, server, ns, "src/a.py", b"a = 1\n")
    put(http, server, ns, "src/pkg/b.py", b"b = 2\n")
    put(http, server, ns, "README.md", b"# hi\n")
    exported = http.get(f"/api/v1/namespaces/{ns}/export", params={"prefix": "src/"})
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        assert sorted(archive.namelist()) == ["src/a.py", "src/pkg/b.py"]

    other = ns + ".copy"
    imported = http.post(
        f"/api/v1/namespaces/{other}/import",
        params={"prefix": "vendored"},
        content=exported.content,
        headers=server.admin,
    )
    assert imported.status_code == 201
    assert imported.json()["changed"] == 2
    assert http.get(files_url(other, "vendored/src/pkg/b.py")).content == b"b = 2\n"
    again = http.post(
        f"/api/v1/namespaces/{other}/import",
        params={"prefix": "vendored"},
        content=exported.content,
        headers=server.admin,
    )
    assert (again.status_code, again.json()["changed"]) == (200, 0)


TRAVERSALS = [
    "../x",
    "a/../../b",
    "a/%2e%2e/%2e%2e/etc/passwd",
    "%2e%2e/x",
    "/etc/passwd",
    "a%5cb",
    "a%00b",
    "a//b",
    "dir/",
    "x%0a.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_unsafe_paths_are_refused_and_leave_nothing(server: LiveServer, ns: str, path: str) -> None:
    before = server.blob_hashes()
    status, body = raw(server, "PUT", f"/api/v1/namespaces/{ns}/files/{path}", b"payload-" + path.encode())
    assert status == 400, body
    assert b"path" in body
    nothing_left(server, ns, before)
    status, _ = raw(server, "GET", f"/api/v1/namespaces/{ns}/files/{path}")
    assert status in (400, 404)


@pytest.mark.parametrize("bad", ["Company", "a..b", "-a", "a.", "x" * 256, "a_b$"])
def test_invalid_namespace_names(server: LiveServer, bad: str) -> None:
    before = server.blob_hashes()
    status, body = raw(server, "PUT", f"/api/v1/namespaces/{bad}/files/f.txt", b"data")
    assert status == 400 and b"namespace" in body
    status, _ = raw(
        server, "POST", "/api/v1/namespaces", f'{{"name": "{bad}"}}'.encode(), {"Content-Type": "application/json"}
    )
    assert status == 400
    assert server.blob_hashes() == before
    assert server.rows("SELECT count(*) FROM namespaces WHERE name = ?", (bad,))[0][0] == 0


def test_body_over_the_limit_is_refused_while_streaming(http: httpx.Client, server: LiveServer, ns: str) -> None:
    before = server.blob_hashes()

    def chunks():  # no Content-Length: the server must stop it while streaming
        for _ in range(12):
            yield b"z" * (1024 * 1024)

    response = http.put(files_url(ns, "big.bin"), content=chunks(), headers=server.admin)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    nothing_left(server, ns, before)

    status, body = raw(server, "PUT", files_url(ns, "big.bin"), b"z", {"Content-Length": str(64 * 1024**2)})
    assert status == 413 and b"limit" in body
    nothing_left(server, ns, before)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "archive",
    [
        _zip({"ok.txt": b"fine", "../evil.txt": b"evil"}),
        _zip({"ok.txt": b"fine", "/etc/cron.d/x": b"evil"}),
        _zip({"a\\..\\..\\x": b"evil"}),
        _zip({"bomb.bin": b"\0" * (6 * 1024 * 1024)}),
        b"this is not a zip",
    ],
    ids=["dotdot", "absolute", "backslash", "bomb", "not-a-zip"],
)
def test_bad_zip_uploads_leave_nothing(http: httpx.Client, server: LiveServer, ns: str, archive: bytes) -> None:
    before = server.blob_hashes()
    response = http.post(f"/api/v1/namespaces/{ns}/import", content=archive, headers=server.admin)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "UnsafeArchive"
    nothing_left(server, ns, before)


def test_auth_rules(http: httpx.Client, server: LiveServer, ns: str) -> None:
    before = server.blob_hashes()
    anonymous = http.put(files_url(ns, "a.txt"), content=b"nope")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    wrong = http.put(files_url(ns, "a.txt"), content=b"nope", headers={"Authorization": "Bearer pky_nope"})
    assert wrong.status_code == 401
    nothing_left(server, ns, before)

    def token(scope: str, role: str) -> str:
        created = http.post("/api/v1/tokens", json={"scope": scope, "role": role}, headers=server.admin)
        assert created.status_code == 201
        return created.json()["secret"]

    parent = ns.split(".")[0]
    writer = token(parent, "write")
    reader = token(ns, "read")
    sibling = token(parent + "x", "admin")

    # scope covers children; Basic with the token as password works as twine sends it
    ok = http.put(files_url(ns, "a.txt"), content=b"yes", auth=("__token__", writer))
    assert ok.status_code == 201
    assert (
        http.put(files_url(ns, "b.txt"), content=b"no", headers={"Authorization": f"Bearer {reader}"}).status_code
        == 403
    )
    assert (
        http.put(files_url(ns, "b.txt"), content=b"no", headers={"Authorization": f"Bearer {sibling}"}).status_code
        == 403
    )
    assert http.get(files_url(ns, "b.txt")).status_code == 404  # nothing written

    # a write token cannot mint tokens; an admin cannot mint outside its scope
    assert (
        http.post(
            "/api/v1/tokens", json={"scope": ns, "role": "read"}, headers={"Authorization": f"Bearer {writer}"}
        ).status_code
        == 403
    )
    assert (
        http.post(
            "/api/v1/tokens", json={"scope": parent, "role": "read"}, headers={"Authorization": f"Bearer {sibling}"}
        ).status_code
        == 403
    )

    # revoked tokens stop working at once
    listed = http.get("/api/v1/tokens", headers=server.admin).json()
    writer_id = next(t["id"] for t in listed if writer.startswith(f"pky_{t['id']}_"))
    assert all("secret" not in t and "secret_hash" not in t for t in listed)
    assert http.delete(f"/api/v1/tokens/{writer_id}", headers=server.admin).status_code == 200
    assert http.put(files_url(ns, "c.txt"), content=b"late", auth=("__token__", writer)).status_code == 401


def test_openapi_documents_the_api(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/namespaces",
        "/api/v1/namespaces/{ns}",
        "/api/v1/namespaces/{ns}/files",
        "/api/v1/namespaces/{ns}/files/{path}",
        "/api/v1/namespaces/{ns}/revisions/{path}",
        "/api/v1/namespaces/{ns}/export",
        "/api/v1/namespaces/{ns}/import",
        "/api/v1/namespaces/{ns}/move",
        "/api/v1/namespaces/{ns}/restore/{path}",
        "/api/v1/tokens",
    ):
        assert path in paths


def test_reads_need_a_token_when_anonymous_reads_are_off(tmp_path) -> None:  # noqa: ANN001
    from tests.support.procs import Server, running

    with running(Server(tmp_path / "data", {"PACKYARD_ANONYMOUS_READ": "false"})) as srv:
        admin = {"Authorization": f"Bearer {srv.admin_token}"}
        with httpx.Client(base_url=srv.url) as client:
            assert client.put(files_url("team.a", "f.txt"), content=b"x", headers=admin).status_code == 201
            assert client.put(files_url("other", "g.txt"), content=b"y", headers=admin).status_code == 201
            assert client.get(files_url("team.a", "f.txt")).status_code == 401
            assert client.get("/api/v1/namespaces").status_code == 401
            reader = client.post("/api/v1/tokens", json={"scope": "team", "role": "read"}, headers=admin).json()[
                "secret"
            ]
            auth = {"Authorization": f"Bearer {reader}"}
            assert client.get(files_url("team.a", "f.txt"), headers=auth).content == b"x"
            assert client.get(files_url("other", "g.txt"), headers=auth).status_code == 403
            assert [n["name"] for n in client.get("/api/v1/namespaces", headers=auth).json()] == ["team", "team.a"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error", "message"),
    [
        ("POST", "/api/v1/namespaces", {"content": b"{not json"}, 422, "InvalidInput", "JSON decode error"),
        ("POST", "/api/v1/namespaces", {"json": {"nom": "x"}}, 422, "InvalidInput", "name (body): field required"),
        ("POST", "/api/v1/tokens", {"json": {"scope": "x", "role": 5}}, 422, "InvalidInput", "role"),
        ("DELETE", "/healthz", {}, 405, "MethodNotAllowed", "is not served at this path"),
        ("GET", "/api/v1/no/such/thing", {}, 404, "NotFound", "nothing is served at"),
    ],
)  # fmt: skip
def test_framework_errors_have_packyard_shape(
    http: httpx.Client, server: LiveServer, method: str, path: str, kwargs: dict, status: int, error: str, message: str
) -> None:
    """Errors FastAPI and Starlette raise (bad bodies, no route) answer like packyard's own."""
    headers = {**server.admin, "content-type": "application/json"}
    response = http.request(method, path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert isinstance(response.json()["detail"], str) and message in response.json()["detail"], response.text
