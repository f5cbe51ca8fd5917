"""What a distribution file is: its filename parsed and checked, its core metadata read.

Filenames are parsed only with ``packaging`` (``parse_wheel_filename``,
``parse_sdist_filename``), and the name and version in the file's own metadata (wheel
``*.dist-info/METADATA``, sdist ``PKG-INFO``) must match the filename: otherwise an
upload named ``etl-0.1.0`` could install as something else. Archives are read defensively:
member names are checked before use, metadata reads are capped, and a compressed sdist is
not inflated past a bounded ratio (a tar bomb would otherwise be scanned to the end).
"""

from __future__ import annotations

import posixpath
import tarfile
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from packaging.metadata import parse_email
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from packyard.store.errors import InvalidInput, UnsafeArchive
from packyard.store.names import validate_project

METADATA_MAX = 1024 * 1024
"""Largest METADATA/PKG-INFO read; real ones are a few KiB even with a long README."""
TAR_RATIO_MAX = 200
TAR_SLACK = 64 * 1024 * 1024

SDIST_SUFFIXES = (
    ".tar.gz",
    ".tgz",
    ".tar",
    ".zip",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
    ".tar.zst",
)
"""Every archive pip (``pip._internal.utils.filetypes``) or uv (``SourceDistExtension``) installs
as an sdist. Uploads take only ``.tar.gz`` and ``.zip`` (what PyPI takes); an upstream page
may list older formats, and they are passed through."""

STATIC_FIELDS = ("requires-dist", "requires-python", "provides-extra")
"""What a resolver reads from PEP 658 metadata: an sdist may only advertise it when none of
these is left to the build (PEP 643 ``Dynamic``)."""


@dataclass(frozen=True)
class ParsedFilename:
    filename: str
    project: str
    version: Version
    filetype: str
    """``bdist_wheel`` or ``sdist``, as the upload form calls them."""


@dataclass(frozen=True)
class Artifact:
    filename: str
    project: str
    name: str
    version: str
    filetype: str
    metadata: bytes
    requires_python: str | None
    summary: str | None
    core_metadata: bool = True
    """Whether the metadata may be served as the file's PEP 658 metadata (see :func:`reliable_metadata`)."""


def parse_filename(filename: str) -> ParsedFilename:
    """Parse a distribution filename or raise :class:`InvalidInput` saying why."""
    if not filename or "/" in filename or "\\" in filename or filename.startswith("."):
        raise InvalidInput(f"{filename!r} is not a distribution filename")
    if not filename.isascii():
        raise InvalidInput(
            f"{filename!r} is not a distribution filename: distribution filenames and project names are ASCII"
        )
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            validate_project(filename.split("-", 1)[0])
            return ParsedFilename(filename, canonicalize_name(name), version, "bdist_wheel")
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            validate_project(filename.removesuffix(".zip").removesuffix(".tar.gz").rpartition("-")[0])
            return ParsedFilename(filename, canonicalize_name(name), version, "sdist")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidInput(f"{filename!r} is not a valid distribution filename: {exc}") from exc
    raise InvalidInput(f"{filename!r} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)")


def distribution_key(filename: str) -> str:
    """What makes two files the same distribution, whatever their spelling.

    A wheel is its normalized name, version (``7.0`` is ``7.0.0``), build tag and set of tags
    (``py2.py3`` is ``py3.py2``); an sdist is its normalized name and version, whatever its
    format — a release has one sdist. The filename is checked first (:func:`parse_filename`).
    """
    if filename.endswith(".whl"):
        name, version, build, tags = parse_wheel_filename(filename)
        tag_set = ".".join(sorted(str(tag) for tag in tags))
        build_tag = "".join(str(part) for part in build)
        return f"{name} {canonicalize_version(version, strip_trailing_zero=True)} {build_tag} {tag_set}"
    name, version = parse_sdist_filename(filename)
    return f"{name} {canonicalize_version(version, strip_trailing_zero=True)} sdist"


def parse_installable(filename: str) -> ParsedFilename:
    """A filename on an upstream page: a wheel or an sdist in any format pip or uv installs.

    The name and version come from ``packaging`` (the stem is parsed as if it were the
    ``.tar.gz`` of the same release); eggs, ``.exe``, ``.msi``, ``.rpm`` and the like are
    refused, since neither installer uses them.
    """
    lowered = filename.lower()
    suffix = next((s for s in SDIST_SUFFIXES if lowered.endswith(s)), None)
    if suffix is None or suffix in (".tar.gz", ".zip"):
        return parse_filename(filename)
    parsed = parse_filename(filename[: -len(suffix)] + ".tar.gz")
    return ParsedFilename(filename, parsed.project, parsed.version, parsed.filetype)


def reliable_metadata(metadata: bytes, filetype: str) -> bool:
    """Whether ``metadata`` keeps PEP 658's promise: it is what installing the file will use.

    A wheel's METADATA is installed as is. An sdist's PKG-INFO only binds its build from
    Metadata-Version 2.2 (PEP 643), and then only for fields not marked ``Dynamic``; before
    that (most sdists on PyPI until 2023) PKG-INFO often lists no dependencies at all while
    ``setup.py`` declares them, and a resolver trusting it installs the project without them.
    The same test uv applies before it trusts an sdist's PKG-INFO.
    """
    if filetype == "bdist_wheel":
        return True
    raw, _ = parse_email(metadata)
    try:
        if Version(raw.get("metadata_version") or "0") < Version("2.2"):
            return False
    except InvalidVersion:
        return False
    dynamic = {field.strip().lower() for field in raw.get("dynamic") or ()}
    return not dynamic.intersection(STATIC_FIELDS)


def _safe_member(name: str, archive: str) -> None:
    normal = posixpath.normpath(name)
    if name.startswith("/") or "\\" in name or normal == ".." or normal.startswith("../") or "\0" in name:
        raise UnsafeArchive(f"{archive} has an unsafe member name {name!r}")


def _capped(read, size: int, what: str) -> bytes:  # noqa: ANN001 - a read(n) callable
    if size > METADATA_MAX:
        raise InvalidInput(f"{what} is {size} bytes; the limit is {METADATA_MAX}")
    data = read(METADATA_MAX + 1)
    if len(data) > METADATA_MAX:
        raise InvalidInput(f"{what} is larger than {METADATA_MAX} bytes")
    return data


def _wheel_metadata(stream: BinaryIO, parsed: ParsedFilename) -> bytes:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInput(f"{parsed.filename} is not a valid wheel: not a zip archive") from exc
    with archive:
        for name in archive.namelist():
            _safe_member(name, parsed.filename)
        candidates = [
            info
            for info in archive.infolist()
            if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")
        ]
        if len(candidates) != 1:
            raise InvalidInput(f"{parsed.filename} must hold exactly one *.dist-info/METADATA")
        info = candidates[0]
        try:
            with archive.open(info) as member:
                return _capped(member.read, info.file_size, f"{parsed.filename} METADATA")
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InvalidInput(f"{parsed.filename} is corrupt: {exc}") from exc


def _sdist_metadata(stream: BinaryIO, parsed: ParsedFilename, size: int) -> bytes:
    if parsed.filename.endswith(".zip"):
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidInput(f"{parsed.filename} is not a valid zip sdist") from exc
        with archive:
            for name in archive.namelist():
                _safe_member(name, parsed.filename)
            infos = [i for i in archive.infolist() if i.filename.count("/") == 1 and i.filename.endswith("/PKG-INFO")]
            if len(infos) != 1:
                raise InvalidInput(f"{parsed.filename} has no top-level PKG-INFO; is it an sdist?")
            with archive.open(infos[0]) as member:
                return _capped(member.read, infos[0].file_size, f"{parsed.filename} PKG-INFO")
    budget = TAR_RATIO_MAX * size + TAR_SLACK
    found: bytes | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r:gz") as archive:
            inflated = 0
            for member in archive:
                _safe_member(member.name, parsed.filename)
                if member.islnk() or member.issym():
                    _safe_member(posixpath.join(posixpath.dirname(member.name), member.linkname), parsed.filename)
                if member.isdev():
                    raise UnsafeArchive(f"{parsed.filename} holds a device file {member.name!r}")
                inflated += member.size
                if inflated > budget:
                    raise UnsafeArchive(
                        f"{parsed.filename} inflates beyond {TAR_RATIO_MAX}x: refusing a likely tar bomb"
                    )
                if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                    if found is not None:
                        raise InvalidInput(f"{parsed.filename} holds more than one top-level PKG-INFO")
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    found = _capped(extracted.read, member.size, f"{parsed.filename} PKG-INFO")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(f"{parsed.filename} is not a valid .tar.gz sdist: {exc}") from exc
    if found is None:
        raise InvalidInput(f"{parsed.filename} has no top-level PKG-INFO; is it an sdist?")
    return found


def inspect(stream: BinaryIO, filename: str, size: int) -> Artifact:
    """Read and check a distribution file (a seekable stream positioned anywhere)."""
    parsed = parse_filename(filename)
    stream.seek(0)
    if parsed.filetype == "bdist_wheel":
        metadata = _wheel_metadata(stream, parsed)
    else:
        metadata = _sdist_metadata(stream, parsed, size)
    raw, _ = parse_email(metadata)
    name, version = raw.get("name"), raw.get("version")
    if not name or not version:
        raise InvalidInput(f"the metadata in {filename} lacks a Name or Version")
    validate_project(name)
    if canonicalize_name(name) != parsed.project:
        raise InvalidInput(f"{filename} is named {parsed.project!r} but its metadata says Name: {name}")
    try:
        same_version = Version(version) == parsed.version
    except InvalidVersion as exc:
        raise InvalidInput(f"the metadata in {filename} has an invalid Version {version!r}") from exc
    if not same_version:
        raise InvalidInput(f"{filename} is version {parsed.version} but its metadata says Version: {version}")
    requires_python = raw.get("requires_python")
    if requires_python:
        try:
            SpecifierSet(requires_python)
        except InvalidSpecifier as exc:
            raise InvalidInput(f"{filename} has an invalid Requires-Python {requires_python!r}") from exc
    return Artifact(
        filename=filename,
        project=parsed.project,
        name=name,
        version=str(parsed.version),
        filetype=parsed.filetype,
        metadata=metadata,
        requires_python=requires_python or None,
        summary=raw.get("summary"),
        core_metadata=reliable_metadata(metadata, parsed.filetype),
    )
