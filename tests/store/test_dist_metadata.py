"""Core metadata is stored without waiting for the disk, so every read checks it and a
missing or damaged metadata blob is derived again from the durable distribution file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from store.blobs.base import BlobStore
from store.core import Store
from store.errors import NotFound
from tests.support.dists import make_wheel


@pytest.fixture
def stored(tmp_path: Path, blob_store: BlobStore) -> tuple[Store, object]:
    store = Store(tmp_path / "catalog", blob_store)
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
