"""Zip archives in and out of a namespace, guarded against zip bombs and unsafe names.

An upload is checked whole before a single member is stored: every name must be a valid
namespace path, no member may be a link, encrypted or duplicated, and the declared sizes
must stay within the member count, total size and expansion-ratio limits. ``zipfile``
never inflates a member past its declared size, so the declared sizes are the bound.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from store.blobs.base import human_size
from store.errors import InvalidName, UnsafeArchive
from store.names import validate_path


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 10_000
    max_total_bytes: int = 4 * 1024**3
    max_ratio: int = 100
    """Largest allowed uncompressed/compressed ratio, for the archive and for big members."""
    ratio_floor: int = 1024 * 1024
    """Members smaller than this are not ratio-checked: tiny files compress absurdly well."""


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
