"""The blob interface on both backends: the local directory and S3 (a real SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from packyard.store.blobs.base import BlobStore, StoredBlob
from packyard.store.errors import InvalidInput, NotFound, TooLarge

MiB = 1024 * 1024


class GeneratedReader:
    """``size`` bytes made on demand (never held whole), hashed as they are handed out."""

    def __init__(self, size: int, block: int = MiB) -> None:
        self.remaining = size
        self.hash = hashlib.sha256()
        self._block = os.urandom(block)
        self._pos = 0
        self._counter = 0

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        n = self.remaining if n is None or n < 0 else min(n, self.remaining)
        out = bytearray()
        while len(out) < n:
            if self._pos == 0:
                # vary each block so no two parts of the stream are identical
                self._counter += 1
                current = self._counter.to_bytes(8, "big") + self._block[8:]
                self._current = current
            take = min(n - len(out), len(self._current) - self._pos)
            out += self._current[self._pos : self._pos + take]
            self._pos = (self._pos + take) % len(self._current)
        self.remaining -= n
        data = bytes(out)
        self.hash.update(data)
        return data


def read_all(blob_store: BlobStore, sha256: str) -> bytes:
    with blob_store.open(sha256) as stream:
        return stream.read()


def digest_of_stored(blob_store: BlobStore, sha256: str) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with blob_store.open(sha256) as stream:
        while chunk := stream.read(MiB):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def test_put_open_exists_size_delete_hashes(blob_store: BlobStore) -> None:
    assert list(blob_store.hashes()) == []
    data = b"hello, packyard\n"
    sha = hashlib.sha256(data).hexdigest()
    assert not blob_store.exists(sha)

    stored = blob_store.put(io.BytesIO(data))
    assert stored == StoredBlob(sha, len(data), created=True)
    assert blob_store.exists(sha)
    assert blob_store.size(sha) == len(data)
    assert read_all(blob_store, sha) == data
    assert list(blob_store.hashes()) == [sha]

    other = blob_store.put(io.BytesIO(b"second"))
    assert set(blob_store.hashes()) == {sha, other.sha256}

    blob_store.delete(sha)
    assert not blob_store.exists(sha)
    assert list(blob_store.hashes()) == [other.sha256]
    with pytest.raises(NotFound):
        blob_store.open(sha)
    with pytest.raises(NotFound):
        blob_store.size(sha)
    blob_store.delete(sha)  # deleting a missing blob is not an error
    assert blob_store.temp_count() == 0  # type: ignore[attr-defined]


def test_identical_bytes_are_stored_once(blob_store: BlobStore) -> None:
    first = blob_store.put(io.BytesIO(b"same bytes"))
    again = blob_store.put(io.BytesIO(b"same bytes"))
    assert first.created is True
    assert again.created is False
    assert (again.sha256, again.size) == (first.sha256, first.size)
    assert list(blob_store.hashes()) == [first.sha256]
    assert blob_store.temp_count() == 0  # type: ignore[attr-defined]


def test_empty_blob(blob_store: BlobStore) -> None:
    stored = blob_store.put(io.BytesIO(b""))
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert stored.size == 0
    assert blob_store.size(stored.sha256) == 0
    assert read_all(blob_store, stored.sha256) == b""


@pytest.mark.parametrize(("size", "limit"), [(11, 10), (3 * MiB + 1, 3 * MiB)])
def test_limit_exceeded_leaves_nothing(blob_store: BlobStore, size: int, limit: int) -> None:
    kept = blob_store.put(io.BytesIO(b"already here"))
    with pytest.raises(TooLarge):
        blob_store.put(GeneratedReader(size), limit=limit)
    assert list(blob_store.hashes()) == [kept.sha256]
    assert blob_store.temp_count() == 0  # type: ignore[attr-defined]


def test_limit_exactly_met_is_fine(blob_store: BlobStore) -> None:
    stored = blob_store.put(io.BytesIO(b"x" * 10), limit=10)
    assert stored.size == 10


def test_limit_exceeded_after_first_s3_part(blob_store: BlobStore) -> None:
    """Past the first 16 MiB part a multipart upload is under way: it must be abandoned."""
    with pytest.raises(TooLarge):
        blob_store.put(GeneratedReader(20 * MiB), limit=18 * MiB)
    assert list(blob_store.hashes()) == []
    assert blob_store.temp_count() == 0  # type: ignore[attr-defined]


def test_large_streamed_put_round_trips(blob_store: BlobStore) -> None:
    """40 MiB from a generator-backed reader: several S3 parts, never one giant bytes object."""
    size = 40 * MiB
    reader = GeneratedReader(size)
    stored = blob_store.put(reader)
    assert reader.remaining == 0
    assert stored.created is True
    assert stored.size == size
    assert stored.sha256 == reader.hash.hexdigest()
    assert blob_store.size(stored.sha256) == size
    assert digest_of_stored(blob_store, stored.sha256) == (stored.sha256, size)
    assert list(blob_store.hashes()) == [stored.sha256]
    assert blob_store.temp_count() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [8 * MiB - 1, 8 * MiB, 8 * MiB + 1, 16 * MiB + 3])
def test_puts_around_the_s3_part_size_round_trip(blob_store: BlobStore, size: int) -> None:
    """At most one part (8 MiB) goes straight to its final key; one byte more takes the
    multipart path with the first part already read: either way, the same bytes come back."""
    reader = GeneratedReader(size)
    stored = blob_store.put(reader)
    assert (stored.size, stored.sha256, stored.created) == (size, reader.hash.hexdigest(), True)
    assert digest_of_stored(blob_store, stored.sha256) == (stored.sha256, size)
    assert blob_store.put(io.BytesIO(read_all(blob_store, stored.sha256))).created is False
    assert blob_store.temp_count() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "digest",
    ["../x", "../../etc/passwd", "", "ab", "A" * 64, "g" * 64, "a" * 63, "a" * 65, "a" * 63 + "/"],
)
def test_invalid_digests_are_refused(blob_store: BlobStore, digest: str) -> None:
    for call in (blob_store.open, blob_store.exists, blob_store.size, blob_store.delete):
        with pytest.raises(InvalidInput):
            call(digest)
