"""Distributions: immutable files in a namespace's package index.

An upload is streamed once into the blob store while every digest the client sent is
computed beside the sha256, then checked (filename, metadata, digests) and published in
one catalog transaction. A distribution is immutable within a namespace: other bytes for
the same one — the same normalized name, version and tags (or the release's sdist), however
the filename spells them — are refused (409); the same bytes again, under any spelling, are
a no-op that adds no row, so re-running an upload is safe. Yank and delete are explicit
and audited. Core metadata (PEP 658) is stored as its own blob at upload time, so
resolvers never have to download a file to read it.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import BinaryIO

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from packyard.store.artifacts import (
    METADATA_MAX,
    Artifact,
    distribution_key,
    inspect,
    parse_filename,
    reliable_metadata,
)
from packyard.store.blobs.base import BlobStore, StoredBlob
from packyard.store.catalog import Catalog, now
from packyard.store.contents import Members, differences, members
from packyard.store.errors import Conflict, InvalidInput, NotFound, PackyardError
from packyard.store.generations import Generations
from packyard.store.names import normalize_project, validate_namespace, validate_project
from packyard.store.namespaces import Namespaces
from packyard.store.refs import BlobRefs

DIGESTS = {"sha256_digest": "sha256", "md5_digest": "md5", "blake2_256_digest": "blake2_256"}


@dataclass(frozen=True)
class Dist:
    namespace: str
    filename: str
    project: str
    name: str
    version: str
    filetype: str
    sha256: str
    size: int
    metadata_sha256: str
    requires_python: str | None
    summary: str | None
    upload_time: str
    uploader: str | None
    core_metadata: bool = True
    """Whether ``metadata_sha256`` is advertised as the file's PEP 658 metadata (wheels, and
    sdists whose PKG-INFO binds their build)."""
    yanked: bool = False
    yanked_reason: str | None = None
    yanked_by: str | None = None
    yanked_at: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _dist(row: dict) -> Dist:
    return Dist(**{**row, "yanked": bool(row["yanked"]), "core_metadata": bool(row["core_metadata"])})


class _DigestReader:
    """Passes a stream through while computing md5 and blake2b-256 beside the store's sha256."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.blake2_256 = hashlib.blake2b(digest_size=32)

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.md5.update(data)
        self.blake2_256.update(data)
        return data


def normalize_version(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion as exc:
        raise InvalidInput(f"{version!r} is not a valid version") from exc


class Dists:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        namespaces: Namespaces,
        generations: Generations,
        refs: BlobRefs,
        *,
        max_upload_bytes: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.blobs = blobs
        self.namespaces = namespaces
        self.generations = generations
        self.refs = refs
        self.max_upload_bytes = max_upload_bytes

    # -- adding --------------------------------------------------------------------------

    def add(
        self,
        namespace: str,
        stream: BinaryIO,
        filename: str,
        *,
        uploader: str | None,
        name: str | None = None,
        version: str | None = None,
        filetype: str | None = None,
        digests: dict[str, str] | None = None,
    ) -> tuple[Dist, bool]:
        """Store and publish one file from a seekable stream. Returns (dist, created)."""
        validate_namespace(namespace)
        parsed = parse_filename(filename)
        if name is not None and canonicalize_name(validate_project(name)) != parsed.project:
            raise InvalidInput(f"the form says name {name!r} but the file is {filename}")
        if version is not None and Version(normalize_version(version)) != parsed.version:  # 7.0 is 7.0.0
            raise InvalidInput(f"the form says version {version!r} but the file is {filename}")
        if filetype is not None and filetype != parsed.filetype:
            raise InvalidInput(f"the form says filetype {filetype!r} but {filename} is a {parsed.filetype}")
        stream.seek(0)
        reader = _DigestReader(stream)
        # a refused upload leaves its blob to the collector (store/collector.py), never deletes
        # it: a concurrent upload of the same bytes may have found it stored and be committing
        blob = self.blobs.put(reader, limit=self.max_upload_bytes)  # type: ignore[arg-type]
        computed = {
            "sha256": blob.sha256,
            "md5": reader.md5.hexdigest(),
            "blake2_256": reader.blake2_256.hexdigest(),
        }
        for field, algorithm in DIGESTS.items():
            sent = (digests or {}).get(field)
            if sent and sent.strip().lower() != computed[algorithm]:
                raise InvalidInput(
                    f"{field} does not match the uploaded bytes of {filename} "
                    f"(sent {sent}, computed {computed[algorithm]}); the upload was corrupted"
                )
        artifact = inspect(stream, filename, blob.size)
        return self.publish(namespace, [(artifact, blob)], uploader=uploader)[0]

    def publish(
        self,
        namespace: str,
        items: list[tuple[Artifact, StoredBlob]],
        *,
        uploader: str | None,
    ) -> list[tuple[Dist, bool]]:
        """Publish checked artifacts whose file blobs are stored: all in one transaction.

        On failure the blobs stay (unreferenced) for the collector; see ``store/refs.py``.
        """
        metadata_blobs = []
        for artifact, _ in items:
            # derivable from the file and hash-checked on every read (metadata_bytes): one
            # fsync per upload instead of two
            meta = self.blobs.put(io.BytesIO(artifact.metadata), durable=False)
            metadata_blobs.append(meta)
        results: list[tuple[Dist, bool]] = []
        with self.catalog.write() as db, self.namespaces.usage.guard(namespace):
            self.namespaces.ensure(namespace, uploader)
            for (artifact, blob), meta in zip(items, metadata_blobs, strict=True):
                existing = self._same_distribution(namespace, artifact.project, artifact.filename)
                if existing:
                    same_bytes = [row for row in existing if row["sha256"] == blob.sha256]
                    if not same_bytes:
                        spelled = existing[0]["filename"]
                        also = "" if spelled == artifact.filename else f" (as {spelled}: the same distribution)"
                        raise Conflict(
                            f"{artifact.filename} already exists in {namespace}{also} with other contents; "
                            "files are immutable: bump the version and upload again"
                        )
                    results.append((_dist(same_bytes[0]), False))
                    continue
                dist = Dist(
                    namespace=namespace,
                    filename=artifact.filename,
                    project=artifact.project,
                    name=artifact.name,
                    version=artifact.version,
                    filetype=artifact.filetype,
                    sha256=blob.sha256,
                    size=blob.size,
                    metadata_sha256=meta.sha256,
                    requires_python=artifact.requires_python,
                    summary=artifact.summary,
                    upload_time=now(),
                    uploader=uploader,
                    core_metadata=artifact.core_metadata,
                )
                db.insert("dists", {**dist.to_dict(), "yanked": 0, "core_metadata": int(dist.core_metadata)})
                self.catalog.audit(
                    uploader or "-",
                    "dist.upload",
                    namespace,
                    json.dumps({"filename": dist.filename, "sha256": dist.sha256}),
                )
                results.append((dist, True))
            if any(new for _, new in results):
                self.generations.bump(namespace)
        self.generations.invalidate()
        return results

    def _same_distribution(self, namespace: str, project: str, filename: str) -> list[dict]:
        """The namespace's files that are the distribution ``filename`` is, however spelled.

        Compared in Python (not a unique column) because catalogs written before this check
        may hold two spellings of one distribution: those are kept, and no new one is added.
        """
        key = distribution_key(filename)
        rows = self.catalog.query(
            "SELECT * FROM dists WHERE namespace = ? AND project = ? ORDER BY filename = ? DESC, upload_time",
            (namespace, project, filename),
        )
        return [row for row in rows if distribution_key(row["filename"]) == key]

    def rebuilt(
        self, namespace: str, items: list[tuple[Artifact, StoredBlob]]
    ) -> tuple[list[tuple[Artifact, StoredBlob]], list[Dist]]:
        """A build's artifacts split into those to publish and those already published with
        the same contents (same members, same bytes; only archive timestamps differ).

        Conflict, naming the members that differ, when an artifact's distribution is taken by
        other contents: a real change made without a version bump.
        """
        fresh: list[tuple[Artifact, StoredBlob]] = []
        same: list[Dist] = []
        refused = []
        for artifact, blob in items:
            existing = self._same_distribution(namespace, artifact.project, artifact.filename)
            if not existing or any(row["sha256"] == blob.sha256 for row in existing):
                fresh.append((artifact, blob))  # new, or identical bytes (publish's no-op)
                continue
            row = existing[0]
            published = self._members(row["sha256"], row["filename"])
            changed = differences(published, self._members(blob.sha256, artifact.filename))
            if changed:
                shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
                also = "" if row["filename"] == artifact.filename else f" (as {row['filename']}: the same distribution)"
                refused.append(
                    f"{artifact.filename} already exists in {namespace}{also} with other contents: {shown} differ"
                )
            else:
                same.append(_dist(row))
        if refused:
            raise Conflict(f"{'; '.join(refused)}; files are immutable: bump the version and build again")
        return fresh, same

    def _members(self, sha256: str, filename: str) -> Members:
        with tempfile.TemporaryFile() as spool:
            with self.blobs.open(sha256) as stream:
                shutil.copyfileobj(stream, spool, 1024 * 1024)
            size = spool.tell()
            return members(spool, filename, size)

    # -- reading -------------------------------------------------------------------------

    def get(self, namespace: str, filename: str) -> Dist:
        row = self.catalog.one("SELECT * FROM dists WHERE namespace = ? AND filename = ?", (namespace, filename))
        if row is None:
            raise NotFound(f"{filename} is not in {namespace}")
        return _dist(row)

    def list(self, namespace: str, project: str | None = None) -> list[Dist]:
        validate_namespace(namespace)
        if project is None:
            rows = self.catalog.query(
                "SELECT * FROM dists WHERE namespace = ? ORDER BY project, filename", (namespace,)
            )
        else:
            rows = self.catalog.query(
                "SELECT * FROM dists WHERE namespace = ? AND project = ? ORDER BY filename",
                (namespace, normalize_project(project)),
            )
        return [_dist(row) for row in rows]

    def metadata_bytes(self, file_sha256: str, filename: str, metadata_sha256: str) -> bytes:
        """A file's core metadata, checked against its recorded hash; re-derived from the file
        (and stored again) if the metadata blob is missing or damaged, e.g. after a crash."""
        try:
            with self.blobs.open(metadata_sha256) as stream:
                data = stream.read(METADATA_MAX + 1)
            if hashlib.sha256(data).hexdigest() == metadata_sha256:
                return data
        except NotFound:
            pass
        with tempfile.TemporaryFile() as spool, self.blobs.open(file_sha256) as source:
            shutil.copyfileobj(source, spool, 1024 * 1024)
            size = spool.tell()
            data = inspect(spool, filename, size).metadata
        if hashlib.sha256(data).hexdigest() != metadata_sha256:
            raise NotFound(f"the metadata of {filename} no longer matches its recorded hash")
        self.blobs.put(io.BytesIO(data))  # a put rewrites a damaged blob in place
        return data

    def decide_core_metadata(self) -> int:
        """Decide, from their stored metadata, which sdists stored before the decision was
        recorded (schema v10) may advertise it; returns how many were decided.

        Runs when the store opens and touches only rows still undecided, so it is work once.
        A file whose metadata cannot be read stays unadvertised and is tried again next time.
        """
        if self.catalog.schema_version < 10:
            return 0  # a catalog opened at an older schema (only tests of migrations do that)
        rows = self.catalog.query(
            "SELECT DISTINCT sha256, filename, filetype, metadata_sha256 FROM dists WHERE core_metadata IS NULL"
        )
        decided = 0
        for row in rows:
            try:
                data = self.metadata_bytes(row["sha256"], row["filename"], row["metadata_sha256"])
            except PackyardError:
                continue
            with self.catalog.write() as db:
                db.execute(
                    "UPDATE dists SET core_metadata = ? WHERE sha256 = ? AND filename = ? AND core_metadata IS NULL",
                    (int(reliable_metadata(data, row["filetype"])), row["sha256"], row["filename"]),
                )
            decided += 1
        return decided

    # -- yank, unyank, delete ------------------------------------------------------------

    def _select(self, namespace: str, project: str, version: str | None, filename: str | None) -> list[Dist]:
        validate_namespace(namespace)
        project = normalize_project(project)
        if filename is not None:
            dist = self.get(namespace, filename)
            if dist.project != project:
                raise InvalidInput(f"{filename} is not a file of {project}")
            if version is not None and dist.version != normalize_version(version):
                raise InvalidInput(
                    f"{filename} is a file of {project} {dist.version}, not {normalize_version(version)}"
                )
            return [dist]
        if version is None:
            raise InvalidInput("name a version (a whole release) or a filename")
        version = normalize_version(version)
        found = [d for d in self.list(namespace, project) if d.version == version]
        if not found:
            raise NotFound(f"{project} {version} has no files in {namespace}")
        return found

    def yank(
        self,
        namespace: str,
        project: str,
        version: str | None,
        *,
        filename: str | None = None,
        reason: str = "",
        actor: str,
    ) -> list[Dist]:
        """PEP 592: installers skip yanked files unless a requirement pins them with ``==``."""
        return self._set_yanked(namespace, project, version, filename, True, reason, actor)

    def unyank(
        self, namespace: str, project: str, version: str | None, *, filename: str | None = None, actor: str
    ) -> list[Dist]:
        return self._set_yanked(namespace, project, version, filename, False, None, actor)

    def _set_yanked(
        self,
        namespace: str,
        project: str,
        version: str | None,
        filename: str | None,
        yanked: bool,
        reason: str | None,
        actor: str,
    ) -> list[Dist]:
        with self.catalog.write() as db:
            dists = self._select(namespace, project, version, filename)
            stamp = now()
            for dist in dists:
                db.update(
                    "dists",
                    {"namespace": namespace, "filename": dist.filename},
                    {
                        "yanked": int(yanked),
                        "yanked_reason": reason if yanked else None,
                        "yanked_by": actor,
                        "yanked_at": stamp,
                    },
                )
                self.catalog.audit(
                    actor,
                    "dist.yank" if yanked else "dist.unyank",
                    namespace,
                    json.dumps({"filename": dist.filename, "reason": reason}),
                )
            self.generations.bump(namespace)
        self.generations.invalidate()
        return [self.get(namespace, d.filename) for d in dists]

    def delete(
        self, namespace: str, project: str, version: str | None, *, filename: str | None = None, actor: str
    ) -> list[Dist]:
        """Remove files from the index for good (the collector takes their blobs once nothing holds them)."""
        with self.catalog.write() as db:
            dists = self._select(namespace, project, version, filename)
            for dist in dists:
                db.delete("dists", {"namespace": namespace, "filename": dist.filename})
                self.catalog.audit(
                    actor, "dist.delete", namespace, json.dumps({"filename": dist.filename, "sha256": dist.sha256})
                )
            self.generations.bump(namespace)
        self.generations.invalidate()
        return dists
