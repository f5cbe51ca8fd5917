"""Shared resolutions: the lock a requirement set resolved to against a namespace's index.

Resolving is most of what a fresh worker would spend before it can use a bundled
environment, and every worker resolving the same requirements against the same index
state gets the same lock. So a worker that resolves stores its lock here, and the next one
asks for it first. A stored lock is only answered while the index state it was resolved
against is still current (and, when the namespace falls through to an upstream, within
the upstream TTL), so it can never pin a run to an index that has since changed.

The caller computes the keys (``packyard.runs.keys``: the same functions the client uses);
only writers of the namespace may store a lock, as only they may change what it resolves to.
"""

from __future__ import annotations

import json
import time

from packyard.store.bundles import check_key
from packyard.store.catalog import Catalog, locked_hashes
from packyard.store.errors import Conflict, InvalidInput, NotFound
from packyard.store.names import validate_namespace
from packyard.store.touches import RESOLUTION, Touches

MAX_LOCK_BYTES = 1024 * 1024


class Resolutions:
    def __init__(self, catalog: Catalog, touches: Touches | None = None) -> None:
        self.catalog = catalog
        self.touches = touches
        """Notes each use (for retention's keep_bundle_days)."""

    def get(self, namespace: str, key: str, state: str, ttl: float | None) -> dict:
        """The stored resolution when still valid for ``state`` (and ``ttl``, if given)."""
        validate_namespace(namespace)
        check_key(key)
        row = self.catalog.one("SELECT * FROM resolutions WHERE namespace = ? AND key = ?", (namespace, key))
        if row is None or row["state"] != state or (ttl is not None and time.time() - row["created"] >= ttl):
            raise NotFound(f"no current resolution {key} in {namespace}")
        row["requirements"] = json.loads(row["requirements"])
        if self.touches is not None:
            self.touches.note(RESOLUTION, namespace, key)
        return row

    def put(self, row: dict, current_state: str, actor: str) -> dict:
        """Store (or replace) a resolution made against ``current_state``."""
        validate_namespace(row["namespace"])
        check_key(row["key"])
        check_key(row["env_key"])
        if row["state"] != current_state:
            raise Conflict("the index changed while this lock was resolved: resolve again")
        if len(row["lock"].encode()) > MAX_LOCK_BYTES:
            raise InvalidInput(f"a lock is limited to {MAX_LOCK_BYTES} bytes")
        if not row["lock"].strip():
            raise InvalidInput("the lock is empty")
        stored = {**row, "requirements": json.dumps(row["requirements"]), "created": time.time(), "created_by": actor}
        with self.catalog.write() as db:
            db.upsert("resolutions", stored, pk=("namespace", "key"))
            # the files it pins, so a file's page finds the locks that use it without reading them all
            db.execute("DELETE FROM resolution_files WHERE namespace = ? AND key = ?", (row["namespace"], row["key"]))
            db.insert_all(
                "resolution_files",
                (
                    {"namespace": row["namespace"], "key": row["key"], "sha256": sha}
                    for sha in locked_hashes(row["lock"])
                ),
            )
        return {**stored, "requirements": row["requirements"]}
