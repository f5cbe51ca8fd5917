"""Environment bundles and shared resolutions in the store, on both backends: who sees which
bundle, the archive checks and their limits, stale locks, and the v6 -> v7 migration."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from packyard.store import catalog as catalog_module
from packyard.store.archive import ArchiveLimits, BoundedExpansion
from packyard.store.blobs.base import BlobStore
from packyard.store.bundles import check_bundle
from packyard.store.core import Store
from packyard.store.errors import Conflict, InvalidInput, NotFound, UnsafeArchive

KEY = "b" * 64
ME = "tester"


def bundle(files: dict[str, bytes]) -> bytes:
    spool = io.BytesIO()
    with tarfile.open(fileobj=spool, mode="w:gz") as archive:
        for name, data in {"pyvenv.cfg": b"home = /usr/bin\n", **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return spool.getvalue()


@pytest.fixture
def store(tmp_path: Path, blob_store: BlobStore, catalog_url: str | None) -> Store:
    store = Store(
        tmp_path / "data",
        blob_store,
        database_url=catalog_url,
        bundle_limits=ArchiveLimits(max_members=5, max_total_bytes=4 << 20),
    )
    for ns in ("company", "company.sales", "company.sales.emea", "other"):
        store.namespaces.create(ns, ME)
    return store


def put(store: Store, ns: str, data: bytes, key: str = KEY) -> tuple[dict, bool]:
    return store.bundles.put(key, io.BytesIO(data), namespace=ns, actor=ME)


def test_the_nearest_namespace_of_the_chain_wins_and_others_are_never_seen(store: Store) -> None:
    put(store, "company", bundle({"lib/a.py": b"company"}))
    put(store, "other", bundle({"lib/a.py": b"other"}))
    assert store.bundles.nearest(KEY, store.index.chain("company.sales.emea"))["namespace"] == "company"
    put(store, "company.sales", bundle({"lib/a.py": b"sales"}))
    assert store.bundles.nearest(KEY, store.index.chain("company.sales.emea"))["namespace"] == "company.sales"
    assert store.bundles.nearest(KEY, store.index.chain("company"))["namespace"] == "company"
    store.namespaces.update_settings("company.sales.emea", {"inherit": False}, ME)
    with pytest.raises(NotFound):  # it no longer inherits: its ancestors' bundles are not its own
        store.bundles.nearest(KEY, store.index.chain("company.sales.emea"))


def test_first_upload_wins_within_a_namespace(store: Store) -> None:
    first, created = put(store, "company", bundle({"lib/a.py": b"1"}))
    assert created
    losing = bundle({"lib/a.py": b"2"})
    again, created = put(store, "company", losing)
    assert (created, again["sha256"]) == (False, first["sha256"])
    # the losing upload's blob is left to the collector (a request never deletes a blob)
    assert store.garbage() == [hashlib.sha256(losing).hexdigest()]
    assert store.collect_garbage(grace_seconds=0) == 1
    assert store.garbage() == [] and store.blobs.exists(first["sha256"])


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ({f"lib/{i}.py": b"x" for i in range(5)}, UnsafeArchive, "more than 5 members"),
        ({"lib/big": b"\0" * (5 << 20)}, UnsafeArchive, "expands beyond"),
        ({"lib/zeros": b"\0" * (3 << 20)}, UnsafeArchive, "limit 100x"),
    ],
)
def test_limits(store: Store, files: dict[str, bytes], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        put(store, "company", bundle(files))
    assert store.catalog.one("SELECT count(*) AS n FROM bundles")["n"] == 0
    store.collect_garbage(grace_seconds=0)  # whatever the refused upload stored, nothing references it
    assert list(store.blobs.hashes()) == []


def test_not_a_bundle(store: Store) -> None:
    with pytest.raises(InvalidInput, match="not a gzip'd tar"):
        put(store, "company", b"\x1f\x8b\x08" + b"\0" * 40)
    store.collect_garbage(grace_seconds=0)  # whatever the refused upload stored, nothing references it
    assert list(store.blobs.hashes()) == []


def _resolution(store: Store, ns: str, state: str | None = None, lock: str = "a==1 --hash=sha256:00\n") -> dict:
    row = {"namespace": ns, "key": "c" * 64, "state": state or store.index_state(ns), "lock": lock,
           "env_key": "d" * 64, "python": "3.11", "platform": "linux-x86_64", "requirements": ["a"]}  # fmt: skip
    return store.resolutions.put(row, store.index_state(ns), ME)


def test_resolutions_answer_only_for_the_current_state_and_ttl(store: Store) -> None:
    state = store.index_state("company.sales")
    with pytest.raises(Conflict):
        _resolution(store, "company.sales", state="0:stale")
    _resolution(store, "company.sales")
    assert store.resolutions.get("company.sales", "c" * 64, state, None)["requirements"] == ["a"]
    with pytest.raises(NotFound):  # within the chain, but another namespace's resolution
        store.resolutions.get("company.sales.emea", "c" * 64, store.index_state("company.sales.emea"), None)
    with pytest.raises(NotFound):  # with an upstream, an old lock expires
        store.resolutions.get("company.sales", "c" * 64, state, ttl=0.0)
    _resolution(store, "company.sales", lock="a==2 --hash=sha256:11\n")  # a newer resolution replaces it
    assert store.resolutions.get("company.sales", "c" * 64, state, 60.0)["lock"].startswith("a==2")
    store.generations.bump("company")  # anything in the chain changes: the lock is stale
    with pytest.raises(NotFound):
        store.resolutions.get("company.sales", "c" * 64, store.index_state("company.sales"), None)


def test_migration_from_v6_drops_wheel_bundles(
    tmp_path: Path, blob_store: BlobStore, catalog_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(catalog_module, "MIGRATIONS", catalog_module.MIGRATIONS[:6])
        old = Store(tmp_path / "data", blob_store, database_url=catalog_url)
        blob = blob_store.put(io.BytesIO(b"a zip of wheels"))
        with old.catalog.write() as db:
            db.insert("bundles", {"key": KEY, "sha256": blob.sha256, "size": blob.size, "namespace": "x",
                                  "created": "2026-01-01T00:00:00Z", "created_by": ME})  # fmt: skip
        assert old.catalog.schema_version == 6
        old.catalog.close()
    new = Store(tmp_path / "data", blob_store, database_url=catalog_url)
    assert new.catalog.schema_version == len(catalog_module.MIGRATIONS)
    assert new.catalog.one("SELECT count(*) AS n FROM bundles")["n"] == 0
    assert new.garbage() == [blob.sha256]  # collected by the next garbage collection
    new.namespaces.create("x", ME)
    put(new, "x", bundle({"lib/a.py": b"1"}))
    assert new.bundles.nearest(KEY, ["x"])["namespace"] == "x"


# -- the check stops early: at a budget, at a CPU bound, when the client has gone --------------------


def test_bundle_check_stops_when_the_client_has_gone() -> None:
    """A big but legal bundle is checked in steps; between them the caller can call it off."""
    data = bundle({"lib/big.bin": bytes(24 << 20)})
    calls = []

    class Gone(Exception):
        pass

    def checkpoint() -> None:
        calls.append(1)
        raise Gone

    roomy = ArchiveLimits(max_ratio=100_000, max_total_bytes=1 << 30)
    with pytest.raises(Gone):
        check_bundle(io.BytesIO(data), len(data), roomy, checkpoint)
    assert calls == [1]  # stopped at the first checkpoint, 8 MiB in, not after 24 MiB
    check_bundle(io.BytesIO(data), len(data), roomy, lambda: None)  # the same bundle passes otherwise


def test_bundle_check_has_a_cpu_budget() -> None:
    data = bundle({"lib/big.bin": bytes(24 << 20)})
    limits = ArchiveLimits(max_ratio=100_000, max_total_bytes=1 << 30, max_cpu_seconds=0)
    with pytest.raises(UnsafeArchive, match="s of CPU"):
        check_bundle(io.BytesIO(data), len(data), limits)


def test_expansion_is_cut_at_the_first_byte_over_the_budget() -> None:
    """What a decompressor produces is counted as it is produced, whatever the headers declared."""
    stream = BoundedExpansion(io.BytesIO(bytes(10 << 20)), limit=3 << 20, what="bundle", cpu_seconds=60)
    with pytest.raises(UnsafeArchive, match="expands beyond 3.0 MiB"):
        while stream.read(1 << 20):
            pass
    assert stream.produced == (3 << 20) + (1 << 20)


def test_a_member_declaring_a_bomb_is_refused_at_its_header() -> None:
    """The size a tar header declares is checked before the member's bytes are inflated."""
    limits = ArchiveLimits(max_ratio=10, ratio_floor=1 << 20, max_total_bytes=1 << 30)
    data = bundle({"lib/zeros.bin": bytes(8 << 20)})
    with pytest.raises(UnsafeArchive, match="lib/zeros.bin"):
        check_bundle(io.BytesIO(data), len(data), limits)
