"""Whether two distribution files with one filename hold the same package.

A build is rerun whenever anything in its folder changes — with the project at a
repository's root, a commit that only touches ``flows/`` or a CI file — and
``SOURCE_DATE_EPOCH`` follows the newest commit, so the rebuilt sdist and wheel carry new
archive timestamps while every file in them is byte for byte the same. Files are immutable
by sha256, so such a rebuild would be refused as "other contents". Comparing what the
archives hold — member names, kinds and bytes; not timestamps, owners, compression or
member order — tells that no-op apart from a real change made without a version bump, and
names the files that changed.

Archives are read with the same care as uploads: member names are never used as paths (only
compared), and inflation is bounded by a ratio of the archive's size.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from typing import BinaryIO

from packyard.store.artifacts import TAR_RATIO_MAX, TAR_SLACK
from packyard.store.errors import InvalidInput, UnsafeArchive

Members = dict[str, str]
"""Member name -> what it is: ``file sha256:…``, ``dir``, ``link -> target``."""


def members(stream: BinaryIO, filename: str, size: int) -> Members:
    """What a wheel, zip sdist or tar sdist holds, without its archive metadata."""
    stream.seek(0)
    budget = TAR_RATIO_MAX * size + TAR_SLACK
    try:
        if filename.endswith((".whl", ".zip")):
            return _zip_members(stream, filename, budget)
        return _tar_members(stream, filename, budget)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(f"{filename} cannot be read: {exc}") from exc


def _digest(read, budget: int, spent: int, filename: str) -> tuple[str, int]:  # noqa: ANN001 - read(n)
    digest = hashlib.sha256()
    while chunk := read(1024 * 1024):
        spent += len(chunk)
        if spent > budget:
            raise UnsafeArchive(f"{filename} inflates beyond {TAR_RATIO_MAX}x: refusing a likely archive bomb")
        digest.update(chunk)
    return f"file sha256:{digest.hexdigest()}", spent


def _zip_members(stream: BinaryIO, filename: str, budget: int) -> Members:
    found: Members = {}
    spent = 0
    with zipfile.ZipFile(stream) as archive:
        for info in archive.infolist():
            if info.is_dir():
                found[info.filename.rstrip("/")] = "dir"
                continue
            with archive.open(info) as member:
                found[info.filename], spent = _digest(member.read, budget, spent, filename)
    return found


def _tar_members(stream: BinaryIO, filename: str, budget: int) -> Members:
    found: Members = {}
    spent = 0
    with tarfile.open(fileobj=stream, mode="r:*") as archive:
        for member in archive:
            name = member.name.rstrip("/")
            if member.isdir():
                found[name] = "dir"
            elif member.issym() or member.islnk():
                found[name] = f"link -> {member.linkname}"
            elif member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                found[name], spent = _digest(extracted.read, budget, spent, filename)
            else:
                found[name] = "special"
    return found


def differences(old: Members, new: Members) -> list[str]:
    """Member names added, removed or changed, sorted; directories listed only when they
    appear or disappear (their contents are compared file by file)."""
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
