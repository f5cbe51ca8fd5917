"""Blobs in a local directory: the embedded default.

Layout ``ROOT/blobs/ab/cd/<sha256>``; writes go to ``ROOT/tmp/`` first and are renamed
into place once hashed, so a reader never opens a half-written blob and a crash leaves at
worst a stray temporary file (removed by the collector once older than its grace period).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from packyard.store.blobs.base import CHUNK, HashingReader, StoredBlob, StoredEntry, check_sha256
from packyard.store.errors import NotFound, is_disk_full, storage_full


class _Limited:
    """At most ``length`` bytes of an open file, for range reads."""

    def __init__(self, stream: BinaryIO, length: int | None) -> None:
        self._stream = stream
        self._left = length

    def read(self, n: int = -1) -> bytes:
        if self._left is None:
            return self._stream.read(n)
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._stream.read(n)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sorted_names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


class LocalBlobStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        """Wait for the disk before a blob becomes visible (off only where a power cut may lose
        the last uploads anyway: CI, throwaway caches)."""
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self._blobs / sha256[:2] / sha256[2:4] / sha256

    def put(self, stream: BinaryIO, *, limit: int | None = None, durable: bool = True) -> StoredBlob:
        reader = HashingReader(stream, limit)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
                out.flush()
                if durable and self.fsync:
                    os.fsync(out.fileno())
            sha256 = reader.hexdigest()
            final = self._path(sha256)
            existed = final.exists()
            final.parent.mkdir(parents=True, exist_ok=True)
            # replaced even when it exists: the same bytes under a fresh mtime, so the collector
            # (which deletes only blobs older than its grace) cannot take a blob this change is
            # about to reference; readers holding the old file keep reading it
            os.replace(tmp_name, final)
            return StoredBlob(sha256, reader.size, created=not existed)
        except BaseException as exc:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            if is_disk_full(exc):
                raise storage_full("the blobs") from exc
            raise

    def open(self, sha256: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        try:
            stream = open(self._path(sha256), "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256} is not in the store") from exc
        if offset or length is not None:
            stream.seek(offset)
            return _Limited(stream, length)  # type: ignore[return-value]
        return stream

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256} is not in the store") from exc

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def delete_if_older(self, sha256: str, cutoff: float) -> bool:
        """Move the blob aside, then judge the file that was moved: a ``put`` that replaced it
        just before is seen as young and put back; one that lands just after is not touched."""
        path = self._path(sha256)
        aside = self._tmp / f"gc-{sha256}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        if aside.stat().st_mtime >= cutoff:
            os.replace(aside, path)
            return False
        aside.unlink()
        return True

    def delete_many_if_older(self, names: list[str], cutoff: float) -> list[str]:
        """:meth:`delete_if_older` for each of a batch; those deleted."""
        return [name for name in names if self.delete_if_older(name, cutoff)]

    def hashes(self) -> Iterator[str]:
        for entry in self.entries():
            yield entry.name

    def entries(self) -> Iterator[StoredEntry]:
        """In ascending digest order (the fan-out folders are the digest's first characters),
        one folder listed at a time: memory stays flat however many blobs there are."""
        for first in _sorted_names(self._blobs):
            for second in _sorted_names(self._blobs / first):
                folder = self._blobs / first / second
                for name in _sorted_names(folder):
                    try:
                        stat = (folder / name).stat()
                    except FileNotFoundError:
                        continue  # collected or replaced while listing
                    yield StoredEntry(name, stat.st_size, stat.st_mtime)

    def temps(self) -> Iterator[StoredEntry]:
        for path in self._tmp.iterdir():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # a put finished while listing
            yield StoredEntry(path.name, stat.st_size, stat.st_mtime)

    def delete_temp(self, name: str) -> None:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a temporary file name: {name!r}")
        (self._tmp / name).unlink(missing_ok=True)

    def local_path(self, sha256: str) -> Path | None:
        path = self._path(sha256)
        return path if path.is_file() else None

    def presigned_url(self, sha256: str, expires_seconds: int = 3600, filename: str | None = None) -> str | None:
        return None

    def check(self) -> None:
        shutil.disk_usage(self.root)

    def temp_count(self) -> int:
        """Temporary files in flight or left by a crash (tests assert none are left)."""
        return sum(1 for _ in self._tmp.iterdir())
