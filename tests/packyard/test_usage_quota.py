"""Storage usage and quotas through the real server (issue 17, item 3).

``ns usage`` reports what was written, each blob once in ``stored``; a quota set on a
namespace bounds its subtree: a write past it is a 507 ``QuotaExceeded`` that leaves the
catalog, the referenced blobs and the served pages exactly as they were; two writes racing
for the last bytes of a quota cannot both pass; another namespace's token can neither read
the usage nor set the quota; a bad size is a 400 that says what a size looks like.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.support.clients import (
    create_ns,
    create_token,
    ok,
    packyard_cli,
    post_upload,
    put_file,
    unique_ns,
)
from tests.support.dists import make_wheel

SERVERS = ("local", "s3", "s3-postgres")
"""Both blob backends, and the PostgreSQL catalog (the aggregates are SQL on both engines)."""


def usage(http: httpx.Client, server: LiveServer, ns: str) -> dict:
    response = http.get(f"/api/v1/namespaces/{ns}/usage", headers=server.admin)
    assert response.status_code == 200, response.text
    return response.json()


def set_quota(http: httpx.Client, server: LiveServer, ns: str, quota: object) -> httpx.Response:
    return http.patch(f"/api/v1/namespaces/{ns}/settings", json={"quota": quota}, headers=server.admin)


def tally(count: int, size: int) -> dict:
    return {"count": count, "bytes": size}


def test_usage_counts_what_was_written_and_each_blob_once(
    http: httpx.Client, server: LiveServer, ns: str, tmp_path: Path
) -> None:
    child = f"{ns}.child"
    create_ns(http, server, ns, child)
    put_file(http, server, ns, "a.txt", b"a" * 100)
    put_file(http, server, ns, "a.txt", b"b" * 150)  # a second revision
    put_file(http, server, ns, "same.txt", b"b" * 150)  # the same bytes: one blob
    put_file(http, server, child, "c.txt", b"a" * 100)  # the parent's first revision's bytes
    put_file(http, server, child, "gone.txt", b"g" * 7)
    assert http.delete(f"/api/v1/namespaces/{child}/files/gone.txt", headers=server.admin).status_code == 200
    wheel = make_wheel(tmp_path, f"{ns}-usage", "1.0")
    response = post_upload(http, child, wheel.name, wheel.read_bytes(), server.admin_token)
    assert response.status_code == 200, response.text
    size = wheel.stat().st_size

    report = usage(http, server, ns)
    own = report["own"]
    assert own["files"] == tally(2, 300)
    assert own["revisions"] == tally(3, 400)
    assert own["distributions"] == tally(0, 0)
    assert own["stored"] == tally(2, 250)  # a*100 and b*150
    rows = {row["namespace"]: row for row in report["namespaces"]}
    assert list(rows) == [ns, child]
    assert rows[child]["files"] == tally(1, 100)  # gone.txt is deleted
    assert rows[child]["revisions"] == tally(2, 107)  # its tombstone holds no bytes
    assert rows[child]["distributions"] == tally(1, size)
    subtree = report["subtree"]
    assert subtree["files"] == tally(3, 400)
    assert subtree["revisions"] == tally(5, 507)
    assert subtree["distributions"] == tally(1, size)
    # a*100 (parent and child), b*150 (two rows), g*7, the wheel: each once
    assert subtree["stored"] == tally(4, 100 + 150 + 7 + size)
    assert report["quotas"] == []

    # the CLI shows the server's figures; --json is the API's answer
    env = server.client_env(server.admin_token)
    assert json.loads(ok(packyard_cli(env, "ns", "usage", ns, "--json"))) == report
    text = ok(packyard_cli(env, "ns", "usage", ns))
    assert f"{ns} with children" in text and child in text


def snapshot(http: httpx.Client, server: LiveServer, ns: str) -> dict:
    """Everything a refused write must leave as it was."""
    tables = {
        table: server.rows(
            f"SELECT * FROM {table} WHERE {'name' if table == 'namespaces' else 'namespace'} LIKE ?", (f"{ns}%",)
        )
        for table in ("namespaces", "file_revisions", "file_heads", "dists", "audit")
    }
    pages = {
        path: http.get(path, headers=server.admin).content
        for path in (f"/{ns}/simple/", f"/api/v1/namespaces/{ns}/files", f"/api/v1/namespaces/{ns}.child/files")
    }
    return {"tables": tables, "pages": pages, "referenced": server.referenced_hashes()}


def test_a_write_past_the_quota_is_refused_and_changes_nothing(
    http: httpx.Client, server: LiveServer, ns: str, tmp_path: Path
) -> None:
    child = f"{ns}.child"
    create_ns(http, server, ns, child)
    put_file(http, server, child, "base.bin", b"x" * 1000)
    env = server.client_env(server.admin_token)
    ok(packyard_cli(env, "ns", "set", ns, "--quota", "2KiB"))  # on the parent: bounds the child
    assert http.get(f"/api/v1/namespaces/{ns}", headers=server.admin).json()["settings"]["quota"] == 2048
    wheel = make_wheel(tmp_path, f"{ns}-big", "1.0", module_body=f"# {os.urandom(3000).hex()}\n")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("one.bin", b"1" * 600)
        z.writestr("two.bin", b"2" * 600)
    elsewhere = unique_ns("src")
    put_file(http, server, elsewhere, "new.bin", os.urandom(1500))
    exported = http.get(f"/api/v1/namespaces/{elsewhere}/archive", headers=server.admin)
    assert exported.status_code == 200, exported.text
    blobs_before = server.blob_hashes()
    before = snapshot(http, server, ns)

    refusals = [
        http.put(f"/api/v1/namespaces/{child}/files/big.bin", content=b"z" * 1100, headers=server.admin),
        # a namespace the write would create is not created either
        http.put(f"/api/v1/namespaces/{child}.new/files/big.bin", content=b"n" * 1100, headers=server.admin),
        http.post(f"/api/v1/namespaces/{ns}/import", content=archive.getvalue(), headers=server.admin),
        post_upload(http, child, wheel.name, wheel.read_bytes(), server.admin_token),
        # a namespace archive from another server (packyard import), into the bounded subtree
        http.post(
            f"/api/v1/namespaces/{ns}.copy/archive",
            params={"rename_from": elsewhere},
            content=exported.content,
            headers=server.admin,
        ),
    ]
    for response in refusals:
        assert response.status_code == 507, response.text
        body = response.json()
        assert body["error"] == "QuotaExceeded"
        detail = body["detail"]
        assert f"'{ns}'" in detail and "2.0 KiB quota" in detail and "uses 1000 bytes" in detail, detail
        assert "packyard gc" in detail and "packyard dists rm" in detail and "--quota" in detail

    assert snapshot(http, server, ns) == before
    assert server.new_references(blobs_before) == set()  # new bytes, if stored, are the collector's
    assert server.count("namespaces", f"{child}.new") == 0 and server.count("namespaces", f"{ns}.copy") == 0

    # what fits still goes in, up to the quota; the same bytes again and a delete add nothing
    put_file(http, server, child, "fits.bin", b"f" * 1000)
    put_file(http, server, ns, "again.bin", b"x" * 1000)
    assert usage(http, server, ns)["quotas"] == [{"namespace": ns, "quota": 2048, "used": 2000, "withheld": False}]
    ok(packyard_cli(env, "ns", "set", ns, "--quota", "1000"))  # now below the use
    assert http.delete(f"/api/v1/namespaces/{child}/files/fits.bin", headers=server.admin).status_code == 200
    refused = http.put(f"/api/v1/namespaces/{child}/files/more.bin", content=b"m" * 10, headers=server.admin)
    assert refused.status_code == 507  # a deleted file's revisions still hold their bytes
    ok(packyard_cli(env, "ns", "set", ns, "--quota", "none"))
    assert "quota" not in http.get(f"/api/v1/namespaces/{ns}", headers=server.admin).json()["settings"]
    put_file(http, server, child, "big.bin", b"z" * 1100)


@pytest.mark.servers("local", "s3-postgres")
def test_concurrent_writes_cannot_both_take_the_last_bytes(http: httpx.Client, server: LiveServer, ns: str) -> None:
    create_ns(http, server, ns)
    assert set_quota(http, server, ns, 3000).status_code == 200
    bodies = [bytes([65 + i]) * 1000 for i in range(8)]  # eight distinct 1000-byte files; three fit

    def put(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return client.put(
                f"/api/v1/namespaces/{ns}/files/f{i}.bin", content=bodies[i], headers=server.admin
            ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(8)))
    assert sorted(statuses) == [201] * 3 + [507] * 5, statuses
    assert usage(http, server, ns)["own"]["stored"] == tally(3, 3000)
    assert server.count("file_heads", ns) == 3


def test_another_namespaces_token_cannot_read_usage_or_set_a_quota(http: httpx.Client, server: LiveServer) -> None:
    mine, theirs = unique_ns("mine"), unique_ns("theirs")
    create_ns(http, server, mine, theirs)
    _, secret = create_token(http, server, theirs, "admin")
    auth = {"Authorization": f"Bearer {secret}"}
    assert http.get(f"/api/v1/namespaces/{mine}/usage", headers=auth).status_code == 403
    response = http.patch(f"/api/v1/namespaces/{mine}/settings", json={"quota": "1GiB"}, headers=auth)
    assert response.status_code == 403 and response.json()["error"] == "Forbidden"
    assert http.get("/api/v1/usage", headers=auth).status_code == 403  # the whole store needs scope '*'
    assert http.get("/api/v1/usage").status_code == 401  # anonymous reads on: still no whole-store scan
    assert "quota" not in http.get(f"/api/v1/namespaces/{mine}", headers=server.admin).json()["settings"]
    assert http.get(f"/api/v1/namespaces/{theirs}/usage", headers=auth).status_code == 200
    whole = http.get("/api/v1/usage", headers=server.admin)
    assert whole.status_code == 200 and {mine, theirs} <= {row["namespace"] for row in whole.json()["namespaces"]}

    # a token scoped below a quota sees that it bounds its namespace (this server reads
    # anonymously, so the ancestor's figures are public anyway; without, they are withheld)
    assert set_quota(http, server, theirs, "1GiB").status_code == 200
    child = f"{theirs}.team"
    create_ns(http, server, child)
    _, below = create_token(http, server, child, "read")
    answer = http.get(f"/api/v1/namespaces/{child}/usage", headers={"Authorization": f"Bearer {below}"})
    assert answer.json()["quotas"] == [{"namespace": theirs, "quota": 2**30, "used": 0, "withheld": False}]


@pytest.mark.servers("local")
@pytest.mark.parametrize("value", ["20XB", "-5", "0", "lots", "1.5.2GiB", True, -1, [1]])
def test_a_bad_quota_is_a_clear_400_and_changes_nothing(
    http: httpx.Client, server: LiveServer, ns: str, value: object
) -> None:
    create_ns(http, server, ns)
    assert set_quota(http, server, ns, "10MB").status_code == 200
    response = set_quota(http, server, ns, value)
    assert response.status_code in (400, 422), response.text
    body = response.json()
    assert body["error"] == "InvalidInput"
    if response.status_code == 400:
        assert "is not a size" in body["detail"] and "20GiB" in body["detail"]
    assert http.get(f"/api/v1/namespaces/{ns}", headers=server.admin).json()["settings"]["quota"] == 10_000_000


def test_a_tenant_admin_cannot_lift_the_quota_that_bounds_it(http: httpx.Client, server: LiveServer) -> None:
    parent = unique_ns("owner")
    child = f"{parent}.tenant"
    create_ns(http, server, parent, child)
    _, tenant = create_token(http, server, child, "admin")
    _, owner = create_token(http, server, parent, "admin")
    as_tenant = {"Authorization": f"Bearer {tenant}"}
    as_owner = {"Authorization": f"Bearer {owner}"}
    assert (
        http.patch(f"/api/v1/namespaces/{child}/settings", json={"quota": "1MiB"}, headers=as_owner).status_code == 200
    )
    for value in (None, "1TB"):
        refused = http.patch(f"/api/v1/namespaces/{child}/settings", json={"quota": value}, headers=as_tenant)
        assert refused.status_code == 403 and refused.json()["error"] == "Forbidden", refused.text
    shown = http.get(f"/api/v1/namespaces/{child}", headers=server.admin).json()["settings"]
    assert shown["quota"] == 1024 * 1024
    # the tenant still administers everything else about its namespace
    assert (
        http.patch(f"/api/v1/namespaces/{child}/settings", json={"keep_revisions": 3}, headers=as_tenant).status_code
        == 200
    )
    # and a top-level quota is the operator's (scope '*')
    refused = http.patch(f"/api/v1/namespaces/{parent}/settings", json={"quota": "1GiB"}, headers=as_owner)
    assert refused.status_code == 403
