"""Core metadata is stored without waiting for the disk, so every read checks it and a
missing or damaged metadata blob is derived again from the durable distribution file."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from packyard.store import catalog as catalog_module
from packyard.store.artifacts import inspect
from packyard.store.blobs.base import BlobStore
from packyard.store.core import Store
from packyard.store.errors import NotFound

from tests.support.dists import make_sdist, make_wheel


@pytest.fixture
def stored(tmp_path: Path, blob_store: BlobStore, catalog_url: str | None) -> tuple[Store, object]:
    store = Store(tmp_path / "catalog", blob_store, database_url=catalog_url)
    wheel = make_wheel(tmp_path / "dist", "metapkg", "1.0", requires_python=">=3.8")
    with wheel.open("rb") as stream:
        dist, created = store.dists.add("team", stream, wheel.name, uploader="test")
    assert created
    return store, dist


def test_metadata_is_served_checked(stored: tuple[Store, object]) -> None:
    store, dist = stored
    data = store.dists.metadata_bytes(dist.sha256, dist.filename, dist.metadata_sha256)
    assert hashlib.sha256(data).hexdigest() == dist.metadata_sha256
    assert b"Name: metapkg" in data and b"Requires-Python: >=3.8" in data


def test_missing_metadata_blob_is_derived_again(stored: tuple[Store, object]) -> None:
    store, dist = stored
    store.blobs.delete(dist.metadata_sha256)
    assert not store.blobs.exists(dist.metadata_sha256)
    data = store.dists.metadata_bytes(dist.sha256, dist.filename, dist.metadata_sha256)
    assert hashlib.sha256(data).hexdigest() == dist.metadata_sha256
    assert store.blobs.exists(dist.metadata_sha256)  # and stored again


def test_damaged_local_metadata_blob_is_replaced(tmp_path: Path, stored: tuple[Store, object], backend: str) -> None:
    store, dist = stored
    if backend != "local":
        pytest.skip("a torn write (no fsync) is a local-disk failure; S3 objects appear whole or not at all")
    path = store.blobs.local_path(dist.metadata_sha256)
    path.write_bytes(b"")  # what a crash before the data reached the disk can leave
    data = store.dists.metadata_bytes(dist.sha256, dist.filename, dist.metadata_sha256)
    assert hashlib.sha256(data).hexdigest() == dist.metadata_sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == dist.metadata_sha256


def test_a_damaged_file_is_not_papered_over(stored: tuple[Store, object]) -> None:
    store, dist = stored
    store.blobs.delete(dist.metadata_sha256)
    with pytest.raises(NotFound):
        store.dists.metadata_bytes(dist.sha256, dist.filename, "0" * 64)


def test_sdists_stored_before_v10_are_decided_when_the_store_opens(
    tmp_path: Path, blob_store: BlobStore, catalog_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages are rendered from the catalog, so rows stored by an older packyard (which
    advertised metadata for every file) get their decision when the store first opens."""
    files = [
        make_wheel(tmp_path / "d", "oldrow", "1.0"),
        make_sdist(tmp_path / "d", "oldrow", "1.0"),  # Metadata-Version 2.1
        make_sdist(tmp_path / "d", "newrow", "1.0", metadata_version="2.2"),
        make_sdist(tmp_path / "d", "dynrow", "1.0", metadata_version="2.3", dynamic=["Provides-Extra"]),
    ]
    with monkeypatch.context() as patch:
        patch.setattr(catalog_module, "MIGRATIONS", catalog_module.MIGRATIONS[:9])  # before v10
        old = Store(tmp_path / "data", blob_store, database_url=catalog_url)
        for path in files:
            with path.open("rb") as stream:
                artifact = inspect(stream, path.name, path.stat().st_size)
            blob = blob_store.put(io.BytesIO(path.read_bytes()))
            meta = blob_store.put(io.BytesIO(artifact.metadata))
            with old.catalog.write() as db:
                if not old.namespaces.exists("team"):  # as the older packyard did (no generations table yet)
                    db.insert("namespaces", {"name": "team", "created": "2026-01-01T00:00:00Z", "settings": "{}"})
                row = {"namespace": "team", "filename": path.name, "project": artifact.project,
                       "name": artifact.name, "version": artifact.version, "filetype": artifact.filetype,
                       "sha256": blob.sha256, "size": blob.size, "metadata_sha256": meta.sha256,
                       "upload_time": "2026-01-01T00:00:00Z", "yanked": 0}  # fmt: skip
                db.insert("dists", row)
        old.catalog.close()
    new = Store(tmp_path / "data", blob_store, database_url=catalog_url)
    source = new.index.source("team", ["team"])
    advertised = {
        f.filename: f.metadata_sha256 is not None
        for project in ("oldrow", "newrow", "dynrow")
        for f in source.project(project).files  # type: ignore[union-attr]
    }
    assert advertised == {
        "oldrow-1.0-py3-none-any.whl": True,
        "oldrow-1.0.tar.gz": False,
        "newrow-1.0.tar.gz": True,
        "dynrow-1.0.tar.gz": False,
    }
    assert new.catalog.query("SELECT count(*) AS n FROM dists WHERE core_metadata IS NULL") == [{"n": 0}]
