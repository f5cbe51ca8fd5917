"""Moving a namespace between servers: ``packyard export`` on one, ``packyard import`` on another.

Two real servers, the source on the local backend and the target on SeaweedFS. What moves
is a namespace's whole state (files with every revision, distributions uploaded with
twine with their upload times and yank records, settings), and the target serves it: pip
installs from it and skips the yanked release. Hostile archives (traversal, wrong digests, a
huge manifest, another namespace, smuggled tokens, a digest pointing at bytes the target
already holds for someone else) are refused with a 4xx and write nothing.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import (
    TWINE,
    create_token,
    make_venv,
    output,
    packyard_cli,
    pip_env,
    put_file,
    run,
    sha256,
    twine_env,
)
from tests.support.dists import make_sdist, make_wheel
from tests.support.procs import running


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = live_server(tmp_path_factory.mktemp("archive-source"), {})
    with running(live.server):
        yield live


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, weed) -> Iterator[LiveServer]:  # noqa: ANN001
    env = {"PACKYARD_CREDENTIAL_ENVS": "ARCHIVE_TEST_TOKEN:allowed"}
    live = live_server(tmp_path_factory.mktemp("archive-target"), env, weed, f"archive-{uuid.uuid4().hex[:8]}")
    with running(live.server):
        yield live


def history(http: httpx.Client, server: LiveServer, ns: str) -> dict[str, list[tuple]]:
    """Every path's revisions as (revision, sha256, size, deleted, time)."""
    found = {}
    paths = http.get(f"/api/v1/namespaces/{ns}/files", headers=server.admin).json()
    for path in [p["path"] for p in paths] + ["gone.txt"]:
        revisions = http.get(f"/api/v1/namespaces/{ns}/revisions/{path}", headers=server.admin).json()
        found[path] = [(r["revision"], r["sha256"], r["size"], r["deleted"], r["created"]) for r in revisions]
    return found


def dists(http: httpx.Client, server: LiveServer, ns: str) -> list[dict]:
    kept = ("filename", "sha256", "size", "upload_time", "yanked", "yanked_reason", "yanked_at", "requires_python")
    listed = http.get(f"/api/v1/namespaces/{ns}/dists", headers=server.admin).json()
    return [{key: d[key] for key in kept} for d in listed]


def test_a_namespace_moves_to_another_server_and_installs_from_it(
    source: LiveServer, target: LiveServer, pip: list[str], tmp_path: Path
) -> None:
    ns = f"mv{uuid.uuid4().hex[:8]}.team"
    with httpx.Client(base_url=source.url, timeout=60) as http:
        put_file(http, source, ns, "flows/etl.py", b"print(1)\n")
        put_file(http, source, ns, "flows/etl.py", b"print(2)\n")
        put_file(http, source, ns, "gone.txt", b"bye\n")
        assert http.delete(f"/api/v1/namespaces/{ns}/files/gone.txt", headers=source.admin).status_code == 200
        _, writer = create_token(http, source, ns, "write", "ci")
        files = [
            make_wheel(tmp_path / "d", "moved", "1.0", module_body="WHERE = 'moved'\n"),
            make_sdist(tmp_path / "d", "moved", "1.0"),
            make_wheel(tmp_path / "d", "moved", "2.0"),
        ]
        run(
            [*TWINE, "upload", "--repository-url", f"{source.url}/{ns}/", "-u", "__token__", "-p", writer,
             "--non-interactive", "--disable-progress-bar", *files],
            twine_env(),
        )  # fmt: skip
        yank = http.post(f"/api/v1/namespaces/{ns}/dists/moved/2.0/yank", json={"reason": "bad"}, headers=source.admin)
        assert yank.status_code == 200, yank.text
        patched = http.patch(
            f"/api/v1/namespaces/{ns}/settings", json={"upstream_deny": ["Evil_Pkg"]}, headers=source.admin
        )
        assert patched.status_code == 200, patched.text
        before = (history(http, source, ns), dists(http, source, ns))

    archive = tmp_path / "team.tar"
    packyard_cli(source.client_env(source.admin_token), "export", ns, "-o", archive)
    imported = packyard_cli(target.client_env(target.admin_token), "import", archive, "--json")
    summary = json.loads(imported.stdout)
    assert (summary["files"], summary["revisions"], summary["dists"], summary["yanked"]) == (2, 4, 3, 1)

    with httpx.Client(base_url=target.url, timeout=60) as http:
        assert (history(http, target, ns), dists(http, target, ns)) == before
        shown = http.get(f"/api/v1/namespaces/{ns}", headers=target.admin).json()
        assert shown["settings"] == {"upstream_deny": ["evil-pkg"]}
        listed = http.get(f"/api/v1/namespaces/{ns}/dists", headers=target.admin).json()
        # who uploaded on the source is kept as its claim, never as someone of this server
        assert all(d["uploader"].startswith("import:token:") for d in listed), listed
        for dist in listed:
            body = http.get(f"/{ns}/dists/{dist['filename']}").content
            assert sha256(body) == dist["sha256"]

    # pip installs from the target, and skips the yanked release there too
    python = make_venv(tmp_path / "venv", tmp_path / "uv-cache")
    run([*pip, "--python", python, "install", "--no-cache-dir", "--index-url", f"{target.url}/{ns}/simple/", "moved"],
        pip_env())  # fmt: skip
    check = run([python, "-c", "import moved; print(moved.VERSION, moved.WHERE)"], pip_env())
    assert check.stdout.split() == ["1.0", "moved"]

    # a namespace that exists is replaced only when asked; another name only when named
    again = packyard_cli(target.client_env(target.admin_token), "import", archive, check=False)
    assert again.returncode == 4 and "exists" in output(again)
    with httpx.Client(base_url=target.url, timeout=60) as http:
        body = archive.read_bytes()  # what the CLI sends for --replace and --into
        url = f"/api/v1/namespaces/{ns}/archive"
        assert http.post(url, params={"replace": "true"}, content=body, headers=target.admin).status_code == 201
        renamed = http.post(
            f"/api/v1/namespaces/{ns}2/archive", params={"rename_from": ns}, content=body, headers=target.admin
        )
        assert renamed.status_code == 201, renamed.text
        assert (history(http, target, ns), dists(http, target, ns)) == before
        assert dists(http, target, f"{ns}2") == before[1]


# -- hostile archives ------------------------------------------------------------------------


def tar_of(*members: tuple[str, bytes] | tarfile.TarInfo) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def manifest(ns: str, files: list | None = None, dists: list | None = None, **extra: object) -> bytes:
    body = {
        "format": "packyard-namespace",
        "version": 1,
        "namespace": ns,
        "exported": "2026-01-01T00:00:00Z",
        "settings": {},
        "files": files or [],
        "dists": dists or [],
        **extra,
    }
    return json.dumps(body).encode()


def file_entry(path: str, data: bytes) -> dict:
    rev = {"revision": 1, "sha256": sha256(data), "size": len(data), "deleted": False,
           "created": "2026-01-01T00:00:00Z", "author": "someone", "origin": "api"}  # fmt: skip
    return {"path": path, "revisions": [rev]}


SECRET = b"another tenant's secret file\n"


def hostile(ns: str, victim_sha: str) -> dict[str, tuple[bytes, int, str]]:
    """Archives that must be refused: body, status, error class."""
    good = b"fine\n"
    link = tarfile.TarInfo(f"blobs/{sha256(good)}")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    huge = tarfile.TarInfo("manifest.json")
    huge.size = 20 * 1024 * 1024  # declared; the body stops after the header
    huge_body = tar_of(huge)[:1024]
    wrong = b"evil\n"  # as long as good: only the digest differs
    return {
        "path traversal in a member": (
            tar_of(("manifest.json", manifest(ns, [file_entry("a.txt", good)])), ("../../evil", good)),
            400,
            "UnsafeArchive",
        ),
        "path traversal in the manifest": (
            tar_of(
                ("manifest.json", manifest(ns, [file_entry("../escape.txt", good)])), (f"blobs/{sha256(good)}", good)
            ),
            400,
            "UnsafeArchive",
        ),
        "wrong digest": (
            tar_of(("manifest.json", manifest(ns, [file_entry("a.txt", good)])), (f"blobs/{sha256(good)}", wrong)),
            400,
            "UnsafeArchive",
        ),
        "a symbolic link": (
            tar_of(("manifest.json", manifest(ns, [file_entry("a.txt", good)])), link),
            400,
            "UnsafeArchive",
        ),
        "a huge manifest": (huge_body, 413, "TooLarge"),
        "another namespace": (
            tar_of(("manifest.json", manifest("victim", [file_entry("a.txt", good)])), (f"blobs/{sha256(good)}", good)),
            400,
            "UnsafeArchive",
        ),
        "smuggled tokens": (
            tar_of(("manifest.json", manifest(ns, tokens=[{"scope": "*", "role": "admin", "secret": "x"}]))),
            400,
            "UnsafeArchive",
        ),
        "a digest of bytes the server holds for another namespace": (
            tar_of(("manifest.json", manifest(ns, [file_entry("stolen.txt", SECRET)]))),
            400,
            "UnsafeArchive",
        ),
        "a credential variable not listed for it": (
            tar_of(("manifest.json", manifest(ns, settings={"upstream_auth_env": "ARCHIVE_TEST_TOKEN"}))),
            403,
            "Forbidden",
        ),
        "a distribution that is not one": (
            tar_of(
                (
                    "manifest.json",
                    manifest(
                        ns,
                        dists=[
                            {
                                "filename": "fake-1.0.tar.gz",
                                "sha256": sha256(good),
                                "size": len(good),
                                "upload_time": "2026-01-01T00:00:00Z",
                                "uploader": "x",
                                "yanked": False,
                                "yanked_reason": None,
                                "yanked_by": None,
                                "yanked_at": None,
                            }
                        ],
                    ),
                ),  # fmt: skip
                (f"blobs/{sha256(good)}", good),
            ),
            400,
            "InvalidInput",
        ),
        "a time without a zone (installers parse upload times strictly)": (
            tar_of(
                (
                    "manifest.json",
                    manifest(
                        ns,
                        [
                            {
                                **file_entry("a", good),
                                "revisions": [{**file_entry("a", good)["revisions"][0], "created": "2026-01-01 00:00"}],
                            }
                        ],
                    ),
                ),  # fmt: skip
                (f"blobs/{sha256(good)}", good),
            ),
            400,
            "UnsafeArchive",
        ),
        "not a tar": (b"\x1f\x8b" + b"\0" * 2000, 400, "UnsafeArchive"),
    }


def test_hostile_archives_are_refused_and_write_nothing(target: LiveServer) -> None:
    with httpx.Client(base_url=target.url, timeout=60) as http:
        victim = f"victim{uuid.uuid4().hex[:6]}"
        put_file(http, target, victim, "secret.txt", SECRET)
        known = target.blob_hashes()
        for case in hostile("x", sha256(SECRET)):
            ns = f"evil{uuid.uuid4().hex[:8]}"
            body, status, error = hostile(ns, sha256(SECRET))[case]
            response = http.post(f"/api/v1/namespaces/{ns}/archive", content=body, headers=target.admin)
            assert (response.status_code, response.json()["error"]) == (status, error), (case, response.text)
            assert http.get(f"/api/v1/namespaces/{ns}", headers=target.admin).status_code == 404, case
            assert target.count("file_revisions", ns) == 0 and target.count("dists", ns) == 0, case
            assert not target.new_references(known), case
        assert target.count("file_revisions", "victim") == 0  # the archive named it; nothing went there


def test_import_needs_the_admin_role_before_a_byte_is_read(target: LiveServer) -> None:
    with httpx.Client(base_url=target.url, timeout=60) as http:
        ns = f"adm{uuid.uuid4().hex[:8]}"
        _, writer = create_token(http, target, ns, "write", "writer")
        body = tar_of(("manifest.json", manifest(ns)))
        response = http.post(
            f"/api/v1/namespaces/{ns}/archive", content=body, headers={"Authorization": f"Bearer {writer}"}
        )
        assert (response.status_code, response.json()["error"]) == (403, "Forbidden")
        anonymous = http.post(f"/api/v1/namespaces/{ns}/archive", content=body)
        assert anonymous.status_code == 401
        assert http.get(f"/api/v1/namespaces/{ns}", headers=target.admin).status_code == 404
