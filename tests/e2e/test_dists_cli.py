"""Yank (PEP 592), unyank and delete, through the API and the ``packyard`` CLI, audited.

Each needs the write role on the namespace (a read token gets 403, no token 401), records
who did it and when (``yanked_by``/``yanked_at`` on the file, a row in ``audit``), and shows
on the index pages at once. The API test, the delete test and the CLI test each use their own
project in one namespace uploaded once per backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.e2e.conftest import links
from tests.support.clients import JSON_V1, PACKYARD, create_token, run, sha256, unique_ns, upload
from tests.support.dists import make_sdist, make_wheel


@dataclass(frozen=True)
class Setup:
    ns: str
    writer_id: str
    writer: str
    reader: str
    files: dict[str, Path]

    @property
    def writer_actor(self) -> str:
        return f"token:{self.writer_id} (release-bot)"


@pytest.fixture(scope="module")
def setup(server: LiveServer, module_http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("dists-cli")
    ns = unique_ns("team")
    paths = []
    for project in ("lib", "gone", "tool", "pick"):
        for version in ("1.0.0", "2.0.0"):
            paths += [make_wheel(root, project, version), make_sdist(root, project, version)]
    paths.append(make_wheel(root, "gone", "3.0.0"))
    upload(module_http, server, ns, *paths)
    writer_id, writer = create_token(module_http, server, ns, "write", name="release-bot")
    _, reader = create_token(module_http, server, ns, "read", name="viewer")
    return Setup(ns, writer_id, writer, reader, {p.name: p for p in paths})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def yanked_on_page(http: httpx.Client, ns: str, project: str) -> dict[str, str | None]:
    """filename -> data-yanked (None when not yanked), checked against the JSON page."""
    found = links(http.get(f"/{ns}/simple/{project}/").text)
    html = {name: link.attrs.get("data-yanked") for name, link in found.items()}
    body = http.get(f"/{ns}/simple/{project}/", headers={"accept": JSON_V1}).json()
    as_json = {f["filename"]: f["yanked"] for f in body["files"]}
    assert as_json == {n: (False if r is None else (r or True)) for n, r in html.items()}
    return html


def audit(server: LiveServer, ns: str, action: str, project: str) -> list[tuple[str, dict, str]]:
    """(actor, detail, at) of the audit rows of ``action`` on the files of ``project``."""
    rows = server.rows(
        "SELECT actor, detail, at FROM audit WHERE namespace = ? AND action = ? ORDER BY id", (ns, action)
    )
    found = [(actor, json.loads(detail), at) for actor, detail, at in rows]
    return [row for row in found if row[1]["filename"].startswith(f"{project}-")]


def recent(stamp: str) -> bool:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return datetime.now(UTC) - timedelta(minutes=5) < when <= datetime.now(UTC) + timedelta(seconds=5)


def test_yank_and_unyank_through_the_api(setup: Setup, server: LiveServer, http: httpx.Client) -> None:
    ns, api = setup.ns, f"/api/v1/namespaces/{setup.ns}/dists"
    wheel, sdist = "lib-1.0.0-py3-none-any.whl", "lib-1.0.0.tar.gz"
    body = {"reason": "segfaults on import", "filename": wheel}

    # reading is not enough, and anonymous is not allowed
    refused = http.post(f"{api}/lib/1.0.0/yank", json=body, headers=bearer(setup.reader))
    assert refused.status_code == 403 and "may not write" in refused.json()["detail"]
    assert http.post(f"{api}/lib/1.0.0/yank", json=body).status_code == 401
    assert http.post(f"{api}/lib/1.0.0/unyank", json={}, headers=bearer(setup.reader)).status_code == 403
    assert set(yanked_on_page(http, ns, "lib").values()) == {None}

    # one file, with a reason, by the write token
    done = http.post(f"{api}/lib/1.0.0/yank", json=body, headers=bearer(setup.writer))
    assert done.status_code == 200, done.text
    [dist] = done.json()
    assert (dist["filename"], dist["yanked"], dist["yanked_reason"]) == (wheel, True, "segfaults on import")
    assert dist["yanked_by"] == setup.writer_actor and recent(dist["yanked_at"])
    assert yanked_on_page(http, ns, "lib") == {
        wheel: "segfaults on import",
        sdist: None,
        "lib-2.0.0-py3-none-any.whl": None,
        "lib-2.0.0.tar.gz": None,
    }
    [(actor, detail, at)] = audit(server, ns, "dist.yank", "lib")
    assert (actor, detail) == (setup.writer_actor, {"filename": wheel, "reason": "segfaults on import"})
    assert recent(at)
    listed = {d["filename"]: d for d in http.get(api, params={"project": "lib"}).json()}
    assert listed[wheel]["yanked_by"] == setup.writer_actor and listed[wheel]["yanked_reason"] == "segfaults on import"
    assert listed[sdist]["yanked"] is False and listed[sdist]["yanked_by"] is None

    # unyank it
    undone = http.post(f"{api}/lib/1.0.0/unyank", json={"filename": wheel}, headers=bearer(setup.writer))
    assert undone.status_code == 200
    assert [(d["yanked"], d["yanked_reason"]) for d in undone.json()] == [(False, None)]
    assert set(yanked_on_page(http, ns, "lib").values()) == {None}
    assert [(a, d["filename"]) for a, d, _ in audit(server, ns, "dist.unyank", "lib")] == [(setup.writer_actor, wheel)]

    # a whole release: every file of the version, by the admin token
    whole = http.post(f"{api}/lib/2.0.0/yank", json={"reason": "wrong license"}, headers=server.admin)
    assert sorted(d["filename"] for d in whole.json()) == ["lib-2.0.0-py3-none-any.whl", "lib-2.0.0.tar.gz"]
    assert {d["yanked_by"] for d in whole.json()} == {"token:env-admin (PACKYARD_ADMIN_TOKEN)"}
    page = yanked_on_page(http, ns, "lib")
    assert page["lib-2.0.0-py3-none-any.whl"] == page["lib-2.0.0.tar.gz"] == "wrong license"
    assert page[wheel] is None
    http.post(f"{api}/lib/2.0.0/unyank", json={}, headers=server.admin)
    assert set(yanked_on_page(http, ns, "lib").values()) == {None}

    # naming what is not there is a 404, a file of another project a 400
    assert http.post(f"{api}/lib/9.9/yank", json={}, headers=server.admin).status_code == 404
    other = http.post(f"{api}/lib/1.0.0/yank", json={"filename": "tool-1.0.0.tar.gz"}, headers=server.admin)
    assert other.status_code == 400 and "not a file of lib" in other.json()["detail"]


def test_a_file_of_another_version_is_refused(setup: Setup, server: LiveServer, http: httpx.Client) -> None:
    """``yank pick 2.0.0 --file pick-1.0.0.tar.gz`` names two releases: refuse it, change nothing.

    Acting on the file alone would yank or delete a release the caller did not name.
    """
    api = f"/api/v1/namespaces/{setup.ns}/dists"
    other = "pick-1.0.0.tar.gz"
    before = http.get(api, params={"project": "pick"}).json()
    yank = http.post(f"{api}/pick/2.0.0/yank", json={"filename": other, "reason": "typo"}, headers=server.admin)
    delete = http.delete(f"{api}/pick/2.0.0", params={"filename": other}, headers=server.admin)
    after = http.get(api, params={"project": "pick"}).json()
    assert (yank.status_code, delete.status_code) == (400, 400), (yank.text, delete.text)
    assert after == before
    assert "2.0.0" in yank.json()["detail"] and other in yank.json()["detail"]


def test_delete_a_file_and_a_release_through_the_api(setup: Setup, server: LiveServer, http: httpx.Client) -> None:
    ns, api = setup.ns, f"/api/v1/namespaces/{setup.ns}/dists"
    sdist = "gone-2.0.0.tar.gz"
    digest = sha256(setup.files[sdist].read_bytes())
    assert digest in server.blob_hashes()

    assert http.delete(f"{api}/gone/2.0.0", params={"filename": sdist}, headers=bearer(setup.reader)).status_code == 403
    assert http.delete(f"{api}/gone/2.0.0", params={"filename": sdist}).status_code == 401
    assert http.get(f"/{ns}/dists/{sdist}").status_code == 200

    removed = http.delete(f"{api}/gone/2.0.0", params={"filename": sdist}, headers=bearer(setup.writer))
    assert removed.status_code == 200 and [d["filename"] for d in removed.json()] == [sdist]
    assert http.get(f"/{ns}/dists/{sdist}").status_code == 404
    assert http.get(f"/{ns}/dists/{sdist}.metadata").status_code == 404
    assert sdist not in links(http.get(f"/{ns}/simple/gone/").text)
    assert "gone-2.0.0-py3-none-any.whl" in links(http.get(f"/{ns}/simple/gone/").text)
    if server.rows("SELECT count(*) FROM dists WHERE sha256 = ?", (digest,))[0][0] == 0:
        assert digest not in server.referenced_hashes()  # the collector takes it past its grace
    [(actor, detail, _)] = audit(server, ns, "dist.delete", "gone")
    assert (actor, detail) == (setup.writer_actor, {"filename": sdist, "sha256": digest})

    # a whole release
    removed = http.delete(f"{api}/gone/3.0.0", headers=bearer(setup.writer))
    assert [d["filename"] for d in removed.json()] == ["gone-3.0.0-py3-none-any.whl"]
    page = http.get(f"/{ns}/simple/gone/", headers={"accept": JSON_V1}).json()
    assert page["versions"] == ["1.0.0", "2.0.0"]
    assert http.delete(f"{api}/gone/3.0.0", headers=bearer(setup.writer)).status_code == 404
    assert len(audit(server, ns, "dist.delete", "gone")) == 2

    # everything of a project gone: its page is a 404
    for version in ("1.0.0", "2.0.0"):
        assert http.delete(f"{api}/gone/{version}", headers=server.admin).status_code == 200
    assert http.get(f"/{ns}/simple/gone/").status_code == 404
    assert "gone" not in links(http.get(f"/{ns}/simple/").text)


def test_cli_dists_ls_yank_unyank_rm(setup: Setup, server: LiveServer, http: httpx.Client) -> None:
    """Each CLI call is a fresh process (about a second), so state is checked through the API between them."""
    ns = setup.ns
    writer, reader = server.client_env(setup.writer), server.client_env(setup.reader)
    wheel, sdist = "tool-1.0.0-py3-none-any.whl", "tool-1.0.0.tar.gz"

    def state() -> dict[str, dict]:
        rows = http.get(f"/api/v1/namespaces/{ns}/dists", params={"project": "tool"}).json()
        return {row["filename"]: row for row in rows}

    listed = json.loads(run([*PACKYARD, "dists", "ls", ns, "tool", "--json"], reader).stdout)
    assert [row["filename"] for row in listed] == [wheel, sdist, "tool-2.0.0-py3-none-any.whl", "tool-2.0.0.tar.gz"]
    assert listed == list(state().values())
    row = listed[0]
    assert (row["namespace"], row["project"], row["version"], row["filetype"]) == (ns, "tool", "1.0.0", "bdist_wheel")
    assert row["sha256"] == sha256(setup.files[wheel].read_bytes())
    assert row["size"] == setup.files[wheel].stat().st_size
    assert (row["yanked"], row["yanked_reason"], row["yanked_by"], row["yanked_at"]) == (False, None, None, None)
    assert row["uploader"] == "token:env-admin (PACKYARD_ADMIN_TOKEN)" and recent(row["upload_time"])

    # a read token cannot yank: Forbidden is exit code 7 with one error line
    refused = run([*PACKYARD, "yank", ns, "tool", "1.0.0", "--reason", "nope"], reader, check=False)
    assert refused.returncode == 7 and refused.stderr.startswith("error: ") and "may not write" in refused.stderr
    assert not state()[wheel]["yanked"]

    out = run([*PACKYARD, "yank", ns, "tool", "1.0.0", "--reason", "CVE-2099-1", "--file", sdist], writer).stdout
    assert f"yanked {ns}:{sdist} (CVE-2099-1)" in out
    rows = state()
    assert (rows[sdist]["yanked"], rows[sdist]["yanked_reason"]) == (True, "CVE-2099-1")
    assert rows[sdist]["yanked_by"] == setup.writer_actor and recent(rows[sdist]["yanked_at"])
    assert rows[wheel]["yanked"] is False
    assert yanked_on_page(http, ns, "tool")[sdist] == "CVE-2099-1"

    out = run([*PACKYARD, "unyank", ns, "tool", "1.0.0", "--file", sdist], writer).stdout
    assert f"unyanked {ns}:{sdist}" in out
    assert state()[sdist]["yanked"] is False
    assert yanked_on_page(http, ns, "tool")[sdist] is None

    # a whole release without a reason: data-yanked="" in HTML, true in JSON
    out = run([*PACKYARD, "yank", ns, "tool", "1.0.0"], writer).stdout
    assert f"yanked {ns}:{wheel}" in out and f"yanked {ns}:{sdist}" in out
    page = yanked_on_page(http, ns, "tool")
    assert page[wheel] == page[sdist] == ""
    assert 'data-yanked=""' in http.get(f"/{ns}/simple/tool/").text
    tool_yanks = [(a, d) for a, d, _ in audit(server, ns, "dist.yank", "tool")]
    assert tool_yanks == [
        (setup.writer_actor, {"filename": sdist, "reason": "CVE-2099-1"}),
        (setup.writer_actor, {"filename": wheel, "reason": ""}),
        (setup.writer_actor, {"filename": sdist, "reason": ""}),
    ]

    # rm one file, then the rest of the release
    out = run([*PACKYARD, "dists", "rm", ns, "tool", "1.0.0", "--file", wheel], writer).stdout
    assert f"deleted {ns}:{wheel}" in out
    assert sorted(state()) == [sdist, "tool-2.0.0-py3-none-any.whl", "tool-2.0.0.tar.gz"]
    out = run([*PACKYARD, "dists", "rm", ns, "tool", "1.0.0"], writer).stdout
    assert f"deleted {ns}:{sdist}" in out
    assert sorted(state()) == ["tool-2.0.0-py3-none-any.whl", "tool-2.0.0.tar.gz"]
    assert http.get(f"/{ns}/simple/tool/", headers={"accept": JSON_V1}).json()["versions"] == ["2.0.0"]
    deletes = [d["filename"] for a, d, _ in audit(server, ns, "dist.delete", "tool") if a == setup.writer_actor]
    assert {wheel, sdist} <= set(deletes)
