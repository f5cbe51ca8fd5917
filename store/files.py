"""Namespace files with revisions: the one write path every change goes through.

``apply()`` takes a list of changes whose blobs are already stored and records them in one
catalog transaction: a put, a delete, a move, a restore, a zip import (and later a git
sync) are all just lists of changes. A change whose bytes equal the current head adds no
revision, so re-running any of them is a no-op. Deleting adds a tombstone revision; any
earlier revision can still be read and restored.
"""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import asdict, dataclass
from typing import BinaryIO

from packyard.store.archive import ArchiveLimits, open_archive, plan_import, write_archive
from packyard.store.blobs.base import BlobStore, too_large
from packyard.store.catalog import Catalog, now
from packyard.store.errors import Conflict, InvalidInput, NotFound, UnsafeArchive
from packyard.store.names import validate_namespace, validate_path, validate_prefix
from packyard.store.namespaces import Namespaces
from packyard.store.refs import BlobRefs


@dataclass(frozen=True)
class Change:
    """One path's new state: a blob (``sha256``, ``size``) or, with ``sha256`` None, deleted."""

    path: str
    sha256: str | None
    size: int | None = None
    git_blob: str | None = None


@dataclass
class FileRevision:
    namespace: str
    path: str
    revision: int
    sha256: str | None
    size: int | None
    deleted: bool
    updated: str
    author: str | None = None
    origin: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def public(self) -> dict:
        """The shape the HTTP API promises: ``{path, revision, sha256, size, updated}``."""
        return {
            "path": self.path,
            "revision": self.revision,
            "sha256": self.sha256,
            "size": self.size,
            "updated": self.updated,
        }


@dataclass
class Applied:
    revision: FileRevision
    changed: bool
    """False when the change matched the current head and added nothing."""


def _from_head(namespace: str, row: dict) -> FileRevision:
    return FileRevision(
        namespace, row["path"], row["revision"], row["sha256"], row["size"], bool(row["deleted"]), row["updated"]
    )


def _from_revision(row: dict) -> FileRevision:
    return FileRevision(
        row["namespace"],
        row["path"],
        row["revision"],
        row["sha256"],
        row["size"],
        bool(row["deleted"]),
        row["created"],
        row["author"],
        row["origin"],
    )


class NamespaceFiles:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        namespaces: Namespaces,
        refs: BlobRefs,
        *,
        max_upload_bytes: int | None = None,
        archive_limits: ArchiveLimits | None = None,
    ) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.namespaces = namespaces
        self.refs = refs
        self.max_upload_bytes = max_upload_bytes
        self.archive_limits = archive_limits or ArchiveLimits()

    # -- the one write path -------------------------------------------------------------

    def apply(self, namespace: str, changes: list[Change], *, author: str | None, origin: str) -> list[Applied]:
        """Record ``changes`` (blobs already stored) as one transaction."""
        validate_namespace(namespace)
        for change in changes:
            validate_path(change.path)
        results: list[Applied] = []
        with self.catalog.write() as db, self.namespaces.usage.guard(namespace):
            self.namespaces.ensure(namespace, author)
            for change in changes:
                head = self.catalog.one(
                    "SELECT * FROM file_heads WHERE namespace = ? AND path = ?", (namespace, change.path)
                )
                deleting = change.sha256 is None
                if head is not None and (
                    (deleting and head["deleted"])
                    or (not deleting and head["sha256"] == change.sha256 and not head["deleted"])
                ):
                    if change.git_blob and head["git_blob"] != change.git_blob:
                        db.update(
                            "file_heads", {"namespace": namespace, "path": change.path}, {"git_blob": change.git_blob}
                        )
                    results.append(Applied(_from_head(namespace, head), changed=False))
                    continue
                if head is None and deleting:
                    raise NotFound(f"{namespace}:{change.path} does not exist")
                revision = (head["revision"] if head else 0) + 1
                stamp = now()
                row = {
                    "namespace": namespace,
                    "path": change.path,
                    "revision": revision,
                    "sha256": change.sha256,
                    "size": change.size,
                    "deleted": int(deleting),
                    "created": stamp,
                    "author": author,
                    "origin": origin,
                    "git_blob": change.git_blob,
                }
                db.insert("file_revisions", row)
                db.upsert(
                    "file_heads",
                    {
                        "namespace": namespace,
                        "path": change.path,
                        "revision": revision,
                        "sha256": change.sha256,
                        "size": change.size,
                        "deleted": int(deleting),
                        "updated": stamp,
                        "git_blob": change.git_blob,
                    },
                    pk=("namespace", "path"),
                )
                results.append(Applied(_from_revision(row), changed=True))
        return results

    # -- single-file operations --------------------------------------------------------

    def put(self, namespace: str, path: str, stream: BinaryIO, *, author: str | None) -> Applied:
        """Store a stream as the path's next revision (none when the bytes are identical)."""
        validate_namespace(namespace)
        validate_path(path)
        blob = self.blobs.put(stream, limit=self.max_upload_bytes)
        # if the change fails, the blob stays for the collector (store/refs.py says why)
        return self.apply(namespace, [Change(path, blob.sha256, blob.size)], author=author, origin="put")[0]

    def get(self, namespace: str, path: str, revision: int | None = None) -> FileRevision:
        """The head (or revision ``revision``) of a path; NotFound when absent or deleted."""
        validate_namespace(namespace)
        validate_path(path)
        if revision is None:
            row = self.catalog.one("SELECT * FROM file_heads WHERE namespace = ? AND path = ?", (namespace, path))
            found = _from_head(namespace, row) if row else None
        else:
            if revision < 1:
                raise InvalidInput("revision numbers start at 1")
            row = self.catalog.one(
                "SELECT * FROM file_revisions WHERE namespace = ? AND path = ? AND revision = ?",
                (namespace, path, revision),
            )
            found = _from_revision(row) if row else None
            if found is None and self.catalog.one(
                "SELECT 1 FROM file_heads WHERE namespace = ? AND path = ?", (namespace, path)
            ):
                raise NotFound(f"{namespace}:{path} has no revision {revision}")
        if found is None:
            raise NotFound(f"{namespace}:{path} does not exist")
        if found.deleted:
            which = f"revision {found.revision} of " if revision is not None else ""
            raise NotFound(f"{which}{namespace}:{path} is deleted; see its history to restore it")
        return found

    def open(self, revision: FileRevision) -> BinaryIO:
        assert revision.sha256 is not None
        return self.blobs.open(revision.sha256)

    def list(self, namespace: str, prefix: str = "", *, include_deleted: bool = False) -> list[FileRevision]:
        validate_namespace(namespace)
        prefix = validate_prefix(prefix)
        sql = "SELECT * FROM file_heads WHERE namespace = ? AND substr(path, 1, ?) = ?"
        if not include_deleted:
            sql += " AND deleted = 0"
        rows = self.catalog.query(sql + " ORDER BY path", (namespace, len(prefix), prefix))
        return [_from_head(namespace, row) for row in rows]

    def heads(self, namespace: str, prefix: str = "") -> dict[str, dict]:
        """Current (not deleted) heads under a folder prefix, with their git blob ids."""
        validate_namespace(namespace)
        folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        rows = self.catalog.query(
            "SELECT * FROM file_heads WHERE namespace = ? AND deleted = 0 AND substr(path, 1, ?) = ?",
            (namespace, len(folder), folder),
        )
        return {row["path"]: row for row in rows}

    def delete(self, namespace: str, path: str, *, author: str | None) -> Applied:
        self.get(namespace, path)  # NotFound for absent or already deleted paths
        return self.apply(namespace, [Change(path, None)], author=author, origin="delete")[0]

    def move(self, namespace: str, source: str, target: str, *, author: str | None, overwrite: bool = False) -> Applied:
        validate_path(target)
        if source == target:
            raise InvalidInput("source and target paths are the same")
        with self.catalog.write():
            current = self.get(namespace, source)
            existing = self.catalog.one(
                "SELECT deleted FROM file_heads WHERE namespace = ? AND path = ?", (namespace, target)
            )
            if existing is not None and not existing["deleted"] and not overwrite:
                raise Conflict(f"{namespace}:{target} already exists; pass overwrite to replace it")
            results = self.apply(
                namespace,
                [Change(target, current.sha256, current.size), Change(source, None)],
                author=author,
                origin=f"move:{source}",
            )
        return results[0]

    def history(self, namespace: str, path: str) -> list[FileRevision]:
        validate_namespace(namespace)
        validate_path(path)
        rows = self.catalog.query(
            "SELECT * FROM file_revisions WHERE namespace = ? AND path = ? ORDER BY revision",
            (namespace, path),
        )
        if not rows:
            raise NotFound(f"{namespace}:{path} has no history")
        return [_from_revision(row) for row in rows]

    def restore(self, namespace: str, path: str, revision: int, *, author: str | None) -> Applied:
        """Make revision ``revision``'s bytes the head again (a new revision, unless identical)."""
        old = self.get(namespace, path, revision)
        return self.apply(namespace, [Change(path, old.sha256, old.size)], author=author, origin=f"restore:{revision}")[
            0
        ]

    # -- archives ----------------------------------------------------------------------

    def export_zip(self, namespace: str, prefix: str, out: BinaryIO) -> int:
        """Write the namespace's current files under ``prefix`` to ``out`` as a zip."""
        files = self.list(namespace, prefix)
        if not files:
            self.namespaces.nearest(namespace)  # not created yet: an empty archive; a typo: NotFound
        return write_archive(((f.path, self.open(f)) for f in files), out)

    def import_zip(self, namespace: str, stream: BinaryIO, *, prefix: str = "", author: str | None) -> list[Applied]:
        """Expand a zip into files, all in one transaction, or change nothing."""
        validate_namespace(namespace)
        prefix = validate_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        with tempfile.TemporaryFile() as spool:
            size = 0
            limit = self.max_upload_bytes
            while chunk := stream.read(1024 * 1024):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise too_large(limit)
                spool.write(chunk)
            spool.seek(0)
            archive = open_archive(spool)
            plan = plan_import(archive, prefix, self.archive_limits, size)
            # members stored before a failure stay for the collector (store/refs.py says why)
            try:
                changes = []
                for target, info in plan:
                    with archive.open(info) as member:
                        blob = self.blobs.put(member)  # type: ignore[arg-type]
                    changes.append(Change(target, blob.sha256, blob.size))
            except zipfile.BadZipFile as exc:
                raise UnsafeArchive(f"archive is corrupt: {exc}") from exc
            return self.apply(namespace, changes, author=author, origin="zip")
