"""Retention over a real server (issue 17, items 1 and 2): policies set with ``packyard ns set
--keep-*`` and over the API, inherited by children; the dry run the API and CLI show is what
an applying run removes; only a namespace's admins set or run its policies, and bad values
are 400s that change nothing; a pass racing 50 uploads keeps every one of them; and a server
killed with SIGKILL in the middle of its scheduled pass leaves a store that fsck finds
consistent and that ``packyard gc --apply`` finishes.

The session servers (SQLite with local blobs, PostgreSQL with S3) carry the API tests; a
dedicated server of each kind, running a scheduled pass every 50 ms, the race and the kill.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, live_server
from tests.support.clients import create_token, packyard_cli, post_upload, put_file, sha256, unique_ns
from tests.support.dists import make_wheel
from tests.support.procs import SeaweedFS, running

SERVERS = ("local", "s3-postgres")  # both blob backends and both catalogs


def wheel(tmp: Path, project: str, version: str) -> Path:
    return make_wheel(tmp / f"{project}-{version}", project, version)


def send(http: httpx.Client, live: LiveServer, ns: str, path: Path) -> None:
    response = post_upload(http, ns, path.name, path.read_bytes(), live.admin_token)
    assert response.status_code == 200, response.text


def kept_names(items: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((i["kind"], i["namespace"], i["name"]) for i in items)


def test_policy_set_with_the_cli_inherited_then_dry_run_and_apply(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    parent = unique_ns("ret")
    child = f"{parent}.team"
    for n in range(4):
        put_file(http, server, child, "flow.py", b"v%d" % n)
    for version in ("1.0", "1.1.dev1", "1.1.dev2", "2.0.dev1"):
        send(http, server, child, wheel(tmp_path, "app", version))
    env = server.client_env(server.admin_token)
    packyard_cli(env, "ns", "set", parent, "--keep-revisions", "1", "--keep-releases", "0")

    shown = http.get(f"/api/v1/namespaces/{child}", headers=server.admin).json()
    assert shown["effective"]["retention"]["keep_revisions"] == {"value": 1, "from": parent}
    assert shown["effective"]["retention"]["keep_releases"] == {"value": 0, "from": parent}

    planned = http.get(f"/api/v1/namespaces/{child}/retention", headers=server.admin).json()
    assert kept_names(planned["items"]) == [
        ("dist", child, "app-1.1.dev1-py3-none-any.whl"),
        ("dist", child, "app-1.1.dev2-py3-none-any.whl"),
        ("revision", child, "flow.py@1"),
        ("revision", child, "flow.py@2"),
    ]
    assert planned["frees"]["count"] == 4 and planned["frees"]["bytes"] == planned["bytes"]
    dry = http.post(f"/api/v1/namespaces/{parent}/retention", json={}, headers=server.admin).json()
    assert kept_names(dry["items"]) == kept_names(planned["items"]) and not dry["applied"]
    assert server.count("file_revisions", child) == 4  # a dry run changes nothing

    done = json.loads(packyard_cli(env, "ns", "retention", parent, "--apply", "--json").stdout)
    assert done["applied"] and kept_names(done["items"]) == kept_names(planned["items"])
    assert (done["frees"], done["bytes"]) == (planned["frees"], planned["bytes"])
    history = http.get(f"/api/v1/namespaces/{child}/revisions/flow.py", headers=server.admin)
    assert [r["revision"] for r in history.json()] == [3, 4], history.text
    assert http.get(f"/api/v1/namespaces/{child}/files/flow.py", headers=server.admin).content == b"v3"
    page = http.get(f"/{child}/simple/app/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert sorted(f["filename"] for f in page["files"]) == ["app-1.0-py3-none-any.whl", "app-2.0.dev1-py3-none-any.whl"]
    sql = "SELECT actor, action FROM audit WHERE namespace = ? AND substr(action, 1, 10) = 'retention.'"
    audit = server.rows(sql, (child,))
    assert sorted(a for _, a in audit) == ["retention.dist"] * 2 + ["retention.revision"] * 2
    assert {actor for actor, _ in audit} != {"-"}


def test_only_a_namespaces_admins_set_or_run_its_policy_and_bad_values_change_nothing(
    server: LiveServer, http: httpx.Client
) -> None:
    mine, theirs = unique_ns("mine"), unique_ns("theirs")
    for ns in (mine, theirs):
        put_file(http, server, ns, "a.txt", b"1")
        put_file(http, server, ns, "a.txt", b"2")
    put_file(http, server, f"{mine}.sub", "a.txt", b"1")
    put_file(http, server, f"{mine}.sub", "a.txt", b"2")
    _, admin = create_token(http, server, mine, "admin")
    _, writer = create_token(http, server, mine, "write")
    _, sub_admin = create_token(http, server, f"{mine}.sub", "admin")
    bearer = {t: {"Authorization": f"Bearer {t}"} for t in (admin, writer, sub_admin)}

    def settings(ns: str) -> dict:
        return http.get(f"/api/v1/namespaces/{ns}", headers=server.admin).json()["settings"]

    for token, ns in ((admin, theirs), (writer, mine), (sub_admin, mine)):
        patched = http.patch(f"/api/v1/namespaces/{ns}/settings", json={"keep_revisions": 0}, headers=bearer[token])
        assert patched.status_code == 403, patched.text
        assert patched.json()["error"] == "Forbidden"
        for method in ("GET", "POST"):
            body = {"json": {"apply": True}} if method == "POST" else {}
            ran = http.request(method, f"/api/v1/namespaces/{ns}/retention", headers=bearer[token], **body)
            assert ran.status_code == 403, ran.text
    assert settings(theirs) == {} and settings(mine) == {}

    for bad in ({"keep_revisions": -1}, {"keep_release_days": "soon"}, {"keep_release_pattern": "==("}):
        refused = http.patch(
            f"/api/v1/namespaces/{mine}/settings", json={"inherit": False, **bad}, headers=bearer[admin]
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "InvalidInput" and next(iter(bad)) in refused.json()["detail"]
    assert settings(mine) == {}
    odd = http.post(f"/api/v1/namespaces/{mine}/retention", json={"apply": "maybe"}, headers=bearer[admin])
    assert odd.status_code == 422 and odd.json()["error"] == "InvalidInput"

    # the parent's policy, run by the child's admin, reaches only the child
    ok = http.patch(f"/api/v1/namespaces/{mine}/settings", json={"keep_revisions": 0}, headers=bearer[admin])
    assert ok.status_code == 200, ok.text
    ran = http.post(f"/api/v1/namespaces/{mine}.sub/retention", json={"apply": True}, headers=bearer[sub_admin])
    assert ran.status_code == 200 and kept_names(ran.json()["items"]) == [("revision", f"{mine}.sub", "a.txt@1")]
    assert server.count("file_revisions", mine) == 2 and server.count("file_revisions", theirs) == 2
    assert server.count("file_revisions", f"{mine}.sub") == 1


# -- a dedicated server: the race and the kill ---------------------------------------------


@pytest.fixture(scope="module", params=["local", "s3-postgres"])
def box(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"retention-{request.param}")
    env = {
        "PACKYARD_GC_INTERVAL_SECONDS": "0",
        "PACKYARD_FSYNC": "false",
        # a scheduled pass every 50 ms, one unit per transaction: passes are always running
        "PACKYARD_RETENTION_INTERVAL_SECONDS": "0.05",
        "PACKYARD_RETENTION_BATCH": "1",
    }
    weed: SeaweedFS | None = None
    if request.param == "s3-postgres":
        env["PACKYARD_DATABASE_URL"] = request.getfixturevalue("postgres").create_database("retention")
        weed = request.getfixturevalue("weed")
    live = live_server(root, env, weed, "retention")
    with running(live.server):
        yield live


def operator_env(live: LiveServer) -> dict[str, str]:
    """What whoever runs the server sets for ``packyard fsck``/``gc``: its data, blobs and catalog."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACKYARD_")}
    env.update({k: v for k, v in live.server.env.items() if k.startswith(("PACKYARD_S3_", "PACKYARD_DATABASE_"))})
    env["PACKYARD_DATA"] = str(live.server.data)
    return env


def operator(live: LiveServer, *args: str) -> dict:
    proc = packyard_cli(operator_env(live), *args, "--json", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def assert_consistent(live: LiveServer) -> None:
    report = operator(live, "fsck")
    assert not report["damaged"] and report["missing"] == [] and report["dangling"] == []


def audited(live: LiveServer, ns: str, kind: str = "revision") -> int:
    sql = "SELECT count(*) FROM audit WHERE namespace = ? AND action = ?"
    return live.rows(sql, (ns, f"retention.{kind}"))[0][0]


def test_a_pass_racing_50_uploads_removes_nothing_it_should_keep(box: LiveServer, tmp_path: Path) -> None:
    """The server's scheduled passes run all along; the test adds passes of its own over the API."""
    live, ns = box, unique_ns("race")
    with httpx.Client(base_url=live.url, timeout=120, limits=httpx.Limits(max_connections=64)) as http:
        for n in range(1, 4):
            send(http, live, ns, wheel(tmp_path, "old", f"0.1.dev{n}"))
        ok = http.patch(f"/api/v1/namespaces/{ns}/settings", json={"keep_releases": 0}, headers=live.admin)
        assert ok.status_code == 200
        # kept: 20 new projects (each one's newest release) and 15 final releases of "old";
        # removable as soon as a final of "old" is in: 15 of its pre-releases
        keep = [wheel(tmp_path, f"fresh{i}", "1.0.dev0") for i in range(20)]
        keep += [wheel(tmp_path, "old", f"1.{i}") for i in range(15)]
        removable = [wheel(tmp_path, "old", f"0.2.dev{i}") for i in range(15)]
        racing = keep + removable
        done = threading.Event()
        passes: list[int] = []

        def retain() -> None:
            while not done.is_set():
                ran = http.post(f"/api/v1/namespaces/{ns}/retention", json={"apply": True}, headers=live.admin)
                assert ran.status_code in (200, 409), ran.text  # 409: a scheduled pass holds the lease
                passes.append(ran.status_code)

        runner = threading.Thread(target=retain)
        runner.start()
        try:
            with ThreadPoolExecutor(50) as pool:
                list(pool.map(lambda path: send(http, live, ns, path), racing))
        finally:
            done.set()
            runner.join()
        assert len(racing) == 50 and passes
        removed = 0
        deadline = time.monotonic() + 60
        while removed < 3 + len(removable):  # the scheduled passes finish the job
            assert time.monotonic() < deadline, f"retention removed {removed} of {3 + len(removable)}"
            removed = audited(live, ns, "dist")
            time.sleep(0.1)
        listed = {d["filename"] for d in http.get(f"/api/v1/namespaces/{ns}/dists", headers=live.admin).json()}
        assert listed == {path.name for path in keep}  # every upload it should keep, and only those
        assert audited(live, ns, "dist") == 3 + len(removable)
        for path in keep:
            body = http.get(f"/{ns}/dists/{path.name}", follow_redirects=True)
            assert body.status_code == 200 and sha256(body.content) == sha256(path.read_bytes())
    assert_consistent(live)


def zip_round(members: int, salt: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for j in range(members):
            archive.writestr(f"f{j}.txt", f"round {salt} file {j}".encode())
    return buf.getvalue()


def test_kill_9_during_a_scheduled_pass_leaves_a_consistent_store(box: LiveServer) -> None:
    """Last in the module: it leaves the server killed."""
    live, ns = box, unique_ns("kill")
    paths, rounds = 80, 4
    with httpx.Client(base_url=live.url, timeout=120) as http:
        for salt in range(rounds):
            imported = http.post(f"/api/v1/namespaces/{ns}/import", content=zip_round(paths, salt), headers=live.admin)
            assert imported.status_code in (200, 201), imported.text
    total = paths * (rounds - 1)
    with httpx.Client(base_url=live.url, timeout=60) as http:
        ok = http.patch(f"/api/v1/namespaces/{ns}/settings", json={"keep_revisions": 0}, headers=live.admin)
        assert ok.status_code == 200
    deadline = time.monotonic() + 30
    while audited(live, ns) == 0:  # polled closely: the kill must land inside the pass
        assert time.monotonic() < deadline, "the scheduled pass removed nothing within 30 s"
        time.sleep(0.005)
    assert live.server.proc is not None
    os.killpg(live.server.proc.pid, signal.SIGKILL)
    live.server.proc.wait()
    live.server.proc = None
    removed = audited(live, ns)
    assert 0 < removed < total  # killed in the middle of the pass
    assert live.rows("SELECT count(*) FROM file_revisions WHERE namespace = ?", (ns,))[0][0] == rounds * paths - removed

    checked = operator(live, "gc", "--dry-run", "--grace", "0")  # fsck's scan, and the plan of what is left
    assert not checked["damaged"] and checked["missing"] == [] and checked["dangling"] == []
    dry = checked["retention"]
    assert dry["count"] == total - removed and not dry["applied"]
    done = operator(live, "gc", "--apply", "--grace", "0")
    assert kept_names(done["retention"]["items"]) == kept_names(dry["items"])
    assert done["removed"]["count"] >= total  # every earlier round's blob, now unreferenced
    assert_consistent(live)
    heads = live.rows("SELECT sha256 FROM file_heads WHERE namespace = ?", (ns,))
    assert len(heads) == paths and all(live.blobs.exists(sha) for (sha,) in heads)
    assert live.rows("SELECT count(*) FROM file_revisions WHERE namespace = ?", (ns,))[0][0] == paths
