"""Environment bundles: finished, relocatable virtual environments, keyed by their lock.

A task run that builds an environment uploads it as a gzip'd tar; a fresh worker with an
empty cache then materialises the same environment with one download and one extract,
without resolving or installing anything and without contacting any index.

An installed environment cannot be checked against the lock's hashes (those are hashes of
the wheels, not of what they unpack to), so a bundle is trusted exactly as far as the
namespace that stored it: a run in namespace N uses the bundle stored by the nearest
namespace of N's index chain (N itself, then the ancestors it inherits from) — the same
people who can already publish the packages N installs. A writer of an unrelated namespace
can store a bundle under the same key, but N never sees it. Within one namespace the first
upload for a key wins; uploading again is a no-op, so concurrent runs cannot fight over it.
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from typing import BinaryIO

from packyard.store.archive import ArchiveLimits, BoundedExpansion
from packyard.store.blobs.base import BlobStore, human_size
from packyard.store.catalog import Catalog, now
from packyard.store.errors import InvalidInput, NotFound, UnsafeArchive
from packyard.store.names import validate_namespace
from packyard.store.namespaces import Namespaces
from packyard.store.refs import BlobRefs
from packyard.store.touches import BUNDLE, Touches

_KEY = re.compile(r"[0-9a-f]{64}")
BUNDLE_LIMITS = ArchiveLimits(max_members=200_000)
"""A data-science environment holds tens of thousands of files; the size limits are the zip ones."""


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidInput(f"{key!r} is not an environment key (a sha256 hex digest)")
    return key


def check_bundle(
    stream: BinaryIO, size: int, limits: ArchiveLimits, checkpoint: Callable[[], None] | None = None
) -> None:
    """Refuse anything but a gzip'd tar of a relocatable environment with safe members.

    The same ``data`` filter the client extracts with (no absolute or ``..`` names, no links
    leaving the folder, no devices), plus the member, size and expansion limits of zip uploads,
    enforced while decompressing: a member whose declared size breaks a limit is refused at its
    header, and the decompressed stream itself is cut at the first byte past the limits, the
    CPU budget, or a ``checkpoint`` that raises (the client went away).
    """
    members = total = 0
    names: set[str] = set()
    budget = limits.expansion_limit(size)
    try:
        tar = BoundedExpansion(
            gzip.GzipFile(fileobj=stream, mode="rb"),
            # room for the tar's own headers and padding around the members' bytes
            limit=budget + 1024 * min(limits.max_members, 1 + budget // 512) + 20480,
            what="bundle",
            cpu_seconds=limits.max_cpu_seconds,
            checkpoint=checkpoint,
        )
        with tarfile.open(fileobj=tar, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                members += 1
                if members > limits.max_members:
                    raise UnsafeArchive(f"bundle has more than {limits.max_members} members")
                try:
                    if member.name.startswith("/"):  # the filter would strip the slash; refuse it
                        raise tarfile.AbsolutePathError(member)
                    tarfile.data_filter(member, "/bundle")
                except tarfile.FilterError as exc:
                    raise UnsafeArchive(f"unsafe bundle member {member.name!r}: {exc}") from exc
                total += member.size
                if total > limits.max_total_bytes:
                    raise UnsafeArchive(f"bundle expands beyond {human_size(limits.max_total_bytes)}")
                if total > budget:
                    raise UnsafeArchive(
                        f"bundle expands {total // max(size, 1)}x by member {member.name!r} "
                        f"(limit {limits.max_ratio}x): refusing a likely decompression bomb"
                    )
                names.add(member.name.removeprefix("./"))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"body is not a gzip'd tar of a virtual environment: {exc}") from exc
    if "pyvenv.cfg" not in names:
        raise InvalidInput("bundle holds no pyvenv.cfg at its top: it is not a virtual environment")


class Bundles:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        refs: BlobRefs,
        max_bytes: int | None,
        limits: ArchiveLimits,
        namespaces: Namespaces | None = None,
    ) -> None:
        self.catalog, self.blobs, self.refs, self.max_bytes, self.limits = catalog, blobs, refs, max_bytes, limits
        self.namespaces = namespaces
        """Creates the storing namespace, as every write does, so its own chain finds the bundle."""
        self.touches: Touches | None = None
        """Notes each use (for retention's keep_bundle_days)."""

    def nearest(self, key: str, chain: list[str]) -> dict:
        """The bundle for ``key`` stored by the nearest namespace of an index chain."""
        check_key(key)
        for namespace in chain:
            row = self.catalog.one("SELECT * FROM bundles WHERE key = ? AND namespace = ?", (key, namespace))
            if row is not None:
                if self.touches is not None:
                    self.touches.note(BUNDLE, namespace, key)
                return row
        raise NotFound(f"no environment bundle {key} for {chain[0] if chain else 'this namespace'}")

    def put(
        self, key: str, stream: BinaryIO, *, namespace: str, actor: str, checkpoint: Callable[[], None] | None = None
    ) -> tuple[dict, bool]:
        check_key(key)
        validate_namespace(namespace)
        existing = self.catalog.one("SELECT * FROM bundles WHERE key = ? AND namespace = ?", (key, namespace))
        blob = self.blobs.put(stream, limit=self.max_bytes)
        # a refused bundle's blob is left to the collector, never deleted here: a concurrent
        # change may have found the same bytes stored and be about to reference them
        if existing is None:
            with self.blobs.open(blob.sha256) as stored:
                check_bundle(stored, blob.size, self.limits, checkpoint)
        guard = self.namespaces.usage.guard(namespace) if self.namespaces is not None else nullcontext()
        with self.catalog.write() as db, guard:
            existing = self.catalog.one("SELECT * FROM bundles WHERE key = ? AND namespace = ?", (key, namespace))
            if existing is not None:
                return existing, False  # the blob stays for the collector: another change may hold it
            row = {
                "key": key,
                "namespace": namespace,
                "sha256": blob.sha256,
                "size": blob.size,
                "created": now(),
                "created_by": actor,
            }
            if self.namespaces is not None:
                self.namespaces.ensure(namespace, actor)
            db.insert("bundles", row)
            self.catalog.audit(actor, "bundle.put", namespace, json.dumps({"key": key}))
            return row, True
