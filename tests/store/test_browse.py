"""The web UI's catalog views: keyset folder pages and server-side sessions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from packyard.store.blobs import LocalBlobStore
from packyard.store.browse import Browse
from packyard.store.core import Store
from packyard.store.errors import InvalidInput
from packyard.store.files import Change
from packyard.store.sessions import Sessions


@pytest.fixture
def store(tmp_path: Path, catalog_url: str | None) -> Store:
    return Store(
        tmp_path / "data", LocalBlobStore(tmp_path / "data" / "blobs"), admin_secret="admin", database_url=catalog_url
    )


def test_folder_pages_mix_folders_and_files_in_name_order_and_skip_each_folder_whole(store: Store) -> None:
    blob = store.blobs.put(io.BytesIO(b"x"))
    paths = ["a.txt", "lib-a.py", "lib/x.py", "lib/y/z.py", "lib0", "m/1", "m/2", "z.txt"]
    store.files.apply("ns", [Change(p, blob.sha256, blob.size) for p in paths], author="t", origin="put")
    store.files.delete("ns", "z.txt", author="t")
    browse = Browse(store.catalog, store.generations)

    def names(page: dict) -> list[str]:
        return [e.folder or e.name for e in page["entries"]]

    first = browse.folder("ns", "", limit=3)
    assert names(first) == ["a.txt", "lib-a.py", "lib/"] and first["next"] == "lib/"
    second = browse.folder("ns", "", first["next"], limit=3)
    assert names(second) == ["lib0", "m/"] and second["next"] is None  # z.txt is deleted
    inside = browse.folder("ns", "lib/", limit=10)
    assert names(inside) == ["x.py", "y/"] and inside["entries"][0].file["revision"] == 1


def test_project_names_follow_every_change_of_the_namespace(store: Store, tmp_path: Path) -> None:
    from tests.support.dists import make_wheel

    browse = Browse(store.catalog, store.generations)
    store.namespaces.create("ns", "t")
    assert browse.counts(["ns"])["ns"]["projects"] == 0
    with make_wheel(tmp_path / "w", "alpha", "1.0").open("rb") as stream:
        store.dists.add("ns", stream, "alpha-1.0-py3-none-any.whl", uploader="t")
    assert browse.counts(["ns"])["ns"]["projects"] == 1  # not the cached zero
    assert [p.project for p in browse.projects(["ns"])[0]] == ["alpha"]


def test_a_session_holds_no_secret_and_ends_with_its_token_or_its_time(store: Store) -> None:
    sessions = Sessions(store.catalog, store.tokens)
    token, secret = store.tokens.create("ns", "read", name="ui")
    session_id, session = sessions.create(token, 3600)
    assert sessions.get(session_id).token.id == token.id
    stored = " ".join(str(v) for row in store.catalog.query("SELECT * FROM ui_sessions") for v in row.values())
    assert session_id not in stored and secret not in stored
    assert sessions.get(session_id + "x") is None and sessions.get(None) is None

    store.tokens.revoke(token.id)
    assert sessions.get(session_id) is None  # revoking the token ends its session

    other, _ = store.tokens.create("ns", "read")
    stale_id, _ = sessions.create(other, -1)  # its time is up already
    assert sessions.get(stale_id) is None
    sessions.end(session_id)
    assert store.catalog.one("SELECT 1 FROM ui_sessions WHERE token_id = ?", (token.id,)) is None


def test_used_by_finds_the_shared_locks_that_pin_a_file(store: Store) -> None:
    store.namespaces.create("ns.team", "t")
    browse = Browse(store.catalog, store.generations)
    pinned, other = "a" * 64, "b" * 64
    lock = f"alpha==1.0 \\\n    --hash=sha256:{pinned}\nbeta==2.0 \\\n    --hash=sha256:{other}\n"
    row = {"namespace": "ns.team", "key": "c" * 64, "state": "s1", "lock": lock, "env_key": "d" * 64}
    store.resolutions.put({**row, "python": "3.11", "platform": "linux", "requirements": ["alpha"]}, "s1", "t")
    assert [r.key for r in browse.used_by(pinned, ["ns.team"])] == ["c" * 64]
    assert browse.used_by(pinned, ["ns"]) == []  # only the namespaces the caller may read
    relock = {**row, "lock": f"beta==2.0 \\\n    --hash=sha256:{other}\n"}
    store.resolutions.put({**relock, "python": "3.11", "platform": "linux", "requirements": ["alpha"]}, "s1", "t")
    assert browse.used_by(pinned, ["ns.team"]) == []  # replaced: it no longer pins the file


PATHS = ["A.txt", "a.txt", "a/b.txt", "a/c/d.txt", "a-b.txt", "a0.txt", "b%_x.txt", "bQx.txt"]


def put_paths(store: Store) -> Browse:
    blob = store.blobs.put(io.BytesIO(b"x"))
    store.files.apply("ns", [Change(p, blob.sha256, blob.size) for p in PATHS], author="t", origin="put")
    return Browse(store.catalog, store.generations)


def test_folder_pages_walk_paths_in_byte_order_on_both_catalogs(store: Store) -> None:
    browse = put_paths(store)
    names, after = [], ""
    while True:
        page = browse.folder("ns", "", after, limit=2)
        names += [e.folder or e.name for e in page["entries"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert names == ["A.txt", "a-b.txt", "a.txt", "a/", "a0.txt", "b%_x.txt", "bQx.txt"]


def test_search_is_case_insensitive_and_takes_sql_wildcards_literally(store: Store) -> None:
    browse = put_paths(store)
    assert [r["path"] for r in browse.search("A.T", ["ns"])["paths"]] == ["A.txt", "a.txt"]
    assert [r["path"] for r in browse.search("%_", ["ns"])["paths"]] == ["b%_x.txt"]
    assert browse.search("b_x", ["ns"])["paths"] == []


def test_a_nul_in_a_search_is_bad_input_or_finds_nothing(store: Store) -> None:
    browse = put_paths(store)
    try:
        found = browse.search("a\0b", ["ns"])
    except InvalidInput:  # PostgreSQL text cannot hold NUL: refused as bad input, not a 500
        assert store.catalog.engine == "postgresql"
    else:
        assert found["paths"] == []
