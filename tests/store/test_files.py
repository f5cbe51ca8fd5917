"""Namespace files with revisions, moves, zip export and guarded zip import, on both backends."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
from packyard.store.archive import ArchiveLimits
from packyard.store.blobs.base import BlobStore
from packyard.store.core import Store
from packyard.store.errors import Conflict, InvalidInput, InvalidName, NotFound, TooLarge, UnsafeArchive

MiB = 1024 * 1024
NS = "company.sales"
ME = "tester"


@pytest.fixture
def store(tmp_path: Path, blob_store: BlobStore, catalog_url: str | None) -> Store:
    return Store(tmp_path / "data", blob_store, database_url=catalog_url)


def put(store: Store, path: str, data: bytes, ns: str = NS):  # noqa: ANN201 - Applied
    return store.files.put(ns, path, io.BytesIO(data), author=ME)


def read(store: Store, path: str, revision: int | None = None, ns: str = NS) -> bytes:
    found = store.files.get(ns, path, revision)
    with store.files.open(found) as stream:
        return stream.read()


def zip_bytes(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buf, "w", compression=compression) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return buf.getvalue()


def file_rows(store: Store, ns: str) -> int:
    revisions = store.catalog.one("SELECT count(*) AS n FROM file_revisions WHERE namespace = ?", (ns,))
    heads = store.catalog.one("SELECT count(*) AS n FROM file_heads WHERE namespace = ?", (ns,))
    assert revisions is not None and heads is not None
    return revisions["n"] + heads["n"]


# -- revisions ---------------------------------------------------------------------------


def test_put_revisions_and_reads(store: Store) -> None:
    first = put(store, "flows/etl.py", b"v1")
    assert first.changed is True
    assert first.revision.revision == 1
    assert first.revision.sha256 == hashlib.sha256(b"v1").hexdigest()
    assert first.revision.size == 2
    assert first.revision.author == ME
    assert first.revision.origin == "put"

    same = put(store, "flows/etl.py", b"v1")
    assert same.changed is False
    assert same.revision.revision == 1

    second = put(store, "flows/etl.py", b"version two")
    assert (second.changed, second.revision.revision) == (True, 2)

    assert read(store, "flows/etl.py") == b"version two"
    assert store.files.get(NS, "flows/etl.py").revision == 2
    assert read(store, "flows/etl.py", 1) == b"v1"
    assert read(store, "flows/etl.py", 2) == b"version two"
    assert [r.revision for r in store.files.history(NS, "flows/etl.py")] == [1, 2]
    assert store.garbage() == []


def test_unknown_and_invalid_revisions(store: Store) -> None:
    put(store, "a.txt", b"x")
    with pytest.raises(NotFound):
        store.files.get(NS, "a.txt", 2)
    with pytest.raises(NotFound):
        store.files.get(NS, "missing.txt")
    with pytest.raises(NotFound):
        store.files.get(NS, "missing.txt", 1)
    with pytest.raises(NotFound):
        store.files.history(NS, "missing.txt")
    with pytest.raises(InvalidInput):
        store.files.get(NS, "a.txt", 0)
    with pytest.raises(InvalidInput):
        store.files.get(NS, "a.txt", -1)
    with pytest.raises(InvalidName):
        store.files.get(NS, "../a.txt")
    with pytest.raises(InvalidName):
        store.files.get("Company", "a.txt")


def test_bad_put_stores_nothing(store: Store) -> None:
    with pytest.raises(InvalidName):
        put(store, "../evil", b"x")
    with pytest.raises(InvalidName):
        put(store, "ok.txt", b"x", ns="Bad..ns")
    assert list(store.blobs.hashes()) == []
    assert store.namespaces.list() == []


def test_put_over_limit_stores_nothing(tmp_path: Path, blob_store: BlobStore, catalog_url: str | None) -> None:
    store = Store(tmp_path / "data", blob_store, database_url=catalog_url, max_upload_bytes=100)
    with pytest.raises(TooLarge):
        put(store, "big.bin", b"x" * 101)
    assert list(store.blobs.hashes()) == []
    assert store.blobs.temp_count() == 0  # type: ignore[attr-defined]
    assert file_rows(store, NS) == 0


def test_namespaces_created_by_first_write_with_ancestors(store: Store) -> None:
    put(store, "x.txt", b"x", ns="a.b.c")
    assert [n.name for n in store.namespaces.list()] == ["a", "a.b", "a.b.c"]
    shown = store.namespaces.get("a.b.c")
    assert (shown.files, shown.bytes, shown.created_by) == (1, 1, ME)
    assert store.namespaces.get("a").files == 0
    assert [n.name for n in store.namespaces.list("a.b")] == ["a.b", "a.b.c"]


def test_list_by_prefix(store: Store) -> None:
    for path in ("a/b", "a/bc", "a/b/c.txt", "ab", "z.txt"):
        put(store, path, path.encode())
    paths = lambda prefix: [f.path for f in store.files.list(NS, prefix)]  # noqa: E731
    assert paths("") == ["a/b", "a/b/c.txt", "a/bc", "ab", "z.txt"]
    # a trailing slash lists a folder's contents only
    assert paths("a/") == ["a/b", "a/b/c.txt", "a/bc"]
    assert paths("a/b/") == ["a/b/c.txt"]
    # without one the prefix is a plain string prefix (documented: "a path optionally ending in '/'")
    assert paths("a/b") == ["a/b", "a/b/c.txt", "a/bc"]
    assert paths("a") == ["a/b", "a/b/c.txt", "a/bc", "ab"]
    assert paths("nothing/") == []
    with pytest.raises(InvalidName):
        store.files.list(NS, "../")
    # LIKE wildcards are not wildcards here
    assert paths("a_") == []


def test_delete_tombstone_history_restore(store: Store) -> None:
    put(store, "a.txt", b"one")
    put(store, "a.txt", b"two")
    gone = store.files.delete(NS, "a.txt", author=ME)
    assert gone.changed is True
    assert gone.revision.revision == 3
    assert gone.revision.deleted is True
    assert gone.revision.sha256 is None

    with pytest.raises(NotFound):
        store.files.get(NS, "a.txt")
    with pytest.raises(NotFound):
        store.files.get(NS, "a.txt", 3)  # the tombstone itself has no bytes
    with pytest.raises(NotFound):
        store.files.delete(NS, "a.txt", author=ME)
    assert store.files.list(NS) == []
    assert [f.path for f in store.files.list(NS, include_deleted=True)] == ["a.txt"]
    assert store.namespaces.get(NS).files == 0

    history = store.files.history(NS, "a.txt")
    assert [(r.revision, r.deleted, r.origin) for r in history] == [
        (1, False, "put"),
        (2, False, "put"),
        (3, True, "delete"),
    ]
    assert read(store, "a.txt", 1) == b"one"

    restored = store.files.restore(NS, "a.txt", 1, author=ME)
    assert (restored.changed, restored.revision.revision) == (True, 4)
    assert restored.revision.origin == "restore:1"
    assert read(store, "a.txt") == b"one"
    again = store.files.restore(NS, "a.txt", 1, author=ME)
    assert again.changed is False
    with pytest.raises(NotFound):
        store.files.restore(NS, "a.txt", 9, author=ME)
    with pytest.raises(NotFound):
        store.files.restore(NS, "a.txt", 3, author=ME)
    with pytest.raises(NotFound):
        store.files.delete(NS, "never.txt", author=ME)
    assert store.garbage() == []


def test_move(store: Store) -> None:
    put(store, "src.txt", b"source")
    put(store, "taken.txt", b"taken")

    moved = store.files.move(NS, "src.txt", "dst/moved.txt", author=ME)
    assert moved.revision.path == "dst/moved.txt"
    assert moved.revision.revision == 1
    assert moved.revision.origin == "move:src.txt"
    assert read(store, "dst/moved.txt") == b"source"
    with pytest.raises(NotFound):
        store.files.get(NS, "src.txt")
    assert [r.deleted for r in store.files.history(NS, "src.txt")] == [False, True]

    with pytest.raises(Conflict):
        store.files.move(NS, "dst/moved.txt", "taken.txt", author=ME)
    # the refused move changed nothing
    assert read(store, "dst/moved.txt") == b"source"
    assert read(store, "taken.txt") == b"taken"
    assert [r.revision for r in store.files.history(NS, "taken.txt")] == [1]

    over = store.files.move(NS, "dst/moved.txt", "taken.txt", author=ME, overwrite=True)
    assert over.revision.revision == 2
    assert read(store, "taken.txt") == b"source"
    assert read(store, "taken.txt", 1) == b"taken"
    with pytest.raises(NotFound):
        store.files.get(NS, "dst/moved.txt")

    # a deleted target is free to take
    put(store, "again.txt", b"again")
    moved_back = store.files.move(NS, "again.txt", "src.txt", author=ME)
    assert moved_back.revision.revision == 3
    assert read(store, "src.txt") == b"again"

    with pytest.raises(InvalidInput):
        store.files.move(NS, "src.txt", "src.txt", author=ME)
    with pytest.raises(InvalidName):
        store.files.move(NS, "src.txt", "../out.txt", author=ME)
    with pytest.raises(NotFound):
        store.files.move(NS, "missing.txt", "x.txt", author=ME)
    assert store.garbage() == []


# -- archives -----------------------------------------------------------------------------


def test_export_then_import_with_prefix(store: Store) -> None:
    files = {"flows/etl.py": b"print('etl')\n", "data/big.bin": os.urandom(300_000), "README": b""}
    for path, data in files.items():
        put(store, path, data)
    put(store, "gone.txt", b"deleted before export")
    store.files.delete(NS, "gone.txt", author=ME)

    out = io.BytesIO()
    assert store.files.export_zip(NS, "", out) == 3
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as archive:
        assert sorted(archive.namelist()) == sorted(files)

    only_flows = io.BytesIO()
    assert store.files.export_zip(NS, "flows/", only_flows) == 1

    blobs_before = set(store.blobs.hashes())
    applied = store.files.import_zip("company.copy", io.BytesIO(out.getvalue()), prefix="imported", author=ME)
    assert sorted(a.revision.path for a in applied) == sorted(f"imported/{p}" for p in files)
    assert all(a.changed and a.revision.origin == "zip" for a in applied)
    for path, data in files.items():
        assert read(store, f"imported/{path}", ns="company.copy") == data
    assert set(store.blobs.hashes()) == blobs_before  # same bytes, same blobs

    again = store.files.import_zip("company.copy", io.BytesIO(out.getvalue()), prefix="imported/", author=ME)
    assert not any(a.changed for a in again)

    with pytest.raises(NotFound):
        store.files.export_zip("no.such", "", io.BytesIO())
    assert store.garbage() == []
    assert store.blobs.temp_count() == 0  # type: ignore[attr-defined]


def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("ok.txt", b"fine")
        link = zipfile.ZipInfo("link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buf.getvalue()


def encrypted_flag_zip() -> bytes:
    data = bytearray(zip_bytes([("secret.txt", b"s")], compression=zipfile.ZIP_STORED))
    # set bit 0 (encrypted) in the local header and the central directory entry
    data[6] |= 1
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 1
    return bytes(data)


def zip_bomb() -> bytes:
    """One honest member of 50 MiB of zeros: it deflates about 1000x."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w") as member,
    ):
        block = b"\0" * MiB
        for _ in range(50):
            member.write(block)
    return buf.getvalue()


UNSAFE = {
    "dotdot": lambda: zip_bytes([("ok.txt", b"fine"), ("../evil", b"x")]),
    "nested-dotdot": lambda: zip_bytes([("a/../../evil", b"x")]),
    "absolute": lambda: zip_bytes([("ok.txt", b"fine"), ("/etc/x", b"x")]),
    "backslash": lambda: zip_bytes([("ok.txt", b"fine"), ("..\\evil", b"x")]),
    "control-char": lambda: zip_bytes([("a\nb", b"x")]),
    "symlink": symlink_zip,
    "encrypted": encrypted_flag_zip,
    "duplicate": lambda: zip_bytes([("same.txt", b"one"), ("same.txt", b"two")]),
    "zip-bomb": zip_bomb,
    "not-a-zip": lambda: b"this is not a zip archive at all" * 100,
    "empty-body": lambda: b"",
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archives_change_nothing(store: Store, case: str) -> None:
    put(store, "existing.txt", b"existing")
    blobs_before = set(store.blobs.hashes())
    with pytest.raises(UnsafeArchive):
        store.files.import_zip("company.target", io.BytesIO(UNSAFE[case]()), author=ME)
    assert file_rows(store, "company.target") == 0
    assert not store.namespaces.exists("company.target")
    assert set(store.blobs.hashes()) == blobs_before
    assert store.blobs.temp_count() == 0  # type: ignore[attr-defined]
    assert store.garbage() == []


@pytest.mark.parametrize(
    ("limits", "members"),
    [
        (ArchiveLimits(max_members=3), [(f"f{i}.txt", b"x") for i in range(4)]),
        (ArchiveLimits(max_total_bytes=1000), [("a.bin", os.urandom(600)), ("b.bin", os.urandom(600))]),
        (
            ArchiveLimits(max_ratio=10, ratio_floor=1000),
            [("a.txt", b"a" * 5000), ("b.bin", os.urandom(100))],
        ),
    ],
    ids=["too-many-members", "total-too-big", "member-ratio"],
)
def test_archive_limits(
    tmp_path: Path, blob_store: BlobStore, catalog_url: str | None, limits: ArchiveLimits, members: list
) -> None:
    store = Store(tmp_path / "data", blob_store, database_url=catalog_url, archive_limits=limits)
    with pytest.raises(UnsafeArchive):
        store.files.import_zip(NS, io.BytesIO(zip_bytes(members)), author=ME)
    assert file_rows(store, NS) == 0
    assert list(store.blobs.hashes()) == []
    assert store.blobs.temp_count() == 0  # type: ignore[attr-defined]


def test_archive_within_limits_is_accepted(tmp_path: Path, blob_store: BlobStore, catalog_url: str | None) -> None:
    limits = ArchiveLimits(max_members=3, max_total_bytes=1200)
    store = Store(tmp_path / "data", blob_store, database_url=catalog_url, archive_limits=limits)
    members = [("a.bin", os.urandom(600)), ("b.bin", os.urandom(600)), ("dir/", b"")]
    applied = store.files.import_zip(NS, io.BytesIO(zip_bytes(members)), author=ME)
    assert sorted(a.revision.path for a in applied) == ["a.bin", "b.bin"]


def test_import_over_upload_limit_changes_nothing(
    tmp_path: Path, blob_store: BlobStore, catalog_url: str | None
) -> None:
    store = Store(tmp_path / "data", blob_store, database_url=catalog_url, max_upload_bytes=1000)
    body = zip_bytes([("a.bin", os.urandom(2000))], compression=zipfile.ZIP_STORED)
    with pytest.raises(TooLarge):
        store.files.import_zip(NS, io.BytesIO(body), author=ME)
    assert file_rows(store, NS) == 0
    assert list(store.blobs.hashes()) == []


def test_corrupt_member_changes_nothing(store: Store) -> None:
    good = os.urandom(5000)
    body = bytearray(zip_bytes([("a.bin", b"first member"), ("b.bin", good)], compression=zipfile.ZIP_STORED))
    at = bytes(body).find(good[:32])
    body[at + 100] ^= 0xFF  # CRC mismatch, found only while reading b.bin
    with pytest.raises(UnsafeArchive):
        store.files.import_zip(NS, io.BytesIO(bytes(body)), author=ME)
    assert file_rows(store, NS) == 0
    # the member stored before the failure is left to the collector, never deleted by the request
    assert store.garbage() == [hashlib.sha256(b"first member").hexdigest()]
    assert store.blobs.temp_count() == 0  # type: ignore[attr-defined]
    assert store.collect_garbage(grace_seconds=0) == 1
    assert list(store.blobs.hashes()) == []


def test_import_prefix_is_validated(store: Store) -> None:
    body = zip_bytes([("a.txt", b"a")])
    for prefix in ("../", "/abs", "a//"):
        with pytest.raises(InvalidName):
            store.files.import_zip(NS, io.BytesIO(body), prefix=prefix, author=ME)
    assert file_rows(store, NS) == 0


def test_garbage_empty_after_normal_operations(store: Store) -> None:
    put(store, "a.txt", b"a")
    put(store, "a.txt", b"b")
    put(store, "c.txt", b"a")
    store.files.delete(NS, "c.txt", author=ME)
    store.files.move(NS, "a.txt", "d.txt", author=ME)
    store.files.restore(NS, "a.txt", 1, author=ME)
    store.files.import_zip("other.ns", io.BytesIO(zip_bytes([("z.txt", b"z"), ("a.txt", b"a")])), author=ME)
    assert store.garbage() == []
    assert store.collect_garbage() == 0

    # a blob nothing references (as a crash would leave) is garbage, and is collected
    stray = store.blobs.put(io.BytesIO(b"stray"))
    assert store.garbage() == [stray.sha256]
    assert store.collect_garbage() == 0  # inside the grace period: a change may be about to reference it
    assert store.blobs.exists(stray.sha256)
    assert store.collect_garbage(grace_seconds=0) == 1
    assert not store.blobs.exists(stray.sha256)
    assert store.blobs.exists(hashlib.sha256(b"a").hexdigest())
