"""The blob interface every backend implements, and the hashing reader they share.

Blobs are addressed by the sha256 of their bytes. A ``put`` streams its input once: the
reader hashes and counts on the way through and stops the moment a size limit is passed,
so no backend ever holds a whole file in memory or keeps a partial one visible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from packyard.store.errors import InvalidInput, TooLarge

CHUNK = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredEntry:
    """A blob or temporary object as the collector sees it: what, how big, last written when."""

    name: str
    """The sha256 of a blob; the backend's own name for a temporary object."""
    size: int
    modified: float
    """Seconds since the epoch (file mtime, S3 LastModified): the collector's grace is measured from it."""


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    created: bool
    """False when identical bytes were already stored (nothing new was written)."""


def check_sha256(sha256: str) -> str:
    """Refuse anything but a lowercase hex sha256, so a digest can never be a path trick."""
    if not _SHA256.fullmatch(sha256 or ""):
        raise InvalidInput(f"{sha256!r} is not a sha256 hex digest")
    return sha256


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"body is larger than the limit of {human_size(limit)}; "
        "raise PACKYARD_MAX_UPLOAD_BYTES on the server if this file is expected"
    )


class HashingReader:
    """Wraps a readable stream; hashes and counts what passes; enforces ``limit``."""

    def __init__(self, stream: BinaryIO, limit: int | None = None) -> None:
        self._stream = stream
        self._limit = limit
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(CHUNK if n is None or n < 0 else n)
        if data:
            self.size += len(data)
            if self._limit is not None and self.size > self._limit:
                raise too_large(self._limit)
            self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class BlobStore(Protocol):
    """What the catalog needs from storage. Writes become visible only once complete."""

    def put(self, stream: BinaryIO, *, limit: int | None = None, durable: bool = True) -> StoredBlob:
        """Store the stream's bytes; raise :class:`TooLarge` past ``limit`` (nothing kept).

        Identical bytes already stored are written again (same content, new modification
        time), so a blob a change has just put is never older than the collector's grace.

        ``durable=False`` skips waiting for the disk: only for blobs that can be derived
        again from a durable one (a wheel's METADATA), and that are checked when read.
        """
        ...

    def open(self, sha256: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A readable, closable stream of the blob (or a byte range); NotFound if absent."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def delete(self, sha256: str) -> None:
        """Delete unconditionally: for tests and repairs only, never on a request path."""
        ...

    def delete_if_older(self, sha256: str, cutoff: float) -> bool:
        """Delete the blob only if it was last written before ``cutoff`` (epoch seconds).

        The collector's one way to delete: a ``put`` of the same bytes rewrites the blob and
        so makes it young again, which is what protects a change that stored (or found) the
        blob and has not committed yet. True when something was deleted.
        """
        ...

    def delete_many_if_older(self, names: list[str], cutoff: float) -> list[str]:
        """:meth:`delete_if_older` for a batch of the collector's (a backend may do it in fewer
        requests); the names it deleted."""
        ...

    def hashes(self) -> Iterator[str]:
        """Every stored blob's digest."""
        ...

    def entries(self) -> Iterator[StoredEntry]:
        """Every stored blob with its size and age, for fsck and garbage collection, in
        ascending digest order and streamed (the collector merges it with the catalog's
        sorted references, so neither side is ever held in memory whole)."""
        ...

    def temps(self) -> Iterator[StoredEntry]:
        """Temporary objects: puts in flight, or left by a crash."""
        ...

    def delete_temp(self, name: str) -> None:
        """Remove one temporary object (the collector calls this only past the grace period)."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path the server may send directly, or None for remote backends."""
        ...

    def presigned_url(self, sha256: str, expires_seconds: int = 3600, filename: str | None = None) -> str | None:
        """A time-limited URL to fetch the blob directly, where the backend has one."""
        ...

    def check(self) -> None:
        """Raise :class:`BackendUnavailable` when the backend cannot be used."""
        ...
