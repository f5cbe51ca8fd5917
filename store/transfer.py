"""One namespace as one archive, to move it between servers (``packyard export`` / ``import``).

The format (version 1) is an uncompressed POSIX tar:

- ``manifest.json`` first: ``{"format": "packyard-namespace", "version": 1, "namespace",
  "exported", "settings", "files": [{"path", "revisions": [{"revision", "sha256", "size",
  "deleted", "created", "author", "origin"}]}], "dists": [{"filename", "sha256", "size",
  "upload_time", "uploader", "yanked", "yanked_reason", "yanked_by", "yanked_at"}]}``;
- then ``blobs/<sha256>`` once for every file revision's and distribution's bytes.

Uncompressed, so what an archive expands to is what was sent (no decompression bomb);
compress it for transport if you like. The manifest is small and read first, so an import
knows every digest it expects before it stores a byte.

An import trusts the archive for nothing it could not have sent through the API itself:

- only the manifest and the blobs it names, each once, as regular files; any other name
  (``../x``, ``/etc/passwd``, ``tokens.json``), link or device is refused;
- every blob is hashed as it is stored and must be the digest it is named by and the size
  the manifest says; every blob the manifest names must be in the archive (a digest alone
  never reaches bytes the server already holds: another namespace's files stay out of reach);
- every distribution is inspected as an upload is (filename, metadata, name and version
  agree); name, version, Requires-Python and core metadata come from the file, not the manifest;
- settings go through the same checks as ``PATCH .../settings`` (``check_settings``): an
  upstream must be an allowed host, a credential variable one the server lists for this namespace;
- there is no place for tokens, syncs, builds or another namespace: unknown keys are refused,
  and the archive's namespace must be the one imported into (or be named as the one renamed);
- who did what on the source server is kept as a claim, prefixed ``import:`` (``import:build:7``,
  ``import:sync:ab12...``), so it never links to a build or a sync of this server.

Nothing is recorded until everything has been checked, and then everything is one catalog
transaction: a refused archive leaves at most unreferenced blobs, for the collector.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from packyard.store.archive import ArchiveLimits
from packyard.store.artifacts import Artifact, distribution_key, inspect, parse_filename
from packyard.store.blobs.base import BlobStore, human_size, too_large
from packyard.store.catalog import Catalog, now
from packyard.store.errors import Conflict, InvalidInput, PackyardError, TooLarge, UnsafeArchive
from packyard.store.generations import Generations
from packyard.store.names import validate_namespace, validate_path
from packyard.store.namespaces import Namespaces
from packyard.store.transfer_format import FORMAT, MANIFEST, MAX_MANIFEST_BYTES, VERSION

IMPORTED = "import:"
_BLOB = re.compile(r"blobs/([0-9a-f]{64})")
_SHA = re.compile(r"[0-9a-f]{64}")
_MAX_TEXT = 1024
"""Longest author, origin, uploader or yank reason kept from an archive."""

_TOP = {"format", "version", "namespace", "exported", "settings", "files", "dists"}
_FILE = {"path", "revisions"}
_REVISION = {"revision", "sha256", "size", "deleted", "created", "author", "origin"}
_DIST = {"filename", "sha256", "size", "upload_time", "uploader", "yanked", "yanked_reason", "yanked_by", "yanked_at"}


def _bad(message: str) -> UnsafeArchive:
    return UnsafeArchive(f"not a valid namespace archive: {message}")


def _keys(item: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(item, dict):
        raise _bad(f"{where} is not an object")
    extra = set(item) - allowed
    if extra:
        raise _bad(f"{where} has unknown fields {sorted(extra)} (an archive holds no tokens, syncs or builds)")
    missing = allowed - set(item)
    if missing:
        raise _bad(f"{where} lacks {sorted(missing)}")
    return item


def _text(value: Any, where: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT or any(ord(c) < 32 for c in value):
        raise _bad(f"{where} is not a short line of text")
    return value


def _time(value: Any, where: str, *, optional: bool = False) -> str | None:
    """A timestamp with its zone, stored as the catalog writes its own (UTC, microseconds, ``Z``):
    index pages show them (PEP 700 ``upload-time``), and installers parse them strictly."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise _bad(f"{where} is not a timestamp")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(f"{where} is not an ISO 8601 timestamp") from exc
    if stamp.tzinfo is None:
        raise _bad(f"{where} has no time zone")
    return stamp.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise _bad(f"{where} is not a size")
    return value


def _claim(value: str | None) -> str:
    """Who did it on the source server, recorded as that server's claim (never this server's)."""
    return f"{IMPORTED}{value}" if value else IMPORTED.rstrip(":")


@dataclass
class Manifest:
    namespace: str
    settings: dict
    files: list[tuple[str, list[dict]]]
    dists: list[dict]
    sizes: dict[str, int] = field(default_factory=dict)
    """Every blob the archive must hold: sha256 -> size."""


def parse_manifest(data: bytes, limits: ArchiveLimits) -> Manifest:
    """Check a manifest whole, before any blob is read: structure, names, digests, counts."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"{MANIFEST} is not JSON") from exc
    top = _keys(raw, _TOP, MANIFEST)
    if top["format"] != FORMAT:
        raise _bad(f"format is {top['format']!r}, not {FORMAT!r}")
    if top["version"] != VERSION:
        raise _bad(f"format version {top['version']!r}; this server reads version {VERSION}")
    if not isinstance(top["namespace"], str):
        raise _bad("namespace is not a name")
    namespace = validate_namespace(top["namespace"])
    _time(top["exported"], "exported")
    if not isinstance(top["settings"], dict):
        raise _bad("settings is not an object")
    if not isinstance(top["files"], list) or not isinstance(top["dists"], list):
        raise _bad("files and dists must be lists")
    sizes: dict[str, int] = {}

    def blob(sha: Any, size: Any, where: str) -> None:
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            raise _bad(f"{where}: {sha!r} is not a sha256 digest")
        size = _count(size, where)
        if sizes.setdefault(sha, size) != size:
            raise _bad(f"{where}: blob {sha} is given two sizes")

    files: list[tuple[str, list[dict]]] = []
    paths: set[str] = set()
    entries = 0
    for i, item in enumerate(top["files"]):
        item = _keys(item, _FILE, f"files[{i}]")
        if not isinstance(item["path"], str):
            raise _bad(f"files[{i}].path is not a path")
        try:
            path = validate_path(item["path"])
        except InvalidInput as exc:
            raise _bad(f"files[{i}].path: {exc.message}") from exc
        if path in paths:
            raise _bad(f"{path} is listed twice")
        paths.add(path)
        if not isinstance(item["revisions"], list) or not item["revisions"]:
            raise _bad(f"{path} has no revisions")
        revisions = []
        for n, rev in enumerate(item["revisions"], start=1):
            where = f"{path} revision {n}"
            rev = _keys(rev, _REVISION, where)
            if rev["revision"] != n:
                raise _bad(f"{path}: revisions must be 1, 2, 3, ... in order")
            if not isinstance(rev["deleted"], bool):
                raise _bad(f"{where}: deleted is not true or false")
            if rev["deleted"]:
                if rev["sha256"] is not None or rev["size"] is not None:
                    raise _bad(f"{where}: a deletion has no bytes")
            else:
                blob(rev["sha256"], rev["size"], where)
            revisions.append(
                {
                    "revision": n,
                    "sha256": rev["sha256"],
                    "size": rev["size"],
                    "deleted": rev["deleted"],
                    "created": _time(rev["created"], f"{where} created"),
                    "author": _text(rev["author"], f"{where} author"),
                    "origin": _text(rev["origin"], f"{where} origin"),
                }
            )
        entries += len(revisions)
        files.append((path, revisions))
    dists = []
    identities: set[str] = set()
    for i, item in enumerate(top["dists"]):
        item = _keys(item, _DIST, f"dists[{i}]")
        if not isinstance(item["filename"], str):
            raise _bad(f"dists[{i}].filename is not a filename")
        try:
            parse_filename(item["filename"])
            key = distribution_key(item["filename"])
        except InvalidInput as exc:
            raise _bad(f"dists[{i}]: {exc.message}") from exc
        if key in identities:
            raise _bad(f"{item['filename']}: the archive holds this distribution twice")
        identities.add(key)
        blob(item["sha256"], item["size"], item["filename"])
        if not isinstance(item["yanked"], bool):
            raise _bad(f"{item['filename']}: yanked is not true or false")
        dists.append(
            {
                "filename": item["filename"],
                "sha256": item["sha256"],
                "size": item["size"],
                "upload_time": _time(item["upload_time"], f"{item['filename']} upload_time"),
                "uploader": _text(item["uploader"], f"{item['filename']} uploader"),
                "yanked": item["yanked"],
                "yanked_reason": _text(item["yanked_reason"], f"{item['filename']} yanked_reason"),
                "yanked_by": _text(item["yanked_by"], f"{item['filename']} yanked_by"),
                "yanked_at": _time(item["yanked_at"], f"{item['filename']} yanked_at", optional=True),
            }
        )
    entries += len(dists)
    if entries > limits.max_members or len(sizes) > limits.max_members:
        raise UnsafeArchive(f"archive lists {entries} entries; the limit is {limits.max_members}")
    total = sum(sizes.values())
    if total > limits.max_total_bytes:
        raise UnsafeArchive(f"archive holds {human_size(total)}; the limit is {human_size(limits.max_total_bytes)}")
    return Manifest(namespace, top["settings"], files, dists, sizes)


class _Bounded:
    """The request body, cut at the upload limit (a body without Content-Length included)."""

    def __init__(self, stream: BinaryIO, limit: int | None) -> None:
        self._stream, self._limit, self.read_bytes = stream, limit, 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.read_bytes += len(data)
        if self._limit is not None and self.read_bytes > self._limit:
            raise too_large(self._limit)
        return data


class NamespaceTransfer:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        namespaces: Namespaces,
        generations: Generations,
        *,
        limits: ArchiveLimits,
        max_upload_bytes: int | None,
    ) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.namespaces = namespaces
        self.generations = generations
        self.limits = limits
        self.max_upload_bytes = max_upload_bytes

    # -- export ----------------------------------------------------------------------------

    def manifest(self, namespace: str) -> dict:
        """The namespace's own files (every revision), distributions and settings (not its children's)."""
        ns = self.namespaces.get(namespace)
        files: dict[str, list[dict]] = {}
        for row in self.catalog.query(
            "SELECT path, revision, sha256, size, deleted, created, author, origin FROM file_revisions "
            "WHERE namespace = ? ORDER BY path, revision",
            (namespace,),
        ):
            path = row.pop("path")
            files.setdefault(path, []).append({**row, "deleted": bool(row["deleted"])})
        dists = self.catalog.query(
            "SELECT filename, sha256, size, upload_time, uploader, yanked, yanked_reason, yanked_by, yanked_at "
            "FROM dists WHERE namespace = ? ORDER BY filename",
            (namespace,),
        )
        return {
            "format": FORMAT,
            "version": VERSION,
            "namespace": namespace,
            "exported": now(),
            "settings": ns.settings,
            "files": [{"path": path, "revisions": revisions} for path, revisions in files.items()],
            "dists": [{**row, "yanked": bool(row["yanked"])} for row in dists],
        }

    def export(self, namespace: str, out: BinaryIO) -> int:
        """Write the archive to ``out``; how many blobs it holds. Read in one snapshot of the
        catalog; blobs are never deleted while a row references them, so all are there."""
        with self.catalog.write():  # one consistent view (the write lock: no change lands mid-read)
            manifest = self.manifest(namespace)
        sizes: dict[str, int] = {}
        for item in manifest["files"]:
            for rev in item["revisions"]:
                if rev["sha256"]:
                    sizes[rev["sha256"]] = rev["size"]
        for dist in manifest["dists"]:
            sizes[dist["sha256"]] = dist["size"]
        data = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode()
        stamp = datetime.now().timestamp()
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), stamp, 0o644
            tar.addfile(info, io.BytesIO(data))
            for sha, size in sorted(sizes.items()):
                info = tarfile.TarInfo(f"blobs/{sha}")
                info.size, info.mtime, info.mode = size, stamp, 0o644
                with self.blobs.open(sha) as stream:
                    tar.addfile(info, stream)  # type: ignore[arg-type]
        return len(sizes)

    # -- import ----------------------------------------------------------------------------

    def read(self, stream: BinaryIO) -> tuple[Manifest, tarfile.TarFile, _Bounded]:
        """Open an archive and check its manifest (the first member) without reading further."""
        body = _Bounded(stream, self.max_upload_bytes)
        try:
            tar = tarfile.open(fileobj=body, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115 - the caller reads on
            first = tar.next()
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, PackyardError):
                raise
            raise UnsafeArchive(f"body is not an uncompressed tar archive (packyard export writes one): {exc}") from exc
        if first is None or first.name != MANIFEST or not first.isreg():
            raise _bad(f"its first member must be the file {MANIFEST}")
        if first.size > MAX_MANIFEST_BYTES:
            raise TooLarge(
                f"{MANIFEST} is {human_size(first.size)}; the limit is {human_size(MAX_MANIFEST_BYTES)}: "
                "split the namespace, or move it with the catalog's backup"
            )
        member = tar.extractfile(first)
        assert member is not None
        return parse_manifest(member.read(), self.limits), tar, body

    def import_(
        self,
        manifest: Manifest,
        tar: tarfile.TarFile,
        *,
        target: str,
        replace: bool,
        actor: str,
        settings: dict,
    ) -> dict:
        """Store the archive's blobs (each checked), then record everything in one transaction.

        ``settings`` are the archive's settings as the caller checked them (the API's checks).
        """
        if not replace and self.namespaces.exists(target):
            raise Conflict(f"namespace {target!r} exists; import with --replace to replace its contents")
        dist_names: dict[str, list[str]] = {}
        for dist in manifest.dists:
            dist_names.setdefault(dist["sha256"], []).append(dist["filename"])
        artifacts: dict[str, Artifact] = {}
        seen: set[str] = set()
        count = 0
        try:
            while (member := tar.next()) is not None:
                count += 1
                if count > self.limits.max_members:
                    raise UnsafeArchive(f"archive has more than {self.limits.max_members} members")
                match = _BLOB.fullmatch(member.name)
                if match is None:
                    raise _bad(f"member {member.name!r} is neither {MANIFEST} nor blobs/<sha256>")
                if not member.isreg():
                    raise _bad(f"member {member.name!r} is not a regular file")
                sha = match[1]
                if sha not in manifest.sizes:
                    raise _bad(f"blob {sha} is not named by the manifest")
                if sha in seen:
                    raise _bad(f"blob {sha} is in the archive twice")
                seen.add(sha)
                if member.size != manifest.sizes[sha]:
                    raise _bad(f"blob {sha} is {member.size} bytes; the manifest says {manifest.sizes[sha]}")
                source = tar.extractfile(member)
                assert source is not None
                with tempfile.TemporaryFile() as spool:
                    shutil.copyfileobj(source, spool, 1024 * 1024)
                    spool.seek(0)
                    stored = self.blobs.put(spool, limit=self.max_upload_bytes)
                    if stored.sha256 != sha:
                        raise _bad(f"blob {sha} holds bytes whose sha256 is {stored.sha256}")
                    for filename in dist_names.get(sha, []):
                        artifacts[filename] = inspect(spool, filename, stored.size)
        except (tarfile.TarError, EOFError) as exc:
            raise UnsafeArchive(f"archive is damaged: {exc}") from exc
        missing = set(manifest.sizes) - seen
        if missing:
            raise _bad(f"archive lacks {len(missing)} blob(s) its manifest names, e.g. {sorted(missing)[0]}")
        metadata = {name: self.blobs.put(io.BytesIO(a.metadata), durable=False) for name, a in artifacts.items()}
        return self._record(manifest, target, replace, actor, settings, artifacts, metadata)

    def _record(
        self,
        manifest: Manifest,
        target: str,
        replace: bool,
        actor: str,
        settings: dict,
        artifacts: dict[str, Artifact],
        metadata: dict[str, Any],
    ) -> dict:
        # the quotas of the target's ancestors bound what an import adds, as for any write
        with self.catalog.write() as db, self.namespaces.usage.guard(target):
            existed = self.namespaces.exists(target)
            if existed and not replace:
                raise Conflict(f"namespace {target!r} exists; import with --replace to replace its contents")
            if existed:
                for table in ("file_heads", "file_revisions", "dists"):
                    db.delete(table, {"namespace": target})
            self.namespaces.ensure(target, actor)
            revisions = 0
            for path, history in manifest.files:
                for rev in history:
                    db.insert(
                        "file_revisions",
                        {
                            "namespace": target,
                            "path": path,
                            "revision": rev["revision"],
                            "sha256": rev["sha256"],
                            "size": rev["size"],
                            "deleted": int(rev["deleted"]),
                            "created": rev["created"],
                            "author": _claim(rev["author"]),
                            "origin": _claim(rev["origin"]),
                            "git_blob": None,
                        },
                    )
                    revisions += 1
                head = history[-1]
                db.insert(
                    "file_heads",
                    {
                        "namespace": target,
                        "path": path,
                        "revision": head["revision"],
                        "sha256": head["sha256"],
                        "size": head["size"],
                        "deleted": int(head["deleted"]),
                        "updated": head["created"],
                        "git_blob": None,
                    },
                )
            for dist in manifest.dists:
                artifact = artifacts[dist["filename"]]
                db.insert(
                    "dists",
                    {
                        "namespace": target,
                        "filename": artifact.filename,
                        "project": artifact.project,
                        "name": artifact.name,
                        "version": artifact.version,
                        "filetype": artifact.filetype,
                        "sha256": dist["sha256"],
                        "size": dist["size"],
                        "metadata_sha256": metadata[dist["filename"]].sha256,
                        "requires_python": artifact.requires_python,
                        "summary": artifact.summary,
                        "upload_time": dist["upload_time"],
                        "uploader": _claim(dist["uploader"]),
                        "yanked": int(dist["yanked"]),
                        "yanked_reason": dist["yanked_reason"] if dist["yanked"] else None,
                        "yanked_by": _claim(dist["yanked_by"]) if dist["yanked"] else None,
                        "yanked_at": dist["yanked_at"] if dist["yanked"] else None,
                        "core_metadata": int(artifact.core_metadata),
                    },
                )
            current = self.namespaces.settings_of(target) or {}
            changes = {key: None for key in current if key not in settings} | settings
            if changes:
                self.namespaces.update_settings(target, changes, actor)
            summary = {
                "namespace": target,
                "source": manifest.namespace,
                "replaced": existed,
                "files": len(manifest.files),
                "revisions": revisions,
                "dists": len(manifest.dists),
                "yanked": sum(1 for d in manifest.dists if d["yanked"]),
                "settings": sorted(settings),
            }
            self.catalog.audit(actor, "namespace.import", target, json.dumps(summary))
            self.generations.bump(target)
            self.catalog.after_commit(self.generations.invalidate)
        return summary
