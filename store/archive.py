"""Zip archives in and out of a namespace, guarded against zip bombs and unsafe names.

An upload is checked whole before a single member is stored: every name must be a valid
namespace path, no member may be a link, encrypted or duplicated, and the declared sizes
must stay within the member count, total size and expansion-ratio limits. ``zipfile``
never inflates a member past its declared size, so the declared sizes are the bound.
"""

from __future__ import annotations

import stat
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from packyard.store.blobs.base import CHUNK, human_size
from packyard.store.errors import InvalidName, UnsafeArchive
from packyard.store.names import validate_path


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 10_000
    max_total_bytes: int = 4 * 1024**3
    max_ratio: int = 100
    """Largest allowed uncompressed/compressed ratio, for the archive and for big members."""
    ratio_floor: int = 1024 * 1024
    """Members smaller than this are not ratio-checked: tiny files compress absurdly well."""
    max_cpu_seconds: float = 60.0
    """CPU one archive check may take (decompressing up to ``max_total_bytes``), whatever it holds."""

    def expansion_limit(self, compressed: int) -> int:
        """Most bytes an archive of ``compressed`` bytes may expand to under the size and ratio limits."""
        return min(self.max_total_bytes, max(self.ratio_floor, self.max_ratio * max(compressed, 1)))


class BoundedExpansion:
    """``read()`` over a decompressing stream that stops at the first byte past a budget.

    Checking an archive's declared sizes is not enough when the archive format lets data
    hide between or behind members (a tar's padding, a gzip stream's tail), so what the
    decompressor actually produces is counted as it is produced, along with the CPU the
    check has used and, every few megabytes, whether the caller still wants the answer
    (``checkpoint`` raises when the client has gone).
    """

    CHECK_EVERY = 8 * 1024 * 1024

    def __init__(
        self,
        stream: BinaryIO,
        *,
        limit: int,
        what: str,
        cpu_seconds: float,
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self._stream, self.limit, self.what = stream, limit, what
        self._cpu_deadline = time.thread_time() + cpu_seconds
        self.cpu_seconds = cpu_seconds
        self._checkpoint = checkpoint
        self.produced = 0
        self._next_check = self.CHECK_EVERY

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n if n is not None and 0 <= n <= CHUNK else CHUNK)
        self.produced += len(data)
        if self.produced > self.limit:
            raise UnsafeArchive(
                f"{self.what} expands beyond {human_size(self.limit)} (the size and ratio limits): "
                "refusing a likely decompression bomb"
            )
        if self.produced >= self._next_check:
            self._next_check += self.CHECK_EVERY
            if time.thread_time() > self._cpu_deadline:
                raise UnsafeArchive(f"checking the {self.what} took more than {self.cpu_seconds:g} s of CPU")
            if self._checkpoint is not None:
                self._checkpoint()
        return data


def plan_import(
    archive: zipfile.ZipFile, prefix: str, limits: ArchiveLimits, archive_size: int
) -> list[tuple[str, zipfile.ZipInfo]]:
    """Validate every member; return (target path, member) pairs, or raise UnsafeArchive."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchive(f"archive has {len(infos)} members; the limit is {limits.max_members}")
    plan: list[tuple[str, zipfile.ZipInfo]] = []
    seen: set[str] = set()
    total = 0
    for info in infos:
        if info.is_dir():
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchive(f"archive member {info.filename!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise UnsafeArchive(f"archive member {info.filename!r} is encrypted")
        try:
            target = validate_path(prefix + info.filename)
        except InvalidName as exc:
            raise UnsafeArchive(f"unsafe archive member name {info.filename!r}: {exc}") from exc
        if target in seen:
            raise UnsafeArchive(f"archive holds {info.filename!r} twice")
        seen.add(target)
        if info.file_size >= limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise UnsafeArchive(
                f"archive member {info.filename!r} expands {info.file_size // max(info.compress_size, 1)}"
                f"x (limit {limits.max_ratio}x): refusing a likely zip bomb"
            )
        total += info.file_size
        plan.append((target, info))
    if total > limits.max_total_bytes:
        raise UnsafeArchive(
            f"archive expands to {human_size(total)}; the limit is {human_size(limits.max_total_bytes)}"
        )
    if total >= limits.ratio_floor and total > limits.max_ratio * max(archive_size, 1):
        raise UnsafeArchive(
            f"archive expands {total // max(archive_size, 1)}x (limit {limits.max_ratio}x): refusing a likely zip bomb"
        )
    return plan


def open_archive(stream: BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeArchive(f"body is not a valid zip archive: {exc}") from exc


def write_archive(entries: Iterable[tuple[str, BinaryIO]], out: BinaryIO) -> int:
    """Write (member name, stream) pairs as a deflated zip; return the member count."""
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, stream in entries:
            with stream, archive.open(name, "w", force_zip64=True) as member:
                while chunk := stream.read(1024 * 1024):
                    member.write(chunk)
            count += 1
    return count
